//! Completion never depends on a client coming back, and storage faults at completion
//! send the upload back for the chunks concerned instead of failing it.

use chrono::Duration;
use ferry::config::SessionBackend;
use ferry::domain::{ChunkIndex, Clock, Md5Digest, UploadId, UploadRecord};
use ferry::session::{RecordOutcome, RedisSessionStore, SessionStore};
use ferry::storage::contract::body;
use ferry::storage::{FsObjectStore, ObjectStore, StagedUpload};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;
use crate::support::redis::RedisServer;

const SECRET: &str = "a-secret-every-instance-shares";

/// An instance on Redis and a local folder, and the test's own handles on both, so the
/// test can play an instance that stored the last chunk, took the claim, and died.
struct Rig {
    app: TestApp,
    _redis: RedisServer,
    sessions: RedisSessionStore,
    storage: FsObjectStore,
    lease: Duration,
    ttl: Duration,
}

impl Rig {
    fn start(lease_secs: u64, ttl_secs: u64) -> Self {
        let redis = RedisServer::start();
        let url = redis.url();
        let app = spawn_app_with(|s| {
            s.sessions.backend = SessionBackend::Redis;
            s.sessions.redis.url = url;
            s.auth.secret = Some(SECRET.into());
            s.uploads.completion_lease_secs = lease_secs;
            s.uploads.session_ttl_secs = ttl_secs;
            s.uploads.sweep_interval_secs = 1;
        });
        let counter = prometheus::IntCounter::new("trips", "trips").unwrap();
        let sessions = RedisSessionStore::new(&redis.url(), "ferry", counter).unwrap();
        let storage = FsObjectStore::open(&app.dir.join("objects")).unwrap();
        let (lease, ttl) = (Duration::seconds(lease_secs as i64), Duration::seconds(ttl_secs as i64));
        Self { app, _redis: redis, sessions, storage, lease, ttl }
    }

    /// Stores and records chunk `index` behind the instance's back, as a dying instance
    /// would have: the answer tells whether that took the claim.
    async fn record_behind(&self, up: &Upload, index: u32, data: &[u8]) -> bool {
        let id: UploadId = up.id.parse().unwrap();
        let record: UploadRecord = self.sessions.get(&id).await.unwrap().unwrap();
        let staged = StagedUpload::from(&record);
        let md5 = Some(Md5Digest::of(data));
        let receipt =
            self.storage.put_part(&staged, ChunkIndex(index), body(data), data.len() as u64, md5).await.unwrap();
        let now = self.app.clock.now();
        let outcome =
            self.sessions.record_part(&id, ChunkIndex(index), &receipt, now, self.ttl, self.lease, true).await.unwrap();
        matches!(outcome, RecordOutcome::Recorded { claim: Some(_), .. })
    }
}

async fn state_of(app: &TestApp, up: &Upload) -> Value {
    app.status(up).await.json().await.unwrap()
}

#[tokio::test]
async fn an_upload_whose_claimer_died_is_finished_by_the_sweeper_with_no_client() {
    let rig = Rig::start(2, 3600);
    let data = bytes(81, 2 * CHUNK as usize);
    let up = rig.app.create(data.len() as u64, None).await;
    assert_eq!(rig.app.put_chunk(&up, 0, &data[..CHUNK as usize]).await.status(), StatusCode::OK);
    assert!(rig.record_behind(&up, 1, &data[CHUNK as usize..]).await, "the dead instance took the claim");

    // Nobody calls status or resume: only the server can finish it, once the claim lapses.
    rig.app.clock.advance(Duration::seconds(3));
    let object = rig.app.object_path(&up.key);
    eventually("the sweeper finished the abandoned completion", || async { object.exists() }).await;
    assert_eq!(std::fs::read(&object).unwrap(), data);
    // The object appears a moment before the job records it (the job's live claim keeps
    // a status call from taking over meanwhile).
    eventually("the completion is recorded", || async { state_of(&rig.app, &up).await["state"] == "completed" }).await;
    assert!(rig.app.metrics().await.contains("ferry_completions_adopted_total 1"));
}

#[tokio::test]
async fn an_abandoned_completion_found_past_its_expiry_is_finished_not_deleted() {
    // A lease longer than the TTL: the sweeper first meets the upload once it has expired.
    let rig = Rig::start(600, 60);
    let data = bytes(82, 2 * CHUNK as usize);
    let up = rig.app.create(data.len() as u64, None).await;
    rig.app.put_chunk(&up, 0, &data[..CHUNK as usize]).await;
    assert!(rig.record_behind(&up, 1, &data[CHUNK as usize..]).await);

    rig.app.clock.advance(Duration::seconds(3600));
    let object = rig.app.object_path(&up.key);
    eventually("the sweeper finished it", || async { object.exists() }).await;
    assert_eq!(std::fs::read(&object).unwrap(), data);
    assert!(rig.app.metrics().await.contains("ferry_uploads_expired_total 0"));
}

#[tokio::test]
async fn a_lost_chunk_file_sends_the_upload_back_for_that_chunk() {
    let app = spawn_app();
    let data = bytes(83, 3 * CHUNK as usize);
    let up = app.create(data.len() as u64, None).await;
    app.put_chunk(&up, 0, &data[..CHUNK as usize]).await;
    app.put_chunk(&up, 1, &data[CHUNK as usize..2 * CHUNK as usize]).await;
    let lost = part_files(&app, &up, 1);
    assert_eq!(lost.len(), 1);
    std::fs::remove_file(&lost[0]).unwrap();
    // And the temporary folder goes too: assembly must make it again.
    std::fs::remove_dir_all(app.dir.join("objects/.ferry/tmp")).unwrap();

    let last: Value = app.put_chunk(&up, 2, &data[2 * CHUNK as usize..]).await.json().await.unwrap();
    assert_eq!(last["state"], "uploading", "{last}");
    let status = state_of(&app, &up).await;
    assert_eq!(status["missing_chunks"], serde_json::json!([1]), "{status}");

    let again: Value = app.put_chunk(&up, 1, &data[CHUNK as usize..2 * CHUNK as usize]).await.json().await.unwrap();
    assert_eq!(again["state"], "completed", "{again}");
    assert_eq!(std::fs::read(app.object_path(&up.key)).unwrap(), data);
}

#[tokio::test]
async fn a_chunk_sent_again_keeps_one_file_on_disk() {
    let app = spawn_app();
    let up = app.create(2 * CHUNK, None).await;
    for seed in 0..5 {
        let response = app.put_chunk(&up, 0, &bytes(90 + seed, CHUNK as usize)).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(part_files(&app, &up, 0).len(), 1, "earlier sends are deleted once replaced");
    let last: Value = app.put_chunk(&up, 1, &bytes(99, CHUNK as usize)).await.json().await.unwrap();
    assert_eq!(last["state"], "completed");
    let mut expected = bytes(94, CHUNK as usize);
    expected.extend(bytes(99, CHUNK as usize));
    assert_eq!(std::fs::read(app.object_path(&up.key)).unwrap(), expected);
}

/// The staged files of chunk `index` (named `<index>-<tag>.part`).
fn part_files(app: &TestApp, up: &Upload, index: u32) -> Vec<std::path::PathBuf> {
    let Ok(dir) = std::fs::read_dir(app.staging_dir(&up.id)) else { return Vec::new() };
    dir.map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(&format!("{index}-")))
        .collect()
}
