//! The publisher: moves recorded events from the session store's outbox into the event
//! log, rendering each as sinks deliver it. Every instance runs one; on a shared store
//! each upload's batch is held by one publisher at a time (see `SessionStore::outbox`),
//! for a lease measured on the real clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::{Event, EventLog};
use crate::domain::RecordedEvent;
use crate::metrics::Metrics;
use crate::routes::views::Status;
use crate::session::{PendingEvents, SessionError, SessionStore};
use crate::upload::UploadStatus;

/// Batches read from the outbox at once.
const BATCHES: usize = 64;
/// How long a batch is held by the publisher that read it (publishing one takes a few
/// milliseconds): how late the events of a publisher that died come.
const LEASE_SECS: i64 = 10;
/// How often the outbox's backlog is measured for `outbox_uploads_pending` (one query,
/// on the publisher's own connection).
const BACKLOG_EVERY: Duration = Duration::from_secs(5);

/// Moves events from the outbox to the log.
#[derive(Clone)]
pub struct Publisher {
    sessions: Arc<dyn SessionStore>,
    log: Arc<dyn EventLog>,
    metrics: Metrics,
    max_len: u64,
}

impl Publisher {
    /// A publisher from `sessions`' outbox to `log`, which keeps about `max_len` events.
    pub fn new(sessions: Arc<dyn SessionStore>, log: Arc<dyn EventLog>, metrics: Metrics, max_len: u64) -> Self {
        Self { sessions, log, metrics, max_len }
    }

    /// Publishes for ever, looking at the outbox every `interval` when it was empty.
    pub async fn run(&self, interval: Duration) {
        let mut measured: Option<Instant> = None;
        loop {
            let published = self.publish_once().await;
            if measured.is_none_or(|at| at.elapsed() >= BACKLOG_EVERY) {
                self.measure_backlog().await;
                measured = Some(Instant::now());
            }
            match published {
                Ok(0) => tokio::time::sleep(interval).await,
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(error = %crate::error::chain(&err), "publishing events failed; retrying");
                    tokio::time::sleep(interval).await;
                }
            }
        }
    }

    /// Publishes what the outbox holds now; how many events.
    pub async fn publish_once(&self) -> Result<usize, SessionError> {
        let now = Utc::now();
        let batches = self.sessions.outbox(now, chrono::Duration::seconds(LEASE_SECS), BATCHES).await?;
        let mut published = 0;
        for batch in batches {
            published += self.publish(&batch).await?;
        }
        Ok(published)
    }

    /// Sets `outbox_uploads_pending` to the outbox's backlog now; a failure is logged and
    /// leaves the gauge as it was.
    pub async fn measure_backlog(&self) {
        match self.sessions.outbox_backlog().await {
            Ok(uploads) => self.metrics.outbox_uploads_pending.set(i64::try_from(uploads).unwrap_or(i64::MAX)),
            Err(err) => tracing::warn!(error = %crate::error::chain(&err), "could not measure the outbox's backlog"),
        }
    }

    async fn publish(&self, batch: &PendingEvents) -> Result<usize, SessionError> {
        let mut events = Vec::with_capacity(batch.events.len());
        // A tus partial upload is a piece of another upload, not one the app asked for:
        // its events go no further.
        for recorded in batch.events.iter().filter(|e| !e.record.is_partial()) {
            events.push(Event::new(recorded, Self::status_body(recorded)?));
        }
        self.log.append(&events, self.max_len).await?;
        self.sessions.published(batch, Utc::now()).await?;
        for event in &events {
            self.metrics.event_published(&event.kind);
        }
        Ok(events.len())
    }

    /// The status body of the upload as the event's change left it, without
    /// `missing_chunks`: those are the chunks missing now, which only a status call says.
    fn status_body(recorded: &RecordedEvent) -> Result<serde_json::Value, SessionError> {
        let status = UploadStatus { record: recorded.record.clone(), missing_chunks: Vec::new(), missing_parts: None };
        let mut body = serde_json::to_value(Status::new(&status)).map_err(|e| SessionError::Corrupt(e.to_string()))?;
        if let Some(fields) = body.as_object_mut() {
            fields.remove("missing_chunks");
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::contract::new_record;
    use crate::session::EmbeddedSessionStore;

    #[tokio::test]
    async fn the_backlog_gauge_follows_the_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedSessionStore::open(dir.path()).unwrap());
        let metrics = Metrics::new().unwrap();
        let publisher = Publisher::new(store.clone(), store.clone(), metrics.clone(), 100);
        for _ in 0..3 {
            store.insert(&new_record(Utc::now())).await.unwrap();
        }
        publisher.measure_backlog().await;
        assert_eq!(metrics.outbox_uploads_pending.get(), 3);
        assert_eq!(publisher.publish_once().await.unwrap(), 3);
        publisher.measure_backlog().await;
        assert_eq!(metrics.outbox_uploads_pending.get(), 0);
    }
}
