//! Settings: defaults, layering, and the checks that refuse settings that cannot work.

use super::*;

#[test]
fn cors_origins_are_exact_origins() {
    let mut s = Settings::default();
    assert!(s.server.cors_origins.is_empty());
    s.server.cors_origins = vec!["https://app.example.com".into(), "http://127.0.0.1:5173".into()];
    s.validate().unwrap();
    for bad in ["*", "app.example.com", "https://app.example.com/", "https://a.com/path", "ftp://a.com", "https://"] {
        s.server.cors_origins = vec![bad.into()];
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("server.cors_origins"), "{bad}: {err}");
    }
}

#[test]
fn the_defaults_are_the_embedded_setup() {
    let s = Settings::default();
    s.validate().unwrap();
    assert_eq!(s.server.listen, "127.0.0.1:8080");
    assert_eq!(s.storage.backend, StorageBackend::Fs);
    assert_eq!(s.sessions.backend, SessionBackend::Embedded);
    assert_eq!(s.uploads.max_chunk_size, 31_457_280);
    assert_eq!(s.uploads.min_chunk_size, 262_144);
}

#[test]
fn redis_without_a_shared_secret_is_refused() {
    let mut s = Settings::default();
    s.sessions.backend = SessionBackend::Redis;
    assert!(s.validate().is_err());
    s.auth.secret = Some("a-long-enough-secret".into());
    s.validate().unwrap();
}

fn redis(url: &str, mode: RedisMode) -> Settings {
    let mut s = Settings::default();
    s.sessions.backend = SessionBackend::Redis;
    s.auth.secret = Some("a-long-enough-secret".into());
    s.sessions.redis.url = url.into();
    s.sessions.redis.mode = mode;
    s
}

#[test]
fn a_cluster_takes_one_seed_or_several_and_standalone_takes_one() {
    redis("redis://h1:7000", RedisMode::Cluster).validate().unwrap();
    let seeds = redis("rediss://h1:7000, rediss://h2:7000", RedisMode::Cluster);
    seeds.validate().unwrap();
    assert_eq!(seeds.sessions.redis.urls(), vec!["rediss://h1:7000", "rediss://h2:7000"]);
    assert!(redis("redis://h1:7000,redis://h2:7000", RedisMode::Standalone).validate().is_err());
    assert!(redis("redis://h1:7000,rediss://h2:7000", RedisMode::Cluster).validate().is_err(), "mixed TLS");
    assert!(redis(" , ", RedisMode::Cluster).validate().is_err(), "no node");
}

#[test]
fn an_unknown_redis_mode_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.toml");
    std::fs::write(&path, "[sessions.redis]\nmode = \"sentinel\"\n").unwrap();
    assert!(Settings::load(Some(&path)).is_err());
    std::fs::write(&path, "[sessions.redis]\nmode = \"cluster\"\n").unwrap();
    assert_eq!(Settings::load(Some(&path)).unwrap().sessions.redis.mode, RedisMode::Cluster);
}

#[test]
fn a_ca_file_must_exist_and_goes_with_rediss() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let mut s = redis("rediss://127.0.0.1:6380", RedisMode::Standalone);
    s.sessions.redis.ca_file = Some(ca.clone());
    assert!(s.validate().is_err(), "missing");
    std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
    s.validate().unwrap();
    s.sessions.redis.url = "redis://127.0.0.1:6379".into();
    assert!(s.validate().is_err(), "a CA without TLS");
}

#[test]
fn a_file_too_large_for_the_chunk_limits_is_refused() {
    let mut s = Settings::default();
    s.uploads.max_chunks = 10;
    assert!(s.validate().is_err());
}

#[test]
fn body_limits_must_be_positive() {
    let mut s = Settings::default();
    assert_eq!((s.server.body_idle_timeout_secs, s.server.max_bodies_in_flight), (30, 512));
    s.server.body_idle_timeout_secs = 0;
    assert!(s.validate().unwrap_err().to_string().contains("server.body_idle_timeout_secs"));
    s.server.body_idle_timeout_secs = 1;
    s.server.max_bodies_in_flight = 0;
    assert!(s.validate().unwrap_err().to_string().contains("server.max_bodies_in_flight"));
    s.server.max_bodies_in_flight = usize::MAX;
    assert!(s.validate().is_err(), "more than a semaphore can count");
}

fn s3_settings() -> Settings {
    let mut s = Settings::default();
    s.storage.backend = StorageBackend::S3;
    s.storage.s3.bucket = Some("uploads".into());
    s
}

#[test]
fn with_s3_chunks_under_the_part_minimum_are_taken_and_grouped() {
    let mut s = s3_settings();
    s.uploads.min_chunk_size = 64 * 1024;
    s.validate().unwrap();
}

#[test]
fn with_s3_parts_under_the_s3_minimum_are_refused_at_start() {
    let mut s = s3_settings();
    assert_eq!(s.storage.s3.part_size, 8 * MIB);
    s.storage.s3.part_size = 5 * MIB;
    s.validate().unwrap();
    s.storage.s3.part_size = 5 * MIB - 1;
    let err = s.validate().unwrap_err().to_string();
    assert!(err.contains("storage.s3.part_size") && err.contains("5242880"), "{err}");
    s.storage.s3.part_size = 5 * 1024 * MIB + 1;
    assert!(s.validate().unwrap_err().to_string().contains("storage.s3.part_size"));
}

#[test]
fn with_s3_more_chunks_than_parts_are_refused_at_start() {
    let mut s = s3_settings();
    s.uploads.max_chunks = 10_001;
    let err = s.validate().unwrap_err().to_string();
    assert!(err.contains("uploads.max_chunks") && err.contains("10000"), "{err}");
    s.storage.backend = StorageBackend::Fs;
    s.validate().unwrap();
}

#[test]
fn a_file_is_layered_under_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.toml");
    std::fs::write(&path, "[uploads]\nrequire_chunk_md5 = false\nallowed_content_types = [\"video/mp4\"]\n").unwrap();
    let s = Settings::load(Some(&path)).unwrap();
    assert!(!s.uploads.require_chunk_md5);
    assert_eq!(s.uploads.allowed_content_types, vec!["video/mp4".to_string()]);
    assert_eq!(s.uploads.default_chunk_size, 8 * MIB);
}

#[test]
fn unknown_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.toml");
    std::fs::write(&path, "[uploads]\nmax_file_sise = 1\n").unwrap();
    assert!(Settings::load(Some(&path)).is_err());
}

#[test]
fn the_pre_create_hook_is_off_by_default_and_must_be_an_http_url() {
    let mut s = Settings::default();
    assert_eq!((s.hooks.pre_create.as_deref(), s.hooks.timeout_secs), (None, 5));
    assert_eq!(s.hooks.pre_create_url(), Ok(None));
    for good in ["http://127.0.0.1:9000/approve", "https://hooks.example.com/ferry?key=k"] {
        s.hooks.pre_create = Some(good.into());
        s.validate().unwrap();
        assert_eq!(s.hooks.pre_create_url().unwrap().unwrap().as_str(), good);
    }
    for bad in ["", "hooks.example.com/approve", "ftp://hooks.example.com/", "unix:/run/hook.sock", "http://"] {
        s.hooks.pre_create = Some(bad.into());
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("hooks.pre_create"), "{bad}: {err}");
    }
    s.hooks.pre_create = None;
    s.hooks.timeout_secs = 0;
    assert!(s.validate().unwrap_err().to_string().contains("hooks.timeout_secs"));
}

#[test]
fn the_hooks_section_is_read_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.toml");
    std::fs::write(&path, "[hooks]\npre_create = \"http://127.0.0.1:9000/approve\"\ntimeout_secs = 2\n").unwrap();
    let s = Settings::load(Some(&path)).unwrap();
    assert_eq!(s.hooks.pre_create.as_deref(), Some("http://127.0.0.1:9000/approve"));
    assert_eq!(s.hooks.timeout_secs, 2);
    std::fs::write(&path, "[hooks]\npre_create = \"http://127.0.0.1:9000/approve\"\ntimeout = 2\n").unwrap();
    assert!(Settings::load(Some(&path)).is_err(), "an unknown key");
}
