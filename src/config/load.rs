//! Loading settings (defaults, then a file, then `FERRY__…` variables) and checking that
//! they can work together.

use std::path::Path;

use super::*;

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
            .with_list_parse_key("auth.processor_keys")
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
        if let Some(problem) = self.events.problem() {
            return fail(problem);
        }
        if self.processing.enabled && self.auth.processor_keys.iter().all(|k| k.trim().is_empty()) {
            return fail("processing.enabled needs auth.processor_keys: processors report with one of them".into());
        }
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
        let d = &self.direct;
        if d.batch_size == 0 || !(1..=604_800).contains(&d.url_ttl_secs) || d.single_part_max > S3_MAX_PART_SIZE {
            return fail(format!(
                "direct.batch_size must be positive, direct.url_ttl_secs between 1 and 604800, and \
                 direct.single_part_max at most {S3_MAX_PART_SIZE}"
            ));
        }
        if self.hooks.timeout_secs == 0 {
            return fail("hooks.timeout_secs must be at least 1".into());
        }
        self.hooks.pre_create_url().map_err(SettingsError::Invalid)?;
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
