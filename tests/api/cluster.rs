//! Several instances, no sticky sessions: three applications share one Redis and one S3
//! store, and any of them serves any request of any upload.

use ferry::config::{RedisSettings, SessionBackend, Settings, StorageBackend};
use ferry::storage::contract::Inspect;
use ferry::storage::{S3ObjectStore, StagedUpload};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::support::redis::RedisServer;
use crate::support::s3::{Kind, S3Server};

const MIB: u64 = 1024 * 1024;
/// S3 needs parts of at least 5 MiB but the last.
const PART: u64 = 5 * MIB;
/// The smallest chunks clients send by default: 20 make one part here.
const SMALL: u64 = 256 * 1024;
const SECRET: &str = "a-secret-every-instance-shares";

/// An instance of the cloud setup: sessions in the Redis `redis` describes, objects in
/// the shared S3 store, chunks of at least S3's part minimum.
pub fn cloud(s: &mut Settings, redis: RedisSettings, s3: &S3Server) {
    s.sessions.backend = SessionBackend::Redis;
    s.sessions.redis = redis;
    s.auth.secret = Some(SECRET.into());
    s.storage.backend = StorageBackend::S3;
    s.storage.s3 = s3.settings();
    s.uploads.min_chunk_size = PART;
    s.uploads.default_chunk_size = PART;
    s.uploads.max_chunk_size = 8 * MIB;
    s.uploads.max_file_size = 1024 * MIB;
}

/// A cloud instance on `redis` and the shared S3 server of `kind`, taking the suite's
/// small chunks (grouped into parts on S3); `tweak` adds its own settings.
pub fn cloud_app(redis: &RedisServer, kind: Kind, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let s3 = S3Server::shared(kind);
    spawn_app_with(|s| {
        cloud(s, RedisSettings { url: redis.url(), ..RedisSettings::default() }, s3);
        s.uploads.max_file_size = MAX_FILE;
        s.uploads.min_chunk_size = MIN_CHUNK;
        s.uploads.default_chunk_size = CHUNK;
        tweak(s);
    })
}

/// Three instances on one Redis and one S3 bucket.
struct Cluster {
    redis: RedisServer,
    s3: &'static S3Server,
    apps: Vec<TestApp>,
}

impl Cluster {
    fn start() -> Self {
        Self::start_with(|_| {})
    }

    /// Three instances, each with `change` made to its cloud settings.
    fn start_with(change: impl Fn(&mut Settings)) -> Self {
        let redis = RedisServer::start();
        let s3 = S3Server::shared(Kind::S3sFs);
        let apps = (0..3)
            .map(|_| {
                spawn_app_with(|s| {
                    cloud(s, RedisSettings { url: redis.url(), ..RedisSettings::default() }, s3);
                    // Sweeps would add Redis round trips to the ones counted below.
                    s.uploads.sweep_interval_secs = 3600;
                    change(s);
                })
            })
            .collect();
        Self { redis, s3, apps }
    }

    async fn store(&self) -> Box<S3ObjectStore> {
        self.s3.store().await
    }

    /// The bytes stored under `key`, read from S3 behind ferry's back.
    async fn object(&self, key: &str) -> Option<Vec<u8>> {
        let key: ferry::domain::ObjectKey = serde_json::from_value(json!(key)).unwrap();
        self.store().await.object(&key).await
    }

    /// The S3 multipart upload id ferry recorded for `up`, read from Redis.
    fn multipart_id(&self, up: &Upload) -> String {
        let meta = self.redis.cli(&["HGET", &format!("ferry:v1:{{{}}}:upload", up.id), "meta"]);
        let meta: Value = serde_json::from_str(meta.trim()).unwrap();
        meta["storage_upload_id"].as_str().unwrap().to_owned()
    }

    /// Waits (up to 10 s) until the bucket holds `count` small-chunk objects of `up`: a
    /// part made from its chunks deletes them.
    async fn await_chunk_objects(&self, up: &Upload, count: usize) {
        let settings = self.s3.settings();
        let prefix = format!("{}/.ferry/{}/chunk-", settings.prefix.trim_matches('/'), up.id);
        let mut seen = usize::MAX;
        for _ in 0..100 {
            let request = self.s3.client().list_objects_v2().bucket(settings.bucket.as_deref().unwrap());
            seen = request.prefix(&prefix).send().await.unwrap().contents().len();
            if seen == count {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("{seen} chunk objects of {} in the bucket, not {count}", up.id);
    }

    async fn metric_sum(&self, name: &str) -> u64 {
        let mut sum = 0;
        for app in &self.apps {
            let text = app.metrics().await;
            let line = text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name}"));
            sum += line.rsplit(' ').next().unwrap().parse::<u64>().unwrap();
        }
        sum
    }
}

/// Two instances on the Redis `redis` describes and the shared S3 store: a file sent in
/// chunks alternating between them, created on one and checked on the other, comes out
/// whole. The other Redis setups (TLS, a cluster) run this.
pub async fn an_upload_through_two_instances_comes_out_whole(redis: RedisSettings) {
    let s3 = S3Server::shared(Kind::S3sFs);
    let apps: Vec<TestApp> = (0..2).map(|_| spawn_app_with(|s| cloud(s, redis.clone(), s3))).collect();
    let data = bytes(27, 2 * PART as usize + 777);
    let up = apps[0].create(data.len() as u64, None).await;
    for i in [2usize, 0] {
        assert_eq!(apps[i % 2].put_chunk(&up, i as u32, chunk(&data, i)).await.status(), StatusCode::OK, "chunk {i}");
    }
    let status: Value = apps[1].status(&up).await.json().await.unwrap();
    assert_eq!(status["missing_chunks"], json!([1]));
    let last: Value = apps[1].put_chunk(&up, 1, chunk(&data, 1)).await.json().await.unwrap();
    assert_eq!(last["state"], "completed", "{last}");
    let key: ferry::domain::ObjectKey = serde_json::from_value(json!(up.key)).unwrap();
    assert_eq!(s3.store().await.object(&key).await.unwrap(), data);
    let status: Value = apps[0].status(&up).await.json().await.unwrap();
    assert_eq!(status["state"], "completed");
}

fn chunk(data: &[u8], i: usize) -> &[u8] {
    &data[i * PART as usize..((i + 1) * PART as usize).min(data.len())]
}

#[tokio::test]
async fn chunks_spread_round_robin_over_three_instances_assemble_the_file() {
    let cluster = Cluster::start();
    let data = bytes(21, 4 * PART as usize + 4321);
    let up = cluster.apps[0].create(data.len() as u64, None).await;
    assert_eq!(up.total_chunks, 5);
    let round_trips_before = cluster.metric_sum("ferry_redis_round_trips_total").await;
    for i in [4usize, 2, 0, 3] {
        let app = &cluster.apps[i % 3];
        assert_eq!(app.put_chunk(&up, i as u32, chunk(&data, i)).await.status(), StatusCode::OK, "chunk {i}");
    }
    let round_trips = cluster.metric_sum("ferry_redis_round_trips_total").await - round_trips_before;
    assert_eq!(round_trips, 2 * 4, "Redis round trips for 4 chunks");

    let status: Value = cluster.apps[2].status(&up).await.json().await.unwrap();
    assert_eq!(status["missing_chunks"], json!([1]));
    let last: Value = cluster.apps[1].put_chunk(&up, 1, chunk(&data, 1)).await.json().await.unwrap();
    assert_eq!(last["state"], "completed");
    assert_eq!(cluster.object(&up.key).await.unwrap(), data);
    for app in &cluster.apps {
        let status: Value = app.status(&up).await.json().await.unwrap();
        assert_eq!(status["state"], "completed");
    }
}

#[tokio::test]
async fn an_instance_dropped_mid_upload_loses_nothing() {
    let mut cluster = Cluster::start();
    let data = bytes(22, 3 * PART as usize + 10);
    let up = cluster.apps[0].create(data.len() as u64, None).await;
    cluster.apps[1].put_chunk(&up, 0, chunk(&data, 0)).await;
    // A chunk in flight to instance 1 when it dies.
    let head = format!(
        "PUT /v1/uploads/{}/chunks/1 HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\nContent-MD5: {}\r\nContent-Length: {PART}\r\n\r\n",
        up.id,
        up.token,
        content_md5(chunk(&data, 1))
    );
    let address = cluster.apps[1].address.trim_start_matches("http://").to_owned();
    let mut half_sent = tokio::net::TcpStream::connect(address).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut half_sent, head.as_bytes()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut half_sent, &chunk(&data, 1)[..MIB as usize]).await.unwrap();
    cluster.apps.remove(1).kill();

    let status: Value = cluster.apps[1].resume(&up).await.json().await.unwrap();
    assert_eq!(status["missing_chunks"], json!([1, 2, 3]));
    for i in [1usize, 2, 3] {
        assert_eq!(cluster.apps[i % 2].put_chunk(&up, i as u32, chunk(&data, i)).await.status(), StatusCode::OK);
    }
    assert_eq!(cluster.object(&up.key).await.unwrap(), data);
}

#[tokio::test]
async fn small_chunks_out_of_order_over_three_instances_are_grouped_into_parts() {
    let mut cluster = Cluster::start_with(|s| s.uploads.min_chunk_size = SMALL);
    // Two whole parts of 20 chunks and a short third one.
    let data = bytes(28, 2 * PART as usize + 3 * SMALL as usize + 99);
    let up = cluster.apps[0].create(data.len() as u64, Some(SMALL)).await;
    assert_eq!(up.total_chunks, 44);
    let small = |i: usize| &data[i * SMALL as usize..((i + 1) * SMALL as usize).min(data.len())];
    // The second part's chunks backwards and half the first's; then the rest, the last
    // chunk at the very end: parts made by chunk requests before and after the kill, and
    // the short one by completion.
    let early: Vec<usize> = (20..40).rev().chain((0..10).map(|i| i * 2)).collect();
    let late: Vec<usize> = (0..10).map(|i| i * 2 + 1).chain(40..43).collect();
    for (n, &i) in early.iter().enumerate() {
        let answer = cluster.apps[n % 3].put_chunk(&up, i as u32, small(i)).await;
        assert_eq!(answer.status(), StatusCode::OK, "chunk {i}");
    }
    // The second part is made, and its chunks gone; the first part's ten wait.
    cluster.await_chunk_objects(&up, 10).await;
    // An instance that acknowledged chunks dies: they are in the bucket, not on it.
    cluster.apps.remove(1).kill();
    for (n, &i) in late.iter().enumerate() {
        let answer = cluster.apps[n % 2].put_chunk(&up, i as u32, small(i)).await;
        assert_eq!(answer.status(), StatusCode::OK, "chunk {i}");
    }
    cluster.await_chunk_objects(&up, 3).await;
    let last: Value = cluster.apps[0].put_chunk(&up, 43, small(43)).await.json().await.unwrap();
    assert_eq!(last["state"], "completed", "{last}");
    assert_eq!(cluster.object(&up.key).await.unwrap(), data);
    let staged = StagedUpload {
        id: up.id.parse().unwrap(),
        key: serde_json::from_value(json!(up.key)).unwrap(),
        storage_upload_id: Some(cluster.multipart_id(&up)),
        append: false,
        part_chunks: 20,
        partial: false,
    };
    // The chunk objects go in the background once the object is made.
    let store = cluster.store().await;
    let mut waited = 0;
    while store.has_staged_parts(&staged).await {
        assert!(waited < 100, "chunk objects left in the bucket after completion");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        waited += 1;
    }
}

#[tokio::test]
async fn a_redis_restart_mid_upload_answers_503_while_down_and_no_request_after_it_fails() {
    let mut cluster = Cluster::start();
    let data = bytes(23, 3 * PART as usize);
    let up = cluster.apps[0].create(data.len() as u64, None).await;
    cluster.apps[0].put_chunk(&up, 0, chunk(&data, 0)).await;
    for app in &cluster.apps {
        assert_eq!(app.status(&up).await.status(), StatusCode::OK, "every instance holds a live connection");
    }

    cluster.redis.kill();
    let refused = cluster.apps[1].put_chunk(&up, 1, chunk(&data, 1)).await;
    assert_eq!(refused.headers()["retry-after"], "2");
    assert_problem(refused, StatusCode::SERVICE_UNAVAILABLE, "store-unavailable").await;
    let ready = cluster.apps[2].client.get(cluster.apps[2].url("/readyz")).send().await.unwrap();
    assert_problem(ready, StatusCode::SERVICE_UNAVAILABLE, "store-unavailable").await;

    // Instance 0 saw nothing of the outage: its first request after it meets a dead
    // connection, and must reconnect rather than fail.
    cluster.redis.restart();
    for (i, app) in cluster.apps.iter().enumerate() {
        let status = app.status(&up).await;
        assert_eq!(status.status(), StatusCode::OK, "the first request to instance {i} after the restart");
    }
    let status: Value = cluster.apps[1].resume(&up).await.json().await.unwrap();
    assert_eq!(status["missing_chunks"], json!([1, 2]), "chunk 0 survived the restart");
    cluster.apps[1].put_chunk(&up, 1, chunk(&data, 1)).await;
    let last: Value = cluster.apps[2].put_chunk(&up, 2, chunk(&data, 2)).await.json().await.unwrap();
    assert_eq!(last["state"], "completed");
    assert_eq!(cluster.object(&up.key).await.unwrap(), data);
}

#[tokio::test]
async fn the_last_two_chunks_at_two_instances_at_once_complete_exactly_once() {
    let cluster = Cluster::start();
    let data = bytes(24, 3 * PART as usize + 1);
    let up = cluster.apps[0].create(data.len() as u64, None).await;
    cluster.apps[0].put_chunk(&up, 0, chunk(&data, 0)).await;
    cluster.apps[0].put_chunk(&up, 3, chunk(&data, 3)).await;
    let (a, b) = tokio::join!(
        cluster.apps[1].put_chunk(&up, 1, chunk(&data, 1)),
        cluster.apps[2].put_chunk(&up, 2, chunk(&data, 2)),
    );
    let answers: Vec<Value> = vec![a.json().await.unwrap(), b.json().await.unwrap()];
    let completed = answers.iter().filter(|v| v["state"] == "completed").count();
    assert_eq!(completed, 1, "{answers:?}");
    assert_eq!(cluster.metric_sum("ferry_uploads_completed_total").await, 1, "exactly one assembly");
    assert_eq!(cluster.object(&up.key).await.unwrap(), data);
}

#[tokio::test]
async fn one_chunk_sent_to_two_instances_one_copy_corrupt_comes_out_intact() {
    let cluster = Cluster::start();
    let data = bytes(25, 2 * PART as usize);
    let up = cluster.apps[0].create(data.len() as u64, None).await;
    let good = chunk(&data, 0).to_vec();
    let mut bad = good.clone();
    bad[12345] ^= 0xff;
    let send = |app: &TestApp, body: Vec<u8>| {
        app.client
            .put(app.url(&format!("/v1/uploads/{}/chunks/0", up.id)))
            .bearer_auth(&up.token)
            .header("Content-MD5", content_md5(&good))
            .body(body)
            .send()
    };
    let (a, b) = tokio::join!(send(&cluster.apps[1], good.clone()), send(&cluster.apps[2], bad));
    assert_eq!(a.unwrap().status(), StatusCode::OK);
    assert_eq!(b.unwrap().status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Send the rest, and whatever the server then reports missing, as a client would.
    let mut answer: Value = cluster.apps[0].put_chunk(&up, 1, chunk(&data, 1)).await.json().await.unwrap();
    for _ in 0..3 {
        if answer["state"] == "completed" {
            break;
        }
        let status: Value = cluster.apps[0].resume(&up).await.json().await.unwrap();
        for i in status["missing_chunks"].as_array().unwrap() {
            let i = i.as_u64().unwrap() as usize;
            answer = cluster.apps[i % 3].put_chunk(&up, i as u32, chunk(&data, i)).await.json().await.unwrap();
        }
    }
    assert_eq!(answer["state"], "completed", "{answer}");
    assert_eq!(cluster.object(&up.key).await.unwrap(), data);
}

#[tokio::test]
async fn a_cancel_through_another_instance_leaves_no_parts() {
    let cluster = Cluster::start();
    let data = bytes(26, 3 * PART as usize);
    let up = cluster.apps[0].create(data.len() as u64, None).await;
    cluster.apps[1].put_chunk(&up, 0, chunk(&data, 0)).await;
    cluster.apps[0].put_chunk(&up, 2, chunk(&data, 2)).await;
    let staged = StagedUpload {
        id: up.id.parse().unwrap(),
        key: serde_json::from_value(json!(up.key)).unwrap(),
        storage_upload_id: Some(cluster.multipart_id(&up)),
        append: false,
        part_chunks: 1,
        partial: false,
    };
    let store = cluster.store().await;
    assert!(store.has_staged_parts(&staged).await);

    assert_eq!(cluster.apps[2].cancel(&up).await.status(), StatusCode::NO_CONTENT);
    assert!(!store.has_staged_parts(&staged).await, "the multipart upload was aborted");
    assert_problem(cluster.apps[0].status(&up).await, StatusCode::GONE, "upload-canceled").await;
    assert_problem(cluster.apps[1].put_chunk(&up, 1, chunk(&data, 1)).await, StatusCode::GONE, "upload-canceled").await;
    assert_eq!(cluster.object(&up.key).await, None);
}

#[tokio::test]
async fn an_unreachable_s3_store_answers_503_without_leaking_details() {
    let redis = RedisServer::start();
    let app = spawn_app_with(|s| {
        s.sessions.backend = SessionBackend::Redis;
        s.sessions.redis.url = redis.url();
        s.auth.secret = Some(SECRET.into());
        s.storage.backend = StorageBackend::S3;
        s.storage.s3 = crate::support::s3::settings_at(crate::support::s3::free_port());
        // With S3 every chunk is a part: the settings refuse chunks under its 5 MiB minimum.
        s.uploads.min_chunk_size = PART;
        s.uploads.default_chunk_size = PART;
        s.uploads.max_chunk_size = 8 * MIB;
    });
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_problem(ready, StatusCode::SERVICE_UNAVAILABLE, "storage-unavailable").await;
    let response = app.post_json("/v1/uploads", &json!({"filename": "a", "size": 10})).await;
    assert_eq!(response.headers()["retry-after"], "2");
    let body = assert_problem(response, StatusCode::SERVICE_UNAVAILABLE, "storage-unavailable").await;
    assert!(!body.to_string().contains("127.0.0.1"), "no backend detail in a 5xx body: {body}");
}
