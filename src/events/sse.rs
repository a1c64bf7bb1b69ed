//! Server-sent events: one upload's events as `text/event-stream` frames (`id:` the
//! event's position in the log, `event:` its type, `data:` the event JSON as webhooks get
//! it), live from the [`Tail`](super::Tail), and read back from the log after a client's
//! `Last-Event-ID` or when the stream fell behind the tail. No event is sent twice or
//! skipped: a stream remembers the last position it has covered and takes only later ones.
//! A comment opens the stream and another comes every 15 s without events, so that
//! proxies keep an idle stream open.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, Stream, StreamExt};
use prometheus::IntGauge;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::tail::{Live, Mark, PAGE};
use super::{EventLog, Logged};
use crate::domain::UploadId;
use crate::session::SessionError;

const CONNECTED: &[u8] = b": connected\n\n";
const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";
const SKIPPED: &[u8] = b": too far behind: events were skipped; GET the upload for its status\n\n";
/// How long a stream stays silent before a keep-alive comment.
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(15);
/// Log entries (of every upload) a stream reads back at most to catch up; past them it
/// skips to the newest events. A reconnect after a few seconds reads far fewer.
const REPLAY_LIMIT: usize = 10_000;

/// Why a stream cannot start.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// `Last-Event-ID` is not a position of the log.
    #[error("Last-Event-ID is not the id of an event this server sent")]
    UnknownEventId,
    /// The tail could not read the log.
    #[error("the event log does not answer")]
    Unavailable,
}

/// The SSE frame of `logged`; the JSON is one line.
pub(super) fn frame(logged: &Logged) -> Option<Bytes> {
    let data = serde_json::to_string(&logged.event).ok()?;
    Some(Bytes::from(format!("id: {}\nevent: {}\ndata: {data}\n\n", logged.position, logged.event.kind)))
}

/// Counts an open stream until dropped.
pub(super) struct Connection(IntGauge);

impl Connection {
    pub(super) fn open(gauge: &IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What a stream follows, as the tail sets it up.
pub(super) struct Follow {
    pub upload: UploadId,
    pub log: Arc<dyn EventLog>,
    pub live: broadcast::Receiver<Arc<Live>>,
    /// The tail's position: where to skip to when too far behind.
    pub cursor: watch::Receiver<Option<Mark>>,
    pub closing: watch::Receiver<bool>,
    /// Every event of the upload up to here has been sent, or came before the stream.
    pub seen: Mark,
    /// Whether events after `seen` must be read from the log before live ones.
    pub behind: bool,
    /// Counts the stream as open while it lives.
    pub _open: Connection,
}

/// One upload's events as a `text/event-stream` body.
pub struct EventStream(BoxStream<'static, Bytes>);

impl EventStream {
    pub(super) fn new(follow: Follow) -> Self {
        let mut keep_alive = tokio::time::interval_at(Instant::now() + KEEP_ALIVE_EVERY, KEEP_ALIVE_EVERY);
        keep_alive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let state = State { follow, pending: VecDeque::new(), scanned: 0, keep_alive };
        let frames = stream::unfold(state, |mut state| async move { state.next().await.map(|frame| (frame, state)) });
        Self(stream::once(async { Bytes::from_static(CONNECTED) }).chain(frames).boxed())
    }
}

impl Stream for EventStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_next_unpin(cx).map(|frame| frame.map(Ok))
    }
}

struct State {
    follow: Follow,
    /// Frames read back from the log, to send before anything else.
    pending: VecDeque<Bytes>,
    /// Log entries read back since the stream fell behind.
    scanned: usize,
    keep_alive: Interval,
}

impl State {
    /// The next frame; `None` ends the stream.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(frame) = self.pending.pop_front() {
                self.keep_alive.reset();
                return Some(frame);
            }
            if self.follow.behind {
                if let Err(err) = self.catch_up().await {
                    // The client resumes from its last event when it reconnects.
                    tracing::warn!(error = %crate::error::chain(&err), "reading the event log failed; ending an event stream");
                    return None;
                }
                continue;
            }
            let f = &mut self.follow;
            tokio::select! {
                biased;
                _ = f.closing.wait_for(|closing| *closing) => return None,
                received = f.live.recv() => match received {
                    Ok(live) if live.mark.order > f.seen.order => {
                        f.seen = live.mark.clone();
                        if live.upload_id == f.upload {
                            self.pending.push_back(live.frame.clone());
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => f.behind = true,
                    Err(RecvError::Closed) => return None,
                },
                _ = self.keep_alive.tick() => return Some(Bytes::from_static(KEEP_ALIVE)),
            }
        }
    }

    /// Reads one page of the log after `seen`, keeping the upload's events to send.
    async fn catch_up(&mut self) -> Result<(), SessionError> {
        let f = &mut self.follow;
        let page = f.log.read_after(&f.seen.position, PAGE).await?;
        let caught_up = page.len() < PAGE;
        self.scanned += page.len();
        for logged in page {
            let Some(order) = f.log.order(&logged.position) else { continue };
            if logged.event.upload_id == f.upload {
                self.pending.extend(frame(&logged));
            }
            f.seen = Mark { position: logged.position, order };
        }
        if !caught_up && self.scanned >= REPLAY_LIMIT {
            let now = f.cursor.borrow().clone();
            if let Some(now) = now.filter(|now| now.order > f.seen.order) {
                f.seen = now;
            }
            self.pending.push_back(Bytes::from_static(SKIPPED));
        }
        if caught_up || self.scanned >= REPLAY_LIMIT {
            f.behind = false;
            self.scanned = 0;
        }
        Ok(())
    }
}
