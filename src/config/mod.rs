//! Settings: built-in defaults, then an optional TOML file (`ferry serve --config FILE`),
//! then `FERRY__<SECTION>__<KEY>` environment variables. Every field has a default, so
//! `ferry serve` with nothing set runs the embedded single-instance setup.

use std::path::PathBuf;

use serde::Deserialize;

use crate::domain::ChunkPolicy;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

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
    /// The operator's services ferry asks before it acts.
    pub hooks: HookSettings,
    /// Logging.
    pub telemetry: TelemetrySettings,
    /// Webhooks and the event stream.
    pub events: EventSettings,
    /// The processing stage after completion.
    pub processing: ProcessingSettings,
    /// Direct transfers: clients PUT parts to the store itself on signed URLs.
    pub direct: DirectSettings,
}

/// Direct transfers (`"transfer": "direct"`): the client PUTs each part to a signed URL
/// (the S3 bucket's, presigned; ferry's own on the filesystem) and confirms at the end.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectSettings {
    /// Most part URLs in one answer (creation, `POST /v1/uploads/{id}/parts`).
    pub batch_size: u32,
    /// A file up to this many bytes is one plain PutObject (one URL); a larger one is a
    /// multipart upload. At most 5 GiB (S3's largest PutObject).
    pub single_part_max: u64,
    /// How long a part URL stays valid, in seconds (1 to 604800, S3's limit).
    pub url_ttl_secs: u64,
}

impl Default for DirectSettings {
    fn default() -> Self {
        Self { batch_size: 500, single_part_max: 10 * MIB, url_ttl_secs: 900 }
    }
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
    /// bodies are cut into, and that chunks smaller than it are grouped into (as many
    /// whole chunks as fill it); only an upload's last part is shorter. At least 5 MiB (S3's
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
    /// Smallest chunk size a client may ask for (256 KiB: clients on bad links send small
    /// chunks). With S3, chunks under `storage.s3.part_size` are grouped into parts.
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
            min_chunk_size: 256 * KIB,
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
    /// Keys of the app's processors, which report on completed uploads
    /// (`POST /v1/uploads/{id}/processing`); no other credential may.
    pub processor_keys: Vec<String>,
}

/// The processing stage: the app's own work on a completed upload, reported by its
/// processors and shown in status.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessingSettings {
    /// Whether uploads created from now on go through it: completed, they stand at
    /// `processing` (`queued`) until a processor reports `done` or `failed`. Needs
    /// `auth.processor_keys`.
    pub enabled: bool,
}

/// The operator's services ferry asks before it acts.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HookSettings {
    /// An `http://` or `https://` URL that ferry POSTs every upload creation to, by any
    /// protocol, before anything is stored: 2xx creates (its JSON may replace the
    /// metadata), 4xx refuses (403 `rejected-by-hook`), anything else or no answer in
    /// time refuses with 503 `hook-unavailable`. Redirects are not followed. Unset: no hook.
    pub pre_create: Option<String>,
    /// How long ferry waits for a hook's whole answer, in seconds; at least 1.
    pub timeout_secs: u64,
}

impl Default for HookSettings {
    fn default() -> Self {
        Self { pre_create: None, timeout_secs: 5 }
    }
}

impl HookSettings {
    /// `pre_create` as a URL, if set; an error names what is wrong with it.
    pub fn pre_create_url(&self) -> Result<Option<reqwest::Url>, String> {
        let Some(raw) = &self.pre_create else { return Ok(None) };
        let bad = |why: &str| format!("hooks.pre_create {raw:?} {why} (unset it to turn the hook off)");
        let url = reqwest::Url::parse(raw).map_err(|e| bad(&format!("is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
            return Err(bad("is not an http:// or https:// URL with a host"));
        }
        Ok(Some(url))
    }
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

mod events;
mod load;

pub use events::{EventSettings, WebhookSettings};
pub use load::SettingsError;

#[cfg(test)]
mod tests;
