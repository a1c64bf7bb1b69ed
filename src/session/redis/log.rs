//! The event log in Redis: the stream `<prefix>:v1:events` (field `event`, the JSON), trimmed
//! near `events.stream_max_len`. Workers read it with consumer groups of their own; each
//! webhook endpoint's queue is a consumer group too (`ferry-<sink>`), whose pending entries
//! are the deliveries tried and not settled: `due` claims those whose retry delay has
//! passed (`XPENDING … IDLE`, then `XCLAIM`, so a dead instance's deliveries move on), then
//! reads new entries (`XREADGROUP`), and `settle` acknowledges (`XACK`).

use std::collections::HashSet;
use std::sync::Mutex;

use async_trait::async_trait;
use redis::streams::{StreamClaimReply, StreamId, StreamPendingCountReply, StreamRangeReply, StreamReadReply};
use redis::Value;

use super::RedisSessionStore;
use crate::domain::Timestamp;
use crate::events::{retry_delay, Delivery, Event, EventLog, Logged, Order};
use crate::session::SessionError;

/// The consumer groups this process made sure exist.
#[derive(Default)]
pub(super) struct Groups(Mutex<HashSet<String>>);

impl RedisSessionStore {
    fn events_key(&self) -> String {
        format!("{}:v1:events", self.prefix)
    }

    /// Makes sure the sink's consumer group exists; a new one starts at the stream's end.
    async fn ensure_group(&self, group: &str) -> Result<(), SessionError> {
        if self.groups.0.lock().is_ok_and(|known| known.contains(group)) {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.cmd("XGROUP").arg("CREATE").arg(self.events_key()).arg(group).arg("$").arg("MKSTREAM");
        match self.query::<Value>(&pipe).await {
            Ok(_) => {}
            Err(SessionError::Unavailable(err)) if err.to_string().contains("BUSYGROUP") => {}
            Err(err) => return Err(err),
        }
        if let Ok(mut known) = self.groups.0.lock() {
            known.insert(group.to_owned());
        }
        Ok(())
    }

    /// Forgets that a group exists (Redis lost it): the next call makes it again.
    fn lost_group(&self, group: &str) {
        if let Ok(mut known) = self.groups.0.lock() {
            known.remove(group);
        }
    }
}

fn group_of(sink: &str) -> String {
    format!("ferry-{sink}")
}

fn decode(entry: &StreamId) -> Result<Event, SessionError> {
    let corrupt = || SessionError::Corrupt(format!("stream entry {} has no readable event", entry.id));
    let json: String = match entry.map.get("event") {
        Some(value) => redis::from_redis_value_ref(value).map_err(|_| corrupt())?,
        None => return Err(corrupt()),
    };
    serde_json::from_str(&json).map_err(|_| corrupt())
}

fn is_nogroup(err: &SessionError) -> bool {
    matches!(err, SessionError::Unavailable(e) if e.to_string().contains("NOGROUP"))
}

#[async_trait]
impl EventLog for RedisSessionStore {
    async fn append(&self, events: &[Event], max_len: u64) -> Result<(), SessionError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for event in events {
            let json = serde_json::to_string(event).map_err(|e| SessionError::Corrupt(e.to_string()))?;
            pipe.cmd("XADD").arg(self.events_key()).arg("MAXLEN").arg("~").arg(max_len).arg("*");
            pipe.arg("event").arg(json).ignore();
        }
        self.query::<()>(&pipe).await
    }

    async fn read_after(&self, position: &str, limit: usize) -> Result<Vec<Logged>, SessionError> {
        let mut pipe = redis::pipe();
        pipe.cmd("XRANGE").arg(self.events_key()).arg(format!("({position}")).arg("+").arg("COUNT").arg(limit);
        let (range,): (StreamRangeReply,) = self.query(&pipe).await?;
        range.ids.iter().map(|e| Ok(Logged { position: e.id.clone(), event: decode(e)? })).collect()
    }

    async fn head(&self) -> Result<String, SessionError> {
        let mut pipe = redis::pipe();
        pipe.cmd("XREVRANGE").arg(self.events_key()).arg("+").arg("-").arg("COUNT").arg(1);
        let (range,): (StreamRangeReply,) = self.query(&pipe).await?;
        Ok(range.ids.first().map_or_else(|| "0-0".to_owned(), |e| e.id.clone()))
    }

    fn order(&self, position: &str) -> Option<Order> {
        let (ms, seq) = position.split_once('-')?;
        Some((ms.parse().ok()?, seq.parse().ok()?))
    }

    async fn open(&self, sink: &str) -> Result<(), SessionError> {
        self.ensure_group(&group_of(sink)).await
    }

    async fn due(
        &self,
        sink: &str,
        consumer: &str,
        _now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Delivery>, SessionError> {
        let group = group_of(sink);
        self.ensure_group(&group).await?;
        let result = self.due_in(&group, consumer, limit).await;
        if result.as_ref().is_err_and(is_nogroup) {
            self.lost_group(&group);
        }
        result
    }

    async fn settle(&self, sink: &str, position: &str) -> Result<(), SessionError> {
        let mut pipe = redis::pipe();
        pipe.cmd("XACK").arg(self.events_key()).arg(group_of(sink)).arg(position).ignore();
        self.query::<()>(&pipe).await
    }
}

impl RedisSessionStore {
    /// Retries whose delay passed (Redis measures the idle time), then new entries.
    async fn due_in(&self, group: &str, consumer: &str, limit: usize) -> Result<Vec<Delivery>, SessionError> {
        let key = self.events_key();
        let mut due = Vec::new();
        let first_delay = retry_delay(1).num_milliseconds();
        let mut pipe = redis::pipe();
        pipe.cmd("XPENDING").arg(&key).arg(group).arg("IDLE").arg(first_delay).arg("-").arg("+").arg(limit);
        let (pending,): (StreamPendingCountReply,) = self.query(&pipe).await?;
        for entry in pending.ids {
            let tries = u32::try_from(entry.times_delivered).unwrap_or(u32::MAX);
            let delay = retry_delay(tries).num_milliseconds();
            if i64::try_from(entry.last_delivered_ms).unwrap_or(i64::MAX) < delay {
                continue;
            }
            let mut pipe = redis::pipe();
            pipe.cmd("XCLAIM").arg(&key).arg(group).arg(consumer).arg(delay).arg(&entry.id);
            let (claimed,): (StreamClaimReply,) = self.query(&pipe).await?;
            // Nothing when another instance claimed it meanwhile, or it was trimmed away.
            if let Some(found) = claimed.ids.first() {
                due.push(Delivery { position: found.id.clone(), event: decode(found)?, attempt: tries + 1 });
            }
        }
        let mut pipe = redis::pipe();
        pipe.cmd("XREADGROUP").arg("GROUP").arg(group).arg(consumer).arg("COUNT").arg(limit);
        pipe.arg("STREAMS").arg(&key).arg(">");
        let (read,): (Option<StreamReadReply>,) = self.query(&pipe).await?;
        for entry in read.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            due.push(Delivery { position: entry.id.clone(), event: decode(&entry)?, attempt: 1 });
        }
        Ok(due)
    }
}
