//! Completion: the one path every finished upload takes, whoever starts it (the request
//! that stored the last chunk, a status or resume call, a tus final upload's creation, or
//! the sweeper finding an upload whose claimer is gone). Its assembly joins the stored
//! parts, or, for a final upload, its partial uploads' bytes (see `concat`). It runs as a
//! job of its own, so a request cut short or a client that never comes back does not stop
//! it; a heartbeat renews its claim while it runs, so another instance takes over only
//! once this one has really stopped.

use std::time::Duration as StdDuration;

use super::{crc, seconds_between, UploadError, UploadService};
use crate::domain::{Claim, Transfer, UploadRecord, UploadState};
use crate::session::Finish;
use crate::storage::{StagedUpload, StorageError};

/// Shortest pause between two renewals of a claim.
const MIN_HEARTBEAT: StdDuration = StdDuration::from_millis(100);

impl UploadService {
    /// Runs the completion job of `record` under `claim` and answers the state it left
    /// the upload in. The job runs detached from the caller: dropping this future (a client
    /// that hung up) leaves the job running to its end.
    pub(super) async fn complete(&self, record: UploadRecord, claim: Claim) -> UploadState {
        let job = self.clone();
        let handle = actix_web::rt::spawn(async move { job.run_completion(record, claim.fence).await });
        // Cancelled only when the runtime itself stops: the claim then lapses and another
        // instance's sweeper finishes the job.
        handle.await.unwrap_or(UploadState::Completing)
    }

    /// Takes the claim of an upload whose claimer is gone and starts its completion job,
    /// without waiting for it. The sweeper's way in.
    pub(super) async fn adopt(&self, record: &UploadRecord) -> Result<bool, UploadError> {
        let Some(claim) = self.sessions.claim(&record.id, self.clock.now(), self.policy.lease).await? else {
            return Ok(false);
        };
        tracing::info!(upload_id = %record.id, fence = claim.fence, "finishing an upload its claimer left");
        self.metrics.completions_adopted.inc();
        let job = self.clone();
        let record = record.clone();
        actix_web::rt::spawn(async move { job.run_completion(record, claim.fence).await });
        Ok(true)
    }

    /// Assembles while the heartbeat keeps the claim; stops when the claim is lost.
    async fn run_completion(self, record: UploadRecord, fence: u64) -> UploadState {
        tokio::select! {
            state = self.assemble(&record, fence) => state,
            () = self.heartbeat(&record, fence, self.policy.lease) => {
                tracing::warn!(upload_id = %record.id, fence, "the claim was lost mid-assembly; its new holder goes on");
                match self.sessions.get(&record.id).await {
                    Ok(Some(now)) => now.state,
                    _ => UploadState::Completing,
                }
            }
        }
    }

    /// Renews the claim `fence` (a completion's, or an append's) for `lease` every third
    /// of it; returns once it is lost. A failed renewal is tried again: the claim may well
    /// still be live.
    pub(super) async fn heartbeat(&self, record: &UploadRecord, fence: u64, lease: chrono::Duration) {
        let every = (lease / 3).to_std().unwrap_or(MIN_HEARTBEAT).max(MIN_HEARTBEAT);
        loop {
            tokio::time::sleep(every).await;
            match self.sessions.renew(&record.id, fence, self.clock.now(), lease).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(err) => {
                    tracing::warn!(upload_id = %record.id, error = %crate::error::chain(&err), "could not renew a claim")
                }
            }
        }
    }

    /// Assembles the object under the claim `fence` and records the outcome. Never fails:
    /// a passing failure leaves the upload `completing` with no claim, so the next status
    /// call or sweep takes it up again.
    async fn assemble(&self, record: &UploadRecord, fence: u64) -> UploadState {
        match self.try_assemble(record, fence).await {
            Ok(state) => state,
            Err(err) => {
                tracing::warn!(upload_id = %record.id, error = %crate::error::chain(&err), "assembly left for a retry");
                UploadState::Completing
            }
        }
    }

    async fn try_assemble(&self, record: &UploadRecord, fence: u64) -> Result<UploadState, UploadError> {
        let staged = StagedUpload::from(record);
        let size = record.size().unwrap_or_default();
        let (made, checksum) = match record.partials() {
            // A final upload is made of its partials' kept bytes, not of parts of its own.
            Some(partials) => {
                (self.concatenate(&staged, partials, size).await?, record.append.as_ref().and_then(|a| a.crc64))
            }
            // The store holds a direct upload's parts: ferry never saw their bytes.
            None if record.transfer == Transfer::Direct && self.storage.direct().is_some() => {
                let parts = self.sessions.parts(&record.id).await?;
                let (made, checksum) = self.assemble_direct(record, &parts, size).await;
                match crc::mismatch(record.declared_checksum, checksum) {
                    Some(error) => (Err(StorageError::Refused(error)), checksum),
                    None => (made, checksum),
                }
            }
            None => {
                let parts = self.sessions.parts(&record.id).await?;
                // An append upload's CRC follows its offset; a chunked one's is its chunks'.
                let checksum = record.append.as_ref().map_or_else(|| crc::whole_file(&parts), |a| a.crc64);
                match crc::mismatch(record.declared_checksum, checksum) {
                    Some(error) => (Err(StorageError::Refused(error)), checksum),
                    None => (self.storage.complete(&staged, &parts, size).await, checksum),
                }
            }
        };
        let finish = match made {
            Ok(object) => Finish::Completed { etag: object.etag, checksum },
            Err(StorageError::PartsChanged(chunks)) => {
                tracing::warn!(upload_id = %record.id, ?chunks, "stored chunks changed or went missing; asking for them again");
                Finish::Reopen { chunks }
            }
            Err(StorageError::Refused(reason)) => {
                tracing::error!(upload_id = %record.id, %reason, "assembly failed for good");
                let error = match (record.partials(), crc::mismatch(record.declared_checksum, checksum)) {
                    (_, Some(mismatch)) => mismatch,
                    (Some(_), None) => "the partial uploads could not be concatenated".into(),
                    (None, None) => "the stored chunks could not be assembled".into(),
                };
                Finish::Failed { error }
            }
            Err(err) => {
                tracing::warn!(upload_id = %record.id, error = %crate::error::chain(&err), "assembly failed; will retry");
                Finish::Release
            }
        };
        let now = self.clock.now();
        if !self.sessions.finish(&record.id, fence, &finish, now, self.policy.ttl).await? {
            // The claim lapsed and someone else moved on (a cancel, another assembler).
            let current = self.sessions.get(&record.id).await?.map(|r| r.state);
            if current == Some(UploadState::Canceled) && matches!(finish, Finish::Completed { .. }) {
                self.discard(record, true).await;
            }
            return Ok(current.unwrap_or(UploadState::Canceled));
        }
        Ok(match finish {
            Finish::Completed { .. } => {
                self.metrics.upload_completed(seconds_between(record.created_at, now), size);
                UploadState::Completed
            }
            Finish::Failed { .. } => {
                // Recorded first: a failure nobody recorded must not have deleted anything.
                // An object at the key now can only be a stray of this upload's: nothing
                // leads to it any more.
                self.discard(record, true).await;
                self.metrics.uploads_failed.inc();
                UploadState::Failed
            }
            Finish::Release => UploadState::Completing,
            Finish::Reopen { .. } => UploadState::Uploading,
        })
    }
}
