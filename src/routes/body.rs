//! Upload bodies: at most `server.max_bodies_in_flight` of them read at once per instance,
//! and none left idle longer than `server.body_idle_timeout_secs`. Any route that reads an
//! upload body (chunk, form, and later tus PATCH) takes an `UploadBody` as an extractor.

use std::cell::Cell;
use std::future::{ready, Ready};
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use actix_web::{FromRequest, HttpRequest};
use futures_util::stream::{self, LocalBoxStream};
use futures_util::StreamExt;
use prometheus::IntGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{ApiError, ErrorCode};

/// The limits every upload body shares on one instance.
#[derive(Debug, Clone)]
pub struct BodyLimits {
    slots: Arc<Semaphore>,
    idle: Duration,
    in_flight: IntGauge,
}

impl BodyLimits {
    /// At most `max_in_flight` bodies at once, each cut after `idle` without a byte;
    /// `in_flight` reports how many are being read.
    pub fn new(max_in_flight: usize, idle: Duration, in_flight: IntGauge) -> Self {
        Self { slots: Arc::new(Semaphore::new(max_in_flight)), idle, in_flight }
    }

    /// Refuses with `busy` when no slot is free at this moment (nothing is held: a body
    /// that comes later takes its slot as usual).
    pub(super) fn check_free(&self) -> Result<(), ApiError> {
        if self.slots.available_permits() == 0 {
            return Err(busy());
        }
        Ok(())
    }
}

fn busy() -> ApiError {
    ApiError::new(ErrorCode::Busy, "this instance is reading as many upload bodies as it may; retry shortly")
}

/// A request body that holds one of the instance's slots until it is dropped, and ends in
/// an error when the client sends nothing for the idle timeout.
pub struct UploadBody {
    stream: LocalBoxStream<'static, Result<Bytes, PayloadError>>,
    guard: BodyGuard,
}

/// What stays with the handler while the body stream is read elsewhere: the slot, and
/// whether the body was cut for idling.
pub struct BodyGuard {
    timed_out: Rc<Cell<bool>>,
    idle: Duration,
    in_flight: IntGauge,
    _slot: OwnedSemaphorePermit,
}

impl UploadBody {
    /// The body stream, and the guard to keep until the request is answered.
    pub fn split(self) -> (LocalBoxStream<'static, Result<Bytes, PayloadError>>, BodyGuard) {
        (self.stream, self.guard)
    }
}

impl BodyGuard {
    /// `err` as the client should see it: a body cut for idling is a 408 `body-timeout`,
    /// whatever the reader made of the broken stream.
    pub fn explain(&self, err: ApiError) -> ApiError {
        if self.timed_out.get() {
            ApiError::new(
                ErrorCode::BodyTimeout,
                format!("the body sent nothing for {} s and was cut; nothing of it was kept", self.idle.as_secs()),
            )
        } else {
            err
        }
    }
}

impl Drop for BodyGuard {
    fn drop(&mut self) {
        self.in_flight.dec();
    }
}

impl FromRequest for UploadBody {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        ready((|| {
            let limits = &super::access::state(req)?.bodies;
            // Refused before a byte of the body is read: the client may send it again later.
            let slot = Arc::clone(&limits.slots).try_acquire_owned().map_err(|_| busy())?;
            limits.in_flight.inc();
            let timed_out = Rc::new(Cell::new(false));
            let guard = BodyGuard {
                timed_out: Rc::clone(&timed_out),
                idle: limits.idle,
                in_flight: limits.in_flight.clone(),
                _slot: slot,
            };
            let stream = idle_limited(payload.take(), limits.idle, timed_out);
            Ok(UploadBody { stream, guard })
        })())
    }
}

/// Ends `body` with an error, setting `timed_out`, when no piece arrives for `idle`.
fn idle_limited<S>(
    body: S,
    idle: Duration,
    timed_out: Rc<Cell<bool>>,
) -> LocalBoxStream<'static, Result<Bytes, PayloadError>>
where
    S: futures_util::Stream<Item = Result<Bytes, PayloadError>> + Unpin + 'static,
{
    stream::unfold(Some(body), move |body| {
        let timed_out = Rc::clone(&timed_out);
        async move {
            let mut body = body?;
            match tokio::time::timeout(idle, body.next()).await {
                Ok(Some(piece)) => Some((piece, Some(body))),
                Ok(None) => None,
                Err(_) => {
                    timed_out.set(true);
                    let err = io::Error::new(io::ErrorKind::TimedOut, "the body sent nothing for too long");
                    // Nothing more is read from a body once it has been cut.
                    Some((Err(PayloadError::Io(err)), None))
                }
            }
        }
    })
    // Readers such as the multipart parser may poll again after the end.
    .fuse()
    .boxed_local()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_that_stalls_ends_in_an_error_and_says_so() {
        let pieces = stream::iter([Ok(Bytes::from_static(b"abc"))]).chain(stream::pending());
        let timed_out = Rc::new(Cell::new(false));
        let mut body = idle_limited(pieces, Duration::from_millis(50), Rc::clone(&timed_out));
        assert_eq!(body.next().await.unwrap().unwrap(), Bytes::from_static(b"abc"));
        assert!(matches!(body.next().await, Some(Err(PayloadError::Io(e))) if e.kind() == io::ErrorKind::TimedOut));
        assert!(timed_out.get());
        assert!(body.next().await.is_none(), "a cut body stays ended");
    }

    #[tokio::test]
    async fn a_body_that_keeps_sending_is_not_cut() {
        let timed_out = Rc::new(Cell::new(false));
        let pieces = stream::iter(0..5).then(|_| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok::<_, PayloadError>(Bytes::from_static(b"x"))
        });
        let body = idle_limited(Box::pin(pieces), Duration::from_secs(5), Rc::clone(&timed_out));
        assert_eq!(body.count().await, 5);
        assert!(!timed_out.get());
    }
}
