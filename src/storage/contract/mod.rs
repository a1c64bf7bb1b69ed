//! The shared contract suite of `ObjectStore`: every backend runs these same cases,
//! unchanged, through `object_store_contract!`. Parts are 5 MiB (the S3 minimum) so the
//! cases hold for real S3-protocol servers too.

// Test support: a failed expectation is the case failing.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{self, StreamExt};

use super::{AppendAt, ByteStream, ObjectAttributes, ObjectStore, StagedUpload, StorageError};
use crate::domain::{ChunkIndex, Md5Digest, ObjectKey, PartReceipt, UploadId};

mod concat;
mod direct;
mod grouped;

pub use concat::*;
pub use direct::*;
pub use grouped::*;

/// Size of every part but the last in these cases.
pub const PART: usize = 5 * 1024 * 1024;

/// What a case needs to see beyond the trait: the stored bytes.
#[async_trait(?Send)]
pub trait Inspect {
    /// The bytes of the finished object at `key`, if there is one.
    async fn object(&self, key: &ObjectKey) -> Option<Vec<u8>>;
    /// Whether any staged part of `upload` is still kept.
    async fn has_staged_parts(&self, upload: &StagedUpload) -> bool;
}

/// A backend under test.
pub trait Harness: ObjectStore + Inspect {}
impl<T: ObjectStore + Inspect> Harness for T {}

/// Deterministic bytes that differ for every `seed`.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `data` as a body arriving in 64 KiB pieces.
pub fn body(data: &[u8]) -> ByteStream<'static> {
    let pieces: Vec<_> = data.chunks(64 * 1024).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    stream::iter(pieces).boxed_local()
}

/// The first `upto` bytes of `data`, then the connection drops.
fn cut_body(data: &[u8], upto: usize) -> ByteStream<'static> {
    let head = Bytes::copy_from_slice(&data[..upto]);
    let broken = io::Error::new(io::ErrorKind::ConnectionReset, "client went away");
    stream::iter([Ok(head), Err(broken)]).boxed_local()
}

async fn staged(store: &dyn Harness) -> StagedUpload {
    let id = UploadId::new();
    prepared(store, StagedUpload::new(id, ObjectKey::new(&id, "contract.bin"))).await
}

/// `up` with what `create_multipart` gave it.
async fn prepared(store: &dyn Harness, mut up: StagedUpload) -> StagedUpload {
    let attributes = ObjectAttributes {
        content_type: Some("video/mp4".into()),
        metadata: [("owner".to_string(), "contract".to_string()), ("ünïcode".to_string(), "kept aside".to_string())]
            .into(),
    };
    up.storage_upload_id = store.create_multipart(&up, &attributes).await.expect("create_multipart");
    up
}

async fn put(store: &dyn Harness, up: &StagedUpload, index: u32, data: &[u8]) -> (ChunkIndex, PartReceipt) {
    let receipt = store
        .put_part(up, ChunkIndex(index), body(data), data.len() as u64, Some(Md5Digest::of(data)))
        .await
        .expect("put_part");
    (ChunkIndex(index), receipt)
}

/// Three parts sent out of order assemble into exactly the original bytes.
pub async fn parts_in_any_order_assemble_the_original(store: &dyn Harness) {
    let up = staged(store).await;
    let chunks = [bytes(1, PART), bytes(2, PART), bytes(3, 1234)];
    let mut parts = Vec::new();
    for i in [2, 0, 1] {
        parts.push(put(store, &up, i, &chunks[i as usize]).await);
    }
    parts.sort_by_key(|(i, _)| *i);
    assert_eq!(parts[2].1.md5, Md5Digest::of(&chunks[2]));
    assert_eq!(parts[2].1.size, 1234);
    let size = (2 * PART + 1234) as u64;
    let object = store.complete(&up, &parts, size).await.expect("complete");
    assert_eq!(object.size, size);
    assert!(object.etag.ends_with("-3"), "multipart ETag: {}", object.etag);
    assert_eq!(store.object(&up.key).await.expect("object"), chunks.concat());
    assert!(!store.has_staged_parts(&up).await);
}

/// A body whose MD5 differs from the declared one is refused, and a good re-send wins.
pub async fn a_wrong_md5_is_refused_and_a_resend_wins(store: &dyn Harness) {
    let up = staged(store).await;
    let good = bytes(4, 1000);
    let mut bad = good.clone();
    bad[10] ^= 0xff;
    let err = store
        .put_part(&up, ChunkIndex(0), body(&bad), 1000, Some(Md5Digest::of(&good)))
        .await
        .expect_err("a corrupt body must be refused");
    assert!(matches!(err, StorageError::ChecksumMismatch { .. }), "{err:?}");
    let part = put(store, &up, 0, &good).await;
    store.complete(&up, &[part], 1000).await.expect("complete");
    assert_eq!(store.object(&up.key).await.expect("object"), good);
}

/// A body cut short, or shorter than declared, keeps nothing that could be assembled.
pub async fn a_body_cut_short_is_refused(store: &dyn Harness) {
    let up = staged(store).await;
    let data = bytes(5, 100_000);
    let err = store
        .put_part(&up, ChunkIndex(0), cut_body(&data, 50_000), 100_000, None)
        .await
        .expect_err("a broken body must be refused");
    assert!(err.is_client_fault(), "{err:?}");
    let err = store
        .put_part(&up, ChunkIndex(0), body(&data[..99_999]), 100_000, None)
        .await
        .expect_err("a short body must be refused");
    assert!(matches!(err, StorageError::IncompleteBody { .. }), "{err:?}");
    let part = put(store, &up, 0, &data).await;
    store.complete(&up, &[part], 100_000).await.expect("complete");
    assert_eq!(store.object(&up.key).await.expect("object"), data);
}

/// A re-sent part replaces the earlier one whole, and the earlier one can be dropped
/// (twice over) without touching the newer.
pub async fn a_resent_part_replaces_the_earlier_one(store: &dyn Harness) {
    let up = staged(store).await;
    let (_, older) = put(store, &up, 0, &bytes(6, 2000)).await;
    let newer = bytes(7, 2000);
    let part = put(store, &up, 0, &newer).await;
    store.drop_part(&up, ChunkIndex(0), &older).await.expect("drop the replaced send");
    store.drop_part(&up, ChunkIndex(0), &older).await.expect("dropping is idempotent");
    store.complete(&up, &[part], 2000).await.expect("complete");
    assert_eq!(store.object(&up.key).await.expect("object"), newer);
}

/// Two concurrent sends of one part, one of them corrupt, leave the good bytes.
pub async fn concurrent_sends_of_a_part_never_tear_it(store: &dyn Harness) {
    let up = staged(store).await;
    let good = bytes(8, PART);
    let mut bad = good.clone();
    bad[PART / 2] ^= 0x55;
    let declared = Some(Md5Digest::of(&good));
    let (a, b) = tokio::join!(
        store.put_part(&up, ChunkIndex(0), body(&good), PART as u64, declared),
        store.put_part(&up, ChunkIndex(0), body(&bad), PART as u64, declared),
    );
    let part = (ChunkIndex(0), a.expect("the good copy is kept"));
    assert!(matches!(b, Err(StorageError::ChecksumMismatch { .. })));
    let last = put(store, &up, 1, b"tail").await;
    let size = PART as u64 + 4;
    match store.complete(&up, &[part, last.clone()], size).await {
        Ok(_) => {}
        // A store that does not check Content-MD5 may have kept the corrupt copy last:
        // it must notice instead of assembling it, and take the chunk again.
        Err(StorageError::PartsChanged(chunks)) => {
            assert_eq!(chunks, vec![ChunkIndex(0)]);
            let again = put(store, &up, 0, &good).await;
            store.complete(&up, &[again, last], size).await.expect("complete");
        }
        Err(err) => panic!("complete failed: {err:?}"),
    }
    let mut expected = good;
    expected.extend_from_slice(b"tail");
    assert_eq!(store.object(&up.key).await.expect("object"), expected);
}

/// Abort drops every staged part, twice over, and leaves no object.
pub async fn abort_leaves_nothing(store: &dyn Harness) {
    let up = staged(store).await;
    put(store, &up, 0, &bytes(9, PART)).await;
    put(store, &up, 1, &bytes(10, 10)).await;
    assert!(store.has_staged_parts(&up).await);
    store.abort(&up).await.expect("abort");
    store.abort(&up).await.expect("abort is idempotent");
    assert!(!store.has_staged_parts(&up).await);
    assert_eq!(store.object(&up.key).await, None);
}

/// A whole object of unknown length streams in; one past the limit leaves nothing.
pub async fn whole_objects_stream_in_within_a_limit(store: &dyn Harness) {
    let key = ObjectKey::new(&UploadId::new(), "whole.bin");
    let data = bytes(11, 300_000);
    let object = store.put_object(&key, body(&data), 300_000, &ObjectAttributes::default()).await.expect("put_object");
    assert_eq!(object.size, 300_000);
    assert_eq!(store.object(&key).await.expect("object"), data);

    let key = ObjectKey::new(&UploadId::new(), "too-big.bin");
    let err =
        store.put_object(&key, body(&data), 299_999, &ObjectAttributes::default()).await.expect_err("over the limit");
    assert!(matches!(err, StorageError::TooLarge { max: 299_999 }), "{err:?}");
    assert_eq!(store.object(&key).await, None);

    let key = ObjectKey::new(&UploadId::new(), "empty.bin");
    let object = store.put_object(&key, body(b""), 10, &ObjectAttributes::default()).await.expect("empty object");
    assert_eq!((object.size, object.etag.as_str()), (0, "d41d8cd98f00b204e9800998ecf8427e"));
    assert_eq!(store.object(&key).await.expect("object"), Vec::<u8>::new());
}

/// Deleting an object removes it, and deleting again is fine.
pub async fn delete_removes_an_object(store: &dyn Harness) {
    let key = ObjectKey::new(&UploadId::new(), "doomed.bin");
    store.put_object(&key, body(b"bye"), 10, &ObjectAttributes::default()).await.expect("put_object");
    store.delete_object(&key).await.expect("delete");
    store.delete_object(&key).await.expect("delete is idempotent");
    assert_eq!(store.object(&key).await, None);
}

/// Completing with a missing part assembles nothing and names the part, so it can be
/// sent again; then the upload completes.
pub async fn a_missing_part_is_asked_for_again(store: &dyn Harness) {
    let up = staged(store).await;
    let first = put(store, &up, 0, &bytes(12, PART)).await;
    let ghost = (
        ChunkIndex(1),
        PartReceipt { md5: Md5Digest::of(b"x"), etag: Md5Digest::of(b"x").hex(), size: 1, crc64: None },
    );
    let err = store.complete(&up, &[first.clone(), ghost], PART as u64 + 1).await.expect_err("a part is missing");
    assert!(matches!(&err, StorageError::PartsChanged(chunks) if chunks == &[ChunkIndex(1)]), "{err:?}");
    assert_eq!(store.object(&up.key).await, None);
    let second = put(store, &up, 1, b"x").await;
    store.complete(&up, &[first, second], PART as u64 + 1).await.expect("complete once it came again");
    assert_eq!(store.object(&up.key).await.expect("object").len(), PART + 1);
}

/// Completing again after a success (a retry whose first answer was lost) changes nothing.
pub async fn completing_twice_returns_the_same_object(store: &dyn Harness) {
    let up = staged(store).await;
    let data = bytes(13, 4321);
    let part = put(store, &up, 0, &data).await;
    let first = store.complete(&up, std::slice::from_ref(&part), 4321).await.expect("complete");
    let second = store.complete(&up, &[part], 4321).await.expect("complete again");
    assert_eq!(first, second);
    assert_eq!(store.object(&up.key).await.expect("object"), data);
}

/// An append upload as its session record keeps it: offset, cursor, part receipts.
pub(crate) struct Appending {
    up: StagedUpload,
    length: Option<u64>,
    offset: u64,
    cursor: String,
    parts: Vec<(ChunkIndex, PartReceipt)>,
}

impl Appending {
    async fn open(store: &dyn Harness, length: Option<u64>) -> Self {
        Self::open_as(store, length, false).await
    }

    /// An append upload that is a tus partial upload when `partial`.
    async fn open_as(store: &dyn Harness, length: Option<u64>, partial: bool) -> Self {
        let id = UploadId::new();
        let up = StagedUpload { append: true, partial, ..StagedUpload::new(id, ObjectKey::new(&id, "contract.bin")) };
        let up = prepared(store, up).await;
        Self { up, length, offset: 0, cursor: String::new(), parts: Vec::new() }
    }

    /// Where the next append starts, for a body of `len` bytes.
    fn at(&self, len: usize) -> AppendAt {
        AppendAt {
            offset: self.offset,
            cursor: self.cursor.clone(),
            parts: self.parts.len() as u32,
            length: self.length,
            len: Some(len as u64),
        }
    }

    /// Appends `data` whole and records what was stored, as the service does.
    async fn append(&mut self, store: &dyn Harness, data: &[u8]) {
        let at = self.at(data.len());
        let room = self.length.unwrap_or(u64::MAX) - self.offset;
        let stored = store.append(&self.up, &at, body(data), room).await.expect("append");
        assert!(stored.broken.is_none(), "{:?}", stored.broken);
        assert_eq!(stored.offset, self.offset + data.len() as u64);
        self.record(stored);
    }

    fn record(&mut self, stored: super::AppendStored) {
        assert!(stored.offset >= self.offset, "the offset went back");
        self.offset = stored.offset;
        self.cursor = stored.cursor;
        for (index, receipt) in stored.parts {
            self.parts.retain(|(i, _)| *i != index);
            self.parts.push((index, receipt));
        }
        self.parts.sort_by_key(|(i, _)| *i);
    }

    async fn complete(&self, store: &dyn Harness) -> super::StoredObject {
        let size = self.length.expect("a length");
        assert_eq!(self.offset, size);
        let object = store.complete(&self.up, &self.parts, size).await.expect("complete");
        assert_eq!(object.size, size);
        object
    }
}

/// Appends of odd sizes (a byte, a part less one, a part and one, several parts in one
/// request, the short end) complete into exactly the bytes sent, and leave nothing staged.
pub async fn appends_of_any_size_complete_the_original(store: &dyn Harness) {
    let sizes = [1, PART - 1, PART + 1, 2 * PART + 5, 3];
    let data = bytes(30, sizes.iter().sum());
    let mut upload = Appending::open(store, Some(data.len() as u64)).await;
    let mut from = 0;
    for size in sizes {
        upload.append(store, &data[from..from + size]).await;
        from += size;
    }
    upload.complete(store).await;
    assert_eq!(store.object(&upload.up.key).await.expect("object"), data);
    assert!(!store.has_staged_parts(&upload.up).await, "staged bytes left after completion");
}

/// A body cut mid-way keeps exactly what the store reports (whole parts on S3, every byte
/// on a disk), never less than was recorded; the next append from there completes it.
pub async fn a_cut_append_keeps_what_it_reports_and_goes_on(store: &dyn Harness) {
    let data = bytes(31, 2 * PART + 100);
    let mut upload = Appending::open(store, Some(data.len() as u64)).await;
    upload.append(store, &data[..10]).await;
    let rest = &data[10..];
    let cut = PART + 1000;
    let at = upload.at(rest.len());
    let stored = store.append(&upload.up, &at, cut_body(rest, cut), rest.len() as u64).await.expect("append");
    assert!(stored.broken.as_ref().is_some_and(StorageError::is_client_fault), "{:?}", stored.broken);
    assert!((10..=10 + cut as u64).contains(&stored.offset), "offset {}", stored.offset);
    upload.record(stored);
    let from = upload.offset as usize;
    upload.append(store, &data[from..]).await;
    upload.complete(store).await;
    assert_eq!(store.object(&upload.up.key).await.expect("object"), data);
}

/// Appends that are not recorded (a digest mismatch, a lost claim) leave the upload as
/// recorded: the next append from the old state completes the right bytes, even where
/// the unrecorded ones went further.
pub async fn an_append_not_recorded_leaves_the_upload_as_it_was(store: &dyn Harness) {
    let data = bytes(32, PART + 20);
    let mut upload = Appending::open(store, None).await;
    upload.append(store, &data[..10]).await;
    let garbage = bytes(33, 2 * PART);
    let _ignored = store.append(&upload.up, &upload.at(garbage.len()), body(&garbage), u64::MAX).await;
    let _ignored = store.append(&upload.up, &upload.at(7), body(&garbage[..7]), u64::MAX).await;
    upload.length = Some(data.len() as u64);
    upload.append(store, &data[10..]).await;
    upload.complete(store).await;
    assert_eq!(store.object(&upload.up.key).await.expect("object"), data);
    assert!(!store.has_staged_parts(&upload.up).await, "staged bytes left after completion");
}

/// Aborting an append upload drops its bytes, the unfinished tail included.
pub async fn abort_drops_an_append_uploads_bytes(store: &dyn Harness) {
    let mut upload = Appending::open(store, None).await;
    upload.append(store, &bytes(34, PART + 3)).await;
    assert!(store.has_staged_parts(&upload.up).await);
    store.abort(&upload.up).await.expect("abort");
    store.abort(&upload.up).await.expect("abort is idempotent");
    assert!(!store.has_staged_parts(&upload.up).await);
    assert_eq!(store.object(&upload.up.key).await, None);
}

/// The storage answers a check.
pub async fn a_check_answers(store: &dyn Harness) {
    store.check().await.expect("check");
}

/// Expands into one test per contract case. `$store` is an async expression giving
/// something that derefs to a `Harness`; it is evaluated once per case.
#[macro_export]
macro_rules! object_store_contract {
    ($store:expr) => {
        $crate::object_store_contract!(@cases $store;
            parts_in_any_order_assemble_the_original,
            a_wrong_md5_is_refused_and_a_resend_wins,
            a_body_cut_short_is_refused,
            a_resent_part_replaces_the_earlier_one,
            concurrent_sends_of_a_part_never_tear_it,
            abort_leaves_nothing,
            whole_objects_stream_in_within_a_limit,
            delete_removes_an_object,
            a_missing_part_is_asked_for_again,
            completing_twice_returns_the_same_object,
            appends_of_any_size_complete_the_original,
            a_cut_append_keeps_what_it_reports_and_goes_on,
            an_append_not_recorded_leaves_the_upload_as_it_was,
            abort_drops_an_append_uploads_bytes,
            small_chunks_grouped_into_parts_assemble_the_original,
            a_chunk_sent_again_after_its_part_was_sealed_wins,
            a_chunk_overwritten_behind_its_receipt_is_never_assembled,
            abort_drops_small_chunks,
            a_partials_bytes_stay_out_of_sight_until_aborted,
            partials_of_mixed_sizes_concatenate_in_order,
            a_final_whose_partial_is_gone_makes_no_object,
            presigned_parts_are_listed_and_assemble,
            a_presigned_object_is_there_to_head,
            a_check_answers,
        );
    };
    (@cases $store:expr; $($case:ident),* $(,)?) => {
        $(
            #[actix_web::test]
            async fn $case() {
                let store = $store.await;
                $crate::storage::contract::$case(&*store).await;
            }
        )*
    };
}
