//! Single-request uploads (`multipart/form-data`): the file streams into one object,
//! then a `completed` session records it. With a pre-create hook, the hook approves the
//! text fields that came before the file, so none may come after it.

use super::crc::CrcTap;
use super::{check_metadata, seconds_between, Caller, UploadError, UploadService, UploadStatus};
use crate::domain::{ChunkPlan, Crc64, Metadata, ObjectKey, Timestamp, UploadId, UploadState};
use crate::storage::{ByteStream, ObjectAttributes, StoredObject};

/// What a form says before its file's bytes: what the pre-create hook is asked about.
#[derive(Debug, Clone)]
pub struct NewFormFile {
    /// The file's name.
    pub filename: String,
    /// Its content type.
    pub content_type: Option<String>,
    /// The text fields that came before the file.
    pub metadata: Metadata,
    /// Who asks, and how (for the pre-create hook).
    pub caller: Caller,
}

/// A form file stored but not yet recorded; hand it to `register_form_upload` or
/// `discard_form_file`.
#[derive(Debug)]
pub struct FormFile {
    id: UploadId,
    key: ObjectKey,
    filename: String,
    content_type: Option<String>,
    object: StoredObject,
    /// The object's CRC-64/NVME.
    checksum: Option<Crc64>,
    /// The text fields before the file, or the hook's replacement for them.
    metadata: Metadata,
    /// Whether a pre-create hook approved the file and `metadata`.
    approved_by_hook: bool,
    /// When its bytes began to arrive: the upload's start, for its duration.
    started_at: Timestamp,
}

impl UploadService {
    /// Streams a form's file into storage, refusing it past `uploads.max_file_size`, once
    /// the pre-create hook (if any) has approved it.
    #[tracing::instrument(name = "Store a form upload", skip_all, fields(upload_id))]
    pub async fn store_form_file(&self, new: NewFormFile, body: ByteStream<'_>) -> Result<FormFile, UploadError> {
        self.check_name_and_type(&new.filename, new.content_type.as_deref())?;
        check_metadata(&new.metadata)?;
        let new = NewFormFile { metadata: self.approve(&new).await?.unwrap_or(new.metadata), ..new };
        let id = UploadId::new();
        tracing::Span::current().record("upload_id", tracing::field::display(id));
        let key = ObjectKey::new(&id, &new.filename);
        let started_at = self.clock.now();
        // The form's text fields may come after the file: only the content type goes along.
        let attributes = ObjectAttributes { content_type: new.content_type.clone(), ..ObjectAttributes::default() };
        let crc = CrcTap::default();
        let object =
            self.storage.put_object(&key, crc.tap(body), self.policy.chunks.max_file_size, &attributes).await?;
        self.metrics.bytes_received.inc_by(object.size);
        let approved_by_hook = self.hook.is_some();
        let NewFormFile { filename, content_type, metadata, .. } = new;
        let checksum = crc.crc_of(object.size);
        Ok(FormFile { id, key, filename, content_type, object, checksum, metadata, approved_by_hook, started_at })
    }

    /// Records a stored form file as a `completed` upload, with the text fields that came
    /// before the file and `later`, those after it (refused when a hook approved the file:
    /// it has not seen them).
    pub async fn register_form_upload(&self, mut file: FormFile, later: Metadata) -> Result<UploadStatus, UploadError> {
        if file.approved_by_hook && !later.is_empty() {
            self.discard_form_file(file).await;
            return Err(UploadError::InvalidRequest(
                "text fields must come before the file: the server's approval hook has seen only those".into(),
            ));
        }
        let mut metadata = std::mem::take(&mut file.metadata);
        metadata.extend(later);
        if let Err(err) = check_metadata(&metadata) {
            self.discard_form_file(file).await;
            return Err(err);
        }
        let plan = ChunkPlan::new(file.object.size, None, &self.policy.chunks)?;
        let now = self.clock.now();
        let mut record =
            self.new_record(file.id, file.key.clone(), &file.filename, file.content_type.clone(), metadata, plan, now);
        record.state = UploadState::Completed;
        record.received_chunks = plan.total_chunks();
        record.bytes_received = plan.size();
        record.etag = Some(file.object.etag.clone());
        record.checksum = file.checksum;
        if let Err(err) = self.sessions.insert(&record).await {
            self.discard_form_file(file).await;
            return Err(err.into());
        }
        self.metrics.uploads_created.inc();
        self.metrics.upload_completed(seconds_between(file.started_at, now), file.object.size);
        Ok(UploadStatus { record, missing_chunks: Vec::new(), missing_parts: None })
    }

    /// Deletes a stored form file that will not be recorded.
    pub async fn discard_form_file(&self, file: FormFile) {
        if let Err(err) = self.storage.delete_object(&file.key).await {
            tracing::warn!(upload_id = %file.id, error = %crate::error::chain(&err), "could not delete a form file");
        }
    }
}
