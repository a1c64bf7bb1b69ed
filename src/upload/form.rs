//! Single-request uploads (`multipart/form-data`): the file streams into one object,
//! then a `completed` session records it.

use super::{check_metadata, UploadError, UploadService, UploadStatus};
use crate::domain::{ChunkPlan, Metadata, ObjectKey, UploadId, UploadState};
use crate::storage::{ByteStream, ObjectAttributes, StoredObject};

/// A form file stored but not yet recorded; hand it to `register_form_upload` or
/// `discard_form_file`.
#[derive(Debug)]
pub struct FormFile {
    id: UploadId,
    key: ObjectKey,
    filename: String,
    content_type: Option<String>,
    object: StoredObject,
}

impl UploadService {
    /// Streams a form's file into storage, refusing it past `uploads.max_file_size`.
    #[tracing::instrument(name = "Store a form upload", skip_all, fields(upload_id))]
    pub async fn store_form_file(
        &self,
        filename: &str,
        content_type: Option<String>,
        body: ByteStream<'_>,
    ) -> Result<FormFile, UploadError> {
        self.check_name_and_type(filename, content_type.as_deref())?;
        let id = UploadId::new();
        tracing::Span::current().record("upload_id", tracing::field::display(id));
        let key = ObjectKey::new(&id, filename);
        // The form's text fields may come after the file: only the content type goes along.
        let attributes = ObjectAttributes { content_type: content_type.clone(), ..ObjectAttributes::default() };
        let object = self.storage.put_object(&key, body, self.policy.chunks.max_file_size, &attributes).await?;
        self.metrics.bytes_received.inc_by(object.size);
        Ok(FormFile { id, key, filename: filename.to_owned(), content_type, object })
    }

    /// Records a stored form file as a `completed` upload with `metadata`.
    pub async fn register_form_upload(&self, file: FormFile, metadata: Metadata) -> Result<UploadStatus, UploadError> {
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
        if let Err(err) = self.sessions.insert(&record).await {
            self.discard_form_file(file).await;
            return Err(err.into());
        }
        self.metrics.uploads_created.inc();
        self.metrics.uploads_completed.inc();
        Ok(UploadStatus { record, missing_chunks: Vec::new() })
    }

    /// Deletes a stored form file that will not be recorded.
    pub async fn discard_form_file(&self, file: FormFile) {
        if let Err(err) = self.storage.delete_object(&file.key).await {
            tracing::warn!(upload_id = %file.id, error = %crate::error::chain(&err), "could not delete a form file");
        }
    }
}
