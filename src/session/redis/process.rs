//! The Redis store's processing step. The rules live in the domain
//! ([`UploadRecord::process`]); the script only swaps the stage in if it is still the one
//! the rules were applied to, and records the event in the same step. A processor whose
//! report crossed another's reads again.

use std::collections::HashMap;

use chrono::Duration;

use super::fields::{from_fields, ms, pairs, processing_field};
use super::wire::{margin, tagged};
use super::RedisSessionStore;
use crate::domain::{ProcessingReport, Timestamp, UploadId};
use crate::session::{ProcessOutcome, SessionError};

/// Reads and swaps tried before giving up on a stage that keeps changing under us.
const TRIES: usize = 16;

impl RedisSessionStore {
    pub(super) async fn apply_report(
        &self,
        id: &UploadId,
        report: &ProcessingReport,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<ProcessOutcome, SessionError> {
        for _ in 0..TRIES {
            let mut pipe = redis::pipe();
            pipe.hgetall(self.upload_key(id));
            let (fields,): (HashMap<String, String>,) = self.query(&pipe).await?;
            if fields.is_empty() {
                return Ok(ProcessOutcome::NotFound);
            }
            let mut record = from_fields(&fields)?;
            if record.is_expired(now) {
                return Ok(ProcessOutcome::NotFound);
            }
            let read = fields.get("processing").cloned().unwrap_or_default();
            let kind = match record.process(report, now, ttl) {
                Ok(kind) => kind,
                Err(refusal) => return Ok(ProcessOutcome::Refused(refusal)),
            };
            let stage = record.processing.as_ref().map(processing_field).transpose()?.unwrap_or_default();
            let args = [
                ms(now).to_string(),
                read,
                stage,
                kind.as_str().to_owned(),
                ms(record.expires_at).to_string(),
                margin(),
            ];
            let reply: Vec<String> = self.run(&self.scripts.process, id, &args, None, Some(now)).await?;
            match tagged(&reply) {
                ("ok", after) => return Ok(ProcessOutcome::Updated(Box::new(from_fields(&pairs(after))?))),
                ("changed", _) => continue,
                _ => return Ok(ProcessOutcome::NotFound),
            }
        }
        Err(SessionError::Unavailable("the upload's processing stage kept changing while it was updated".into()))
    }
}
