//! The example worker, `examples/worker.py`, run for real as a new user would: against a
//! Redis, an S3 server (s3s-fs) and a ferry with the processing stage, every completed
//! upload ends `done` with the SHA-256 of its bytes; a worker killed with -9 mid-upload
//! leaves its entries pending and the next one takes them over; a redelivered event is
//! acknowledged without changing the result (409 invalid-transition).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry::config::RedisSettings;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::*;
use crate::support::redis::RedisServer;
use crate::support::s3::{self, Kind, S3Server};

const PROCESSOR_KEY: &str = "processor-key-0123456789";
const STREAM: &str = "ferry:v1:events";
const MIB: usize = 1024 * 1024;
/// The chunk size: S3's smallest part.
const PART: u64 = 5 * MIB as u64;

/// A Redis + S3 instance with the processing stage on.
fn cloud(redis: &RedisServer) -> TestApp {
    spawn_app_with(|s| {
        crate::cluster::cloud(s, RedisSettings { url: redis.url(), ..RedisSettings::default() }, shared_s3());
        s.processing.enabled = true;
        s.auth.processor_keys = vec![PROCESSOR_KEY.into()];
    })
}

fn shared_s3() -> &'static S3Server {
    S3Server::shared(Kind::S3sFs)
}

/// `python3 examples/worker.py`, its stderr in `<dir>/<name>.log`; killed when dropped.
struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    fn start(dir: &Path, app: &TestApp, redis: &RedisServer, name: &str, extra: &[(&str, &str)]) -> Self {
        let imports = Command::new("python3").args(["-c", "import redis, boto3"]).output();
        assert!(
            imports.as_ref().is_ok_and(|o| o.status.success()),
            "the worker test needs python3 with redis and boto3: run `python3 -m pip install -r \
             examples/requirements.txt` (scripts/test.sh does): {imports:?}"
        );
        let settings = shared_s3().settings();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/worker.py"))
            .env("FERRY__SESSIONS__REDIS__URL", redis.url())
            .env("FERRY__STORAGE__S3__BUCKET", s3::BUCKET)
            .env("FERRY__STORAGE__S3__ENDPOINT", shared_s3().endpoint())
            .env("FERRY__STORAGE__S3__PREFIX", &settings.prefix)
            .env("FERRY__STORAGE__S3__ACCESS_KEY_ID", s3::ACCESS_KEY)
            .env("FERRY__STORAGE__S3__SECRET_ACCESS_KEY", s3::SECRET_KEY)
            .env("FERRY_URL", &app.address)
            .env("FERRY_PROCESSOR_KEY", PROCESSOR_KEY)
            .env("WORKER_NAME", name)
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("python3 starts");
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no chance to report or acknowledge anything more.
    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Waits up to a minute for `check`; on timeout fails with the workers' logs.
async fn wait_for<F, Fut>(what: &str, workers: &[&Worker], mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        if Instant::now() > deadline {
            let logs: Vec<String> = workers.iter().map(|w| w.log()).collect();
            panic!("timed out waiting until {what}; the workers said:\n{}", logs.join("\n---\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the worker has made its consumer group: events from before it are not its.
async fn group_made(redis: &RedisServer, worker: &Worker, group: &str) {
    wait_for(&format!("group {group} exists"), &[worker], || async {
        redis.cli(&["XINFO", "GROUPS", STREAM]).lines().any(|l| l.trim() == group)
    })
    .await;
}

/// `field` of consumer group `group`, as `XINFO GROUPS` shows it.
fn group_field(redis: &RedisServer, group: &str, field: &str) -> Option<String> {
    let info = redis.cli(&["XINFO", "GROUPS", STREAM]);
    let lines: Vec<&str> = info.lines().map(str::trim).collect();
    let start = lines.windows(2).position(|w| w[0] == "name" && w[1] == group)?;
    let rest = &lines[start + 2..];
    let end = rest.iter().position(|l| *l == "name").unwrap_or(rest.len());
    rest[..end].windows(2).find(|w| w[0] == field).map(|w| w[1].to_owned())
}

/// An upload completed with `data`, sent in chunks of `PART`.
async fn upload(app: &TestApp, data: &[u8]) -> Upload {
    let up = app.create(data.len() as u64, Some(PART)).await;
    assert_eq!(app.put_all(&up, data).await["state"], "completed");
    up
}

fn sha256(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

async fn status_of(app: &TestApp, up: &Upload) -> Value {
    app.status(up).await.json().await.unwrap()
}

async fn statuses(app: &TestApp, uploads: &[(Upload, Vec<u8>)]) -> Vec<Value> {
    let mut out = Vec::new();
    for (up, _) in uploads {
        out.push(status_of(app, up).await);
    }
    out
}

/// Waits until every upload is `done` with the SHA-256 of its bytes as the result.
async fn all_done(app: &TestApp, uploads: &[(Upload, Vec<u8>)], workers: &[&Worker]) {
    for (up, data) in uploads {
        wait_for(&format!("upload {} ({} bytes) is processed", up.id, data.len()), workers, || async {
            status_of(app, up).await["stage"] != "processing"
        })
        .await;
        let status = status_of(app, up).await;
        let expected =
            json!({"status": "done", "progress": 100, "result": {"sha256": sha256(data), "bytes": data.len()}});
        assert_eq!(status["processing"], expected, "{status}");
    }
}

/// The files of the tests: one of a few MiB in three chunks, a small one, one of exactly
/// one chunk.
fn files() -> Vec<Vec<u8>> {
    vec![bytes(61, 12 * MIB + 123), bytes(62, 1000), bytes(63, PART as usize)]
}

#[tokio::test]
async fn the_example_worker_hashes_every_completed_upload_and_a_replay_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start();
    let app = cloud(&redis);
    let worker = Worker::start(dir.path(), &app, &redis, "w1", &[]);
    group_made(&redis, &worker, "sha256").await;

    let mut uploads = Vec::new();
    for data in files() {
        uploads.push((upload(&app, &data).await, data));
    }
    // Other events are skipped: a canceled upload is never processed.
    let canceled = app.create(3 * PART, Some(PART)).await;
    assert!(app.cancel(&canceled).await.status().is_success());
    all_done(&app, &uploads, &[&worker]).await;
    wait_for("every entry is acknowledged", &[&worker], || async {
        group_field(&redis, "sha256", "pending").as_deref() == Some("0")
    })
    .await;

    // Every event delivered again (a group reading from the start): each completed upload
    // is answered 409 invalid-transition, acknowledged, and its result stays as it was.
    let before = statuses(&app, &uploads).await;
    let made = redis.cli(&["XGROUP", "CREATE", STREAM, "replay", "0"]);
    assert!(made.contains("OK"), "{made}");
    let replay = Worker::start(dir.path(), &app, &redis, "r1", &[("WORKER_GROUP", "replay")]);
    wait_for("the replay group has read and acknowledged every entry", &[&replay], || async {
        let last = redis.cli(&["XREVRANGE", STREAM, "+", "-", "COUNT", "1"]);
        let last = last.lines().next().unwrap_or_default().trim().to_owned();
        group_field(&redis, "replay", "pending").as_deref() == Some("0")
            && group_field(&redis, "replay", "last-delivered-id") == Some(last)
    })
    .await;
    let log = replay.log();
    for (up, _) in &uploads {
        assert!(log.contains(&format!("{}: skipped, ferry answered 409", up.id)), "{log}");
    }
    assert_eq!(before, statuses(&app, &uploads).await, "a redelivered event changes nothing");
    assert!(!log.contains(&canceled.id), "a canceled upload is not processed: {log}");
}

#[tokio::test]
async fn a_worker_killed_mid_upload_leaves_its_entries_to_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start();
    let app = cloud(&redis);
    // A slow first worker (a second per MiB), so that it is surely killed mid-way.
    let slow = [("WORKER_DELAY_PER_MIB", "1"), ("WORKER_CLAIM_IDLE_MS", "1000")];
    let mut first = Worker::start(dir.path(), &app, &redis, "w1", &slow);
    group_made(&redis, &first, "sha256").await;

    let mut uploads = Vec::new();
    for data in files() {
        uploads.push((upload(&app, &data).await, data));
    }
    let big = &uploads[0].0;
    wait_for("the first worker is on the big upload", &[&first], || async {
        status_of(&app, big).await["processing"]["status"] == "running"
    })
    .await;
    first.kill9();
    let pending = redis.cli(&["XPENDING", STREAM, "sha256", "-", "+", "10", "w1"]);
    assert!(!pending.trim().is_empty(), "the killed worker left its entry pending");
    assert_eq!(status_of(&app, big).await["processing"]["status"], "running", "killed mid-way");

    let second = Worker::start(dir.path(), &app, &redis, "w2", &[("WORKER_CLAIM_IDLE_MS", "1000")]);
    all_done(&app, &uploads, &[&first, &second]).await;
    wait_for("every entry is acknowledged", &[&second], || async {
        group_field(&redis, "sha256", "pending").as_deref() == Some("0")
    })
    .await;
    assert!(second.log().contains(&format!("{}: done", big.id)), "{}", second.log());
}
