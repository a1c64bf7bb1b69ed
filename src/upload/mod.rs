//! `UploadService`: the one place that combines the session store and the object store.
//! It owns the rules: chunk planning, the state machine (`uploading -> completing ->
//! completed | failed`, and `canceled`), who assembles an object, and what expiry cleans.
//! Before it creates an upload, it asks the operator's pre-create hook, if one is set.
//! Handlers call it; it never sees their HTTP.

mod append;
mod chunk;
mod complete;
mod concat;
mod crc;
mod direct;
mod error;
mod form;
mod hooks;
mod processing;
mod sweep;

use std::sync::Arc;

use chrono::Duration;

use crate::domain::{
    ChunkPlan, ChunkPolicy, Clock, Crc64, Md5Digest, Metadata, ObjectKey, Processing, Timestamp, UploadId,
    UploadRecord, UploadState,
};
use crate::metrics::Metrics;
use crate::session::{CancelOutcome, SessionStore};
use crate::storage::{ObjectAttributes, ObjectStore, StagedUpload};

pub use crate::domain::Transfer;
pub use append::{AppendRequest, Appended, NewAppendUpload};
pub use chunk::ChunkAccepted;
pub use concat::{NewFinalUpload, MAX_PARTIALS};
pub use direct::{DirectPolicy, ListedByClient, PartTarget, PartUrl};
pub use error::UploadError;
pub use form::{FormFile, NewFormFile};
pub use hooks::{Caller, HookError, HookRequest, PreCreateHook, Protocol};

/// Largest metadata accepted, as JSON bytes.
pub const MAX_METADATA_BYTES: usize = 4096;
/// Longest file name accepted, in bytes (the storage key keeps at most 255 of them).
pub const MAX_FILENAME_BYTES: usize = 4096;

/// The rules the service applies, from `uploads.*`.
#[derive(Debug, Clone)]
pub struct UploadPolicy {
    /// Chunk and file size limits.
    pub chunks: ChunkPolicy,
    /// Idle time before an upload expires; also how long finished uploads are remembered.
    pub ttl: Duration,
    /// How long a claim to assemble an object lasts unless its heartbeat renews it.
    pub lease: Duration,
    /// How often the sweeper runs; a record it cannot handle waits a few of these.
    pub sweep_interval: Duration,
    /// Accepted content types; empty accepts any.
    pub allowed_content_types: Vec<String>,
    /// Whether chunks must carry an MD5.
    pub require_chunk_md5: bool,
    /// Whether completed uploads go through the processing stage (`processing.enabled`).
    pub processing: bool,
    /// The rules of direct transfers.
    pub direct: DirectPolicy,
}

/// What a client asks for when it opens an upload.
#[derive(Debug, Clone)]
pub struct NewUpload {
    /// The file's name.
    pub filename: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its content type.
    pub content_type: Option<String>,
    /// The chunk size it wants, if any.
    pub chunk_size: Option<u64>,
    /// Its metadata.
    pub metadata: Metadata,
    /// Who asks, and how (for the pre-create hook).
    pub caller: Caller,
    /// The CRC-64/NVME of the whole file, if the client declares it: an object whose
    /// bytes differ is not made.
    pub checksum: Option<Crc64>,
}

/// An upload as status and resume report it.
#[derive(Debug, Clone)]
pub struct UploadStatus {
    /// The record.
    pub record: UploadRecord,
    /// Indices of the chunks still to send, in order.
    pub missing_chunks: Vec<u32>,
    /// A direct upload taking parts: the numbers (from 1) of those its store does not hold.
    pub missing_parts: Option<Vec<u32>>,
}

/// Opens uploads, takes chunks, assembles, cancels and expires them. Cloning is cheap
/// and shares everything: a completion job takes a clone along.
#[derive(Clone)]
pub struct UploadService {
    sessions: Arc<dyn SessionStore>,
    storage: Arc<dyn ObjectStore>,
    policy: Arc<UploadPolicy>,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    hook: Option<PreCreateHook>,
}

impl UploadService {
    /// A service over these stores.
    pub fn new(
        sessions: Arc<dyn SessionStore>,
        storage: Arc<dyn ObjectStore>,
        policy: UploadPolicy,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
    ) -> Self {
        Self { sessions, storage, policy: Arc::new(policy), clock, metrics, hook: None }
    }

    /// The same service, asking `hook` before it creates any upload.
    pub fn with_pre_create_hook(mut self, hook: PreCreateHook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// Opens an upload. An empty file is stored at once and comes back `completed`.
    #[tracing::instrument(name = "Open an upload", skip_all, fields(upload_id, size = new.size))]
    pub async fn init(&self, new: NewUpload) -> Result<UploadRecord, UploadError> {
        self.check_name_and_type(&new.filename, new.content_type.as_deref())?;
        check_metadata(&new.metadata)?;
        let transfer = new.caller.transfer;
        let plan = match transfer {
            Transfer::Relay => ChunkPlan::new(new.size, new.chunk_size, &self.policy.chunks)?,
            Transfer::Direct => self.direct_plan(&new)?,
        };
        if new.size == 0 && new.checksum.is_some_and(|crc| crc != Crc64::EMPTY) {
            return Err(UploadError::InvalidRequest(format!(
                "checksum.crc64nvme of an empty file is {}",
                Crc64::EMPTY
            )));
        }
        let new = NewUpload { metadata: self.approve(&new).await?.unwrap_or(new.metadata), ..new };
        let id = UploadId::new();
        tracing::Span::current().record("upload_id", tracing::field::display(id));
        let key = ObjectKey::new(&id, &new.filename);
        let mut record =
            self.new_record(id, key, &new.filename, new.content_type, new.metadata, plan, self.clock.now());
        record.transfer = transfer;
        // A direct upload's chunks are the store's parts, whatever their size.
        if transfer == Transfer::Relay {
            record.part_chunks = self.storage.chunks_per_part(plan.chunk_size());
        }
        record.declared_checksum = new.checksum;
        self.open(record).await
    }

    /// Asks the pre-create hook, when one is set, whether `request` may be created: after
    /// ferry's own checks, before anything is stored. `Some` replaces the client's metadata.
    async fn approve<'a>(&self, request: impl Into<HookRequest<'a>>) -> Result<Option<Metadata>, UploadError> {
        match &self.hook {
            Some(hook) => hook.approve(request.into()).await,
            None => Ok(None),
        }
    }

    /// Prepares storage for a new record and stores it: an empty file is stored at once
    /// and the upload is `completed` (an empty partial upload has no bytes to keep).
    async fn open(&self, mut record: UploadRecord) -> Result<UploadRecord, UploadError> {
        let attributes = ObjectAttributes::from(&record);
        if record.size() == Some(0) {
            let etag = if record.is_partial() {
                Md5Digest::of(b"").hex()
            } else {
                let empty = Box::pin(futures_util::stream::empty());
                self.storage.put_object(&record.key, empty, 0, &attributes).await?.etag
            };
            record.state = UploadState::Completed;
            record.etag = Some(etag);
            record.checksum = Some(Crc64::EMPTY);
        } else if self.needs_multipart(&record) {
            record.storage_upload_id = self.storage.create_multipart(&StagedUpload::from(&record), &attributes).await?;
        }
        if let Err(err) = self.sessions.insert(&record).await {
            self.discard(&record, true).await;
            return Err(err.into());
        }
        self.metrics.uploads_created.inc();
        if record.state == UploadState::Completed {
            // Empty: complete the moment it is created.
            self.metrics.upload_completed(0.0, 0);
        }
        Ok(record)
    }

    /// The upload's status; finishes an assembly left `completing` by a passing failure.
    #[tracing::instrument(name = "Read an upload's status", skip_all, fields(upload_id = %id))]
    pub async fn status(&self, id: &UploadId) -> Result<UploadStatus, UploadError> {
        let record = self.live(id).await?;
        self.report(record).await
    }

    /// Extends the upload's expiry, finishes a pending assembly, and reports its status.
    #[tracing::instrument(name = "Resume an upload", skip_all, fields(upload_id = %id))]
    pub async fn resume(&self, id: &UploadId) -> Result<UploadStatus, UploadError> {
        self.live(id).await?;
        let record = self.sessions.touch(id, self.clock.now(), self.policy.ttl).await?.ok_or(UploadError::NotFound)?;
        self.report(record).await
    }

    /// Cancels the upload: its session becomes a tombstone and its stored bytes go.
    #[tracing::instrument(name = "Cancel an upload", skip_all, fields(upload_id = %id))]
    pub async fn cancel(&self, id: &UploadId) -> Result<(), UploadError> {
        match self.sessions.cancel(id, self.clock.now(), self.policy.ttl).await? {
            CancelOutcome::Canceled(before) => {
                self.discard(&before, before.state == UploadState::Completing).await;
                self.metrics.uploads_canceled.inc();
                Ok(())
            }
            CancelOutcome::Refused(state) => Err(UploadError::WrongState(state)),
            CancelOutcome::NotFound => Err(UploadError::NotFound),
        }
    }

    /// Checks that both stores answer.
    pub async fn ready(&self) -> Result<(), UploadError> {
        self.sessions.ping().await?;
        self.storage.check().await?;
        Ok(())
    }

    /// Sets the `staging_bytes` gauge to what the storage holds on this machine's disk
    /// now, if it holds anything here (the filesystem store); a failed measure is logged
    /// and leaves the gauge as it was.
    pub async fn measure_staging(&self) {
        match self.storage.staged_bytes().await {
            Ok(Some(bytes)) => self.metrics.staging_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX)),
            Ok(None) => {}
            Err(err) => tracing::warn!(error = %crate::error::chain(&err), "could not measure the staging folder"),
        }
    }

    /// The record of an upload that exists, has not expired and is not canceled.
    async fn live(&self, id: &UploadId) -> Result<UploadRecord, UploadError> {
        let record = self.sessions.get(id).await?.ok_or(UploadError::NotFound)?;
        if record.is_expired(self.clock.now()) {
            return Err(UploadError::NotFound);
        }
        if record.state == UploadState::Canceled {
            return Err(UploadError::WrongState(UploadState::Canceled));
        }
        Ok(record)
    }

    /// Finishes a pending assembly if nobody else is on it, then lists what is missing.
    async fn report(&self, mut record: UploadRecord) -> Result<UploadStatus, UploadError> {
        if record.is_claimable(self.clock.now()) && !record.awaits_confirmation() {
            if let Some(claim) = self.sessions.claim(&record.id, self.clock.now(), self.policy.lease).await? {
                self.complete(record.clone(), claim).await;
            }
            record = self.sessions.get(&record.id).await?.ok_or(UploadError::NotFound)?;
        }
        let missing_parts = match record.awaits_confirmation() {
            true => Some(self.direct_missing(&record).await?),
            false => None,
        };
        let missing_chunks = if record.state == UploadState::Uploading && missing_parts.is_none() {
            let parts = self.sessions.parts(&record.id).await?;
            record.plan.missing(parts.iter().map(|(i, _)| i.0))
        } else {
            Vec::new()
        };
        Ok(UploadStatus { record, missing_chunks, missing_parts })
    }

    /// Removes whatever storage holds for an upload that will not complete, and the
    /// object too when `with_object` (an assembly whose claimer died may have finished it
    /// without recording so). Failures are logged, not returned: the sweeper tries again
    /// when the record expires.
    async fn discard(&self, record: &UploadRecord, with_object: bool) {
        if let Err(err) = self.storage.abort(&StagedUpload::from(record)).await {
            tracing::warn!(upload_id = %record.id, error = %crate::error::chain(&err), "could not drop stored chunks");
        }
        // A direct upload's client may have PUT the whole object at its key already.
        if with_object || self.is_single_object(record) {
            if let Err(err) = self.storage.delete_object(&record.key).await {
                tracing::warn!(upload_id = %record.id, error = %crate::error::chain(&err), "could not delete a stray object");
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn new_record(
        &self,
        id: UploadId,
        key: ObjectKey,
        filename: &str,
        content_type: Option<String>,
        metadata: Metadata,
        plan: ChunkPlan,
        now: Timestamp,
    ) -> UploadRecord {
        UploadRecord {
            id,
            key,
            filename: filename.to_owned(),
            content_type,
            metadata,
            plan,
            state: UploadState::Uploading,
            storage_upload_id: None,
            received_chunks: 0,
            bytes_received: 0,
            fence: 0,
            claim: None,
            etag: None,
            error: None,
            created_at: now,
            updated_at: now,
            expires_at: now + self.policy.ttl,
            append: None,
            part_chunks: 1,
            progress_at: None,
            concat: None,
            processing: self.policy.processing.then(Processing::queued),
            declared_checksum: None,
            checksum: None,
            transfer: Transfer::Relay,
        }
    }

    fn check_name_and_type(&self, filename: &str, content_type: Option<&str>) -> Result<(), UploadError> {
        check_name(filename)?;
        let allowed = &self.policy.allowed_content_types;
        if allowed.is_empty() {
            return Ok(());
        }
        let essence = content_type.map(|c| c.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
        match essence {
            Some(e) if allowed.iter().any(|a| a.trim().eq_ignore_ascii_case(&e)) => Ok(()),
            _ => Err(UploadError::UnsupportedContentType(content_type.unwrap_or("none").to_owned())),
        }
    }
}

/// Seconds from `from` to `to` (for the metrics; never negative).
fn seconds_between(from: Timestamp, to: Timestamp) -> f64 {
    ((to - from).num_milliseconds() as f64 / 1000.0).max(0.0)
}

fn check_name(filename: &str) -> Result<(), UploadError> {
    if filename.trim().is_empty() {
        return Err(UploadError::InvalidRequest("filename must not be empty".into()));
    }
    if filename.len() > MAX_FILENAME_BYTES {
        return Err(UploadError::InvalidRequest(format!("filename must be at most {MAX_FILENAME_BYTES} bytes")));
    }
    Ok(())
}

fn check_metadata(metadata: &Metadata) -> Result<(), UploadError> {
    let bytes = serde_json::to_vec(metadata).map(|v| v.len()).unwrap_or(usize::MAX);
    if bytes > MAX_METADATA_BYTES {
        return Err(UploadError::InvalidRequest(format!(
            "metadata must be at most {MAX_METADATA_BYTES} bytes as JSON"
        )));
    }
    Ok(())
}
