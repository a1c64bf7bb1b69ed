//! Redis round trips per chunk request, for a 64-chunk upload on a fresh Redis and a fresh
//! ferry whose sweeper sleeps. Three views: ferry's own counter
//! (`ferry_redis_round_trips_total`, one per pipeline ferry sends); Redis's
//! `INFO commandstats` (every command Redis ran, those inside Lua scripts included); and
//! `redis-cli MONITOR`, which tells what ferry's connections sent from what its scripts
//! ran. A round trip may carry several commands: EVALSHA + ZADD for a recorded chunk,
//! UNWATCH + PING for the connection pool's check of a connection it hands out again.

use std::collections::{BTreeMap, BTreeSet};

use crate::client::{self, Bucket, Opened, Plan, Pool, MIB};
use crate::procs::{Ferry, Redis, S3sFs, Tools};
use crate::report::{Check, Table};

const CHUNK: u64 = 8 * MIB;
const CHUNKS: u64 = 64;
const WORKERS: usize = 4;
const METRIC: &str = "ferry_redis_round_trips_total";
/// At most this many round trips per chunk request.
const TARGET: f64 = 2.0;

/// What Redis saw during one phase.
struct Phase {
    name: String,
    requests: u64,
    /// Pipelines ferry counted (`ferry_redis_round_trips_total`).
    counted: u64,
    /// Commands Redis ran for ferry, by name, as `INFO commandstats` tells (those run
    /// inside Lua scripts included).
    stats: BTreeMap<String, u64>,
    /// Commands ferry's connections sent, by name, as MONITOR tells.
    sent: BTreeMap<String, u64>,
    /// Commands the Lua scripts ran, by name, as MONITOR tells.
    scripted: BTreeMap<String, u64>,
    /// Connections ferry opened.
    connections: u64,
}

impl Phase {
    /// Round trips on the wire: ferry's pipelines, plus the pool's UNWATCH + PING health
    /// check (one pipeline) each time it hands a connection out again, plus each new
    /// connection's handshake commands (redis-rs sends them in one pipeline), if any.
    fn wire(&self) -> u64 {
        let handshakes =
            if self.sent.keys().any(|c| c.starts_with("client") || c == "hello") { self.connections } else { 0 };
        self.counted + self.sent.get("unwatch").copied().unwrap_or(0) + handshakes
    }
}

pub async fn run(tools: &Tools, s3: &S3sFs) -> Vec<Check> {
    let redis = Redis::start(tools).await;
    let server = Ferry::start(tools, s3, &redis, &[("FERRY__UPLOADS__SWEEP_INTERVAL_SECS", "3600")]).await;
    let ferry = client::Ferry::new(client::http(), server.base_url());
    let pool = Pool::generate(8, CHUNK);
    let plan = Plan { size: CHUNK * CHUNKS, chunk_size: CHUNK };
    let log = tempfile::tempdir().expect("a temporary folder");
    let monitor = redis.monitor(&log.path().join("monitor.log")).await;

    let mut counter = Counter::start(&ferry, &redis).await;
    let upload: Opened = ferry.open("round-trips.bin", plan).await;
    counter.phase("POST /v1/uploads", 1).await;

    let sent = ferry.put_chunks(&upload, plan, &pool, (0..CHUNKS - 1).collect(), WORKERS).await;
    assert!(sent.iter().all(|s| s.reply.state == "uploading"), "chunks before the last must leave it uploading");
    counter.phase("chunks 0-62 (4 in parallel)", CHUNKS - 1).await;

    let sent = ferry.put_chunks(&upload, plan, &pool, vec![CHUNKS - 1], 1).await;
    assert_eq!(sent[0].reply.state, "completed", "the last chunk must complete the upload");
    counter.phase("chunk 63 (the last: assembles the object)", 1).await;
    Bucket::new(&s3.endpoint()).verify_and_delete(&upload.key, plan.size).await;

    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut phases = counter.finish(&monitor.lines());
    let all_chunks = Phase {
        name: "all 64 chunk requests".into(),
        requests: CHUNKS,
        counted: phases[1].counted + phases[2].counted,
        stats: merged(&phases[1].stats, &phases[2].stats),
        sent: merged(&phases[1].sent, &phases[2].sent),
        scripted: merged(&phases[1].scripted, &phases[2].scripted),
        connections: phases[1].connections + phases[2].connections,
    };
    phases.push(all_chunks);
    print(&phases);

    let per = |p: &Phase, n: u64| n as f64 / p.requests as f64;
    let (ordinary, every) = (&phases[1], &phases[3]);
    let (counted_ordinary, counted) = (per(ordinary, ordinary.counted), per(every, every.counted));
    let wire = per(every, every.wire());
    vec![
        Check::new(
            "Redis round trips per chunk request <= 2: ferry's counter, chunks 0-62",
            format!("{counted_ordinary:.2}"),
            counted_ordinary <= TARGET,
        ),
        Check::new(
            "Redis round trips per chunk request <= 2: ferry's counter, all 64 (the last one assembles)",
            format!("{counted:.2}"),
            counted <= TARGET,
        ),
        Check::new(
            "Redis round trips per chunk request <= 2: on the wire (pool health checks included), all 64",
            format!("{wire:.2}"),
            wire <= TARGET,
        ),
    ]
}

fn print(phases: &[Phase]) {
    let list =
        |m: &BTreeMap<String, u64>| m.iter().map(|(name, n)| format!("{name} {n}")).collect::<Vec<_>>().join(", ");
    let mut counts = Table::new(
        "Redis round trips per request (64 x 8 MiB chunks; per request)",
        &[
            "phase",
            "requests",
            "ferry counter",
            "pool health checks",
            "new connections",
            "on the wire",
            "commandstats calls",
        ],
    );
    let mut commands = Table::new(
        "Redis commands by phase (totals; MONITOR splits what ferry sent from what its Lua scripts ran)",
        &["phase", "sent by ferry", "run inside Lua scripts"],
    );
    for p in phases {
        let per = |n: u64| format!("{:.2}", n as f64 / p.requests as f64);
        let checks = p.sent.get("unwatch").copied().unwrap_or(0);
        counts.row(vec![
            p.name.clone(),
            p.requests.to_string(),
            per(p.counted),
            per(checks),
            p.connections.to_string(),
            per(p.wire()),
            per(p.stats.values().sum()),
        ]);
        commands.row(vec![p.name.clone(), list(&p.sent), list(&p.scripted)]);
    }
    counts.print();
    commands.print();
}

/// Marks phases: reads ferry's counter and Redis's statistics after each, resets Redis's,
/// and drops a marker into the MONITOR log.
struct Counter<'a> {
    ferry: &'a client::Ferry,
    redis: &'a Redis,
    last: u64,
    phases: Vec<Phase>,
}

impl<'a> Counter<'a> {
    async fn start(ferry: &'a client::Ferry, redis: &'a Redis) -> Counter<'a> {
        redis.cli(&["CONFIG", "RESETSTAT"]);
        redis.cli(&["ECHO", &marker(0)]);
        Self { ferry, redis, last: metric(ferry).await, phases: Vec::new() }
    }

    async fn phase(&mut self, name: &str, requests: u64) {
        let now = metric(self.ferry).await;
        let info = self.redis.cli(&["INFO", "stats", "commandstats"]);
        self.redis.cli(&["ECHO", &marker(self.phases.len() + 1)]);
        self.redis.cli(&["CONFIG", "RESETSTAT"]);
        let counted = now - self.last;
        self.last = now;
        let (mut stats, connections) = parse_info(&info);
        stats.retain(|name, _| !is_ours(name));
        let empty = BTreeMap::new();
        // The redis-cli connection that asked for this INFO is counted too.
        let connections = connections.saturating_sub(1);
        let phase =
            Phase { name: name.into(), requests, counted, stats, sent: empty.clone(), scripted: empty, connections };
        self.phases.push(phase);
    }

    /// The phases, with what the MONITOR log tells of each.
    fn finish(mut self, log: &[String]) -> Vec<Phase> {
        let mut phase: Option<usize> = None;
        let ours: BTreeSet<&str> = log
            .iter()
            .filter_map(|line| parse_monitor(line))
            .filter(|(_, command)| is_ours(command))
            .map(|(source, _)| source)
            .collect();
        for line in log {
            if let Some(n) = (0..=self.phases.len()).find(|n| line.contains(&marker(*n))) {
                phase = Some(n);
                continue;
            }
            let (Some(n), Some((source, command))) = (phase, parse_monitor(line)) else { continue };
            let Some(p) = self.phases.get_mut(n) else { continue };
            if source == "lua" {
                *p.scripted.entry(command).or_default() += 1;
            } else if !ours.contains(source) {
                *p.sent.entry(command).or_default() += 1;
            }
        }
        self.phases
    }
}

fn marker(n: usize) -> String {
    format!("ferry-bench-phase-{n}")
}

/// Commands of the benchmark's own redis-cli calls, not ferry's.
fn is_ours(command: &str) -> bool {
    ["info", "config", "echo", "command"].iter().any(|c| command.starts_with(c))
}

/// `1700000000.000000 [0 127.0.0.1:40000] "EVALSHA" "…"` → (`127.0.0.1:40000`, `evalsha`);
/// `client`, `config` and `script` keep their subcommand (`client|setinfo`).
fn parse_monitor(line: &str) -> Option<(&str, String)> {
    let (_, rest) = line.split_once('[')?;
    let (source, rest) = rest.split_once(']')?;
    let source = source.split_whitespace().nth(1)?;
    let mut words = rest.split('"').skip(1).step_by(2);
    let command = words.next()?.to_lowercase();
    let command = match (command.as_str(), words.next()) {
        ("client" | "config" | "script", Some(sub)) => format!("{command}|{}", sub.to_lowercase()),
        _ => command,
    };
    Some((source, command))
}

async fn metric(ferry: &client::Ferry) -> u64 {
    ferry.metric(METRIC).await as u64
}

/// Calls by command (`cmdstat_evalsha:calls=63,…`) and `total_connections_received`, from
/// `INFO stats commandstats`.
fn parse_info(info: &str) -> (BTreeMap<String, u64>, u64) {
    let mut commands = BTreeMap::new();
    let mut connections = 0;
    for line in info.lines().map(str::trim) {
        if let Some(value) = line.strip_prefix("total_connections_received:") {
            connections = value.parse().expect("a connection count");
        } else if let Some((name, stats)) = line.strip_prefix("cmdstat_").and_then(|l| l.split_once(':')) {
            let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls=")).expect("a calls= field");
            commands.insert(name.to_owned(), calls.parse().expect("a call count"));
        }
    }
    (commands, connections)
}

fn merged(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let mut sum = a.clone();
    for (name, calls) in b {
        *sum.entry(name.clone()).or_default() += calls;
    }
    sum
}
