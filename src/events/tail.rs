//! The tail: one per instance, following the event log and handing every new event to
//! the server-sent event streams open here ([`super::sse`]) through a broadcast channel,
//! so that a stream sees changes made on any instance, and the log is read once per
//! instance rather than once per stream. It starts with the first stream, then reads the
//! log (`EventLog::read_after`, on the events connection) every poll interval until the
//! instance stops.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prometheus::IntGauge;
use tokio::sync::{broadcast, watch, Notify};

use super::sse::{frame, Connection, EventStream, Follow, FollowError};
use super::{EventLog, Logged, Order};
use crate::domain::UploadId;

/// Events read from the log at once.
pub(super) const PAGE: usize = 256;
/// Events a stream may fall behind the tail before it reads them from the log instead.
const BACKLOG: usize = 1024;
/// How long a stream waits for the tail's first read of the log.
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the tail waits after the log failed.
const RETRY: Duration = Duration::from_secs(1);

/// A position in the log with its order.
#[derive(Debug, Clone)]
pub(super) struct Mark {
    pub position: String,
    pub order: Order,
}

/// An event as the tail hands it out: where it is, whose it is, and its SSE frame.
#[derive(Debug)]
pub(super) struct Live {
    pub mark: Mark,
    pub upload_id: UploadId,
    pub frame: Bytes,
}

/// Follows the event log for this instance's server-sent event streams.
pub struct Tail {
    log: Arc<dyn EventLog>,
    sender: broadcast::Sender<Arc<Live>>,
    /// The position of the last event handed out; `None` until the tail has started.
    cursor: watch::Sender<Option<Mark>>,
    /// Told when the first stream opens.
    wanted: Notify,
    /// Set when the server begins a graceful stop: every stream ends.
    closing: watch::Sender<bool>,
    connections: IntGauge,
}

impl Tail {
    /// A tail of `log`, counting the open streams in `connections`.
    pub fn new(log: Arc<dyn EventLog>, connections: IntGauge) -> Self {
        Self {
            log,
            sender: broadcast::channel(BACKLOG).0,
            cursor: watch::channel(None).0,
            wanted: Notify::new(),
            closing: watch::channel(false).0,
            connections,
        }
    }

    /// Follows the log for ever once a stream wants it, reading it every `interval` while
    /// it has nothing new.
    pub async fn run(&self, interval: Duration) {
        self.wanted.notified().await;
        let mut cursor = loop {
            match self.log.head().await.map(|head| self.mark(head)) {
                Ok(Some(mark)) => break mark,
                Ok(None) => tracing::error!("the event log's head is not one of its positions; retrying"),
                Err(err) => {
                    tracing::warn!(error = %crate::error::chain(&err), "cannot find the event log's head; retrying")
                }
            }
            tokio::time::sleep(RETRY).await;
        };
        self.cursor.send_replace(Some(cursor.clone()));
        loop {
            match self.log.read_after(&cursor.position, PAGE).await {
                Ok(page) => {
                    let full = page.len() == PAGE;
                    for logged in page {
                        let Some(live) = self.live(logged) else { continue };
                        cursor = live.mark.clone();
                        // An error only says that no stream is open now.
                        let _ = self.sender.send(Arc::new(live));
                        self.cursor.send_replace(Some(cursor.clone()));
                    }
                    if !full {
                        tokio::time::sleep(interval).await;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %crate::error::chain(&err), "reading the event log failed; retrying");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// Ends every stream, and those to come, once `stopping` resolves (the server is
    /// stopping); the future to spawn for it holds nothing else of the tail.
    pub fn close_when(&self, stopping: impl Future<Output = ()>) -> impl Future<Output = ()> {
        let closing = self.closing.clone();
        async move {
            stopping.await;
            closing.send_replace(true);
        }
    }

    /// A stream of `upload`'s events from now on, or from after `last_event_id` (an `id`
    /// this stream sent before) when a client resumes. Waits for the tail to start.
    pub async fn follow(&self, upload: UploadId, last_event_id: Option<&str>) -> Result<EventStream, FollowError> {
        let resume = match last_event_id {
            Some(id) => Some(self.mark(id.to_owned()).ok_or(FollowError::UnknownEventId)?),
            None => None,
        };
        // Subscribed before the cursor is read: every event after the cursor reaches the
        // receiver, or (if it lags) is read back from the log.
        let live = self.sender.subscribe();
        self.wanted.notify_one();
        let mut cursor = self.cursor.subscribe();
        let now = match tokio::time::timeout(START_TIMEOUT, cursor.wait_for(Option::is_some)).await {
            Ok(Ok(mark)) => mark.clone(),
            _ => None,
        };
        let now = now.ok_or(FollowError::Unavailable)?;
        Ok(EventStream::new(Follow {
            upload,
            log: Arc::clone(&self.log),
            live,
            cursor,
            closing: self.closing.subscribe(),
            behind: resume.is_some(),
            seen: resume.unwrap_or(now),
            _open: Connection::open(&self.connections),
        }))
    }

    fn mark(&self, position: String) -> Option<Mark> {
        self.log.order(&position).map(|order| Mark { position, order })
    }

    fn live(&self, logged: Logged) -> Option<Live> {
        let frame = frame(&logged)?;
        let mark = self.mark(logged.position)?;
        Some(Live { mark, upload_id: logged.event.upload_id, frame })
    }
}
