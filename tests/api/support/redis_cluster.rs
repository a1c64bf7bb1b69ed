//! A real three-node Redis Cluster (three primaries, no replicas) on free ports, shared by
//! every test of this binary: `redis-server --cluster-enabled yes` three times, joined by
//! `redis-cli --cluster create`. The nodes stop when the tests end, however they end.

use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::s3::{free_port, WRAPPER};

const STARTUP: Duration = Duration::from_secs(30);

/// The running cluster.
pub struct RedisCluster {
    nodes: Vec<Node>,
}

struct Node {
    port: u16,
    _lifeline: Option<ChildStdin>,
    _shell: Child,
}

impl RedisCluster {
    /// The cluster every test of this binary shares (keys differ per upload, so tests
    /// cannot meet).
    pub fn shared() -> &'static RedisCluster {
        static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
        CLUSTER.get_or_init(RedisCluster::start)
    }

    fn start() -> Self {
        let nodes: Vec<Node> = (0..3).map(|_| Node::start()).collect();
        for node in &nodes {
            node.wait(|| node.cli(&["PING"]).trim() == "PONG", "answer PING");
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let out = create.args(["--cluster-replicas", "0", "--cluster-yes"]).output().expect("redis-cli");
        assert!(out.status.success(), "redis-cli --cluster create: {}", String::from_utf8_lossy(&out.stdout));
        for node in &nodes {
            node.wait(|| node.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"), "see the cluster ok");
        }
        Self { nodes }
    }

    /// The seed list ferry is given: two of the three nodes, as `redis://` URLs.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self.nodes[..2].iter().map(|n| format!("redis://127.0.0.1:{}", n.port)).collect();
        seeds.join(",")
    }

    /// Runs one command through `redis-cli -c` (following redirects) on the first node.
    pub fn cli(&self, args: &[&str]) -> String {
        self.nodes[0].cli(&[&["-c"], args].concat())
    }

    /// `CLUSTER KEYSLOT key`.
    pub fn slot(&self, key: &str) -> u16 {
        self.cli(&["CLUSTER", "KEYSLOT", key]).trim().parse().expect("a slot")
    }
}

impl Node {
    fn start() -> Self {
        let (port, bus) = (free_port(), free_port());
        let dir = tempfile::tempdir().expect("a temporary folder").keep();
        let mut shell = Command::new("sh")
            .arg("-c")
            .arg(WRAPPER)
            .arg("ferry-redis-node")
            .arg(&dir)
            .arg("redis-server")
            .args(["--port", &port.to_string(), "--cluster-port", &bus.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs it: apt-get install redis-server)");
        let lifeline = shell.stdin.take();
        Self { port, _lifeline: lifeline, _shell: shell }
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli").args(["-p", &self.port.to_string()]).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait(&self, ready: impl Fn() -> bool, what: &str) {
        let deadline = Instant::now() + STARTUP;
        while !ready() {
            assert!(Instant::now() < deadline, "the Redis node on port {} did not {what}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
