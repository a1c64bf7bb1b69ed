//! The sweeper: every instance looks at the uploads that are due (the session store's due
//! index) and does what each needs. An upload left `completing` by a claimer that is gone
//! is finished, never deleted. An idle upload past its expiry becomes a tombstone first
//! (under a new fence, so no late claimer can finish it), then its stored bytes go, then
//! its record: a record never says `completed` with nothing behind it, and bytes are never
//! left without a record that leads to them. A step that fails for one upload waits a few
//! sweeps for that upload alone; the others go on.

use std::time::Duration;

use super::{UploadError, UploadService};
use crate::domain::{Timestamp, UploadId, UploadState};
use crate::session::Retired;
use crate::storage::StagedUpload;

/// Due entries handled per store query.
const BATCH: usize = 100;
/// Most queries per sweep: entries that cannot move (a store refusing every write) must
/// not keep one sweep going for ever.
const MAX_BATCHES: usize = 20;
/// Sweeps a failed upload waits before it is tried again.
const BACKOFF_SWEEPS: i32 = 5;

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Uploads removed (expired, or final and past their time).
    pub removed: usize,
    /// Completion jobs taken over from claimers that were gone.
    pub adopted: usize,
    /// Uploads whose step failed; each is tried again a few sweeps later.
    pub failed: usize,
}

/// What the sweep did for one upload.
enum Step {
    /// Nothing to do yet (its entry moved to when there will be).
    Waited,
    /// Removed with its stored bytes.
    Removed,
    /// Its completion job was started.
    Adopted,
}

impl UploadService {
    /// Handles every upload due now. Safe to run on every instance at once: each step
    /// is atomic in the session store, and cleaning storage is idempotent.
    pub async fn sweep_once(&self) -> Result<Sweep, UploadError> {
        let now = self.clock.now();
        let mut sweep = Sweep::default();
        for _ in 0..MAX_BATCHES {
            let due = self.sessions.due(now, BATCH).await?;
            for (id, at) in &due {
                match self.sweep_one(id, *at, now).await {
                    Ok(Step::Removed) => sweep.removed += 1,
                    Ok(Step::Adopted) => sweep.adopted += 1,
                    Ok(Step::Waited) => {}
                    Err(err) => {
                        sweep.failed += 1;
                        self.metrics.sweep_failures.inc();
                        tracing::warn!(upload_id = %id, error = %crate::error::chain(&err), "sweep step failed; retrying later");
                        let later = now + self.policy.sweep_interval * BACKOFF_SWEEPS;
                        if let Err(err) = self.sessions.reschedule(id, *at, Some(later)).await {
                            tracing::warn!(upload_id = %id, error = %crate::error::chain(&err), "could not reschedule");
                        }
                    }
                }
            }
            if due.len() < BATCH {
                break;
            }
        }
        Ok(sweep)
    }

    /// The sweep's step for one upload indexed at `at`.
    async fn sweep_one(&self, id: &UploadId, at: Timestamp, now: Timestamp) -> Result<Step, UploadError> {
        match self.sessions.retire(id, now).await? {
            Retired::NotFound => {
                self.sessions.reschedule(id, at, None).await?;
                Ok(Step::Waited)
            }
            Retired::NotDue(due) => {
                self.sessions.reschedule(id, at, Some(due)).await?;
                Ok(Step::Waited)
            }
            Retired::Unfinished => {
                let Some(record) = self.sessions.get(id).await? else { return Ok(Step::Waited) };
                Ok(if self.adopt(&record).await? { Step::Adopted } else { Step::Waited })
            }
            Retired::Retired(record) => {
                if record.state == UploadState::Uploading {
                    // It has just become a tombstone: this sweep is the one that expired it.
                    self.metrics.uploads_expired.inc();
                    tracing::info!(upload_id = %id, "idle upload expired");
                }
                // Storage first: if this fails, the tombstone stays and a later sweep retries.
                self.storage.abort(&StagedUpload::from(&*record)).await?;
                if record.state != UploadState::Completed && self.is_single_object(&record) {
                    // Its client may have PUT the object, never confirmed.
                    self.storage.delete_object(&record.key).await?;
                }
                Ok(match self.sessions.remove_expired(id, now).await? {
                    Some(_) => Step::Removed,
                    None => Step::Waited,
                })
            }
        }
    }

    /// Sweeps every `interval`, for ever; errors are logged and the next tick retries.
    pub async fn run_sweeper(&self, interval: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match self.sweep_once().await {
                Ok(sweep) if sweep != Sweep::default() => tracing::debug!(?sweep, "swept"),
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %crate::error::chain(&err), "sweep failed; retrying next tick"),
            }
        }
    }
}
