//! The Redis session store: the shared contract suite, unchanged, on a real Redis; and
//! what happens when Redis goes away.

use std::sync::Arc;

use ferry::session::{RedisSessionStore, SessionError, SessionStore};

use crate::support::redis::RedisServer;

/// A store on a Redis of its own; the server lives as long as the store.
pub struct Scratch {
    pub _server: RedisServer,
    pub store: RedisSessionStore,
}

impl std::ops::Deref for Scratch {
    type Target = RedisSessionStore;
    fn deref(&self) -> &RedisSessionStore {
        &self.store
    }
}

pub fn counter() -> prometheus::IntCounter {
    prometheus::IntCounter::new("round_trips", "round trips").unwrap()
}

async fn scratch() -> Scratch {
    let server = RedisServer::start();
    let store = RedisSessionStore::new(&server.url(), "contract", counter()).unwrap();
    Scratch { _server: server, store }
}

mod contract {
    use super::scratch;

    ferry::session_store_contract!(scratch());
}

mod log {
    use super::scratch;

    ferry::event_log_contract!(scratch());
}

#[tokio::test]
async fn keys_are_versioned_prefixed_and_share_a_hash_tag_per_upload() {
    // The record and its events' outbox share the upload's hash tag; the two indexes stand alone.
    let server = RedisServer::start();
    let store = RedisSessionStore::new(&server.url(), "myapp", counter()).unwrap();
    let record = ferry::session::contract::new_record(chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 3));
    store.insert(&record).await.unwrap();
    let keys = server.cli(&["--scan"]);
    let mut keys: Vec<&str> = keys.lines().collect();
    keys.sort();
    let outbox = format!("myapp:v1:{{{}}}:outbox", record.id);
    let upload = format!("myapp:v1:{{{}}}:upload", record.id);
    assert_eq!(keys, vec!["myapp:v1:expiry", "myapp:v1:outbox", outbox.as_str(), upload.as_str()]);
}

#[tokio::test]
async fn a_stopped_redis_reads_as_unavailable_and_recovery_needs_no_restart() {
    let mut server = RedisServer::start();
    let store = Arc::new(RedisSessionStore::new(&server.url(), "ferry", counter()).unwrap());
    let record = ferry::session::contract::new_record(chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 3));
    store.insert(&record).await.unwrap();

    server.kill();
    let started = std::time::Instant::now();
    assert!(matches!(store.ping().await, Err(SessionError::Unavailable(_))));
    assert!(matches!(store.get(&record.id).await, Err(SessionError::Unavailable(_))));
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "failing is quick");

    server.restart();
    store.ping().await.unwrap();
    assert_eq!(store.get(&record.id).await.unwrap(), Some(record), "the append-only file kept the record");
}

#[tokio::test]
async fn the_first_call_after_a_redis_restart_succeeds_on_a_connection_that_broke_unseen() {
    let mut server = RedisServer::start();
    let store = RedisSessionStore::new(&server.url(), "ferry", counter()).unwrap();
    let record = ferry::session::contract::new_record(chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 3));
    store.insert(&record).await.unwrap();

    // No call while Redis is down: the store learns of the restart from its first call.
    server.kill();
    server.restart();
    assert_eq!(store.get(&record.id).await.unwrap(), Some(record.clone()), "a read");
    server.kill();
    server.restart();
    let touched = store.touch(&record.id, record.updated_at, chrono::Duration::hours(2)).await.unwrap();
    assert!(touched.is_some(), "a script");
}
