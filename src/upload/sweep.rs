//! Expiry: a background sweep removes uploads idle past their TTL, with their stored bytes.

use std::time::Duration;

use super::{UploadError, UploadService};
use crate::domain::UploadState;
use crate::storage::StagedUpload;

/// Expired uploads handled per store query.
const BATCH: usize = 100;

impl UploadService {
    /// Removes every upload expired now: drops its stored chunks (a finished object
    /// stays), then its session. Returns how many were removed. Safe to run on every
    /// instance at once: each upload is removed by exactly one.
    pub async fn sweep_once(&self) -> Result<usize, UploadError> {
        let now = self.clock.now();
        let mut removed = 0;
        loop {
            let due = self.sessions.expired(now, BATCH).await?;
            let mut progressed = false;
            for id in &due {
                let Some(record) = self.sessions.get(id).await? else {
                    // An index entry without a record: let the store drop it.
                    self.sessions.remove_expired(id, now).await?;
                    continue;
                };
                if !record.is_expired(now) || record.has_live_claim(now) {
                    continue;
                }
                // Storage first: if this fails, the record stays and the next sweep retries.
                if let Err(err) = self.storage.abort(&StagedUpload::from(&record)).await {
                    tracing::warn!(upload_id = %id, error = %crate::error::chain(&err), "could not clean an expired upload");
                    continue;
                }
                // An assembler that died may have finished the object without recording it.
                if record.state == UploadState::Completing {
                    if let Err(err) = self.storage.delete_object(&record.key).await {
                        tracing::warn!(upload_id = %id, error = %crate::error::chain(&err), "could not clean an expired upload");
                        continue;
                    }
                }
                if let Some(gone) = self.sessions.remove_expired(id, now).await? {
                    removed += 1;
                    progressed = true;
                    if matches!(gone.state, UploadState::Uploading | UploadState::Completing) {
                        self.metrics.uploads_expired.inc();
                        tracing::info!(upload_id = %id, "expired upload removed");
                    }
                }
            }
            if due.len() < BATCH || !progressed {
                return Ok(removed);
            }
        }
    }

    /// Sweeps every `interval`, for ever; errors are logged and the next tick retries.
    pub async fn run_sweeper(&self, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(err) = self.sweep_once().await {
                tracing::warn!(error = %crate::error::chain(&err), "sweep failed; retrying next tick");
            }
        }
    }
}
