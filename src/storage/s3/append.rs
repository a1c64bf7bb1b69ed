//! Appends on S3 (tus, the IETF draft): an append upload's bytes, in order, form the parts
//! of its multipart upload, `storage.s3.part_size` bytes each (part index `k` is part
//! number `k + 1`); only the upload's last part is shorter.
//!
//! **The tail.** Bytes past the last full part at the end of a request (when the request
//! does not end the upload) are kept in the bucket as an object of their own,
//! `<prefix>.ferry/<upload id>/tail-<offset>-<uuid>`, never only in this instance's memory
//! or on its disk; the cursor recorded with the offset names it and its length. The next
//! append, on any instance, starts its first write with the tail's bytes (a GET streamed,
//! never buffered whole) followed by its own. When the old tail and the new bytes still
//! make less than a part, the new tail is a new object holding both.
//!
//! **Lengths up front.** UploadPart and PutObject need their `Content-Length` before the
//! first byte, and a part must be whole or S3 keeps nothing of it. So an append needs its
//! body's length (`AppendAt::len`, the request's `Content-Length`): with it, the request's
//! layout is known before a byte is read (full parts, then either the upload's last part
//! or a new tail) and every byte streams straight into its write. Without it this store
//! answers `LengthRequired` (411) and reads nothing: the alternatives are to buffer a
//! whole part (memory or local disk, which the house rules forbid) or to write bytes twice
//! through small staging objects; tus clients send `Content-Length`.
//!
//! **Memory.** A write is fed through `body::channel` (`CHANNEL_PIECES` pieces) plus one
//! piece held back and one carried over: pieces as they come from the client or the tail's
//! GET, split at part boundaries (`Bytes::split_to`, no copy) and never joined, so no
//! buffer ever holds a part.
//!
//! **A cut body.** Parts finished before the cut are kept and reported with their
//! receipts; a write in flight is broken off short of its length, so S3 keeps nothing of
//! it. The new offset covers exactly the finished parts plus a tail written whole; while
//! no part is finished the old tail stays the cursor, so the offset never goes backwards.
//!
//! **Nothing recorded is disturbed.** An append writes only parts at or past `at.parts`
//! and tails under fresh names; the recorded tail is never overwritten. An old tail is
//! deleted only once a later state is recorded: the cursor that replaces it names it
//! (`drop=`), and the append that starts from that recorded cursor deletes it (in the
//! background; any instance). Tails of appends never recorded, and anything a failed
//! delete left, go when the upload completes or is aborted: both delete everything under
//! its staging prefix (completing a partial upload keeps the object it made there).
//! Deleting on the spot instead would lose the upload's bytes when the append is then not
//! recorded (a digest mismatch, a lost claim, a crash).

use std::pin::pin;

use aws_sdk_s3::primitives::ByteStream as SdkStream;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use futures_util::future::{self, Either, LocalBoxFuture};
use futures_util::{FutureExt, StreamExt};

use super::{body, errors, multipart_id, part_number, unquote, S3ObjectStore};
use crate::domain::{ChunkIndex, Md5Digest, Md5Hasher, PartReceipt};
use crate::storage::{AppendAt, AppendStored, ByteStream, StagedUpload, StorageError};

/// The store's cursor: the tail object, if any, and an older tail to delete once this
/// cursor is recorded. Written `tail=<name>:<len>;drop=<name>`, either half optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Cursor {
    /// The unfinished tail's object name (under the upload's staging prefix) and length.
    tail: Option<(String, u64)>,
    /// A tail this cursor replaced.
    drop: Option<String>,
}

impl Cursor {
    fn parse(text: &str) -> Result<Self, StorageError> {
        let bad = || StorageError::Refused(format!("{text:?} is not a cursor of the S3 store"));
        let mut cursor = Self::default();
        for field in text.split(';').filter(|f| !f.is_empty()) {
            match field.split_once('=').ok_or_else(bad)? {
                ("tail", value) => {
                    let (name, len) = value.split_once(':').ok_or_else(bad)?;
                    cursor.tail = Some((checked_name(name).ok_or_else(bad)?, len.parse().map_err(|_| bad())?));
                }
                ("drop", name) => cursor.drop = Some(checked_name(name).ok_or_else(bad)?),
                _ => return Err(bad()),
            }
        }
        Ok(cursor)
    }

    fn encode(&self) -> String {
        let tail = self.tail.as_ref().map(|(name, len)| format!("tail={name}:{len}"));
        let drop = self.drop.as_ref().map(|name| format!("drop={name}"));
        tail.into_iter().chain(drop).collect::<Vec<_>>().join(";")
    }

    fn tail_len(&self) -> u64 {
        self.tail.as_ref().map_or(0, |(_, len)| *len)
    }
}

/// A tail's name, if it is one this store would make (no path games from a cursor).
fn checked_name(name: &str) -> Option<String> {
    let ok = name.starts_with("tail-") && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    ok.then(|| name.to_owned())
}

/// One write of an append: a part of the multipart upload, or a new tail object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    /// Part `index` (number `index + 1`) of this many bytes.
    Part(u32, u64),
    /// The new tail, of this many bytes.
    Tail(u64),
}

/// The writes of an append of `len` bytes after a tail of `tail` bytes: full parts, then
/// the upload's last part when the append reaches `length`, else the rest as a new tail.
fn layout(at: &AppendAt, tail: u64, len: u64, part_size: u64) -> Vec<Write> {
    let whole = tail + len;
    let ends = at.length == Some(at.offset + len);
    let (full, rest) = (whole / part_size, whole % part_size);
    let mut writes: Vec<Write> = (0..full).map(|k| Write::Part(at.parts + k as u32, part_size)).collect();
    if rest > 0 {
        writes.push(if ends { Write::Part(at.parts + full as u32, rest) } else { Write::Tail(rest) });
    }
    writes
}

/// Why a stream of bytes stopped before its writes were done.
enum Stop {
    /// The client's body broke, or carried more or fewer bytes than it said.
    Client(StorageError),
    /// The store failed.
    Store(StorageError),
}

impl Stop {
    fn into_error(self) -> StorageError {
        match self {
            Stop::Client(err) | Stop::Store(err) => err,
        }
    }
}

/// The append's bytes in order: the old tail's (a GET in flight), then the client's.
struct Source<'a> {
    tail: Option<SdkStream>,
    /// Tail bytes still to come, as the cursor says.
    tail_left: u64,
    body: ByteStream<'a>,
    /// The client's bytes so far, and how many it declared.
    body_seen: u64,
    body_len: u64,
    /// What is left of the last piece read, past a write's end.
    carry: Bytes,
}

impl Source<'_> {
    /// The next piece, at most `limit` bytes; `None` once the body has ended.
    async fn next(&mut self, limit: u64) -> Result<Option<Bytes>, Stop> {
        while self.carry.is_empty() {
            if let Some(tail) = self.tail.as_mut() {
                match tail.next().await {
                    Some(Ok(piece)) if piece.len() as u64 <= self.tail_left => {
                        self.tail_left -= piece.len() as u64;
                        self.carry = piece;
                    }
                    None if self.tail_left == 0 => self.tail = None,
                    Some(Ok(_)) | None => {
                        return Err(Stop::Store(StorageError::Refused("the tail object's length changed".into())))
                    }
                    Some(Err(e)) => return Err(Stop::Store(StorageError::unavailable(e))),
                }
                continue;
            }
            match self.body.next().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(Stop::Client(StorageError::Body(e))),
                Some(Ok(piece)) => {
                    self.body_seen += piece.len() as u64;
                    if self.body_seen > self.body_len {
                        let (expected, received) = (self.body_len, self.body_seen);
                        return Err(Stop::Client(StorageError::IncompleteBody { expected, received }));
                    }
                    self.carry = piece;
                }
            }
        }
        let take = usize::try_from(limit).unwrap_or(usize::MAX).min(self.carry.len());
        Ok(Some(self.carry.split_to(take)))
    }

    /// Whether the body carries bytes past those it declared (read ahead by one piece).
    async fn ends_here(&mut self) -> Result<(), Stop> {
        match self.next(1).await? {
            None => Ok(()),
            Some(_) => {
                Err(Stop::Client(StorageError::IncompleteBody { expected: self.body_len, received: self.body_seen }))
            }
        }
    }
}

/// Passes exactly `n` bytes of `source` to `tx`, hashing them. The last piece is held
/// back until all `n` are there (and, for the append's last write, until the body has
/// ended), so a write whose bytes break off never reaches the store whole.
async fn feed(source: &mut Source<'_>, tx: body::PieceSender, n: u64, last: bool) -> Result<Option<Md5Digest>, Stop> {
    let mut hasher = Md5Hasher::new();
    let mut held: Option<Bytes> = None;
    while hasher.len() < n {
        let piece = match source.next(n - hasher.len()).await {
            Ok(Some(piece)) => piece,
            Ok(None) => {
                let (expected, received) = (source.body_len, source.body_seen);
                return refuse(&tx, Stop::Client(StorageError::IncompleteBody { expected, received })).await;
            }
            Err(stop) => return refuse(&tx, stop).await,
        };
        hasher.update(&piece);
        if let Some(ready) = held.replace(piece) {
            if tx.send(Ok(ready)).await.is_err() {
                return Ok(None);
            }
        }
    }
    if last {
        if let Err(stop) = source.ends_here().await {
            return refuse(&tx, stop).await;
        }
    }
    if let Some(piece) = held {
        if tx.send(Ok(piece)).await.is_err() {
            return Ok(None);
        }
    }
    Ok(Some(hasher.finish()))
}

/// Breaks the write off short of its length (see `body::feed`).
async fn refuse<T>(tx: &body::PieceSender, stop: Stop) -> Result<T, Stop> {
    let _ = tx.send(Err(std::io::Error::other("the append's bytes broke off"))).await;
    Err(stop)
}

impl S3ObjectStore {
    /// See `ObjectStore::append` and this module's notes.
    pub(super) async fn append_bytes(
        &self,
        upload: &StagedUpload,
        at: &AppendAt,
        body: ByteStream<'_>,
        max: u64,
    ) -> Result<AppendStored, StorageError> {
        let len = at.len.ok_or(StorageError::LengthRequired)?;
        if len > max {
            return Err(StorageError::TooLarge { max });
        }
        let cursor = Cursor::parse(&at.cursor)?;
        let tail = cursor.tail_len();
        if tail > at.offset {
            return Err(StorageError::Refused(format!("a tail of {tail} bytes at offset {}", at.offset)));
        }
        // Every part but the last is whole: 10,000 of them bound the upload.
        let most = self.part_size.saturating_mul(super::MAX_PARTS);
        if at.offset + len > most {
            return Err(StorageError::TooLarge { max: most.saturating_sub(at.offset) });
        }
        let writes = layout(at, tail, len, self.part_size);
        // The recorded cursor replaced this tail: no recorded state needs it any more.
        if let Some(old) = &cursor.drop {
            self.delete_in_background(format!("{}{old}", self.staging_prefix(upload)));
        }
        let unchanged =
            || AppendStored { offset: at.offset, cursor: at.cursor.clone(), parts: Vec::new(), broken: None };
        if writes.is_empty() {
            // Nothing to write (an empty body short of the end, or one that ends the
            // upload on a part boundary): the cursor stays, and with it its tail.
            return Ok(unchanged());
        }
        let tail_stream = match &cursor.tail {
            Some((name, _)) => Some(self.open_tail(&format!("{}{name}", self.staging_prefix(upload))).await?),
            None => None,
        };
        let mut source =
            Source { tail: tail_stream, tail_left: tail, body, body_seen: 0, body_len: len, carry: Bytes::new() };

        let start = at.offset - tail;
        let mut done = Vec::new();
        let mut new_tail = None;
        let mut broken = None;
        for (i, write) in writes.iter().enumerate() {
            let last = i + 1 == writes.len();
            match self.write(upload, at, *write, &mut source, last).await {
                Ok(Written::Part(index, receipt)) => done.push((ChunkIndex(index), receipt)),
                Ok(Written::Tail(name, size)) => new_tail = Some((name, size)),
                Err(Stop::Store(err)) if done.is_empty() => return Err(err),
                Err(stop) => {
                    broken = Some(stop.into_error());
                    break;
                }
            }
        }
        if done.is_empty() && new_tail.is_none() {
            // Nothing new is durable: the old tail is still the upload's.
            return Ok(AppendStored { broken, ..unchanged() });
        }
        let in_parts: u64 = done.iter().map(|(_, r)| r.size).sum();
        let tail_size = new_tail.as_ref().map_or(0, |(_, size)| *size);
        let next = Cursor { tail: new_tail, drop: cursor.tail.map(|(name, _)| name) };
        Ok(AppendStored { offset: start + in_parts + tail_size, cursor: next.encode(), parts: done, broken })
    }

    /// Opens the GET of a recorded tail.
    async fn open_tail(&self, key: &str) -> Result<SdkStream, StorageError> {
        let request = self.client.get_object().bucket(&self.bucket).key(key);
        match errors::on_io(request.send()).await {
            Ok(out) => Ok(out.body),
            Err(err) if errors::code(&err) == Some("NoSuchKey") || errors::is_not_found(&err) => {
                Err(StorageError::Refused(format!("the upload's recorded tail {key} is gone")))
            }
            Err(err) => Err(errors::storage(err)),
        }
    }

    /// Streams the bytes of one write from `source` into the store.
    async fn write(
        &self,
        upload: &StagedUpload,
        at: &AppendAt,
        write: Write,
        source: &mut Source<'_>,
        last: bool,
    ) -> Result<Written, Stop> {
        let (tx, rx) = body::channel();
        let stream = SdkStream::new(SdkBody::from_body_1_x(rx));
        let (size, send): (u64, LocalBoxFuture<'_, Result<Option<String>, StorageError>>) = match write {
            Write::Part(index, size) => {
                let number = part_number(ChunkIndex(index)).map_err(Stop::Store)?;
                let multipart = multipart_id(upload).map_err(Stop::Store)?;
                let request = self.streams.upload_part().bucket(&self.bucket).key(self.target_key(upload));
                let request = request.upload_id(multipart).part_number(number).content_length(size as i64);
                let send = errors::on_io(request.body(stream).send());
                (size, send.map(|out| out.map(|o| o.e_tag).map_err(errors::storage)).boxed_local())
            }
            Write::Tail(size) => {
                let name = format!("tail-{}-{}", at.offset + source.body_len, uuid::Uuid::new_v4().simple());
                let key = format!("{}{name}", self.staging_prefix(upload));
                let request = self.streams.put_object().bucket(&self.bucket).key(key).content_length(size as i64);
                let send = errors::on_io(request.body(stream).send());
                let named = send.map(move |out| out.map(|_| Some(name)).map_err(errors::storage));
                (size, named.boxed_local())
            }
        };
        // The client's body is not `Send`: it is fed from this task while the request
        // runs on the I/O runtime (as in `put_part`).
        let fed = pin!(feed(source, tx, size, last));
        let (md5, sent) = match future::select(fed, send).await {
            Either::Left((fed, send)) => (fed?, send.await),
            Either::Right((Ok(sent), fed)) => (fed.await?, Ok(sent)),
            Either::Right((Err(err), _)) => return Err(Stop::Store(err)),
        };
        let answer = sent.map_err(Stop::Store)?;
        let md5 =
            md5.ok_or_else(|| Stop::Store(StorageError::Refused("the store answered before the whole write".into())))?;
        match write {
            Write::Part(index, size) => {
                let etag = answer.as_deref().map(unquote);
                let etag = etag
                    .ok_or_else(|| Stop::Store(StorageError::Refused("the store gave no ETag for the part".into())))?;
                Ok(Written::Part(index, PartReceipt { md5, etag, size, crc64: None }))
            }
            Write::Tail(size) => Ok(Written::Tail(answer.unwrap_or_default(), size)),
        }
    }
}

/// What a write stored.
enum Written {
    Part(u32, PartReceipt),
    /// A tail object's name and size.
    Tail(String, u64),
}

#[cfg(test)]
mod tests {
    use futures_util::stream;

    use super::*;

    const P: u64 = 10;

    fn at(offset: u64, parts: u32, length: Option<u64>) -> AppendAt {
        AppendAt { offset, cursor: String::new(), parts, length, len: None }
    }

    #[test]
    fn an_append_fills_parts_and_keeps_the_rest_as_a_tail() {
        assert_eq!(layout(&at(0, 0, None), 0, 1, P), vec![Write::Tail(1)]);
        assert_eq!(layout(&at(1, 0, None), 1, 9, P), vec![Write::Part(0, P)]);
        assert_eq!(layout(&at(3, 0, None), 3, 25, P), vec![Write::Part(0, P), Write::Part(1, P), Write::Tail(8)]);
        assert_eq!(layout(&at(20, 2, None), 0, 0, P), vec![]);
    }

    #[test]
    fn the_append_that_ends_the_upload_writes_its_last_part_short() {
        assert_eq!(layout(&at(3, 0, Some(15)), 3, 12, P), vec![Write::Part(0, P), Write::Part(1, 5)]);
        assert_eq!(layout(&at(23, 2, Some(30)), 3, 7, P), vec![Write::Part(2, P)]);
        assert_eq!(layout(&at(20, 2, Some(20)), 0, 0, P), vec![]);
        assert_eq!(layout(&at(0, 0, Some(4)), 0, 4, P), vec![Write::Part(0, 4)]);
    }

    #[actix_web::test]
    async fn an_append_past_ten_thousand_parts_is_too_large_before_any_call() {
        let settings = crate::config::S3Settings {
            bucket: Some("b".into()),
            endpoint: Some("http://127.0.0.1:9".into()),
            ..Default::default()
        };
        let sdk = aws_config::SdkConfig::builder().behavior_version(aws_config::BehaviorVersion::latest()).build();
        let store = S3ObjectStore::from_sdk_config(&settings, &sdk).unwrap();
        let id = crate::domain::UploadId::new();
        let up = StagedUpload { append: true, ..StagedUpload::new(id, crate::domain::ObjectKey::new(&id, "x")) };
        let most = settings.part_size * 10_000;
        let at = AppendAt { offset: most - 1, len: Some(2), ..at(0, 9_999, None) };
        let body = stream::iter([Ok(Bytes::from_static(b"xy"))]).boxed_local();
        let err = store.append_bytes(&up, &at, body, u64::MAX).await.unwrap_err();
        assert!(matches!(err, StorageError::TooLarge { max: 1 }), "{err:?}");
    }

    #[test]
    fn a_cursor_reads_back_what_it_wrote() {
        for cursor in [
            Cursor::default(),
            Cursor { tail: Some(("tail-5-abc".into(), 5)), drop: None },
            Cursor { tail: Some(("tail-9-def".into(), 9)), drop: Some("tail-5-abc".into()) },
            Cursor { tail: None, drop: Some("tail-5-abc".into()) },
        ] {
            assert_eq!(Cursor::parse(&cursor.encode()).unwrap(), cursor);
        }
        assert!(Cursor::parse("tail=../x:3").is_err());
        assert!(Cursor::parse("what=ever").is_err());
    }

    /// The memory bound: a write's pieces are the client's own pieces, split at write
    /// boundaries and never joined, so no buffer ever grows to a part.
    #[actix_web::test]
    async fn pieces_are_split_at_write_boundaries_and_never_joined() {
        let pieces: Vec<Result<Bytes, std::io::Error>> =
            [3usize, 4, 5, 9].iter().map(|&n| Ok(Bytes::from(vec![1u8; n]))).collect();
        let mut source = Source {
            tail: None,
            tail_left: 0,
            body: stream::iter(pieces).boxed_local(),
            body_seen: 0,
            body_len: 21,
            carry: Bytes::new(),
        };
        let mut sizes = Vec::new();
        for write in [10u64, 10, 1] {
            let mut left = write;
            while left > 0 {
                let piece = source.next(left).await.ok().flatten().unwrap();
                left -= piece.len() as u64;
                sizes.push(piece.len());
            }
        }
        assert_eq!(sizes, vec![3, 4, 3, 2, 8, 1]);
        assert!(source.ends_here().await.is_ok());
    }
}
