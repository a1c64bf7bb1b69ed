//! Events: ferry telling the app what happened to its uploads.
//!
//! A state change records its event in the session store's outbox in the same atomic
//! step as the change (`SessionStore::outbox`). The [`publisher`] moves recorded events
//! into the [`EventLog`] (the Redis stream `<prefix>:v1:events`, or a table of the
//! embedded store), rendering each as the JSON every sink gets: webhooks ([`webhooks`]),
//! workers reading the stream with consumer groups, and server-sent events. Delivery is at
//! least once: an event leaves the outbox only once it is in the log, and leaves a
//! webhook's queue only once the endpoint answered 2xx (or its retry window closed).

pub mod publisher;
mod sse;
mod tail;
pub mod webhooks;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::{rfc3339, RecordedEvent, Timestamp, UploadId};
use crate::session::SessionError;

pub use publisher::Publisher;
pub use sse::{EventStream, FollowError};
pub use tail::Tail;
pub use webhooks::Webhooks;

/// An event as every sink delivers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique: `<upload id>-<number>`; the same on every delivery of this event.
    pub id: String,
    /// `upload.completed` and the like.
    #[serde(rename = "type")]
    pub kind: String,
    /// The upload it is about.
    pub upload_id: UploadId,
    /// When it happened (RFC 3339).
    pub time: String,
    /// The upload's status as the change left it: the body `GET /v1/uploads/{id}` answers.
    pub data: serde_json::Value,
}

impl Event {
    /// The event of `recorded`, whose status body is `data`.
    pub fn new(recorded: &RecordedEvent, data: serde_json::Value) -> Self {
        Self {
            id: recorded.id(),
            kind: recorded.kind.as_str().to_owned(),
            upload_id: recorded.record.id,
            time: rfc3339(&recorded.time),
            data,
        }
    }
}

/// An event in the log, with its position there.
#[derive(Debug, Clone, PartialEq)]
pub struct Logged {
    /// Where it is in the log: positions order like the log (compare them with
    /// [`EventLog::order`], not as text). A server-sent event's `id`.
    pub position: String,
    /// The event.
    pub event: Event,
}

/// How a position sorts in the log ([`EventLog::order`]): Redis stream ids `ms-seq` as
/// `(ms, seq)`, the embedded log's numbers as `(n, 0)`.
pub type Order = (u64, u64);

/// One try at delivering an event to a sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The event's position in the log: what [`EventLog::settle`] takes.
    pub position: String,
    /// The event.
    pub event: Event,
    /// Which try this is, from 1.
    pub attempt: u32,
}

/// How long a sink waits before trying a failed delivery again: 1 s after the first try,
/// doubling, at most 10 minutes.
pub fn retry_delay(attempts: u32) -> chrono::Duration {
    chrono::Duration::seconds(1_i64 << attempts.saturating_sub(1).min(10)).min(chrono::Duration::minutes(10))
}

/// Where published events live, and each sink's queue of deliveries. The shared contract
/// suite is `session::contract::log`.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends `events` in order, keeping about the newest `max_len` events in the log.
    async fn append(&self, events: &[Event], max_len: u64) -> Result<(), SessionError>;

    /// Up to `limit` events after `position`, oldest first; `head` gives the position to
    /// start from.
    async fn read_after(&self, position: &str, limit: usize) -> Result<Vec<Logged>, SessionError>;

    /// The position of the newest event; events appended later come after it.
    async fn head(&self) -> Result<String, SessionError>;

    /// A key of `position` that sorts as the log does, or `None` when `position` is not
    /// one of this log's (a client's `Last-Event-ID` may be anything).
    fn order(&self, position: &str) -> Option<Order>;

    /// Makes sure the sink named `sink` has a queue; a new queue starts after the newest
    /// event (a new endpoint gets no history). Idempotent.
    async fn open(&self, sink: &str) -> Result<(), SessionError>;

    /// Up to `limit` deliveries due at `now` for the sink named `sink` (its queue opened if
    /// need be): events appended since its queue was last read, and deliveries tried before and not settled whose [`retry_delay`] has
    /// passed, including those of a consumer that died. `consumer` names the caller (an
    /// instance) so that a delivery handed out is not handed out again before its delay.
    async fn due(
        &self,
        sink: &str,
        consumer: &str,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Delivery>, SessionError>;

    /// Takes a delivery off the sink's queue: delivered, or given up.
    async fn settle(&self, sink: &str, position: &str) -> Result<(), SessionError>;
}

/// When `event` happened, as its `time` says.
pub fn happened_at(event: &Event) -> Option<Timestamp> {
    chrono::DateTime::parse_from_rfc3339(&event.time).ok().map(|t| t.to_utc())
}
