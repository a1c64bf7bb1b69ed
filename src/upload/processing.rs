//! The processing stage: the app's processors report on completed uploads.

use super::{UploadError, UploadService, UploadStatus};
use crate::domain::{ProcessingReport, UploadId};
use crate::session::ProcessOutcome;

impl UploadService {
    /// Applies a processor's report to a completed upload; its status after the change.
    #[tracing::instrument(name = "Report on an upload's processing", skip_all, fields(upload_id = %id))]
    pub async fn process(&self, id: &UploadId, report: ProcessingReport) -> Result<UploadStatus, UploadError> {
        report.check().map_err(UploadError::InvalidRequest)?;
        match self.sessions.process(id, &report, self.clock.now(), self.policy.ttl).await? {
            ProcessOutcome::Updated(record) => {
                Ok(UploadStatus { record: *record, missing_chunks: Vec::new(), missing_parts: None })
            }
            ProcessOutcome::Refused(refusal) => Err(UploadError::InvalidTransition(refusal)),
            ProcessOutcome::NotFound => Err(UploadError::NotFound),
        }
    }
}
