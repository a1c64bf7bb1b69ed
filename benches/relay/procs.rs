//! The processes a benchmark runs: redis-server, s3s-fs, nginx and ferry, each on a free
//! loopback port with a temporary folder of its own, each stopped when its guard drops
//! (at the end, or while a panic unwinds).

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::client::{self, Bucket};

/// Every server waits at most this long to listen.
const STARTUP: Duration = Duration::from_secs(60);
/// How long a stopped process may take to exit on SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The keys s3s-fs is started with, and every client signs with.
pub const ACCESS_KEY: &str = "ferry-bench-access-key";
/// The secret of `ACCESS_KEY`.
pub const SECRET_KEY: &str = "ferry-bench-secret-key";
/// The bucket every benchmark writes to.
pub const BUCKET: &str = "ferry-bench";
/// The region every client signs for.
pub const REGION: &str = "us-east-1";

/// Where the programs are.
pub struct Tools {
    pub redis_server: PathBuf,
    pub redis_cli: PathBuf,
    pub s3s_fs: PathBuf,
    pub nginx: PathBuf,
    pub ferry: PathBuf,
}

impl Tools {
    /// Finds every program (nginx only if `nginx`), or stops with how to install the
    /// missing ones.
    pub fn locate(nginx: bool) -> Self {
        let mut missing = Vec::new();
        let mut find = |name: &str, install: &str| {
            which(name).unwrap_or_else(|| {
                missing.push(format!("  {name}: {install}"));
                PathBuf::new()
            })
        };
        let redis_server = find("redis-server", "apt-get install -y redis-server");
        let redis_cli = find("redis-cli", "apt-get install -y redis-tools");
        let s3s_fs = find("s3s-fs", "cargo install s3s-fs --version 0.14.1 --features binary --locked");
        let nginx = if nginx { find("nginx", "apt-get install -y nginx") } else { which("nginx").unwrap_or_default() };
        // `cargo bench` builds the binary targets beside a benchmark and tells their paths.
        let ferry = std::env::var_os("FERRY_BENCH_BIN")
            .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ferry")), PathBuf::from);
        if !ferry.is_file() {
            missing.push(format!("  ferry ({}): run the benchmark with `cargo bench --bench relay`", ferry.display()));
        }
        assert!(missing.is_empty(), "the relay benchmark needs these programs:\n{}", missing.join("\n"));
        Self { redis_server, redis_cli, s3s_fs, nginx, ferry }
    }
}

/// The first `name` on `PATH`, in `/usr/sbin` (nginx) or in `~/.cargo/bin` (s3s-fs).
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), home.join(".cargo/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().expect("the listener's address").port()
}

/// A child process, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with its output in `log`.
    fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Self {
        let out = File::create(&log).expect("the log file");
        let err = out.try_clone().expect("the log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {name}: {e}"));
        Self { name, child, log }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the process listens on `port`; panics with its log if it exits first.
    async fn wait_for_port(&mut self, port: u16) {
        let deadline = Instant::now() + STARTUP;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited at start ({status}):\n{}", self.name, self.log_text());
            }
            assert!(Instant::now() < deadline, "{} did not listen on {port}:\n{}", self.name, self.log_text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // SIGTERM first: an nginx master killed with SIGKILL would leave its workers behind.
        let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A redis-server without persistence.
pub struct Redis {
    pub port: u16,
    cli: PathBuf,
    _proc: Proc,
    _dir: TempDir,
}

impl Redis {
    pub async fn start(tools: &Tools) -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let port = free_port();
        let mut cmd = Command::new(&tools.redis_server);
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        cmd.arg("--dir").arg(dir.path());
        let mut proc = Proc::spawn("redis-server", cmd, dir.path().join("redis.log"));
        proc.wait_for_port(port).await;
        Self { port, cli: tools.redis_cli.clone(), _proc: proc, _dir: dir }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts `redis-cli MONITOR`, which logs every command Redis runs from now on (those a
    /// Lua script runs marked `[0 lua]`) into `path`.
    pub async fn monitor(&self, path: &Path) -> Monitor {
        let mut cmd = Command::new(&self.cli);
        cmd.args(["-p", &self.port.to_string(), "MONITOR"]);
        let proc = Proc::spawn("redis-cli MONITOR", cmd, path.to_owned());
        // MONITOR answers OK once it is on.
        let deadline = Instant::now() + STARTUP;
        while !std::fs::read_to_string(path).unwrap_or_default().starts_with("OK") {
            assert!(Instant::now() < deadline, "redis-cli MONITOR did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Monitor { _proc: proc, path: path.to_owned() }
    }

    /// Runs one command through redis-cli and answers its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(&self.cli).args(["-p", &self.port.to_string()]).args(args).output().expect("redis-cli");
        assert!(out.status.success(), "redis-cli {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A running `redis-cli MONITOR`.
pub struct Monitor {
    _proc: Proc,
    path: PathBuf,
}

impl Monitor {
    /// Every line logged so far.
    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.path).expect("the MONITOR log").lines().map(str::to_owned).collect()
    }
}

/// An s3s-fs server with the bucket made.
pub struct S3sFs {
    pub port: u16,
    data: PathBuf,
    proc: Proc,
    _dir: TempDir,
}

impl S3sFs {
    pub async fn start(tools: &Tools) -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("the data folder");
        let port = free_port();
        let mut cmd = Command::new(&tools.s3s_fs);
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()]);
        cmd.args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY]).arg(&data);
        let mut proc = Proc::spawn("s3s-fs", cmd, dir.path().join("s3s-fs.log"));
        proc.wait_for_port(port).await;
        let server = Self { port, data, proc, _dir: dir };
        Bucket::new(&server.endpoint()).create().await;
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The folder s3s-fs keeps its buckets in (for `df`).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }
}

/// nginx as the plainest relay in front of s3s-fs: no request buffering, keep-alive
/// connections upstream, the client's Host passed on so presigned signatures hold.
pub struct Nginx {
    pub port: u16,
    proc: Proc,
    _dir: TempDir,
}

impl Nginx {
    /// The master's pid (its workers are its children).
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub async fn start(tools: &Tools, upstream_port: u16) -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let port = free_port();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, nginx_conf(dir.path(), port, upstream_port)).expect("nginx.conf");
        let mut cmd = Command::new(&tools.nginx);
        cmd.arg("-p").arg(dir.path()).arg("-c").arg(&conf).arg("-e").arg(dir.path().join("error.log"));
        cmd.args(["-g", "daemon off;"]);
        let mut proc = Proc::spawn("nginx", cmd, dir.path().join("nginx.out"));
        proc.wait_for_port(port).await;
        Self { port, proc, _dir: dir }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn nginx_conf(dir: &Path, port: u16, upstream_port: u16) -> String {
    let dir = dir.display();
    // Workers of a master run by root drop to `nobody`; they need nothing from the folder.
    let user = if running_as_root() { "user root;\n" } else { "" };
    format!(
        r#"{user}worker_processes 2;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream s3 {{
        server 127.0.0.1:{upstream_port};
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;
        location / {{
            proxy_pass http://s3;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_request_buffering off;
            proxy_buffering off;
        }}
    }}
}}
"#
    )
}

fn running_as_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// Settings of a ferry instance beyond the common ones, as `FERRY__…` variables.
pub type Env<'a> = &'a [(&'a str, &'a str)];

/// The ferry binary in S3 + Redis mode, two workers.
pub struct Ferry {
    pub port: u16,
    proc: Proc,
    _dir: TempDir,
}

impl Ferry {
    pub async fn start(tools: &Tools, s3: &S3sFs, redis: &Redis, extra: Env<'_>) -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let port = free_port();
        let mut cmd = Command::new(&tools.ferry);
        cmd.arg("serve").current_dir(dir.path());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("FERRY") {
                cmd.env_remove(name);
            }
        }
        cmd.env("RUST_LOG", "warn")
            .env("FERRY__SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("FERRY__SERVER__WORKERS", "2")
            .env("FERRY__STORAGE__BACKEND", "s3")
            .env("FERRY__STORAGE__S3__BUCKET", BUCKET)
            .env("FERRY__STORAGE__S3__ENDPOINT", s3.endpoint())
            .env("FERRY__STORAGE__S3__REGION", REGION)
            .env("FERRY__STORAGE__S3__ACCESS_KEY_ID", ACCESS_KEY)
            .env("FERRY__STORAGE__S3__SECRET_ACCESS_KEY", SECRET_KEY)
            .env("FERRY__SESSIONS__BACKEND", "redis")
            .env("FERRY__SESSIONS__REDIS__URL", redis.url())
            .env("FERRY__AUTH__SECRET", "ferry-bench-token-secret")
            .env("FERRY__UPLOADS__MAX_FILE_SIZE", (8u64 << 30).to_string());
        for (name, value) in extra {
            cmd.env(name, value);
        }
        let mut proc = Proc::spawn("ferry", cmd, dir.path().join("ferry.log"));
        proc.wait_for_port(port).await;
        let ferry = Self { port, proc, _dir: dir };
        client::wait_healthy(&ferry.base_url()).await;
        ferry
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Its working folder: relative paths in its settings (the embedded default's
    /// `./ferry-data`) are under it.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// The process's memory now: its peak (VmHWM) and current (VmRSS) resident set.
    pub fn memory(&self) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.proc.pid())).expect("/proc/PID/status");
        let field = |name: &str| -> u64 {
            let line = status.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} line"));
            line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("a size in kB")
        };
        Memory { peak_kib: field("VmHWM:"), now_kib: field("VmRSS:") }
    }
}

/// Resident memory of a process, in KiB.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub peak_kib: u64,
    pub now_kib: u64,
}

/// CPU time (user + system, every thread) spent so far by the process `pid` and its
/// child processes (nginx's workers), in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let ticks: u64 = processes().filter(|(p, ppid)| *p == pid || *ppid == pid).map(|(p, _)| cpu_ticks(p)).sum();
    ticks as f64 / clock_ticks_per_second()
}

/// CPU time of this (the client's) process so far, in seconds.
pub fn own_cpu_seconds() -> f64 {
    cpu_ticks(std::process::id()) as f64 / clock_ticks_per_second()
}

/// CPU time the whole machine has been busy so far (every core, every process, the
/// kernel's interrupts included; idle and I/O wait left out), in seconds.
pub fn machine_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().find(|l| l.starts_with("cpu ")).unwrap_or_default();
    let ticks: Vec<u64> = line.split_whitespace().skip(1).map(|v| v.parse().unwrap_or(0)).collect();
    // user nice system idle iowait irq softirq steal …
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| ticks.get(i)).sum();
    busy as f64 / clock_ticks_per_second()
}

/// Every process as (pid, parent pid).
fn processes() -> impl Iterator<Item = (u32, u32)> {
    std::fs::read_dir("/proc").into_iter().flatten().flatten().filter_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let ppid = stat_fields(pid)?.get(1)?.parse().ok()?;
        Some((pid, ppid))
    })
}

/// utime + stime of `pid`, in clock ticks (0 once it is gone).
fn cpu_ticks(pid: u32) -> u64 {
    let Some(fields) = stat_fields(pid) else { return 0 };
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    tick(11) + tick(12)
}

/// The fields of /proc/PID/stat after the command name: state, ppid, … (utime is the 12th).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        let out = Command::new("getconf").arg("CLK_TCK").output().ok();
        out.and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok()).unwrap_or(100.0)
    })
}

/// Free space of the file system holding `path`, in bytes (`df -Pk`).
pub fn free_bytes(path: &Path) -> u64 {
    let out = Command::new("df").arg("-Pk").arg(path).output().expect("df");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().nth(1).expect("a line of df output");
    let kib: u64 = line.split_whitespace().nth(3).and_then(|v| v.parse().ok()).expect("df's Available column");
    kib * 1024
}
