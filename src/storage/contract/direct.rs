//! Direct transfers: parts a client PUTs on presigned URLs are listed and assemble; a
//! presigned whole object is there to head. Stores without direct writes (the filesystem,
//! whose direct parts come through ferry) have nothing to check here.

use std::time::Duration;

use super::{bytes, staged, Harness, PART};
use crate::domain::{ChunkIndex, Crc64, Md5Digest, ObjectKey, PartReceipt, UploadId};
use crate::storage::{ObjectAttributes, PresignedPut, StagedUpload};

const TTL: Duration = Duration::from_secs(60);

/// PUTs `data` as a client would: exactly the listed headers; the status and the ETag.
pub async fn client_put(put: &PresignedPut, data: &[u8]) -> (u16, Option<String>) {
    let mut request = reqwest::Client::new().put(&put.url).body(data.to_vec());
    for (name, value) in &put.headers {
        request = request.header(name, value);
    }
    let response = request.send().await.expect("the store answers");
    let etag = response.headers().get("etag").and_then(|e| e.to_str().ok()).map(|e| e.trim_matches('"').to_owned());
    (response.status().as_u16(), etag)
}

/// Parts PUT out of order on presigned URLs are listed with their sizes (and ETags where
/// the store lists them), and assemble into the original bytes.
pub async fn presigned_parts_are_listed_and_assemble(store: &dyn Harness) {
    let Some(direct) = store.direct() else { return };
    let up = staged(store).await;
    let chunks = [bytes(61, PART), bytes(62, 1000)];
    let mut receipts = Vec::new();
    for i in [1, 0] {
        let data = &chunks[i as usize];
        let put = direct.presign_part(&up, ChunkIndex(i), data.len() as u64, TTL).await.expect("presign_part");
        let (status, etag) = client_put(&put, data).await;
        assert_eq!(status, 200, "PUT of part {i} on {}", put.url);
        let etag = etag.expect("an ETag");
        let md5 = Md5Digest::of(data);
        receipts.push((ChunkIndex(i), PartReceipt { md5, etag, size: data.len() as u64, crc64: None }));
    }
    receipts.sort_by_key(|(i, _)| *i);
    let listed = direct.list_parts(&up).await.expect("list_parts");
    assert_eq!(
        listed.iter().map(|p| (p.index, p.size)).collect::<Vec<_>>(),
        [(ChunkIndex(0), PART as u64), (ChunkIndex(1), 1000)]
    );
    for (part, (_, receipt)) in listed.iter().zip(&receipts) {
        assert!(part.etag.as_ref().is_none_or(|e| *e == receipt.etag), "{part:?} vs {receipt:?}");
    }
    store.complete(&up, &receipts, PART as u64 + 1000).await.expect("complete");
    assert_eq!(store.object(&up.key).await.expect("object"), chunks.concat());
}

/// A whole object PUT on a presigned URL is there to head, with its size; a CRC the store
/// reports is the bytes' own.
pub async fn a_presigned_object_is_there_to_head(store: &dyn Harness) {
    let Some(direct) = store.direct() else { return };
    let id = UploadId::new();
    let up = StagedUpload::new(id, ObjectKey::new(&id, "direct.bin"));
    assert_eq!(direct.head_object(&up.key).await.expect("head"), None);
    let data = bytes(63, 3000);
    let attributes = ObjectAttributes { content_type: Some("image/png".into()), ..ObjectAttributes::default() };
    let crc = Crc64::of(&data);
    let put = direct.presign_object(&up, 3000, &attributes, Some(crc), TTL).await.expect("presign_object");
    assert_eq!(client_put(&put, &data).await.0, 200);
    let head = direct.head_object(&up.key).await.expect("head").expect("the object");
    assert_eq!(head.size, 3000);
    assert!(head.crc64.is_none_or(|c| c == crc), "{head:?}");
    assert_eq!(store.object(&up.key).await.expect("object"), data);
}
