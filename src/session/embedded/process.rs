//! The embedded store's processing step: the stage moves and its event is recorded in one
//! write transaction.

use chrono::Duration;

use super::EmbeddedSessionStore;
use crate::domain::{ProcessingReport, Timestamp, UploadId};
use crate::session::{ProcessOutcome, SessionError};

impl EmbeddedSessionStore {
    pub(super) async fn apply_report(
        &self,
        id: &UploadId,
        report: &ProcessingReport,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<ProcessOutcome, SessionError> {
        let id = id.to_string();
        let report = report.clone();
        self.write(move |t| {
            let Some(mut record) = t.load_live(&id, now)? else {
                return Ok(ProcessOutcome::NotFound);
            };
            let old_due = record.due_at();
            match record.process(&report, now, ttl) {
                Ok(kind) => {
                    t.emit(&mut record, kind, now)?;
                    t.save(&record, Some(old_due))?;
                    Ok(ProcessOutcome::Updated(Box::new(record)))
                }
                Err(refusal) => Ok(ProcessOutcome::Refused(refusal)),
            }
        })
        .await
    }
}
