//! Contract cases of tus concatenation: partial uploads whose bytes are kept out of sight,
//! and final uploads made of them inside the store.

// Test support: a failed expectation is the case failing.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use super::{bytes, prepared, Appending, Harness, PART};
use crate::domain::{Md5Digest, ObjectKey, UploadId};
use crate::storage::{Partial, StagedUpload, StorageError};

/// A finished partial upload holding `data`.
async fn partial(store: &dyn Harness, data: &[u8]) -> Partial {
    let mut upload = Appending::open_as(store, Some(data.len() as u64), true).await;
    upload.append(store, data).await;
    let sealed = upload.complete(store).await;
    Partial { upload: upload.up.clone(), size: data.len() as u64, etag: sealed.etag }
}

/// A final upload, prepared as the service prepares it (an append upload of its own).
async fn final_upload(store: &dyn Harness) -> StagedUpload {
    let id = UploadId::new();
    prepared(store, StagedUpload { append: true, ..StagedUpload::new(id, ObjectKey::new(&id, "final.bin")) }).await
}

/// A finished partial upload leaves no object at its key: its bytes stay staged (for
/// final uploads) through a second `complete`, until `abort` removes them.
pub async fn a_partials_bytes_stay_out_of_sight_until_aborted(store: &dyn Harness) {
    let data = bytes(40, PART + 100);
    let mut upload = Appending::open_as(store, Some(data.len() as u64), true).await;
    upload.append(store, &data[..PART / 2]).await;
    upload.append(store, &data[PART / 2..]).await;
    let first = upload.complete(store).await;
    assert_eq!(store.object(&upload.up.key).await, None, "no object at a partial's key");
    assert!(store.has_staged_parts(&upload.up).await, "a partial's bytes are kept");
    assert_eq!(upload.complete(store).await, first, "completing again changes nothing");
    assert!(store.has_staged_parts(&upload.up).await);
    store.abort(&upload.up).await.expect("abort");
    store.abort(&upload.up).await.expect("abort is idempotent");
    assert!(!store.has_staged_parts(&upload.up).await, "abort removes a partial's kept bytes");
    assert_eq!(store.object(&upload.up.key).await, None);
}

/// Partials of mixed sizes (under and over S3's 5 MiB part minimum, in an order that puts
/// small ones before large ones, one empty, one used twice) concatenate in order into the
/// final object. The partials stay as they were: another final uses them again, and
/// concatenating a final again gives the same object.
pub async fn partials_of_mixed_sizes_concatenate_in_order(store: &dyn Harness) {
    let sizes = [1000, 3 * PART, 2000, PART + 1, PART, 7];
    let data: Vec<Vec<u8>> = sizes.iter().zip(41..).map(|(size, seed)| bytes(seed, *size)).collect();
    let mut partials = Vec::new();
    for piece in &data {
        partials.push(partial(store, piece).await);
    }
    let id = UploadId::new();
    let none = StagedUpload { append: true, partial: true, ..StagedUpload::new(id, ObjectKey::new(&id, "empty")) };
    let empty = Partial { upload: none, size: 0, etag: Md5Digest::of(b"").hex() };

    let order = [0, 1, 2, 3, 4, 5, 0];
    let mut sources: Vec<Partial> = order.iter().map(|&i| partials[i].clone()).collect();
    sources.insert(3, empty);
    let expected: Vec<u8> = order.iter().flat_map(|&i| data[i].iter().copied()).collect();
    let size = expected.len() as u64;
    let made = final_upload(store).await;
    let object = store.concatenate(&made, &sources, size).await.expect("concatenate");
    assert_eq!(object.size, size);
    assert!(!object.etag.is_empty());
    assert_eq!(store.object(&made.key).await.expect("the final object"), expected, "the partials' bytes, in order");
    assert_eq!(store.concatenate(&made, &sources, size).await.expect("again"), object, "idempotent");

    let other = final_upload(store).await;
    let reversed = [partials[5].clone(), partials[4].clone(), partials[0].clone()];
    let size = (sizes[5] + sizes[4] + sizes[0]) as u64;
    store.concatenate(&other, &reversed, size).await.expect("a second final of the same partials");
    assert_eq!(store.object(&other.key).await.expect("object"), [&data[5][..], &data[4], &data[0]].concat());
    for partial in &partials {
        assert!(store.has_staged_parts(&partial.upload).await, "the partials stay");
        assert_eq!(store.object(&partial.upload.key).await, None);
        store.abort(&partial.upload).await.expect("abort");
    }
}

/// A final one of whose partials is gone (aborted: expired and swept) is refused, and no
/// object appears, however much of the others was copied; the final can then be aborted.
pub async fn a_final_whose_partial_is_gone_makes_no_object(store: &dyn Harness) {
    let kept = partial(store, &bytes(50, PART + 3)).await;
    let gone = partial(store, &bytes(51, 1000)).await;
    store.abort(&gone.upload).await.expect("abort");
    let made = final_upload(store).await;
    let sources = [kept.clone(), gone.clone(), kept.clone()];
    let err = store.concatenate(&made, &sources, 2 * kept.size + gone.size).await.expect_err("a partial is gone");
    assert!(matches!(err, StorageError::Refused(_)), "{err:?}");
    assert_eq!(store.object(&made.key).await, None, "never a half object");
    store.abort(&made).await.expect("abort");
    assert!(!store.has_staged_parts(&made).await);
    assert!(store.has_staged_parts(&kept.upload).await, "the other partial is untouched");
    store.abort(&kept.upload).await.expect("abort");
}
