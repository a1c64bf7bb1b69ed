//! The S3 backend against real S3-protocol servers: the shared contract suite, unchanged,
//! on s3s-fs and on moto; S3-specific cases on both; failures against a dead port.

use std::time::{Duration, Instant};

use ferry::domain::{ChunkIndex, Md5Digest, ObjectKey, UploadId};
use ferry::storage::contract::{body, bytes};
use ferry::storage::{ObjectAttributes, ObjectStore, S3ObjectStore, StagedUpload, StorageError};

use crate::support::s3::{free_port, settings_at, S3Server, BUCKET, PREFIX};

/// The contract and the cases below, on the shared server of one kind.
macro_rules! s3_suite {
    ($kind:expr) => {
        use super::*;
        use crate::support::s3::Kind;

        fn server() -> &'static S3Server {
            S3Server::shared($kind)
        }

        async fn store() -> Box<S3ObjectStore> {
            server().store().await
        }

        ferry::object_store_contract!(store());

        #[actix_web::test]
        async fn a_refused_resend_never_replaces_a_stored_part() {
            super::a_refused_resend_never_replaces_a_stored_part(&*store().await).await;
        }

        #[actix_web::test]
        async fn a_part_replaced_behind_its_receipt_is_reported_changed() {
            let lists_etags = $kind.lists_part_etags();
            super::a_part_replaced_behind_its_receipt_is_reported_changed(&*store().await, lists_etags).await;
        }

        #[actix_web::test]
        async fn a_form_body_larger_than_a_part_goes_up_in_parts() {
            super::a_form_body_larger_than_a_part_goes_up_in_parts(&*store().await).await;
        }

        #[actix_web::test]
        async fn a_form_body_past_the_limit_after_a_part_leaves_nothing() {
            super::a_form_body_past_the_limit_after_a_part_leaves_nothing(server(), &*store().await).await;
        }

        #[actix_web::test]
        async fn objects_carry_their_content_type_and_what_metadata_s3_can_hold() {
            super::objects_carry_their_content_type_and_what_metadata_s3_can_hold(server(), &*store().await).await;
        }

        #[actix_web::test]
        async fn objects_live_under_the_prefix() {
            super::objects_live_under_the_prefix(server(), &*store().await).await;
        }
    };
}

mod s3s_fs {
    s3_suite!(Kind::S3sFs);
}

mod moto {
    s3_suite!(Kind::Moto);
}

const MIB: usize = 1024 * 1024;

async fn staged(store: &S3ObjectStore) -> StagedUpload {
    let id = UploadId::new();
    let mut up = StagedUpload::new(id, ObjectKey::new(&id, "s3.bin"));
    up.storage_upload_id = store.create_multipart(&up, &ObjectAttributes::default()).await.unwrap();
    up
}

/// The object made from a multipart upload carries the declared content type and the
/// metadata S3 can represent; a name S3 cannot carry is left out, not an error.
async fn objects_carry_their_content_type_and_what_metadata_s3_can_hold(server: &S3Server, store: &S3ObjectStore) {
    let id = UploadId::new();
    let key = ObjectKey::new(&id, "typed.mp4");
    let attributes = ObjectAttributes {
        content_type: Some("video/mp4".into()),
        metadata: [("Owner".to_string(), "42".to_string()), ("naïve".to_string(), "x".to_string())].into(),
    };
    let mut up = StagedUpload::new(id, key);
    up.storage_upload_id = store.create_multipart(&up, &attributes).await.unwrap();
    let data = bytes(27, 1000);
    let receipt = store.put_part(&up, ChunkIndex(0), body(&data), 1000, Some(Md5Digest::of(&data))).await.unwrap();
    store.complete(&up, &[(ChunkIndex(0), receipt)], 1000).await.unwrap();
    let head = server.client().head_object().bucket(BUCKET).key(format!("{PREFIX}/{}", up.key)).send().await.unwrap();
    assert_eq!(head.content_type(), Some("video/mp4"));
    let metadata = head.metadata().cloned().unwrap_or_default();
    assert_eq!(metadata.get("owner").map(String::as_str), Some("42"), "{metadata:?}");
    assert_eq!(metadata.len(), 1, "{metadata:?}");
}

/// A corrupt re-send never reaches the store whole, so even a store that checks no
/// `Content-MD5` (s3s-fs) keeps the good part, and the good receipt assembles it.
async fn a_refused_resend_never_replaces_a_stored_part(store: &S3ObjectStore) {
    let up = staged(store).await;
    let good = bytes(21, 300_000);
    let mut bad = good.clone();
    bad[299_999] ^= 1;
    let md5 = Md5Digest::of(&good);
    let receipt = store.put_part(&up, ChunkIndex(0), body(&good), 300_000, Some(md5)).await.unwrap();
    let err = store.put_part(&up, ChunkIndex(0), body(&bad), 300_000, Some(md5)).await.unwrap_err();
    assert!(matches!(err, StorageError::ChecksumMismatch { .. }), "{err:?}");
    store.complete(&up, &[(ChunkIndex(0), receipt)], 300_000).await.unwrap();
    let stored = ferry::storage::contract::Inspect::object(store, &up.key).await.unwrap();
    assert!(stored == good, "the corrupt re-send replaced the stored part");
}

/// A part replaced behind its receipt's back (by another, good send of other bytes) is
/// reported changed, not assembled: by its ETag where the store lists them, else by size.
async fn a_part_replaced_behind_its_receipt_is_reported_changed(store: &S3ObjectStore, lists_etags: bool) {
    let up = staged(store).await;
    let first = bytes(25, 1000);
    let second = bytes(26, if lists_etags { 1000 } else { 1500 });
    let put = |data: &[u8]| {
        let len = data.len() as u64;
        store.put_part(&up, ChunkIndex(0), body(data), len, Some(Md5Digest::of(data)))
    };
    let receipt = put(&first).await.unwrap();
    put(&second).await.unwrap();
    let err = store.complete(&up, &[(ChunkIndex(0), receipt)], 1000).await.unwrap_err();
    assert!(matches!(&err, StorageError::PartsChanged(chunks) if chunks == &[ChunkIndex(0)]), "{err:?}");
    store.abort(&up).await.unwrap();
}

async fn a_form_body_larger_than_a_part_goes_up_in_parts(store: &S3ObjectStore) {
    let key = ObjectKey::new(&UploadId::new(), "form.bin");
    let data = bytes(22, 8 * MIB + 1000);
    let object = store.put_object(&key, body(&data), 20 * MIB as u64, &ObjectAttributes::default()).await.unwrap();
    assert_eq!(object.size, data.len() as u64);
    assert!(object.etag.ends_with("-2"), "two parts: {}", object.etag);
    let stored = ferry::storage::contract::Inspect::object(store, &key).await.unwrap();
    assert!(stored == data, "the object differs from the body");
}

async fn a_form_body_past_the_limit_after_a_part_leaves_nothing(server: &S3Server, store: &S3ObjectStore) {
    let key = ObjectKey::new(&UploadId::new(), "too-big.bin");
    let data = bytes(23, 9 * MIB);
    let max = 8 * MIB as u64 + 10;
    let err = store.put_object(&key, body(&data), max, &ObjectAttributes::default()).await.unwrap_err();
    assert!(matches!(err, StorageError::TooLarge { max: m } if m == max), "{err:?}");
    assert_eq!(ferry::storage::contract::Inspect::object(store, &key).await, None);
    // Where the store lists multipart uploads (moto does, s3s-fs does not), none is left.
    let full_key = format!("{PREFIX}/{key}");
    if let Ok(list) = server.client().list_multipart_uploads().bucket(BUCKET).prefix(&full_key).send().await {
        assert!(list.uploads().is_empty(), "the multipart upload was left behind");
    }
}

async fn objects_live_under_the_prefix(server: &S3Server, store: &S3ObjectStore) {
    let key = ObjectKey::new(&UploadId::new(), "prefixed.txt");
    store.put_object(&key, body(b"hello"), 10, &ObjectAttributes::default()).await.unwrap();
    let head = server.client().head_object().bucket(BUCKET).key(format!("{PREFIX}/{key}")).send().await;
    assert_eq!(head.expect("the object under the prefix").content_length(), Some(5));
}

async fn dead_store() -> S3ObjectStore {
    S3ObjectStore::new(&settings_at(free_port())).await.unwrap()
}

#[actix_web::test]
async fn a_store_at_a_dead_port_fails_its_check_at_once() {
    let store = dead_store().await;
    let started = Instant::now();
    let err = store.check().await.expect_err("nothing listens");
    assert!(matches!(err, StorageError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[actix_web::test]
async fn a_chunk_sent_to_a_dead_port_is_unavailable() {
    let store = dead_store().await;
    let id = UploadId::new();
    let key = ObjectKey::new(&id, "lost.bin");
    let up = StagedUpload { storage_upload_id: Some("gone".into()), ..StagedUpload::new(id, key) };
    let data = bytes(24, 200_000);
    let started = Instant::now();
    let err = store
        .put_part(&up, ChunkIndex(0), body(&data), 200_000, Some(Md5Digest::of(&data)))
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, StorageError::Unavailable(_)), "{err:?}");
    assert!(!err.is_client_fault());
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}
