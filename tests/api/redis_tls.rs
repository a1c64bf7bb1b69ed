//! The Redis store over TLS (`rediss://`, a private CA in `sessions.redis.ca_file`): the
//! shared contract suite, unchanged, on a real TLS-only Redis; a server whose CA is not
//! trusted is refused; and a whole upload through two instances.

use ferry::config::RedisSettings;
use ferry::session::{RedisSessionStore, SessionError, SessionStore};

use crate::redis::{counter, Scratch};
use crate::support::redis::RedisServer;

fn settings(server: &RedisServer) -> RedisSettings {
    RedisSettings { url: server.url(), ca_file: Some(server.ca_file()), ..RedisSettings::default() }
}

async fn scratch() -> Scratch {
    let server = RedisServer::start_tls();
    let store = RedisSessionStore::with_settings(&settings(&server), counter()).unwrap();
    Scratch { _server: server, store }
}

mod contract {
    use super::scratch;

    ferry::session_store_contract!(scratch());
}

#[tokio::test]
async fn a_tls_redis_whose_ca_is_not_trusted_is_refused() {
    let server = RedisServer::start_tls();
    let system_roots = RedisSettings { url: server.url(), ..RedisSettings::default() };
    let store = RedisSessionStore::with_settings(&system_roots, counter()).unwrap();
    assert!(matches!(store.ping().await, Err(SessionError::Unavailable(_))), "the system roots do not know the CA");

    let plain = RedisSettings { url: server.url().replace("rediss://", "redis://"), ..RedisSettings::default() };
    let store = RedisSessionStore::with_settings(&plain, counter()).unwrap();
    assert!(store.ping().await.is_err(), "no plain text on a TLS port");

    let trusted = RedisSessionStore::with_settings(&settings(&server), counter()).unwrap();
    trusted.ping().await.unwrap();
}

#[tokio::test]
async fn a_tls_redis_is_reached_by_its_dns_name_too() {
    let server = RedisServer::start_tls();
    let by_name = RedisSettings { url: server.url().replace("127.0.0.1", "localhost"), ..settings(&server) };
    let store = RedisSessionStore::with_settings(&by_name, counter()).unwrap();
    store.ping().await.unwrap();
}

#[tokio::test]
async fn an_upload_through_two_instances_on_a_tls_redis_comes_out_whole() {
    let server = RedisServer::start_tls();
    crate::cluster::an_upload_through_two_instances_comes_out_whole(settings(&server)).await;
}
