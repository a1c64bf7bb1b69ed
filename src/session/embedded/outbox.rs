//! The embedded store's outbox: events recorded in the same write transaction as the
//! change they report, in a table of their own keyed by a sequence number, until the
//! publisher has passed them on.

use std::collections::HashSet;
use std::sync::Arc;

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{run_blocking, EmbeddedSessionStore, Tables};
use crate::domain::{EventKind, RecordedEvent, Timestamp, UploadId, UploadRecord};
use crate::session::codec::{decode_meta, encode};
use crate::session::{PendingEvents, SessionError};

pub(super) const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox_v1");
/// Named counters; `LAST_EVENT` numbers events, and never goes back, even once the outbox
/// is empty.
pub(super) const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters_v1");
const LAST_EVENT: &str = "last_event";

/// An outbox row.
#[derive(Serialize, Deserialize)]
struct Stored {
    number: u64,
    kind: EventKind,
    time: Timestamp,
    record: UploadRecord,
}

/// Just the upload an outbox row is about, for counting (the rest of the row is skipped
/// unread).
#[derive(Deserialize)]
struct Owner {
    record: OwnerId,
}

#[derive(Deserialize)]
struct OwnerId {
    id: UploadId,
}

impl Tables<'_> {
    /// Records event `kind` of `record` at `now`; the caller saves the record in the same
    /// transaction. Events are numbered by their place in the outbox, which only grows:
    /// an upload's numbers increase with each of its events.
    pub(super) fn emit(
        &mut self,
        record: &mut UploadRecord,
        kind: EventKind,
        now: Timestamp,
    ) -> Result<(), SessionError> {
        if kind == EventKind::Progress {
            record.progress_at = Some(now);
        }
        let next = self.counters.get(LAST_EVENT).map_err(SessionError::unavailable)?.map_or(0, |n| n.value()) + 1;
        self.counters.insert(LAST_EVENT, next).map_err(SessionError::unavailable)?;
        let row = Stored { number: next, kind, time: now, record: record.clone() };
        self.outbox.insert(next, encode(&row)?.as_slice()).map_err(SessionError::unavailable)?;
        Ok(())
    }
}

impl EmbeddedSessionStore {
    /// The oldest `limit` events, grouped by upload in the order they came.
    pub(super) async fn read_outbox(&self, limit: usize) -> Result<Vec<PendingEvents>, SessionError> {
        let db = Arc::clone(&self.db);
        run_blocking(move || {
            let txn = db.begin_read().map_err(SessionError::unavailable)?;
            let outbox = txn.open_table(OUTBOX).map_err(SessionError::unavailable)?;
            let mut batches: Vec<(Vec<u64>, Vec<RecordedEvent>)> = Vec::new();
            for row in outbox.iter().map_err(SessionError::unavailable)?.take(limit) {
                let (seq, value) = row.map_err(SessionError::unavailable)?;
                let stored: Stored = decode_meta(value.value())?;
                let event = RecordedEvent {
                    number: stored.number,
                    kind: stored.kind,
                    time: stored.time,
                    record: stored.record,
                };
                match batches.iter_mut().find(|(_, events)| events[0].record.id == event.record.id) {
                    Some((seqs, events)) => {
                        seqs.push(seq.value());
                        events.push(event);
                    }
                    None => batches.push((vec![seq.value()], vec![event])),
                }
            }
            Ok(batches
                .into_iter()
                .map(|(seqs, events)| {
                    let receipt = seqs.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
                    PendingEvents { events, receipt }
                })
                .collect())
        })
        .await
    }

    /// See `SessionStore::outbox_backlog`: the distinct uploads of the outbox's rows. One
    /// read of the table, which the publisher keeps short (it looks every 100 ms, and
    /// again at once while it finds events).
    pub(super) async fn count_outbox_uploads(&self) -> Result<u64, SessionError> {
        let db = Arc::clone(&self.db);
        run_blocking(move || {
            let txn = db.begin_read().map_err(SessionError::unavailable)?;
            let outbox = txn.open_table(OUTBOX).map_err(SessionError::unavailable)?;
            let mut uploads = HashSet::new();
            for row in outbox.iter().map_err(SessionError::unavailable)? {
                let (_, value) = row.map_err(SessionError::unavailable)?;
                // Rows are `encode`d: the version tag beside the fields, which this skips.
                let owner: Owner = serde_json::from_slice(value.value())
                    .map_err(|e| SessionError::Corrupt(format!("outbox row: {e}")))?;
                uploads.insert(owner.record.id);
            }
            Ok(uploads.len() as u64)
        })
        .await
    }

    /// Deletes the rows of a published batch.
    pub(super) async fn forget(&self, batch: &PendingEvents) -> Result<(), SessionError> {
        let seqs = batch
            .receipt
            .split(',')
            .map(|s| s.parse::<u64>().map_err(|_| SessionError::Corrupt(format!("outbox receipt {s:?}"))))
            .collect::<Result<Vec<_>, _>>()?;
        self.write(move |t| {
            for seq in seqs {
                t.outbox.remove(seq).map_err(SessionError::unavailable)?;
            }
            Ok(())
        })
        .await
    }
}
