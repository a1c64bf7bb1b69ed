//! Appends on S3 beyond the shared contract: what lands in the bucket (whole parts, the
//! tail under `.ferry/`), the length an append needs up front, and one upload through
//! `UploadService::append` on s3s-fs and on moto (which checks part ETags at completion).

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};

use ferry::config::Settings;
use ferry::domain::{ObjectKey, SystemClock, UploadId, UploadState};
use ferry::metrics::Metrics;
use ferry::session::EmbeddedSessionStore;
use ferry::storage::contract::{body, bytes, Inspect, PART};
use ferry::storage::{AppendAt, ObjectAttributes, ObjectStore, S3ObjectStore, StagedUpload, StorageError};
use ferry::upload::{AppendRequest, Caller, NewAppendUpload, Protocol, UploadError, UploadPolicy, UploadService};

use crate::support::s3::{Kind, S3Server, BUCKET, PREFIX};

macro_rules! append_suite {
    ($kind:expr) => {
        use super::*;

        #[actix_web::test]
        async fn an_unfinished_part_waits_in_the_bucket_and_the_next_append_takes_it_up() {
            super::an_unfinished_part_waits_in_the_bucket_and_the_next_append_takes_it_up(S3Server::shared($kind))
                .await;
        }

        #[actix_web::test]
        async fn an_append_without_a_length_reads_nothing() {
            super::an_append_without_a_length_reads_nothing(S3Server::shared($kind)).await;
        }

        #[actix_web::test]
        async fn an_upload_appended_through_the_service_on_s3_is_byte_identical() {
            super::an_upload_appended_through_the_service_on_s3_is_byte_identical(S3Server::shared($kind)).await;
        }
    };
}

mod s3s_fs {
    append_suite!(Kind::S3sFs);
}

mod moto {
    append_suite!(Kind::Moto);
}

async fn staged(store: &S3ObjectStore) -> StagedUpload {
    let id = UploadId::new();
    let mut up = StagedUpload { append: true, ..StagedUpload::new(id, ObjectKey::new(&id, "append.bin")) };
    up.storage_upload_id = store.create_multipart(&up, &ObjectAttributes::default()).await.unwrap();
    up
}

/// The staging objects of an upload, with their sizes.
async fn staging(server: &S3Server, up: &StagedUpload) -> Vec<(String, i64)> {
    let prefix = format!("{PREFIX}/.ferry/{}/", up.id);
    let list = server.client().list_objects_v2().bucket(BUCKET).prefix(&prefix).send().await.unwrap();
    list.contents().iter().map(|o| (o.key().unwrap_or_default().to_owned(), o.size().unwrap_or_default())).collect()
}

/// A part and three bytes: the part goes to the multipart upload, the three bytes to a
/// tail object; the next append starts with them, and the replaced tail goes once the
/// state after it is recorded.
async fn an_unfinished_part_waits_in_the_bucket_and_the_next_append_takes_it_up(server: &S3Server) {
    let store = server.store().await;
    let up = staged(&store).await;
    let data = bytes(40, 2 * PART + 3);
    let first = &data[..PART + 3];
    let at = AppendAt { offset: 0, cursor: String::new(), parts: 0, length: None, len: Some(first.len() as u64) };
    let stored = store.append(&up, &at, body(first), u64::MAX).await.unwrap();
    assert_eq!((stored.offset, stored.parts.len()), (PART as u64 + 3, 1));
    assert_eq!(stored.parts[0].1.size, PART as u64);
    let tails = staging(server, &up).await;
    assert_eq!(tails.len(), 1, "{tails:?}");
    assert_eq!(tails[0].1, 3);
    assert!(stored.cursor.contains(tails[0].0.rsplit('/').next().unwrap()), "{}", stored.cursor);

    // The next request, as another instance would make it from the recorded state.
    let other = server.store().await;
    let rest = &data[PART + 3..];
    let at = AppendAt {
        offset: stored.offset,
        cursor: stored.cursor.clone(),
        parts: 1,
        length: Some(data.len() as u64),
        len: Some(rest.len() as u64),
    };
    let last = other.append(&up, &at, body(rest), rest.len() as u64).await.unwrap();
    assert_eq!(last.offset, data.len() as u64);
    assert_eq!(last.parts.iter().map(|(i, r)| (i.0, r.size)).collect::<Vec<_>>(), vec![(1, PART as u64), (2, 3)]);
    // Recorded, this cursor names the first tail for deletion by the next append; the
    // completion sweeps the staging prefix anyway.
    let receipts: Vec<_> = stored.parts.into_iter().chain(last.parts).collect();
    other.complete(&up, &receipts, data.len() as u64).await.unwrap();
    assert!(other.object(&up.key).await.unwrap() == data, "the object differs");
    assert!(staging(server, &up).await.is_empty());
}

/// S3 needs each write's length before its first byte: an append of unknown length is
/// refused before reading anything.
async fn an_append_without_a_length_reads_nothing(server: &S3Server) {
    let store = server.store().await;
    let up = staged(&store).await;
    let at = AppendAt { offset: 0, cursor: String::new(), parts: 0, length: None, len: None };
    let read = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = Arc::clone(&read);
    let body = stream::once(async move {
        seen.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok::<_, io::Error>(Bytes::from_static(b"x"))
    })
    .boxed_local();
    let err = store.append(&up, &at, body, 10).await.unwrap_err();
    assert!(matches!(err, StorageError::LengthRequired), "{err:?}");
    assert!(!read.load(std::sync::atomic::Ordering::SeqCst));
    store.abort(&up).await.unwrap();
}

fn service(dir: &std::path::Path, store: S3ObjectStore) -> UploadService {
    let settings = Settings::default();
    let u = &settings.uploads;
    let policy = UploadPolicy {
        chunks: u.chunk_policy(),
        ttl: chrono::Duration::seconds(u.session_ttl_secs as i64),
        lease: chrono::Duration::seconds(u.completion_lease_secs as i64),
        sweep_interval: chrono::Duration::seconds(u.sweep_interval_secs as i64),
        allowed_content_types: Vec::new(),
        require_chunk_md5: false,
        processing: false,
        direct: ferry::upload::DirectPolicy::from(&settings.direct),
    };
    let sessions = Arc::new(EmbeddedSessionStore::open(dir).unwrap());
    UploadService::new(sessions, Arc::new(store), policy, Arc::new(SystemClock), Metrics::new().unwrap())
}

fn request(offset: u64, data: &[u8], content_length: Option<u64>) -> AppendRequest<'static> {
    AppendRequest { offset, length: None, content_length, digest: None, body: body(data) }
}

/// Through the service: a small append, a body cut past a part (the part is kept, HEAD
/// says so), one without a length (refused, nothing moves), then the rest: the object
/// is the bytes sent.
async fn an_upload_appended_through_the_service_on_s3_is_byte_identical(server: &S3Server) {
    let dir = tempfile::tempdir().unwrap();
    let service = service(dir.path(), *server.store().await);
    let data = bytes(41, 2 * PART + 7);
    let length = data.len() as u64;
    let new = NewAppendUpload {
        filename: "service.bin".into(),
        length: Some(length),
        content_type: None,
        metadata: Default::default(),
        partial: false,
        caller: Caller::relay(Protocol::Tus, None),
    };
    let record = service.init_append(new).await.unwrap();
    let id = record.id;

    let done = service.append(&id, request(0, &data[..100], Some(100))).await.unwrap();
    assert_eq!((done.offset, done.state), (100, UploadState::Uploading));

    let rest = &data[100..];
    let cut = AppendRequest {
        offset: 100,
        length: None,
        content_length: Some(rest.len() as u64),
        digest: None,
        body: stream::iter([
            Ok(Bytes::copy_from_slice(&rest[..PART + 1000])),
            Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone")),
        ])
        .boxed_local(),
    };
    let err = service.append(&id, cut).await.unwrap_err();
    assert!(matches!(err, UploadError::IncompleteBody), "{err:?}");
    let status = service.status(&id).await.unwrap();
    let offset = status.record.append.as_ref().unwrap().offset;
    assert_eq!(offset, PART as u64, "the finished part is kept, the part in flight is not");

    let err = service.append(&id, request(offset, &data[PART..], None)).await.unwrap_err();
    assert!(matches!(err, UploadError::LengthRequired), "{err:?}");

    let rest = &data[PART..];
    let done = service.append(&id, request(offset, rest, Some(rest.len() as u64))).await.unwrap();
    assert_eq!((done.offset, done.state), (length, UploadState::Completed));
    let store = server.store().await;
    let stored = store.object(&record.key).await.unwrap();
    assert!(stored == data, "the object differs from the bytes sent");
    let staged = StagedUpload::from(&service.status(&id).await.unwrap().record);
    assert!(!store.has_staged_parts(&staged).await, "staged bytes left after completion");
}
