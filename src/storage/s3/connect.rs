//! Building the S3 clients from the settings: addressing, checksums, timeouts, retries.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Builder as ConfigBuilder, Credentials, Region, RequestChecksumCalculation,
    ResponseChecksumValidation, StalledStreamProtectionConfig,
};
use aws_sdk_s3::Client;

use super::S3ObjectStore;
use crate::config::S3Settings;
use crate::storage::StorageError;

/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// One attempt of a call without a streaming body (a buffered part of a form body, of
/// `storage.s3.part_size` bytes, included).
const CALL_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(120);
/// A call without a streaming body, retries included.
const CALL_TIMEOUT: Duration = Duration::from_secs(300);
/// CompleteMultipartUpload: AWS may take minutes to assemble thousands of parts.
pub(super) const COMPLETE_TIMEOUT: Duration = Duration::from_secs(900);
/// The readiness check: one quick attempt; the prober asks again.
pub(super) const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// A chunk's upload fails when the store takes no bytes for this long. A slow client is
/// not a stall: the SDK only counts time when the store, not the body, holds things up.
const STALL_GRACE: Duration = Duration::from_secs(60);
/// A last bound on a chunk's upload, however live: 30 MiB at 8 KiB/s.
const UPLOAD_LIMIT: Duration = Duration::from_secs(3600);

impl S3ObjectStore {
    /// Connects to the store of `settings`, with its static keys when both are set, else
    /// with credentials from the standard AWS chain (`AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`, profiles, web identity, instance roles). Sends nothing:
    /// `check` tells whether the bucket answers.
    pub async fn new(settings: &S3Settings) -> Result<Self, StorageError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).region(Region::new(settings.region.clone()));
        match (&settings.access_key_id, &settings.secret_access_key) {
            (Some(id), Some(secret)) => {
                loader = loader.credentials_provider(Credentials::new(id, secret, None, None, "ferry-settings"));
            }
            (None, None) => {}
            _ => return Err(StorageError::Refused("an S3 access key id needs its secret, and back".into())),
        }
        Self::from_sdk_config(settings, &loader.load().await)
    }

    /// From an SDK configuration already loaded; `settings` win over it for the region
    /// and the endpoint. Fails only when no bucket is set or the part size is under S3's
    /// minimum.
    pub fn from_sdk_config(settings: &S3Settings, sdk: &SdkConfig) -> Result<Self, StorageError> {
        let bucket = settings.bucket.clone().filter(|b| !b.is_empty());
        let bucket = bucket.ok_or_else(|| StorageError::Refused("storage.s3.bucket is not set".into()))?;
        // The SDK's default CRC32 trailers (aws-chunked bodies) break several S3-compatible
        // stores; ferry checks every chunk's MD5 itself and sends Content-MD5.
        let mut base = ConfigBuilder::from(sdk)
            .region(Region::new(settings.region.clone()))
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = settings.endpoint.as_deref().filter(|e| !e.is_empty()) {
            // Most stores of our own have no wildcard DNS for bucket subdomains.
            base = base.endpoint_url(endpoint).force_path_style(true);
        }
        let calls = base
            .clone()
            .timeout_config(call_timeouts(CALL_ATTEMPT_TIMEOUT, CALL_TIMEOUT))
            .retry_config(RetryConfig::standard());
        // A chunk streams as fast as its client sends: no read or attempt timeout (they
        // run from the request's start and would cut off a slow client); the SDK's stalled
        // stream protection catches a store that stops taking bytes. No retry either: the
        // body is gone once read.
        let streams = base
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .disable_read_timeout()
                    .disable_operation_attempt_timeout()
                    .operation_timeout(UPLOAD_LIMIT)
                    .build(),
            )
            .retry_config(RetryConfig::disabled())
            .stalled_stream_protection(StalledStreamProtectionConfig::enabled().grace_period(STALL_GRACE).build());
        if settings.part_size < super::MIN_PART_SIZE {
            return Err(StorageError::Refused(format!("storage.s3.part_size {} is under 5 MiB", settings.part_size)));
        }
        let prefix = settings.prefix.trim_matches('/');
        Ok(Self {
            client: Client::from_conf(calls.build()),
            streams: Client::from_conf(streams.build()),
            bucket,
            prefix: if prefix.is_empty() { String::new() } else { format!("{prefix}/") },
            part_size: settings.part_size,
        })
    }
}

/// Timeouts of a call without a streaming body.
pub(super) fn call_timeouts(attempt: Duration, total: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(attempt)
        .operation_timeout(total)
        .build()
}
