//! Settings: built-in defaults, then an optional TOML file (`ferry serve --config FILE`),
//! then `FERRY__<SECTION>__<KEY>` environment variables. Every field has a default, so
//! `ferry serve` with nothing set runs the embedded single-instance setup.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::domain::ChunkPolicy;

const MIB: u64 = 1024 * 1024;

/// S3's smallest part but the last; every chunk is one part with S3.
const S3_MIN_PART_SIZE: u64 = 5 * MIB;

/// S3's largest part.
const S3_MAX_PART_SIZE: u64 = 5 * 1024 * MIB;

/// S3's most parts in one multipart upload.
const S3_MAX_PARTS: u32 = 10_000;

/// Everything ferry can be told.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The HTTP server.
    pub server: ServerSettings,
    /// Where chunk bytes and finished objects go.
    pub storage: StorageSettings,
    /// Where upload sessions are kept.
    pub sessions: SessionSettings,
    /// Limits and timings of uploads.
    pub uploads: UploadSettings,
    /// Upload tokens and API keys.
    pub auth: AuthSettings,
    /// Logging.
    pub telemetry: TelemetrySettings,
}

/// The HTTP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to bind, `host:port`; port 0 picks a free one.
    pub listen: String,
    /// Worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// On SIGTERM or SIGINT, how long to keep serving with `/readyz` failing before the
    /// listener closes, in seconds, so load balancers stop routing here first.
    pub drain_delay_secs: u64,
    /// After that, how long requests in flight may take to finish, in seconds.
    pub shutdown_timeout_secs: u64,
    /// Serve the upload page at `/` (the client module at /client/ferry.js is always served).
    pub ui: bool,
    /// A request body (a chunk, a form) that sends nothing for this many seconds is cut:
    /// what it carried is not recorded, and the client gets 408 `body-timeout`.
    pub body_idle_timeout_secs: u64,
    /// Most upload bodies this instance reads at once; one more gets 503 `busy` before
    /// its body is read.
    pub max_bodies_in_flight: usize,
    /// Browser origins (`https://app.example.com`: scheme, host, optional port) allowed to
    /// call ferry cross-origin, preflight included, with the tus headers and `Location`
    /// exposed. Empty: no CORS headers at all.
    pub cors_origins: Vec<String>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            workers: 0,
            drain_delay_secs: 0,
            shutdown_timeout_secs: 30,
            ui: true,
            body_idle_timeout_secs: 30,
            max_bodies_in_flight: 512,
            cors_origins: Vec::new(),
        }
    }
}

/// Which object storage to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// Local files under `storage.fs.root`.
    #[default]
    Fs,
    /// An S3 bucket or any S3-compatible store.
    S3,
}

/// Where chunk bytes and finished objects go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    /// `fs` or `s3`.
    pub backend: StorageBackend,
    /// Settings of the `fs` backend.
    pub fs: FsSettings,
    /// Settings of the `s3` backend.
    pub s3: S3Settings,
}

/// The filesystem backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FsSettings {
    /// A completed upload is the file `<root>/<key>`; unfinished chunks live under
    /// `<root>/.ferry/`.
    pub root: PathBuf,
}

impl Default for FsSettings {
    fn default() -> Self {
        Self { root: PathBuf::from("./ferry-data/objects") }
    }
}

/// The S3 backend. Credentials come from the standard AWS environment and profiles.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Settings {
    /// The bucket (required with `storage.backend = "s3"`).
    pub bucket: Option<String>,
    /// Endpoint of an S3-compatible store, e.g. `http://127.0.0.1:9000`; unset for AWS.
    pub endpoint: Option<String>,
    /// The region.
    pub region: String,
    /// Folder of every object in the bucket: an object's name is `<prefix>/<key>` (slashes
    /// around the prefix trimmed), or just `<key>` when the prefix is empty.
    pub prefix: String,
    /// A static access key id, for stores without the AWS credential chain (MinIO, tests).
    /// Unset: the standard chain (environment, profile, web identity, instance role).
    pub access_key_id: Option<String>,
    /// The secret of `access_key_id`.
    pub secret_access_key: Option<String>,
    /// Size in bytes of the parts that appended bytes (tus, the IETF draft) and form
    /// bodies are cut into; only an upload's last part is shorter. At least 5 MiB (S3's
    /// smallest part but the last), at most 5 GiB. An upload holds at most 10,000 parts,
    /// so this also bounds an append upload's size (8 MiB: 78 GiB).
    pub part_size: u64,
}

impl Default for S3Settings {
    fn default() -> Self {
        Self {
            bucket: None,
            endpoint: None,
            region: "us-east-1".into(),
            prefix: String::new(),
            access_key_id: None,
            secret_access_key: None,
            part_size: 8 * MIB,
        }
    }
}

/// Which session store to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionBackend {
    /// A local redb file: one instance, survives restarts.
    #[default]
    Embedded,
    /// Redis, shared by every instance.
    Redis,
}

/// Where upload sessions are kept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionSettings {
    /// `embedded` or `redis`.
    pub backend: SessionBackend,
    /// Settings of the embedded store.
    pub embedded: EmbeddedSettings,
    /// Settings of the Redis store.
    pub redis: RedisSettings,
}

/// The embedded session store.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedSettings {
    /// Folder of the store; the generated token secret is kept beside it.
    pub path: PathBuf,
}

impl Default for EmbeddedSettings {
    fn default() -> Self {
        Self { path: PathBuf::from("./ferry-data/sessions") }
    }
}

/// How ferry reaches Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// One server (or a primary behind one address).
    #[default]
    Standalone,
    /// A Redis Cluster, found from one or more seed nodes.
    Cluster,
}

/// The Redis session store.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// Redis URL, `redis://[:password@]host:port[/db]`, or `rediss://…` for TLS. With
    /// `mode = "cluster"`, a comma-separated list of seed nodes
    /// (`redis://h1:7000,redis://h2:7000`), all `redis://` or all `rediss://`.
    pub url: String,
    /// `standalone` or `cluster`.
    pub mode: RedisMode,
    /// A PEM file of the CA certificates to trust for `rediss://`, instead of the system's
    /// roots (a private CA); unset: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Prefix of every key ferry writes.
    pub key_prefix: String,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            mode: RedisMode::Standalone,
            ca_file: None,
            key_prefix: "ferry".into(),
        }
    }
}

impl RedisSettings {
    /// The node URLs in `url`: one in standalone mode, the seeds in cluster mode.
    pub fn urls(&self) -> Vec<&str> {
        self.url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect()
    }

    fn validate(&self) -> Result<(), String> {
        let urls = self.urls();
        if urls.is_empty() {
            return Err("sessions.redis.url is empty".into());
        }
        if self.mode == RedisMode::Standalone && urls.len() > 1 {
            return Err("sessions.redis.url lists several nodes: set sessions.redis.mode = \"cluster\"".into());
        }
        let tls = urls.iter().filter(|u| u.starts_with("rediss://")).count();
        if tls != 0 && tls != urls.len() {
            return Err("sessions.redis.url mixes redis:// and rediss:// nodes".into());
        }
        if let Some(ca_file) = &self.ca_file {
            if tls == 0 {
                return Err("sessions.redis.ca_file is set but sessions.redis.url is not rediss://".into());
            }
            if !ca_file.is_file() {
                return Err(format!("sessions.redis.ca_file {} is not a readable file", ca_file.display()));
            }
        }
        Ok(())
    }
}

/// Limits and timings of uploads.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadSettings {
    /// Largest file accepted, in bytes.
    pub max_file_size: u64,
    /// Chunk size when the client names none (raised to keep within `max_chunks`).
    pub default_chunk_size: u64,
    /// Smallest chunk size a client may ask for; the S3 minimum part size.
    pub min_chunk_size: u64,
    /// Largest chunk size; keeps a chunk under a 32 MB proxy body limit.
    pub max_chunk_size: u64,
    /// Most chunks in one upload; the S3 part limit.
    pub max_chunks: u32,
    /// An upload idle this long expires and its stored bytes are removed; finished and
    /// canceled uploads are remembered this long.
    pub session_ttl_secs: u64,
    /// Content types accepted at creation; empty accepts any.
    pub allowed_content_types: Vec<String>,
    /// Whether every chunk must carry `Content-MD5`.
    pub require_chunk_md5: bool,
    /// How often the sweeper looks for expired uploads, in seconds.
    pub sweep_interval_secs: u64,
    /// How long the right to assemble an object lasts unless renewed, in seconds. The job
    /// that holds it renews it every third of this while it runs; if the instance dies,
    /// another instance's sweeper finishes the upload within this plus one sweep interval.
    pub completion_lease_secs: u64,
}

impl Default for UploadSettings {
    fn default() -> Self {
        Self {
            max_file_size: 50 * 1024 * MIB,
            default_chunk_size: 8 * MIB,
            min_chunk_size: 5 * MIB,
            max_chunk_size: 30 * MIB,
            max_chunks: 10_000,
            session_ttl_secs: 86_400,
            allowed_content_types: Vec::new(),
            require_chunk_md5: true,
            sweep_interval_secs: 60,
            completion_lease_secs: 60,
        }
    }
}

impl UploadSettings {
    /// The chunk limits as the domain sees them.
    pub fn chunk_policy(&self) -> ChunkPolicy {
        ChunkPolicy {
            max_file_size: self.max_file_size,
            default_chunk_size: self.default_chunk_size,
            min_chunk_size: self.min_chunk_size,
            max_chunk_size: self.max_chunk_size,
            max_chunks: self.max_chunks,
        }
    }
}

/// Upload tokens and API keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Key of the HMAC that signs upload tokens; shared by every instance. Unset with the
    /// embedded store: generated once and kept in `<sessions.embedded.path>/auth-secret`.
    /// Required with Redis.
    pub secret: Option<String>,
    /// Keys that may create uploads (`Authorization: Bearer <key>`); empty: anyone may.
    pub api_keys: Vec<String>,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `ferry=debug`; `RUST_LOG` wins when set.
    pub log_level: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self { log_format: LogFormat::Text, log_level: "info".into() }
    }
}

/// Settings that cannot work together.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file or an environment variable could not be read.
    #[error(transparent)]
    Load(#[from] config::ConfigError),
    /// The values contradict each other.
    #[error("invalid settings: {0}")]
    Invalid(String),
}

impl Settings {
    /// Loads defaults, then `file` if given, then `FERRY__…` variables, and checks them.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        let mut builder = config::Config::builder();
        if let Some(file) = file {
            builder = builder.add_source(config::File::from(file).required(true));
        }
        let env = config::Environment::with_prefix("FERRY")
            .prefix_separator("__")
            .separator("__")
            .list_separator(",")
            .with_list_parse_key("uploads.allowed_content_types")
            .with_list_parse_key("auth.api_keys")
            .with_list_parse_key("server.cors_origins")
            .try_parsing(true);
        let settings: Settings = builder.add_source(env).build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks that the values can work together.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let u = &self.uploads;
        let fail = |msg: String| Err(SettingsError::Invalid(msg));
        if self.server.body_idle_timeout_secs == 0 {
            return fail("server.body_idle_timeout_secs must be positive".into());
        }
        if !(1..=tokio::sync::Semaphore::MAX_PERMITS).contains(&self.server.max_bodies_in_flight) {
            return fail("server.max_bodies_in_flight must be positive".into());
        }
        if let Some(origin) = self.server.cors_origins.iter().find(|o| !is_origin(o)) {
            return fail(format!(
                "server.cors_origins: {origin:?} is not an origin (scheme://host[:port], no path, or \"*\" is refused)"
            ));
        }
        if u.min_chunk_size == 0 || u.min_chunk_size > u.max_chunk_size {
            return fail("uploads.min_chunk_size must be at least 1 and at most uploads.max_chunk_size".into());
        }
        if !(u.min_chunk_size..=u.max_chunk_size).contains(&u.default_chunk_size) {
            return fail("uploads.default_chunk_size must lie between min_chunk_size and max_chunk_size".into());
        }
        if u.max_chunks == 0 {
            return fail("uploads.max_chunks must be at least 1".into());
        }
        if u.max_file_size > u.max_chunk_size.saturating_mul(u64::from(u.max_chunks)) {
            return fail(format!(
                "uploads.max_file_size ({}) cannot be cut into max_chunks ({}) of at most max_chunk_size ({})",
                u.max_file_size, u.max_chunks, u.max_chunk_size
            ));
        }
        if u.session_ttl_secs == 0 || u.sweep_interval_secs == 0 || u.completion_lease_secs == 0 {
            return fail(
                "uploads.session_ttl_secs, sweep_interval_secs and completion_lease_secs must be positive".into(),
            );
        }
        if self.sessions.backend == SessionBackend::Redis && self.auth.secret.is_none() {
            return fail(
                "auth.secret is required with sessions.backend = \"redis\" (every instance must share it)".into(),
            );
        }
        if self.sessions.backend == SessionBackend::Redis {
            self.sessions.redis.validate().map_err(SettingsError::Invalid)?;
        }
        if self.auth.secret.as_ref().is_some_and(|s| s.len() < 16) {
            return fail("auth.secret must be at least 16 characters".into());
        }
        let s3 = &self.storage.s3;
        if s3.access_key_id.is_some() != s3.secret_access_key.is_some() {
            return fail("storage.s3.access_key_id and storage.s3.secret_access_key go together".into());
        }
        if self.storage.backend == StorageBackend::S3 {
            if self.storage.s3.bucket.is_none() {
                return fail("storage.s3.bucket is required with storage.backend = \"s3\"".into());
            }
            // Each chunk is one S3 part: a smaller one would only be refused at completion.
            if u.min_chunk_size < S3_MIN_PART_SIZE {
                return fail(format!(
                    "uploads.min_chunk_size ({}) must be at least {S3_MIN_PART_SIZE} (5 MiB, S3's smallest part) \
                     with storage.backend = \"s3\"",
                    u.min_chunk_size
                ));
            }
            if !(S3_MIN_PART_SIZE..=S3_MAX_PART_SIZE).contains(&s3.part_size) {
                return fail(format!(
                    "storage.s3.part_size ({}) must be between {S3_MIN_PART_SIZE} (5 MiB, S3's smallest part) \
                     and {S3_MAX_PART_SIZE} (5 GiB, its largest)",
                    s3.part_size
                ));
            }
            if u.max_chunks > S3_MAX_PARTS {
                return fail(format!(
                    "uploads.max_chunks ({}) must be at most {S3_MAX_PARTS} (S3's part limit) with storage.backend = \"s3\"",
                    u.max_chunks
                ));
            }
        }
        Ok(())
    }
}

/// Whether `s` is a serialized origin as browsers send it: `http` or `https`, a host, an
/// optional port, nothing after.
fn is_origin(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")) else { return false };
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || rest.starts_with('[') => (host, Some(port)),
        _ => (rest, None),
    };
    !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b))
        && port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_origins_are_exact_origins() {
        let mut s = Settings::default();
        assert!(s.server.cors_origins.is_empty());
        s.server.cors_origins = vec!["https://app.example.com".into(), "http://127.0.0.1:5173".into()];
        s.validate().unwrap();
        for bad in ["*", "app.example.com", "https://app.example.com/", "https://a.com/path", "ftp://a.com", "https://"]
        {
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
        assert_eq!(s.uploads.min_chunk_size, 5_242_880);
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
    fn with_s3_chunks_under_the_part_minimum_are_refused_at_start() {
        let mut s = s3_settings();
        s.validate().unwrap();
        s.uploads.min_chunk_size = 5 * MIB - 1;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("uploads.min_chunk_size") && err.contains("5242880"), "{err}");
        s.storage.backend = StorageBackend::Fs;
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
        std::fs::write(&path, "[uploads]\nrequire_chunk_md5 = false\nallowed_content_types = [\"video/mp4\"]\n")
            .unwrap();
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
}
