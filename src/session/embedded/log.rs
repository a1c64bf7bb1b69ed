//! The event log of the embedded store: published events in a table keyed by a sequence
//! number (the position), trimmed to the newest `max_len`; and for each sink (a webhook
//! endpoint) its cursor (the last event it was handed) and its pending deliveries (tried,
//! not settled) with their tries and the time of the last one. One process serves the
//! store, so one consumer: `due` ignores the consumer's name.

use std::sync::Arc;

use async_trait::async_trait;
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

use super::outbox::COUNTERS;
use super::{run_blocking, EmbeddedSessionStore};
use crate::domain::Timestamp;
use crate::events::{retry_delay, Delivery, Event, EventLog, Logged, Order};
use crate::session::SessionError;

pub(super) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events_v1");
pub(super) const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("sink_cursors_v1");
/// (sink, position) → (tries so far, when the last began, in ms).
pub(super) const PENDING: TableDefinition<(&str, u64), (u32, i64)> = TableDefinition::new("sink_pending_v1");
const LAST_LOGGED: &str = "last_logged";

fn position(text: &str) -> Result<u64, SessionError> {
    text.parse().map_err(|_| SessionError::Corrupt(format!("{text:?} is not a position in the event log")))
}

fn decode(bytes: &[u8]) -> Result<Event, SessionError> {
    serde_json::from_slice(bytes).map_err(|e| SessionError::Corrupt(format!("event log: {e}")))
}

#[async_trait]
impl EventLog for EmbeddedSessionStore {
    async fn append(&self, events: &[Event], max_len: u64) -> Result<(), SessionError> {
        let rows = events
            .iter()
            .map(|e| serde_json::to_vec(e).map_err(|err| SessionError::Corrupt(err.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let db = Arc::clone(&self.db);
        run_blocking(move || {
            let txn = db.begin_write().map_err(SessionError::unavailable)?;
            {
                let mut counters = txn.open_table(COUNTERS).map_err(SessionError::unavailable)?;
                let mut log = txn.open_table(EVENTS).map_err(SessionError::unavailable)?;
                let mut last = counters.get(LAST_LOGGED).map_err(SessionError::unavailable)?.map_or(0, |n| n.value());
                for row in &rows {
                    last += 1;
                    log.insert(last, row.as_slice()).map_err(SessionError::unavailable)?;
                }
                counters.insert(LAST_LOGGED, last).map_err(SessionError::unavailable)?;
                while log.len().map_err(SessionError::unavailable)? > max_len {
                    log.pop_first().map_err(SessionError::unavailable)?;
                }
            }
            txn.commit().map_err(SessionError::unavailable)
        })
        .await
    }

    async fn read_after(&self, after: &str, limit: usize) -> Result<Vec<Logged>, SessionError> {
        let after = position(after)?;
        let db = Arc::clone(&self.db);
        run_blocking(move || {
            let txn = db.begin_read().map_err(SessionError::unavailable)?;
            let log = txn.open_table(EVENTS).map_err(SessionError::unavailable)?;
            let rows = log.range(after.saturating_add(1)..).map_err(SessionError::unavailable)?;
            rows.take(limit)
                .map(|row| {
                    let (at, bytes) = row.map_err(SessionError::unavailable)?;
                    Ok(Logged { position: at.value().to_string(), event: decode(bytes.value())? })
                })
                .collect()
        })
        .await
    }

    async fn head(&self) -> Result<String, SessionError> {
        let db = Arc::clone(&self.db);
        run_blocking(move || {
            let txn = db.begin_read().map_err(SessionError::unavailable)?;
            let counters = txn.open_table(COUNTERS).map_err(SessionError::unavailable)?;
            let last = counters.get(LAST_LOGGED).map_err(SessionError::unavailable)?.map_or(0, |n| n.value());
            Ok(last.to_string())
        })
        .await
    }

    fn order(&self, position: &str) -> Option<Order> {
        Some((position.parse().ok()?, 0))
    }

    async fn open(&self, sink: &str) -> Result<(), SessionError> {
        let sink = sink.to_owned();
        let db = Arc::clone(&self.db);
        run_blocking(move || {
            let txn = db.begin_write().map_err(SessionError::unavailable)?;
            {
                let counters = txn.open_table(COUNTERS).map_err(SessionError::unavailable)?;
                let mut cursors = txn.open_table(CURSORS).map_err(SessionError::unavailable)?;
                if cursors.get(sink.as_str()).map_err(SessionError::unavailable)?.is_none() {
                    let last = counters.get(LAST_LOGGED).map_err(SessionError::unavailable)?.map_or(0, |n| n.value());
                    cursors.insert(sink.as_str(), last).map_err(SessionError::unavailable)?;
                }
            }
            txn.commit().map_err(SessionError::unavailable)
        })
        .await
    }

    async fn due(&self, sink: &str, _: &str, now: Timestamp, limit: usize) -> Result<Vec<Delivery>, SessionError> {
        let (sink, now_ms) = (sink.to_owned(), now.timestamp_millis());
        let db = Arc::clone(&self.db);
        run_blocking(move || {
            let txn = db.begin_write().map_err(SessionError::unavailable)?;
            let mut due = Vec::new();
            {
                let counters = txn.open_table(COUNTERS).map_err(SessionError::unavailable)?;
                let log = txn.open_table(EVENTS).map_err(SessionError::unavailable)?;
                let mut cursors = txn.open_table(CURSORS).map_err(SessionError::unavailable)?;
                let mut pending = txn.open_table(PENDING).map_err(SessionError::unavailable)?;
                // Retries whose delay has passed; those of events trimmed away are dropped.
                let tried: Vec<(u64, u32, i64)> = pending
                    .range((sink.as_str(), 0)..=(sink.as_str(), u64::MAX))
                    .map_err(SessionError::unavailable)?
                    .map(|row| row.map(|(k, v)| (k.value().1, v.value().0, v.value().1)))
                    .collect::<Result<_, _>>()
                    .map_err(SessionError::unavailable)?;
                for (at, tries, last) in tried {
                    if due.len() == limit {
                        break;
                    }
                    if now_ms - last < retry_delay(tries).num_milliseconds() {
                        continue;
                    }
                    match log.get(at).map_err(SessionError::unavailable)? {
                        Some(bytes) => {
                            let event = decode(bytes.value())?;
                            pending
                                .insert((sink.as_str(), at), (tries + 1, now_ms))
                                .map_err(SessionError::unavailable)?;
                            due.push(Delivery { position: at.to_string(), event, attempt: tries + 1 });
                        }
                        None => {
                            pending.remove((sink.as_str(), at)).map_err(SessionError::unavailable)?;
                        }
                    }
                }
                // New events; a sink seen for the first time starts at the log's end.
                let cursor = match cursors.get(sink.as_str()).map_err(SessionError::unavailable)? {
                    Some(cursor) => cursor.value(),
                    None => counters.get(LAST_LOGGED).map_err(SessionError::unavailable)?.map_or(0, |n| n.value()),
                };
                let mut moved = cursor;
                for row in
                    log.range(cursor + 1..).map_err(SessionError::unavailable)?.take(limit - due.len().min(limit))
                {
                    let (at, bytes) = row.map_err(SessionError::unavailable)?;
                    let at = at.value();
                    pending.insert((sink.as_str(), at), (1, now_ms)).map_err(SessionError::unavailable)?;
                    due.push(Delivery { position: at.to_string(), event: decode(bytes.value())?, attempt: 1 });
                    moved = at;
                }
                cursors.insert(sink.as_str(), moved).map_err(SessionError::unavailable)?;
            }
            txn.commit().map_err(SessionError::unavailable)?;
            Ok(due)
        })
        .await
    }

    async fn settle(&self, sink: &str, at: &str) -> Result<(), SessionError> {
        let (sink, at) = (sink.to_owned(), position(at)?);
        let db = Arc::clone(&self.db);
        run_blocking(move || {
            let txn = db.begin_write().map_err(SessionError::unavailable)?;
            txn.open_table(PENDING)
                .map_err(SessionError::unavailable)?
                .remove((sink.as_str(), at))
                .map_err(SessionError::unavailable)?;
            txn.commit().map_err(SessionError::unavailable)
        })
        .await
    }
}
