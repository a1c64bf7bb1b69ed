//! Contract cases of append uploads: one writer at a time, at the right offset.

// Test support: a failed expectation is the case failing.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use super::*;
use crate::domain::Crc64;

/// A fresh append upload of `length` (or a deferred length) created at `now`.
async fn created_append(store: &dyn SessionStore, length: Option<u64>) -> (UploadRecord, Timestamp) {
    let now = SystemClock.now().trunc_subsecs(3);
    let mut r = new_record(now);
    r.append = Some(AppendState::new(length));
    store.insert(&r).await.expect("insert");
    (r, now)
}

fn progress(offset: u64, cursor: &str) -> AppendProgress {
    let crc64 = Some(Crc64::of(cursor.as_bytes()));
    AppendProgress { offset, cursor: cursor.into(), parts: Vec::new(), length: None, crc64, report_progress: true }
}

async fn begin(store: &dyn SessionStore, r: &UploadRecord, offset: u64, now: Timestamp) -> AppendStart {
    store.begin_append(&r.id, offset, now, ttl(), lease()).await.expect("begin_append")
}

fn granted(start: AppendStart) -> (u64, UploadRecord) {
    match start {
        AppendStart::Granted { claim, record } => (claim.fence, *record),
        other => panic!("expected the writer's claim, got {other:?}"),
    }
}

/// An append upload reads back as written; appends move its offset and cursor, one
/// writer at a time, at the right offset only.
pub async fn appends_move_the_offset_one_writer_at_a_time(store: &dyn SessionStore) {
    let (r, now) = created_append(store, Some(100)).await;
    assert_eq!(store.get(&r.id).await.expect("get"), Some(r.clone()));
    assert_eq!(begin(store, &r, 5, now).await, AppendStart::OffsetMismatch { expected: 0 });
    let (fence, record) = granted(begin(store, &r, 0, now).await);
    assert_eq!(record.append.as_ref().map(|a| a.offset), Some(0));
    assert_eq!(begin(store, &r, 0, now).await, AppendStart::Busy, "one append at a time");
    assert!(store.renew(&r.id, fence, now, lease()).await.expect("renew"), "an append's claim is renewed");
    let end = store.end_append(&r.id, fence, &progress(40, "tail-40"), now, ttl(), lease()).await.expect("end");
    assert_eq!(end, AppendEnd::Recorded { offset: 40, length: Some(100), claim: None });
    let stored = store.get(&r.id).await.expect("get").expect("record");
    let append = stored.append.expect("append state");
    assert_eq!((append.offset, append.cursor.as_str(), stored.bytes_received), (40, "tail-40", 40));
    assert_eq!(stored.claim, None, "the writer's claim is over");
    assert_eq!(
        store.end_append(&r.id, fence, &progress(60, ""), now, ttl(), lease()).await.expect("end"),
        AppendEnd::Lost,
        "a claim ends once"
    );
    assert_eq!(begin(store, &r, 0, now).await, AppendStart::OffsetMismatch { expected: 40 });
    let (fence, _) = granted(begin(store, &r, 40, now).await);
    assert!(fence > 0);
}

/// Parts an append finished are kept as receipts; the append that reaches the length
/// takes the completion claim in the same step, and then appends are refused.
pub async fn the_last_append_claims_the_completion(store: &dyn SessionStore) {
    let (r, now) = created_append(store, None).await;
    let (fence, _) = granted(begin(store, &r, 0, now).await);
    let part = receipt(&r, 0, "part-1");
    let first = AppendProgress {
        offset: 10,
        cursor: "t".into(),
        parts: vec![(ChunkIndex(0), part.clone())],
        length: None,
        crc64: Some(Crc64::of(b"first")),
        report_progress: true,
    };
    let end = store.end_append(&r.id, fence, &first, now, ttl(), lease()).await.expect("end");
    assert_eq!(end, AppendEnd::Recorded { offset: 10, length: None, claim: None }, "no length yet: no completion");
    assert_eq!(store.parts(&r.id).await.expect("parts"), vec![(ChunkIndex(0), part)]);
    let stored = store.get(&r.id).await.expect("get").expect("record");
    assert_eq!(stored.append.and_then(|a| a.crc64), Some(Crc64::of(b"first")), "the CRC so far is kept");
    let (fence, _) = granted(begin(store, &r, 10, now).await);
    let last = AppendProgress {
        offset: 25,
        cursor: String::new(),
        parts: Vec::new(),
        length: Some(25),
        crc64: None,
        report_progress: true,
    };
    let claim = match store.end_append(&r.id, fence, &last, now, ttl(), lease()).await.expect("end") {
        AppendEnd::Recorded { offset: 25, length: Some(25), claim: Some(claim) } => claim,
        other => panic!("expected the completion claim, got {other:?}"),
    };
    let stored = store.get(&r.id).await.expect("get").expect("record");
    assert_eq!(stored.state, UploadState::Completing);
    assert_eq!(stored.append.as_ref().and_then(|a| a.crc64), None, "a CRC lost stays lost");
    assert!(stored.has_all_chunks());
    assert_eq!(begin(store, &r, 25, now).await, AppendStart::Refused(UploadState::Completing));
    let done = Finish::Completed { etag: "appended".into(), checksum: None };
    assert!(store.finish(&r.id, claim.fence, &done, now, ttl()).await.expect("finish"));
}

/// A writer that died lets go when its claim lapses: the next append takes over under a
/// new fence, and the old writer can no longer record anything. A cancel ends an append.
pub async fn a_lapsed_writer_is_taken_over_and_a_cancel_ends_an_append(store: &dyn SessionStore) {
    let (r, now) = created_append(store, Some(50)).await;
    let (dead, _) = granted(begin(store, &r, 0, now).await);
    let later = now + lease() + Duration::seconds(1);
    let (alive, _) = granted(begin(store, &r, 0, later).await);
    assert!(alive > dead);
    assert_eq!(
        store.end_append(&r.id, dead, &progress(30, ""), later, ttl(), lease()).await.expect("end"),
        AppendEnd::Lost
    );
    assert!(!store.renew(&r.id, dead, later, lease()).await.expect("renew"));
    assert!(matches!(store.cancel(&r.id, later, ttl()).await.expect("cancel"), CancelOutcome::Canceled(_)));
    assert_eq!(
        store.end_append(&r.id, alive, &progress(30, ""), later, ttl(), lease()).await.expect("end"),
        AppendEnd::Lost
    );
    assert_eq!(begin(store, &r, 0, later).await, AppendStart::Refused(UploadState::Canceled));
}

/// A chunked upload takes no appends.
pub async fn a_chunked_upload_takes_no_appends(store: &dyn SessionStore) {
    let (r, now) = created(store).await;
    assert_eq!(begin(store, &r, 0, now).await, AppendStart::Refused(UploadState::Uploading));
}
