//! The embedded session store: one redb file on local disk. Every call is one ACID write
//! or read transaction, committed durably, so records survive a restart or `kill -9`.
//! For a single instance; several instances share state through Redis instead.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Duration;
use redb::Database;

use self::outbox::{COUNTERS, OUTBOX};
use super::codec::{decode_receipt, decode_record, encode};
use super::{
    progress_due, AppendEnd, AppendProgress, AppendStart, CancelOutcome, Finish, PendingEvents, ProcessOutcome,
    RecordOutcome, Retired, SessionError, SessionStore,
};
use crate::domain::{
    ChunkIndex, Claim, EventKind, PartReceipt, ProcessingReport, Timestamp, UploadId, UploadRecord, UploadState,
};

mod append;
mod log;
mod outbox;
mod process;
mod sweep;
mod tables;

use self::tables::{Tables, EXPIRY, PARTS, UPLOADS};

/// A `SessionStore` kept in `<dir>/sessions.redb`.
#[derive(Clone)]
pub struct EmbeddedSessionStore {
    db: Arc<Database>,
}

impl EmbeddedSessionStore {
    /// Opens (or creates) the store in `dir`. Fails if another process has it open.
    pub fn open(dir: &Path) -> Result<Self, SessionError> {
        std::fs::create_dir_all(dir).map_err(SessionError::unavailable)?;
        let path = dir.join("sessions.redb");
        let db = Database::create(path).map_err(SessionError::unavailable)?;
        let txn = db.begin_write().map_err(SessionError::unavailable)?;
        txn.open_table(UPLOADS).map_err(SessionError::unavailable)?;
        txn.open_table(PARTS).map_err(SessionError::unavailable)?;
        txn.open_table(EXPIRY).map_err(SessionError::unavailable)?;
        txn.open_table(OUTBOX).map_err(SessionError::unavailable)?;
        txn.open_table(COUNTERS).map_err(SessionError::unavailable)?;
        txn.open_table(log::EVENTS).map_err(SessionError::unavailable)?;
        txn.open_table(log::CURSORS).map_err(SessionError::unavailable)?;
        txn.open_table(log::PENDING).map_err(SessionError::unavailable)?;
        txn.commit().map_err(SessionError::unavailable)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Runs `f` in one write transaction on a blocking thread and commits it.
    async fn write<T, F>(&self, f: F) -> Result<T, SessionError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tables<'_>) -> Result<T, SessionError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        run_blocking(move || {
            let txn = db.begin_write().map_err(SessionError::unavailable)?;
            let out = {
                let mut tables = Tables::open(&txn)?;
                f(&mut tables)?
            };
            txn.commit().map_err(SessionError::unavailable)?;
            Ok(out)
        })
        .await
    }

    /// The receipts of chunks `first..=last`, in index order.
    async fn parts_between(
        &self,
        id: &UploadId,
        first: u32,
        last: u32,
    ) -> Result<Vec<(ChunkIndex, PartReceipt)>, SessionError> {
        let db = Arc::clone(&self.db);
        let id = id.to_string();
        run_blocking(move || {
            let txn = db.begin_read().map_err(SessionError::unavailable)?;
            let parts = txn.open_table(PARTS).map_err(SessionError::unavailable)?;
            let range = parts.range((id.as_str(), first)..=(id.as_str(), last)).map_err(SessionError::unavailable)?;
            range
                .map(|entry| {
                    let (key, value) = entry.map_err(SessionError::unavailable)?;
                    Ok((ChunkIndex(key.value().1), decode_receipt(value.value())?))
                })
                .collect()
        })
        .await
    }
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SessionError> + Send + 'static,
) -> Result<T, SessionError> {
    tokio::task::spawn_blocking(f).await.map_err(SessionError::unavailable)?
}

#[async_trait]
impl SessionStore for EmbeddedSessionStore {
    #[tracing::instrument(name = "embedded.insert", skip_all, fields(upload_id = %record.id))]
    async fn insert(&self, record: &UploadRecord) -> Result<(), SessionError> {
        let mut record = record.clone();
        self.write(move |t| {
            if t.load(&record.id.to_string())?.is_some() {
                return Err(SessionError::AlreadyExists);
            }
            let created = record.created_at;
            t.emit(&mut record, EventKind::Created, created)?;
            if record.state == UploadState::Completed {
                t.emit(&mut record, EventKind::Completed, created)?;
            }
            t.save(&record, None)
        })
        .await
    }

    async fn get(&self, id: &UploadId) -> Result<Option<UploadRecord>, SessionError> {
        let db = Arc::clone(&self.db);
        let id = id.to_string();
        run_blocking(move || {
            let txn = db.begin_read().map_err(SessionError::unavailable)?;
            let uploads = txn.open_table(UPLOADS).map_err(SessionError::unavailable)?;
            let found = uploads.get(id.as_str()).map_err(SessionError::unavailable)?;
            found.map(|bytes| decode_record(bytes.value())).transpose()
        })
        .await
    }

    async fn parts(&self, id: &UploadId) -> Result<Vec<(ChunkIndex, PartReceipt)>, SessionError> {
        self.parts_between(id, 0, u32::MAX).await
    }

    async fn parts_in(
        &self,
        id: &UploadId,
        chunks: std::ops::Range<u32>,
    ) -> Result<Vec<(ChunkIndex, PartReceipt)>, SessionError> {
        match chunks.end.checked_sub(1).filter(|_| !chunks.is_empty()) {
            Some(last) => self.parts_between(id, chunks.start, last).await,
            None => Ok(Vec::new()),
        }
    }

    #[tracing::instrument(name = "embedded.record_part", skip_all, fields(upload_id = %id, chunk = %index))]
    async fn record_part(
        &self,
        id: &UploadId,
        index: ChunkIndex,
        receipt: &PartReceipt,
        now: Timestamp,
        ttl: Duration,
        lease: Duration,
        progress: bool,
    ) -> Result<RecordOutcome, SessionError> {
        let (id, receipt) = (id.to_string(), receipt.clone());
        self.write(move |t| {
            let Some(mut record) = t.load_live(&id, now)? else {
                return Ok(RecordOutcome::NotFound);
            };
            if record.state != UploadState::Uploading {
                return Ok(RecordOutcome::Refused(record.state));
            }
            let previous = t
                .parts
                .insert((id.as_str(), index.0), encode(&receipt)?.as_slice())
                .map_err(SessionError::unavailable)?
                .map(|old| decode_receipt(old.value()))
                .transpose()?;
            if previous.is_none() {
                record.received_chunks += 1;
                record.bytes_received += receipt.size;
            }
            let old_due = record.due_at();
            record.updated_at = now;
            record.expires_at = now + ttl;
            let claim = (previous.is_none() && !record.awaits_confirmation() && record.is_claimable(now))
                .then(|| record.take_claim(now, lease));
            if progress && progress_due(&record, now) {
                t.emit(&mut record, EventKind::Progress, now)?;
            }
            t.save(&record, Some(old_due))?;
            Ok(RecordOutcome::Recorded {
                received_chunks: record.received_chunks,
                bytes_received: record.bytes_received,
                claim,
                replaced: previous,
            })
        })
        .await
    }

    #[tracing::instrument(name = "embedded.claim", skip_all, fields(upload_id = %id))]
    async fn claim(&self, id: &UploadId, now: Timestamp, lease: Duration) -> Result<Option<Claim>, SessionError> {
        let id = id.to_string();
        self.write(move |t| {
            let Some(mut record) = t.load(&id)? else {
                return Ok(None);
            };
            if !record.is_claimable(now) {
                return Ok(None);
            }
            let old_due = record.due_at();
            let claim = record.take_claim(now, lease);
            t.save(&record, Some(old_due))?;
            Ok(Some(claim))
        })
        .await
    }

    #[tracing::instrument(name = "embedded.renew", skip_all, fields(upload_id = %id, fence))]
    async fn renew(&self, id: &UploadId, fence: u64, now: Timestamp, lease: Duration) -> Result<bool, SessionError> {
        let id = id.to_string();
        self.write(move |t| {
            let Some(mut record) = t.load(&id)? else {
                return Ok(false);
            };
            if !record.holds_claim(fence, now) && !record.holds_writer(fence, now) {
                return Ok(false);
            }
            let old_due = record.due_at();
            let until = now + lease;
            record.claim = Some(Claim { fence, until });
            record.expires_at = record.expires_at.max(until);
            t.save(&record, Some(old_due))?;
            Ok(true)
        })
        .await
    }

    #[tracing::instrument(name = "embedded.finish", skip_all, fields(upload_id = %id, fence))]
    async fn finish(
        &self,
        id: &UploadId,
        fence: u64,
        outcome: &Finish,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<bool, SessionError> {
        let (id, outcome) = (id.to_string(), outcome.clone());
        self.write(move |t| {
            let Some(mut record) = t.load(&id)? else {
                return Ok(false);
            };
            if !record.holds_claim(fence, now) {
                return Ok(false);
            }
            let old_due = record.due_at();
            record.claim = None;
            record.updated_at = now;
            match outcome {
                Finish::Completed { etag, checksum } => {
                    record.state = UploadState::Completed;
                    record.etag = Some(etag);
                    record.checksum = checksum;
                }
                Finish::Failed { error } => {
                    record.state = UploadState::Failed;
                    record.error = Some(error);
                }
                Finish::Release => {}
                Finish::Reopen { chunks } => {
                    record.state = UploadState::Uploading;
                    for index in chunks {
                        let forgotten = t.parts.remove((id.as_str(), index.0)).map_err(SessionError::unavailable)?;
                        if let Some(receipt) = forgotten.map(|r| decode_receipt(r.value())).transpose()? {
                            record.received_chunks -= 1;
                            record.bytes_received -= receipt.size;
                        }
                    }
                }
            }
            match record.state {
                UploadState::Completed | UploadState::Failed => {
                    record.expires_at = now + ttl;
                    t.drop_parts(&id)?;
                }
                UploadState::Uploading => record.expires_at = now + ttl,
                _ => {}
            }
            match record.state {
                UploadState::Completed => t.emit(&mut record, EventKind::Completed, now)?,
                UploadState::Failed => t.emit(&mut record, EventKind::Failed, now)?,
                _ => {}
            }
            t.save(&record, Some(old_due))?;
            Ok(true)
        })
        .await
    }

    async fn touch(&self, id: &UploadId, now: Timestamp, ttl: Duration) -> Result<Option<UploadRecord>, SessionError> {
        let id = id.to_string();
        self.write(move |t| {
            let Some(mut record) = t.load_live(&id, now)? else {
                return Ok(None);
            };
            if record.state == UploadState::Canceled {
                return Ok(None);
            }
            let old_due = record.due_at();
            record.expires_at = now + ttl;
            t.save(&record, Some(old_due))?;
            Ok(Some(record))
        })
        .await
    }

    #[tracing::instrument(name = "embedded.begin_append", skip_all, fields(upload_id = %id, offset))]
    async fn begin_append(
        &self,
        id: &UploadId,
        offset: u64,
        now: Timestamp,
        ttl: Duration,
        lease: Duration,
    ) -> Result<AppendStart, SessionError> {
        let id = id.to_string();
        self.write(move |t| t.begin_append(&id, offset, now, ttl, lease)).await
    }

    #[tracing::instrument(name = "embedded.end_append", skip_all, fields(upload_id = %id, fence))]
    async fn end_append(
        &self,
        id: &UploadId,
        fence: u64,
        progress: &AppendProgress,
        now: Timestamp,
        ttl: Duration,
        lease: Duration,
    ) -> Result<AppendEnd, SessionError> {
        let (id, progress) = (id.to_string(), progress.clone());
        self.write(move |t| t.end_append(&id, fence, progress, now, ttl, lease)).await
    }

    #[tracing::instrument(name = "embedded.cancel", skip_all, fields(upload_id = %id))]
    async fn cancel(&self, id: &UploadId, now: Timestamp, ttl: Duration) -> Result<CancelOutcome, SessionError> {
        let id = id.to_string();
        self.write(move |t| {
            let Some(mut record) = t.load_live(&id, now)? else {
                return Ok(CancelOutcome::NotFound);
            };
            let busy = record.state == UploadState::Completing && record.has_live_claim(now);
            if busy || matches!(record.state, UploadState::Completed | UploadState::Canceled) {
                return Ok(CancelOutcome::Refused(record.state));
            }
            let before = record.clone();
            record.state = UploadState::Canceled;
            record.claim = None;
            record.updated_at = now;
            record.expires_at = now + ttl;
            t.drop_parts(&id)?;
            t.emit(&mut record, EventKind::Canceled, now)?;
            t.save(&record, Some(before.due_at()))?;
            Ok(CancelOutcome::Canceled(Box::new(before)))
        })
        .await
    }

    async fn due(&self, now: Timestamp, limit: usize) -> Result<Vec<(UploadId, Timestamp)>, SessionError> {
        let db = Arc::clone(&self.db);
        run_blocking(move || {
            let txn = db.begin_read().map_err(SessionError::unavailable)?;
            let expiry = txn.open_table(EXPIRY).map_err(SessionError::unavailable)?;
            let due =
                expiry.range(..(now.timestamp_millis().saturating_add(1), "")).map_err(SessionError::unavailable)?;
            let mut entries = Vec::new();
            for entry in due {
                let (key, _) = entry.map_err(SessionError::unavailable)?;
                let (at, id) = key.value();
                // An entry this release cannot read is skipped, not allowed to stop the sweep.
                let (Ok(id), Some(at)) = (id.parse(), chrono::DateTime::from_timestamp_millis(at)) else { continue };
                entries.push((id, at));
                if entries.len() == limit {
                    break;
                }
            }
            Ok(entries)
        })
        .await
    }

    async fn reschedule(&self, id: &UploadId, from: Timestamp, to: Option<Timestamp>) -> Result<(), SessionError> {
        let id = id.to_string();
        self.write(move |t| {
            t.expiry.remove((from.timestamp_millis(), id.as_str())).map_err(SessionError::unavailable)?;
            if let Some(to) = to {
                t.expiry.insert((to.timestamp_millis(), id.as_str()), ()).map_err(SessionError::unavailable)?;
            }
            Ok(())
        })
        .await
    }

    #[tracing::instrument(name = "embedded.retire", skip_all, fields(upload_id = %id))]
    async fn retire(&self, id: &UploadId, now: Timestamp) -> Result<Retired, SessionError> {
        let id = id.to_string();
        self.write(move |t| t.retire(&id, now)).await
    }

    #[tracing::instrument(name = "embedded.remove_expired", skip_all, fields(upload_id = %id))]
    async fn remove_expired(&self, id: &UploadId, now: Timestamp) -> Result<Option<UploadRecord>, SessionError> {
        let id = id.to_string();
        self.write(move |t| t.remove_expired(&id, now)).await
    }

    #[tracing::instrument(name = "embedded.process", skip_all, fields(upload_id = %id))]
    async fn process(
        &self,
        id: &UploadId,
        report: &ProcessingReport,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<ProcessOutcome, SessionError> {
        self.apply_report(id, report, now, ttl).await
    }

    async fn outbox(&self, _: Timestamp, _: Duration, limit: usize) -> Result<Vec<PendingEvents>, SessionError> {
        // One process, one publisher: nothing to hold against another.
        self.read_outbox(limit).await
    }

    async fn published(&self, batch: &PendingEvents, _: Timestamp) -> Result<(), SessionError> {
        self.forget(batch).await
    }

    async fn outbox_backlog(&self) -> Result<u64, SessionError> {
        self.count_outbox_uploads().await
    }

    async fn ping(&self) -> Result<(), SessionError> {
        let db = Arc::clone(&self.db);
        run_blocking(move || db.begin_read().map(drop).map_err(SessionError::unavailable)).await
    }
}

#[cfg(test)]
mod tests;
