//! The cost of events per chunk. Every state change records its event in the outbox
//! whatever the settings (inside the same script or transaction), and the publisher always
//! moves them to the event log; what an operator turns on is delivery, a webhook. So two
//! ferry processes per setup, alike but for one webhook endpoint (a receiver in this
//! process that answers 204 to every event, progress events included), take the same
//! uploads in interleaved rounds. Per round: ferry's Redis round trips on the request
//! connection (`ferry_redis_round_trips_total`) and on the event connection
//! (`ferry_redis_event_round_trips_total`), and ferry's CPU time from `/proc/<pid>/stat`,
//! counted from the first chunk until every event of the upload is published (and, with
//! the webhook, delivered). Two setups: Redis + S3 (s3s-fs), and the embedded default
//! (redb sessions, files on disk).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{self, Bucket, Plan, Pool, MIB};
use crate::procs::{cpu_seconds, Ferry, Redis, S3sFs, Tools};
use crate::report::{median, Check, Table};

const CHUNK: u64 = 8 * MIB;
const CHUNKS: u64 = 48;
const WORKERS: usize = 4;
const ROUNDS: usize = 3;
/// A Standard Webhooks secret (the example of its specification).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// How long the processes are watched idle, for what polling costs with no upload.
const IDLE: Duration = Duration::from_secs(10);

/// What one round cost ferry.
#[derive(Debug, Clone, Copy)]
struct Round {
    wall: f64,
    /// Event round trips beyond what the idle rate would have made in `wall`.
    beyond_idle: f64,
    request_trips: f64,
    event_trips: f64,
    cpu: f64,
    published: f64,
    delivered: f64,
}

/// One figure of a round.
type Pick = fn(&Round) -> f64;

/// The counters a round is the difference of.
#[derive(Debug, Clone, Copy)]
struct Reading {
    request_trips: f64,
    event_trips: f64,
    cpu: f64,
    published: f64,
    completed: f64,
    delivered: f64,
}

/// One ferry process of a setup, with or without the webhook.
struct Variant {
    name: &'static str,
    server: Ferry,
    client: client::Ferry,
    http: reqwest::Client,
    receiver: Option<Receiver>,
    /// With no upload: event round trips and CPU seconds per second (the pollers').
    idle: (f64, f64),
    rounds: Vec<Round>,
}

pub async fn run(tools: &Tools, s3: &S3sFs) -> Vec<Check> {
    let redis = Redis::start(tools).await;
    let pool = Pool::generate(8, CHUNK);
    let plan = Plan { size: CHUNK * CHUNKS, chunk_size: CHUNK };
    let bucket = Bucket::new(&s3.endpoint());
    let mut checks = Vec::new();
    for setup in ["Redis + S3 (s3s-fs)", "embedded (redb + files)"] {
        let cloud = setup.starts_with("Redis");
        let mut variants = Vec::new();
        for (name, webhook) in [("no webhook", false), ("webhook (204)", true)] {
            let receiver = if webhook { Some(Receiver::start().await) } else { None };
            let config = tempfile::Builder::new().suffix(".toml").tempfile().expect("a settings file");
            let mut settings = String::new();
            if let Some(r) = &receiver {
                settings = format!("[[events.webhooks]]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n", r.url());
            }
            std::fs::write(config.path(), settings).expect("the settings file");
            let path = config.path().to_string_lossy().into_owned();
            let prefix = format!("bench-{}", variants.len());
            let mut env = vec![("FERRY_CONFIG", path.as_str()), ("FERRY__UPLOADS__SWEEP_INTERVAL_SECS", "3600")];
            if cloud {
                env.push(("FERRY__SESSIONS__REDIS__KEY_PREFIX", prefix.as_str()));
            } else {
                env.extend([("FERRY__STORAGE__BACKEND", "fs"), ("FERRY__SESSIONS__BACKEND", "embedded")]);
            }
            let server = Ferry::start(tools, s3, &redis, &env).await;
            drop(config);
            let http = client::http();
            let client = client::Ferry::new(http.clone(), server.base_url());
            variants.push(Variant { name, server, client, http, receiver, idle: (0.0, 0.0), rounds: Vec::new() });
        }
        // One small untimed upload each: connections opened, code paths warm.
        let warm_up = Plan { size: 4 * CHUNK, chunk_size: CHUNK };
        for v in &mut variants {
            v.round(&bucket, &pool, warm_up, cloud).await;
        }
        let before = futures_util::future::join_all(variants.iter().map(Variant::read)).await;
        tokio::time::sleep(IDLE).await;
        for (v, before) in variants.iter_mut().zip(before) {
            let after = v.read().await;
            let secs = IDLE.as_secs_f64();
            v.idle = ((after.event_trips - before.event_trips) / secs, (after.cpu - before.cpu) / secs);
        }
        for round in 1..=ROUNDS {
            for v in &mut variants {
                let r = v.round(&bucket, &pool, plan, cloud).await;
                eprintln!("events, {setup}, round {round}, {}: {r:?}", v.name);
                v.rounds.push(r);
            }
        }
        print(setup, plan, &variants);
        let m = |v: &Variant, pick: Pick| median(&v.rounds.iter().map(pick).collect::<Vec<_>>());
        if cloud {
            let (off, on) = (m(&variants[0], |r| r.request_trips), m(&variants[1], |r| r.request_trips));
            checks.push(Check::new(
                "events: a webhook adds no Redis round trip on the request connection",
                format!("{:.2} vs {:.2} per chunk", on / CHUNKS as f64, off / CHUNKS as f64),
                on <= off,
            ));
        }
    }
    checks
}

impl Variant {
    /// One upload of `plan`, measured until its events are published (and delivered).
    async fn round(&mut self, bucket: &Bucket, pool: &Arc<Pool>, plan: Plan, cloud: bool) -> Round {
        let before = self.read().await;
        let start = Instant::now();
        let sent = self.client.upload("events.bin", plan, pool, WORKERS).await;
        // Until the upload's last event is out: published, and with a webhook delivered.
        let deadline = Instant::now() + Duration::from_secs(60);
        let after = loop {
            let now = self.read().await;
            let published = now.completed > before.completed;
            let delivered = self.receiver.is_none() || now.delivered >= now.published;
            if published && delivered {
                break now;
            }
            assert!(Instant::now() < deadline, "the events of a round were not delivered in time: {now:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let wall = start.elapsed().as_secs_f64();
        if cloud {
            bucket.verify_and_delete(&sent.key, plan.size).await;
        } else {
            let object = self.server.dir().join("ferry-data/objects").join(&sent.key);
            let size = std::fs::metadata(&object).expect("the object on disk").len();
            assert_eq!(size, plan.size, "the object's size");
            std::fs::remove_file(&object).expect("the object removed");
        }
        let event_trips = after.event_trips - before.event_trips;
        Round {
            wall,
            beyond_idle: event_trips - self.idle.0 * wall,
            request_trips: after.request_trips - before.request_trips,
            event_trips,
            cpu: after.cpu - before.cpu,
            published: after.published - before.published,
            delivered: after.delivered - before.delivered,
        }
    }

    async fn read(&self) -> Reading {
        let text = self.http.get(format!("{}/metrics", self.server.base_url())).send().await.expect("GET /metrics");
        let text = text.text().await.expect("the metrics text");
        let sum = |prefix: &str| -> f64 {
            text.lines()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
                .sum()
        };
        Reading {
            request_trips: sum("ferry_redis_round_trips_total "),
            event_trips: sum("ferry_redis_event_round_trips_total "),
            cpu: cpu_seconds(self.server.pid()),
            published: sum("ferry_events_published_total{"),
            completed: sum("ferry_events_published_total{type=\"upload.completed\"}"),
            delivered: self.receiver.as_ref().map_or(0.0, |r| r.count() as f64),
        }
    }
}

fn print(setup: &str, plan: Plan, variants: &[Variant]) {
    let chunks = plan.chunks() as f64;
    let gib = plan.size as f64 / (1024.0 * MIB as f64);
    let mut table = Table::new(
        &format!(
            "Cost of events, {setup}: {} MiB = {} x {} MiB chunks, {WORKERS} in parallel (medians of {ROUNDS} interleaved rounds)",
            plan.size / MIB,
            plan.chunks(),
            plan.chunk_size / MIB
        ),
        &["per round", variants[0].name, variants[1].name, "added by the webhook"],
    );
    let mut idle = Table::new(
        &format!("Cost of events, {setup}: idle, no upload ({} s)", IDLE.as_secs()),
        &["per second", variants[0].name, variants[1].name, "added by the webhook"],
    );
    let mut row = |name: &str, (off, on): (f64, f64)| {
        idle.row(vec![name.to_owned(), format!("{off:.1}"), format!("{on:.1}"), format!("{:+.1}", on - off)]);
    };
    row("Redis round trips, event connection", (variants[0].idle.0, variants[1].idle.0));
    row("ferry CPU ms", (variants[0].idle.1 * 1000.0, variants[1].idle.1 * 1000.0));
    idle.print();
    // (row, figure of a round, divided by, decimals)
    let rows: [(&str, Pick, f64, usize); 9] = [
        ("wall seconds, first chunk to the last event out", |r| r.wall, 1.0, 2),
        ("Redis round trips per chunk, request connection", |r| r.request_trips, chunks, 2),
        ("Redis round trips per chunk, event connection", |r| r.event_trips, chunks, 2),
        ("Redis round trips per second, event connection", |r| r.event_trips / r.wall, 1.0, 1),
        ("Redis round trips per chunk, event connection, beyond the idle rate", |r| r.beyond_idle, chunks, 2),
        ("ferry CPU ms per chunk", |r| r.cpu * 1000.0, chunks, 2),
        ("ferry CPU seconds per GiB", |r| r.cpu, gib, 3),
        ("events published", |r| r.published, 1.0, 0),
        ("webhook deliveries", |r| r.delivered, 1.0, 0),
    ];
    for (name, pick, per, decimals) in rows {
        let m = |v: &Variant| median(&v.rounds.iter().map(pick).collect::<Vec<_>>()) / per;
        let (off, on) = (m(&variants[0]), m(&variants[1]));
        let f = |x: f64| format!("{x:.decimals$}");
        table.row(vec![name.to_owned(), f(off), f(on), format!("{:+.decimals$}", on - off)]);
    }
    table.print();
    let mut rounds = Table::new(
        &format!("Cost of events, {setup}: each round (ferry CPU ms per chunk; event round trips per chunk)"),
        &["round", variants[0].name, variants[1].name],
    );
    for i in 0..ROUNDS {
        let cell = |v: &Variant| {
            let r = v.rounds[i];
            format!("{:.2} ms; {:.2}", r.cpu * 1000.0 / chunks, r.event_trips / chunks)
        };
        rounds.row(vec![(i + 1).to_string(), cell(&variants[0]), cell(&variants[1])]);
    }
    rounds.print();
}

/// A webhook endpoint that answers 204 to every request, counting them: HTTP/1.1 with
/// keep-alive, as ferry's client speaks it.
struct Receiver {
    port: u16,
    count: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let port = listener.local_addr().expect("its address").port();
        let count = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&count);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&counted)));
            }
        });
        Self { port, count, task }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers 204 to each request on `stream` until it closes.
async fn serve(mut stream: tokio::net::TcpStream, count: Arc<AtomicU64>) {
    let mut buffer = Vec::new();
    let mut read = [0u8; 16 * 1024];
    loop {
        // A request: its head, then Content-Length bytes of body.
        let head_end = loop {
            if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match stream.read(&mut read).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&read[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buffer.len() < head_end + length {
            match stream.read(&mut read).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&read[..n]),
            }
        }
        buffer.drain(..head_end + length);
        count.fetch_add(1, Ordering::SeqCst);
        if stream.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.is_err() {
            return;
        }
    }
}
