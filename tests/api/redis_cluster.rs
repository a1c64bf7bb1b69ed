//! The Redis store on a real three-node Redis Cluster (`sessions.redis.mode = "cluster"`):
//! the shared contract suite, unchanged; every key of an upload in one slot; and a whole
//! upload through two instances.

use ferry::config::{RedisMode, RedisSettings};
use ferry::session::{RedisSessionStore, SessionStore};

use crate::support::redis_cluster::RedisCluster;

fn counter() -> prometheus::IntCounter {
    prometheus::IntCounter::new("round_trips", "round trips").unwrap()
}

fn settings(prefix: &str) -> RedisSettings {
    RedisSettings {
        url: RedisCluster::shared().url(),
        mode: RedisMode::Cluster,
        key_prefix: prefix.into(),
        ..RedisSettings::default()
    }
}

/// A store of its own on the shared cluster: a prefix no other case uses (the outbox is
/// store-wide).
async fn scratch() -> Box<RedisSessionStore> {
    let prefix = format!("contract-{}", uuid::Uuid::new_v4().simple());
    Box::new(RedisSessionStore::with_settings(&settings(&prefix), counter()).unwrap())
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
async fn on_a_cluster_an_uploads_keys_share_a_slot_and_the_expiry_index_may_live_elsewhere() {
    let cluster = RedisCluster::shared();
    let store = RedisSessionStore::with_settings(&settings("slots"), counter()).unwrap();
    let now = chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 3);
    let record = ferry::session::contract::new_record(now);
    store.insert(&record).await.unwrap();
    let upload = format!("slots:v1:{{{}}}:upload", record.id);
    let parts = format!("slots:v1:{{{}}}:parts", record.id);
    assert_eq!(cluster.slot(&upload), cluster.slot(&parts));
    assert!(cluster.cli(&["EXISTS", &upload]).trim() == "1", "the record is in the cluster");
    let indexed = cluster.cli(&["ZSCORE", "slots:v1:expiry", &record.id.to_string()]);
    assert_eq!(indexed.trim(), record.expires_at.timestamp_millis().to_string(), "the index entry");
}

#[tokio::test]
async fn an_upload_through_two_instances_on_a_redis_cluster_comes_out_whole() {
    crate::cluster::an_upload_through_two_instances_comes_out_whole(settings("ferry")).await;
}
