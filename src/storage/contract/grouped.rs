//! Contract cases for small chunks: chunks under the store's part size, grouped into parts
//! as `ObjectStore::chunks_per_part` says (one chunk per part on the filesystem).

// Test support: a failed expectation is the case failing.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use super::{bytes, put, Harness};
use crate::domain::{ChunkIndex, Md5Digest, ObjectKey, PartReceipt, UploadId};
use crate::storage::{ObjectAttributes, StagedUpload, StorageError};

/// Chunks of 1 MiB: under S3's smallest part.
const SMALL: usize = 1024 * 1024;

/// An upload of 1 MiB chunks, grouped as the store groups them.
async fn grouped(store: &dyn Harness) -> StagedUpload {
    let id = UploadId::new();
    let part_chunks = store.chunks_per_part(SMALL as u64);
    let mut up = StagedUpload { part_chunks, ..StagedUpload::new(id, ObjectKey::new(&id, "small.bin")) };
    up.storage_upload_id = store.create_multipart(&up, &ObjectAttributes::default()).await.expect("create_multipart");
    up
}

/// Two whole parts and a short third one, cut into 1 MiB chunks.
fn file(up: &StagedUpload, seed: u64) -> Vec<Vec<u8>> {
    let len = 2 * up.part_chunks as usize * SMALL + 3 * SMALL + 777;
    bytes(seed, len).chunks(SMALL).map(<[u8]>::to_vec).collect()
}

/// The receipts of chunks `from..to` of `parts` (sorted by index).
fn group(parts: &[(ChunkIndex, PartReceipt)], from: usize, to: usize) -> Vec<(ChunkIndex, PartReceipt)> {
    parts.iter().filter(|(i, _)| (from..to).contains(&(i.0 as usize))).cloned().collect()
}

/// Completes `up`; where the store asks for chunks again, sends them from `chunks` and
/// completes again.
async fn complete_sending_again(
    store: &dyn Harness,
    up: &StagedUpload,
    parts: &mut Vec<(ChunkIndex, PartReceipt)>,
    chunks: &[Vec<u8>],
) {
    let size = chunks.iter().map(|c| c.len() as u64).sum();
    for _ in 0..2 {
        match store.complete(up, parts, size).await {
            Ok(object) => {
                assert_eq!(object.size, size);
                return;
            }
            Err(StorageError::PartsChanged(again)) => {
                for index in again {
                    let (i, receipt) = put(store, up, index.0, &chunks[index.0 as usize]).await;
                    parts.retain(|(j, _)| *j != i);
                    parts.push((i, receipt));
                }
                parts.sort_by_key(|(i, _)| *i);
            }
            Err(err) => panic!("complete: {err:?}"),
        }
    }
    panic!("the upload did not complete after its chunks were sent again");
}

/// Waits for the background clean-up after completion.
async fn assert_nothing_staged(store: &dyn Harness, up: &StagedUpload) {
    for _ in 0..100 {
        if !store.has_staged_parts(up).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("staged chunks were left after completion");
}

/// Small chunks in any order, some parts sealed ahead and some not, assemble into
/// exactly the original bytes, and nothing is left staged.
pub async fn small_chunks_grouped_into_parts_assemble_the_original(store: &dyn Harness) {
    let up = grouped(store).await;
    let chunks = file(&up, 40);
    let mut parts = Vec::new();
    for i in (0..chunks.len()).rev() {
        parts.push(put(store, &up, i as u32, &chunks[i]).await);
    }
    parts.sort_by_key(|(i, _)| *i);
    let n = up.part_chunks as usize;
    store.seal(&up, &group(&parts, n, 2 * n)).await.expect("seal");
    // Sealing twice changes nothing.
    store.seal(&up, &group(&parts, n, 2 * n)).await.expect("seal");
    complete_sending_again(store, &up, &mut parts, &chunks).await;
    assert_eq!(store.object(&up.key).await.expect("object"), chunks.concat());
    assert_nothing_staged(store, &up).await;
}

/// A chunk sent again with other bytes after its part was sealed: the object holds the
/// new bytes (the store may ask for the part's other chunks again to make it).
pub async fn a_chunk_sent_again_after_its_part_was_sealed_wins(store: &dyn Harness) {
    let up = grouped(store).await;
    let mut chunks = file(&up, 41);
    let mut parts = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        parts.push(put(store, &up, i as u32, chunk).await);
    }
    let n = up.part_chunks as usize;
    store.seal(&up, &group(&parts, 0, n)).await.expect("seal");
    chunks[0] = bytes(42, SMALL);
    parts[0] = put(store, &up, 0, &chunks[0]).await;
    store.seal(&up, &group(&parts, 0, n)).await.ok();
    complete_sending_again(store, &up, &mut parts, &chunks).await;
    assert_eq!(store.object(&up.key).await.expect("object"), chunks.concat());
}

/// A chunk whose stored bytes are no longer its receipt's (another send overwrote it) is
/// never assembled: either the receipt's bytes are still there, or it is asked for again.
pub async fn a_chunk_overwritten_behind_its_receipt_is_never_assembled(store: &dyn Harness) {
    let up = grouped(store).await;
    let chunks = file(&up, 43);
    let mut parts = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        parts.push(put(store, &up, i as u32, chunk).await);
    }
    let other = bytes(44, SMALL);
    put(store, &up, 1, &other).await;
    let size = chunks.iter().map(|c| c.len() as u64).sum();
    match store.complete(&up, &parts, size).await {
        Ok(_) => assert_eq!(store.object(&up.key).await.expect("object"), chunks.concat()),
        Err(StorageError::PartsChanged(again)) => assert_eq!(again, vec![ChunkIndex(1)]),
        Err(err) => panic!("complete: {err:?}"),
    }
    assert_eq!(parts[1].1.md5, Md5Digest::of(&chunks[1]));
}

/// Abort drops small chunks and sealed parts alike.
pub async fn abort_drops_small_chunks(store: &dyn Harness) {
    let up = grouped(store).await;
    let chunks = file(&up, 45);
    let mut parts = Vec::new();
    for (i, chunk) in chunks.iter().enumerate().take(up.part_chunks as usize + 2) {
        parts.push(put(store, &up, i as u32, chunk).await);
    }
    store.seal(&up, &group(&parts, 0, up.part_chunks as usize)).await.expect("seal");
    assert!(store.has_staged_parts(&up).await);
    store.abort(&up).await.expect("abort");
    assert!(!store.has_staged_parts(&up).await);
    store.abort(&up).await.expect("a second abort");
}
