//! The publisher: moves recorded events from the session store's outbox into the event
//! log, rendering each as sinks deliver it. Every instance runs one; on a shared store
//! each upload's batch is held by one publisher at a time (see `SessionStore::outbox`).

use std::sync::Arc;
use std::time::Duration;

use super::{Event, EventLog};
use crate::domain::{Clock, RecordedEvent, UploadState};
use crate::metrics::Metrics;
use crate::routes::views::Status;
use crate::session::{PendingEvents, SessionError, SessionStore};
use crate::upload::UploadStatus;

/// Batches read from the outbox at once.
const BATCHES: usize = 64;
/// How long a batch is held by the publisher that read it.
const LEASE_SECS: i64 = 30;

/// Moves events from the outbox to the log.
#[derive(Clone)]
pub struct Publisher {
    sessions: Arc<dyn SessionStore>,
    log: Arc<dyn EventLog>,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    max_len: u64,
}

impl Publisher {
    /// A publisher from `sessions`' outbox to `log`, which keeps about `max_len` events.
    pub fn new(
        sessions: Arc<dyn SessionStore>,
        log: Arc<dyn EventLog>,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
        max_len: u64,
    ) -> Self {
        Self { sessions, log, clock, metrics, max_len }
    }

    /// Publishes for ever, looking at the outbox every `interval` when it was empty.
    pub async fn run(&self, interval: Duration) {
        loop {
            match self.publish_once().await {
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
        let now = self.clock.now();
        let batches = self.sessions.outbox(now, chrono::Duration::seconds(LEASE_SECS), BATCHES).await?;
        let mut published = 0;
        for batch in batches {
            published += self.publish(&batch).await?;
        }
        Ok(published)
    }

    async fn publish(&self, batch: &PendingEvents) -> Result<usize, SessionError> {
        let mut events = Vec::with_capacity(batch.events.len());
        for recorded in &batch.events {
            events.push(Event::new(recorded, self.status_body(recorded).await?));
        }
        self.log.append(&events, self.max_len).await?;
        self.sessions.published(batch, self.clock.now()).await?;
        for event in &events {
            self.metrics.event_published(&event.kind);
        }
        Ok(events.len())
    }

    /// The status body of the upload as the event's change left it. The chunks still
    /// missing are read now: they are only listed while the upload is `uploading`.
    async fn status_body(&self, recorded: &RecordedEvent) -> Result<serde_json::Value, SessionError> {
        let record = &recorded.record;
        let missing_chunks = if record.state == UploadState::Uploading && record.append.is_none() {
            let parts = self.sessions.parts(&record.id).await?;
            record.plan.missing(parts.iter().map(|(i, _)| i.0))
        } else {
            Vec::new()
        };
        let status = UploadStatus { record: record.clone(), missing_chunks };
        serde_json::to_value(Status::new(&status)).map_err(|e| SessionError::Corrupt(e.to_string()))
    }
}
