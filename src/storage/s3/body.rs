//! Bodies on their way to S3: a client's chunk streamed through a small bounded channel
//! (the HTTP server's payload is not `Send`, the SDK's body must be), and bodies of
//! unknown length cut into parts of a fixed size.

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream as SdkStream;
use aws_smithy_types::body::SdkBody;
use bytes::{Bytes, BytesMut};
use futures_util::future::{self, Either};
use futures_util::StreamExt;
use http_body::Frame;
use tokio::sync::mpsc;

use super::errors::{self, S3Error};
use crate::domain::{Md5Digest, Md5Hasher};
use crate::storage::{ByteStream, StorageError};

/// Pieces of a chunk in flight between the client's body and the S3 request: memory per
/// request is this many pieces (plus the one held back), whatever the chunk size.
pub(super) const CHANNEL_PIECES: usize = 2;

/// A piece of a body, or the reason the body is given up.
type Piece = Result<Bytes, io::Error>;

/// The sending end, fed by [`feed`].
pub(super) type PieceSender = mpsc::Sender<Piece>;

/// The SDK's side of the channel: an HTTP body that yields the pieces [`feed`] passes on.
pub(super) struct ChannelBody(mpsc::Receiver<Piece>);

/// A channel of `CHANNEL_PIECES` pieces: the sender for [`feed`], the body for the SDK.
pub(super) fn channel() -> (PieceSender, ChannelBody) {
    let (tx, rx) = mpsc::channel(CHANNEL_PIECES);
    (tx, ChannelBody(rx))
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.0.poll_recv(cx).map(|piece| piece.map(|piece| piece.map(Frame::data)))
    }
}

/// Streams exactly `len` bytes of `body` (checked as [`feed`] does) as the body of the
/// request `send` makes from it, and answers their MD5 with the store's answer. The
/// client's body is not `Send`: it is fed from this task, while the request runs on the
/// I/O runtime (dropping it there breaks the request off).
pub(super) async fn stream<T, E, F>(
    body: ByteStream<'_>,
    len: u64,
    expected: Option<Md5Digest>,
    send: impl FnOnce(SdkStream) -> F,
) -> Result<(Md5Digest, T), StorageError>
where
    F: Future<Output = Result<T, S3Error<E>>> + Send + 'static,
    T: Send + 'static,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (tx, rx) = channel();
    let send = pin!(errors::on_io(send(SdkStream::new(SdkBody::from_body_1_x(rx)))));
    let fed = pin!(feed(body, tx, len, expected));
    let (md5, sent) = match future::select(fed, send).await {
        // A refused body: dropping the request breaks it off before the store has it whole.
        Either::Left((fed, send)) => (fed?, send.await),
        Either::Right((Ok(sent), fed)) => (fed.await?, Ok(sent)),
        // The store took the whole body and disagrees on its MD5: the feed is done.
        Either::Right((Err(err), fed)) if errors::is_digest_refusal(&err) => (fed.await?, Err(err)),
        Either::Right((Err(err), _)) => return Err(errors::storage(err)),
    };
    let out = match sent {
        Ok(out) => out,
        Err(err) => match (expected, md5) {
            (Some(expected), Some(actual)) if errors::is_digest_refusal(&err) => {
                return Err(StorageError::ChecksumMismatch { expected, actual })
            }
            _ => return Err(errors::storage(err)),
        },
    };
    let md5 = md5.ok_or_else(|| StorageError::Refused("the store answered before the whole body".into()))?;
    Ok((md5, out))
}

/// Passes exactly `len` bytes of `body` to `tx`, hashing them, and answers their MD5; `None`
/// when the request stopped taking bytes (it failed: its own error says why).
///
/// The last piece is held back until the body has ended, its length is right and its MD5
/// is the declared one. A refused body therefore never reaches the store whole: the request
/// breaks off short of its `Content-Length` and the store keeps nothing, even one that does
/// not check `Content-MD5` (a corrupt re-send cannot replace a good part).
pub(super) async fn feed(
    mut body: ByteStream<'_>,
    tx: PieceSender,
    len: u64,
    expected: Option<Md5Digest>,
) -> Result<Option<Md5Digest>, StorageError> {
    let mut hasher = Md5Hasher::new();
    let mut held: Option<Bytes> = None;
    while let Some(piece) = body.next().await {
        let piece = match piece {
            Ok(piece) => piece,
            Err(e) => return refuse(&tx, StorageError::Body(e)).await,
        };
        if piece.is_empty() {
            continue;
        }
        hasher.update(&piece);
        if hasher.len() > len {
            return refuse(&tx, StorageError::IncompleteBody { expected: len, received: hasher.len() }).await;
        }
        if let Some(ready) = held.replace(piece) {
            if tx.send(Ok(ready)).await.is_err() {
                return Ok(None);
            }
        }
    }
    if hasher.len() != len {
        return refuse(&tx, StorageError::IncompleteBody { expected: len, received: hasher.len() }).await;
    }
    let md5 = hasher.finish();
    if let Some(expected) = expected.filter(|e| *e != md5) {
        return refuse(&tx, StorageError::ChecksumMismatch { expected, actual: md5 }).await;
    }
    if let Some(last) = held {
        if tx.send(Ok(last)).await.is_err() {
            return Ok(None);
        }
    }
    Ok(Some(md5))
}

/// Breaks the request off: an error in the body makes the HTTP client abandon it, short
/// of its `Content-Length`. Waits for room in the channel: the request either takes the
/// error soon or has failed already, and then the send fails at once.
async fn refuse<T>(tx: &PieceSender, err: StorageError) -> Result<T, StorageError> {
    let _ = tx.send(Err(io::Error::other("the client's body was refused"))).await;
    Err(err)
}

/// A body of unknown length, cut into parts of `part_size` bytes (the last one shorter),
/// refused once it grows past `max` bytes. Holds at most one part and one piece.
pub(super) struct Parts<'a> {
    body: ByteStream<'a>,
    carry: Bytes,
    part_size: usize,
    seen: u64,
    max: u64,
    ended: bool,
}

impl<'a> Parts<'a> {
    /// Cuts `body` into parts of `part_size` bytes.
    pub(super) fn new(body: ByteStream<'a>, part_size: usize, max: u64) -> Self {
        Self { body, carry: Bytes::new(), part_size, seen: 0, max, ended: false }
    }

    /// The next part: `part_size` bytes, fewer only at the end (empty when the body ended
    /// on a part boundary).
    pub(super) async fn next(&mut self) -> Result<Bytes, StorageError> {
        // Sized once: growing by doubling would copy the part over and over and hold up to
        // twice its size at the peak.
        let mut part = BytesMut::with_capacity(self.part_size);
        loop {
            let take = self.carry.len().min(self.part_size - part.len());
            part.extend_from_slice(&self.carry.split_to(take));
            if part.len() == self.part_size || self.ended {
                return Ok(part.freeze());
            }
            match self.body.next().await {
                None => self.ended = true,
                Some(Err(e)) => return Err(StorageError::Body(e)),
                Some(Ok(piece)) => {
                    self.seen += piece.len() as u64;
                    if self.seen > self.max {
                        return Err(StorageError::TooLarge { max: self.max });
                    }
                    self.carry = piece;
                }
            }
        }
    }

    /// Whether every byte of the body has been handed out.
    pub(super) fn finished(&self) -> bool {
        self.ended && self.carry.is_empty()
    }

    /// Bytes of the body so far.
    pub(super) fn seen(&self) -> u64 {
        self.seen
    }
}

#[cfg(test)]
mod tests {
    use futures_util::stream::{self, StreamExt};

    use super::*;

    fn pieces(sizes: &[usize]) -> ByteStream<'static> {
        let pieces: Vec<Piece> = sizes.iter().map(|&n| Ok(Bytes::from(vec![7u8; n]))).collect();
        stream::iter(pieces).boxed_local()
    }

    #[actix_web::test]
    async fn parts_are_cut_at_the_part_size_across_pieces() {
        let mut parts = Parts::new(pieces(&[3, 4, 5]), 5, 100);
        assert_eq!(parts.next().await.unwrap().len(), 5);
        assert_eq!(parts.next().await.unwrap().len(), 5);
        assert!(!parts.finished());
        assert_eq!(parts.next().await.unwrap().len(), 2);
        assert!(parts.finished());
        assert_eq!(parts.seen(), 12);
    }

    #[actix_web::test]
    async fn a_body_ending_on_a_part_boundary_ends_with_an_empty_part() {
        let mut parts = Parts::new(pieces(&[5]), 5, 100);
        assert_eq!(parts.next().await.unwrap().len(), 5);
        assert!(!parts.finished());
        assert!(parts.next().await.unwrap().is_empty());
        assert!(parts.finished());
    }

    #[actix_web::test]
    async fn a_body_past_the_limit_is_too_large() {
        let mut parts = Parts::new(pieces(&[6, 6]), 100, 11);
        assert!(matches!(parts.next().await, Err(StorageError::TooLarge { max: 11 })));
    }

    /// Everything the SDK's side of the channel receives, until it ends or fails.
    async fn drain(body: ChannelBody) -> (usize, bool) {
        let mut rx = body.0;
        let (mut bytes, mut failed) = (0, false);
        while let Some(piece) = rx.recv().await {
            match piece {
                Ok(piece) => bytes += piece.len(),
                Err(_) => failed = true,
            }
        }
        (bytes, failed)
    }

    #[actix_web::test]
    async fn a_good_body_passes_whole() {
        let (tx, rx) = channel();
        let declared = Md5Digest::of(&[7u8; 12]);
        let (fed, (bytes, failed)) = tokio::join!(feed(pieces(&[3, 4, 5]), tx, 12, Some(declared)), drain(rx));
        assert_eq!(fed.unwrap(), Some(declared));
        assert_eq!((bytes, failed), (12, false));
    }

    #[actix_web::test]
    async fn a_body_with_the_wrong_md5_never_passes_whole() {
        let (tx, rx) = channel();
        let declared = Md5Digest::of(b"something else");
        let (fed, (bytes, failed)) = tokio::join!(feed(pieces(&[3, 4, 5]), tx, 12, Some(declared)), drain(rx));
        assert!(matches!(fed, Err(StorageError::ChecksumMismatch { .. })));
        assert_eq!((bytes, failed), (7, true));
    }

    #[actix_web::test]
    async fn a_body_longer_than_declared_never_passes_whole() {
        let (tx, rx) = channel();
        let (fed, (bytes, failed)) = tokio::join!(feed(pieces(&[3, 4, 5]), tx, 10, None), drain(rx));
        assert!(matches!(fed, Err(StorageError::IncompleteBody { expected: 10, received: 12 })));
        assert!(bytes < 10 && failed);
    }
}
