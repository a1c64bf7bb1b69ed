//! The Redis store's outbox. A script that changes an upload records the event in the
//! upload's own list, `<prefix>:v1:{<id>}:outbox`, in the same atomic step. The outbox
//! index, the sorted set `<prefix>:v1:outbox` (another cluster slot), says which uploads
//! have events and from when; like the due index it is moved by a request sent beside the
//! script (`ZADD LT`). A publisher takes an upload's entry by moving it to the end of its
//! lease (compare and set, so one publisher holds it at a time), reads the list, and once
//! it has published the events forgets them by number and settles the entry (gone, or
//! due again when events came meanwhile). A publisher that dies leaves the entry to come
//! due again when its lease ends: events are published at least once.

use serde::Deserialize;

use super::fields::{from_fields, ms, pairs};
use super::RedisSessionStore;
use crate::domain::{EventKind, RecordedEvent, Timestamp, UploadId};
use crate::session::{PendingEvents, SessionError};

/// Events of one upload read at once.
const BATCH: isize = 100;

/// An event as `emit` in the scripts writes it.
#[derive(Deserialize)]
struct Stored {
    n: u64,
    #[serde(rename = "type")]
    kind: String,
    time: i64,
    record: Vec<String>,
}

impl RedisSessionStore {
    pub(super) fn outbox_key(&self, id: &UploadId) -> String {
        format!("{}:v1:{{{id}}}:outbox", self.prefix)
    }

    fn outbox_index_key(&self) -> String {
        format!("{}:v1:outbox", self.prefix)
    }

    /// The index update sent beside a script that may record an event at `at`.
    pub(super) fn index_outbox(&self, id: &UploadId, at: Timestamp) -> redis::Pipeline {
        let mut update = redis::pipe();
        update.cmd("ZADD").arg(self.outbox_index_key()).arg("LT").arg(ms(at)).arg(id.to_string()).ignore();
        update
    }

    /// See `SessionStore::outbox`.
    pub(super) async fn read_outbox(
        &self,
        now: Timestamp,
        lease: chrono::Duration,
        limit: usize,
    ) -> Result<Vec<PendingEvents>, SessionError> {
        let mut pipe = redis::pipe();
        pipe.cmd("ZRANGEBYSCORE").arg(self.outbox_index_key()).arg("-inf").arg(ms(now)).arg("WITHSCORES");
        pipe.arg("LIMIT").arg(0).arg(limit);
        let (due,): (Vec<(String, f64)>,) = self.query(&pipe).await?;
        let until = ms(now + lease);
        let mut batches = Vec::new();
        for (member, score) in due {
            let Ok(id) = member.parse::<UploadId>() else { continue };
            let mut take = self.scripts.take.key(self.outbox_index_key());
            take.arg(&member).arg(score as i64).arg(until);
            let mut pipe = redis::pipe();
            pipe.invoke_script(&take);
            let (taken,): (i64,) = self.call_script(&pipe).await?;
            if taken == 0 {
                continue;
            }
            let mut pipe = redis::pipe();
            pipe.lrange(self.outbox_key(&id), 0, BATCH - 1);
            let (entries,): (Vec<String>,) = self.query(&pipe).await?;
            let events = entries.iter().map(|entry| decode(entry)).collect::<Result<Vec<_>, _>>()?;
            let receipt = format!("{id} {} {until}", events.last().map_or(0, |e| e.number));
            let batch = PendingEvents { events, receipt };
            if batch.events.is_empty() {
                // An index entry with nothing behind it (a script that recorded nothing).
                self.forget(&batch, now).await?;
            } else {
                batches.push(batch);
            }
        }
        Ok(batches)
    }

    /// See `SessionStore::outbox_backlog`: the entries of the outbox index, one `ZCARD`.
    /// An entry whose script recorded nothing counts until a publisher looks at it.
    pub(super) async fn count_outbox_uploads(&self) -> Result<u64, SessionError> {
        let mut pipe = redis::pipe();
        pipe.zcard(self.outbox_index_key());
        let (count,): (u64,) = self.query(&pipe).await?;
        Ok(count)
    }

    /// See `SessionStore::published`.
    pub(super) async fn forget(&self, batch: &PendingEvents, now: Timestamp) -> Result<(), SessionError> {
        let bad = || SessionError::Corrupt(format!("outbox receipt {:?}", batch.receipt));
        let mut fields = batch.receipt.split(' ');
        let id: UploadId = fields.next().and_then(|f| f.parse().ok()).ok_or_else(bad)?;
        let last: u64 = fields.next().and_then(|f| f.parse().ok()).ok_or_else(bad)?;
        let until: i64 = fields.next().and_then(|f| f.parse().ok()).ok_or_else(bad)?;
        let mut forget = self.scripts.published.key(self.outbox_key(&id));
        forget.arg(last);
        let mut pipe = redis::pipe();
        pipe.invoke_script(&forget);
        let (left,): (i64,) = self.call_script(&pipe).await?;
        let mut settle = self.scripts.settle.key(self.outbox_index_key());
        settle.arg(id.to_string()).arg(until).arg(if left == 0 { "0" } else { "1" }).arg(ms(now));
        let mut pipe = redis::pipe();
        pipe.invoke_script(&settle);
        let _: (i64,) = self.call_script(&pipe).await?;
        Ok(())
    }
}

fn decode(entry: &str) -> Result<RecordedEvent, SessionError> {
    let corrupt = |what: String| SessionError::Corrupt(format!("outbox entry: {what}"));
    let stored: Stored = serde_json::from_str(entry).map_err(|e| corrupt(e.to_string()))?;
    let kind = EventKind::parse(&stored.kind).ok_or_else(|| corrupt(format!("unknown type {}", stored.kind)))?;
    let time = chrono::DateTime::from_timestamp_millis(stored.time).ok_or_else(|| corrupt("bad time".into()))?;
    let record = from_fields(&pairs(&stored.record))?;
    Ok(RecordedEvent { number: stored.n, kind, time, record })
}
