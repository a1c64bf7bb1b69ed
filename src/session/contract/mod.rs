//! The shared contract suite of `SessionStore`: every backend runs these same cases,
//! unchanged, through `session_store_contract!`. Each case gets a store of its own (the
//! event outbox is store-wide) and uses fresh upload ids.

// Test support: a failed expectation is the case failing.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use chrono::{Duration, SubsecRound};

use super::{
    AppendEnd, AppendProgress, AppendStart, CancelOutcome, Finish, RecordOutcome, Retired, SessionError, SessionStore,
};
use crate::domain::{
    AppendState, ChunkIndex, ChunkPlan, ChunkPolicy, Clock, Md5Digest, ObjectKey, PartReceipt, SystemClock, Timestamp,
    UploadId, UploadRecord, UploadState,
};

mod append;
mod concat;
mod events;
pub mod log;
mod processing;
mod sweep;

pub use append::*;
pub use concat::*;
pub use events::*;
pub use processing::*;
pub use sweep::*;

/// A small plan: 4 chunks of 10 bytes and a last one of 5.
fn plan() -> ChunkPlan {
    let policy = ChunkPolicy {
        max_file_size: 1 << 40,
        default_chunk_size: 10,
        min_chunk_size: 1,
        max_chunk_size: 100,
        max_chunks: 100,
    };
    ChunkPlan::new(45, None, &policy).expect("a valid plan")
}

fn ttl() -> Duration {
    Duration::hours(1)
}

fn lease() -> Duration {
    Duration::minutes(5)
}

/// A fresh `uploading` record created at `now`.
pub fn new_record(now: Timestamp) -> UploadRecord {
    let id = UploadId::new();
    UploadRecord {
        id,
        key: ObjectKey::new(&id, "contract.bin"),
        filename: "contract.bin".into(),
        content_type: Some("application/octet-stream".into()),
        metadata: [("owner".to_string(), "contract".to_string())].into(),
        plan: plan(),
        state: UploadState::Uploading,
        storage_upload_id: Some("multipart-1".into()),
        received_chunks: 0,
        bytes_received: 0,
        fence: 0,
        claim: None,
        etag: None,
        error: None,
        created_at: now,
        updated_at: now,
        expires_at: now + ttl(),
        append: None,
        part_chunks: 1,
        progress_at: None,
        concat: None,
        processing: None,
        declared_checksum: None,
        checksum: None,
        transfer: crate::domain::Transfer::Relay,
    }
}

fn receipt(record: &UploadRecord, index: u32, tag: &str) -> PartReceipt {
    let size = record.plan.chunk_len(ChunkIndex(index));
    PartReceipt { md5: Md5Digest::of(tag.as_bytes()), etag: tag.into(), size, crc64: None }
}

async fn created(store: &dyn SessionStore) -> (UploadRecord, Timestamp) {
    // Stores keep times to the millisecond.
    let now = SystemClock.now().trunc_subsecs(3);
    let record = new_record(now);
    store.insert(&record).await.expect("insert");
    (record, now)
}

async fn record(store: &dyn SessionStore, r: &UploadRecord, index: u32, now: Timestamp) -> RecordOutcome {
    store
        .record_part(&r.id, ChunkIndex(index), &receipt(r, index, &format!("etag-{index}")), now, ttl(), lease(), true)
        .await
        .expect("record_part")
}

/// Records every chunk but the last; returns the index of the last.
async fn all_but_last(store: &dyn SessionStore, r: &UploadRecord, now: Timestamp) -> u32 {
    let last = r.plan.total_chunks() - 1;
    for i in 0..last {
        record(store, r, i, now).await;
    }
    last
}

fn claim_of(outcome: &RecordOutcome) -> Option<u64> {
    match outcome {
        RecordOutcome::Recorded { claim, .. } => claim.map(|c| c.fence),
        _ => None,
    }
}

/// A record reads back exactly as it was written, and its id cannot be taken twice.
pub async fn a_record_reads_back_as_written(store: &dyn SessionStore) {
    let (r, _) = created(store).await;
    assert_eq!(store.get(&r.id).await.expect("get"), Some(r.clone()));
    assert!(matches!(store.insert(&r).await, Err(SessionError::AlreadyExists)));
    assert_eq!(store.get(&UploadId::new()).await.expect("get"), None);
}

/// Re-sent chunks replace their receipt without counting twice, answering the one replaced.
pub async fn distinct_chunks_are_counted_once(store: &dyn SessionStore) {
    let (r, now) = created(store).await;
    let first = record(store, &r, 2, now).await;
    assert_eq!(first, RecordOutcome::Recorded { received_chunks: 1, bytes_received: 10, claim: None, replaced: None });
    let again = store
        .record_part(&r.id, ChunkIndex(2), &receipt(&r, 2, "etag-2-again"), now, ttl(), lease(), true)
        .await
        .expect("record_part");
    let replaced = Some(receipt(&r, 2, "etag-2"));
    assert_eq!(again, RecordOutcome::Recorded { received_chunks: 1, bytes_received: 10, claim: None, replaced });
    record(store, &r, 4, now).await;
    let parts = store.parts(&r.id).await.expect("parts");
    let indices: Vec<u32> = parts.iter().map(|(i, _)| i.0).collect();
    assert_eq!(indices, vec![2, 4]);
    assert_eq!(parts[0].1.etag, "etag-2-again");
    assert_eq!(parts[1].1.size, 5);
    let stored = store.get(&r.id).await.expect("get").expect("record");
    assert_eq!((stored.received_chunks, stored.bytes_received), (2, 15));
}

/// One part's worth of receipts reads back without the others; a record's grouping of
/// chunks into parts reads back as written.
pub async fn a_range_of_receipts_reads_back(store: &dyn SessionStore) {
    let now = SystemClock.now().trunc_subsecs(3);
    let r = UploadRecord { part_chunks: 2, ..new_record(now) };
    store.insert(&r).await.expect("insert");
    assert_eq!(store.get(&r.id).await.expect("get").map(|g| g.part_chunks), Some(2));
    for index in [0, 1, 3] {
        record(store, &r, index, now).await;
    }
    let indices = |parts: Vec<(ChunkIndex, PartReceipt)>| parts.iter().map(|(i, _)| i.0).collect::<Vec<_>>();
    assert_eq!(indices(store.parts_in(&r.id, 0..2).await.expect("parts_in")), vec![0, 1]);
    assert_eq!(indices(store.parts_in(&r.id, 2..4).await.expect("parts_in")), vec![3]);
    assert_eq!(indices(store.parts_in(&r.id, 4..5).await.expect("parts_in")), Vec::<u32>::new());
    assert_eq!(indices(store.parts_in(&r.id, 2..2).await.expect("parts_in")), Vec::<u32>::new());
    let got = store.parts_in(&r.id, 1..2).await.expect("parts_in");
    assert_eq!(got, vec![(ChunkIndex(1), receipt(&r, 1, "etag-1"))]);
}

/// Recording a chunk moves the expiry to `now + ttl`.
pub async fn recording_a_chunk_refreshes_expiry(store: &dyn SessionStore) {
    let (r, now) = created(store).await;
    let later = now + Duration::minutes(30);
    record(store, &r, 0, later).await;
    let stored = store.get(&r.id).await.expect("get").expect("record");
    assert_eq!(stored.expires_at, later + ttl());
    assert_eq!(stored.updated_at, later);
}

/// When the last two chunks land at once, exactly one of them gets the claim.
pub async fn filling_the_last_gap_claims_exactly_once(store: &dyn SessionStore) {
    let (r, now) = created(store).await;
    let last = all_but_last(store, &r, now).await;
    let (a, b) = tokio::join!(record(store, &r, last - 1, now), record(store, &r, last, now));
    // `last - 1` was recorded already: only the call that adds `last` can fill the gap.
    assert_eq!(claim_of(&a), None);
    assert!(claim_of(&b).is_some());
    let stored = store.get(&r.id).await.expect("get").expect("record");
    assert_eq!(stored.state, UploadState::Completing);
    assert!(matches!(record(store, &r, 0, now).await, RecordOutcome::Refused(UploadState::Completing)));
}

/// A direct upload's last part takes no claim: only its confirmation (`claim`) does. Its
/// transfer reads back as written.
pub async fn a_direct_upload_waits_for_its_confirmation(store: &dyn SessionStore) {
    let now = SystemClock.now().trunc_subsecs(3);
    let r = UploadRecord { transfer: crate::domain::Transfer::Direct, ..new_record(now) };
    store.insert(&r).await.expect("insert");
    assert_eq!(store.get(&r.id).await.expect("get").expect("record"), r);
    let mut last = None;
    for i in 0..r.plan.total_chunks() {
        last = Some(record(store, &r, i, now).await);
    }
    assert_eq!(claim_of(&last.expect("parts")), None, "the last part claimed a direct upload");
    assert_eq!(store.get(&r.id).await.expect("get").expect("record").state, UploadState::Uploading);
    assert!(store.claim(&r.id, now, lease()).await.expect("claim").is_some(), "the confirmation claims it");
}

/// Many concurrent first sends of the remaining chunks still yield one claim.
pub async fn concurrent_chunks_yield_one_claim(store: &dyn SessionStore) {
    let (r, now) = created(store).await;
    let outcomes = futures_util::future::join_all((0..r.plan.total_chunks()).map(|i| record(store, &r, i, now))).await;
    let claims = outcomes.iter().filter(|o| claim_of(o).is_some()).count();
    assert_eq!(claims, 1, "{outcomes:?}");
    let stored = store.get(&r.id).await.expect("get").expect("record");
    assert_eq!(stored.received_chunks, r.plan.total_chunks());
}

/// A live claim cannot be taken again; a lapsed one can, under a higher fence, and the
/// old holder can no longer finish.
pub async fn a_lapsed_claim_passes_to_the_next_caller(store: &dyn SessionStore) {
    let (r, now) = created(store).await;
    assert_eq!(store.claim(&r.id, now, lease()).await.expect("claim"), None, "chunks are missing");
    let last = all_but_last(store, &r, now).await;
    let first = claim_of(&record(store, &r, last, now).await).expect("claimed");
    assert_eq!(store.claim(&r.id, now, lease()).await.expect("claim"), None);
    let later = now + lease() + Duration::seconds(1);
    let second = store.claim(&r.id, later, lease()).await.expect("claim").expect("lapsed claim");
    assert!(second.fence > first);
    let done = Finish::Completed { etag: "stale".into(), checksum: None };
    assert!(!store.finish(&r.id, first, &done, later, ttl()).await.expect("finish"));
    let done = Finish::Completed { etag: "fresh".into(), checksum: None };
    assert!(store.finish(&r.id, second.fence, &done, later, ttl()).await.expect("finish"));
    let stored = store.get(&r.id).await.expect("get").expect("record");
    assert_eq!((stored.state, stored.etag.as_deref()), (UploadState::Completed, Some("fresh")));
}

/// Completing drops the receipts, keeps the record until `now + ttl`, and ends chunk
/// taking; a released claim leaves the upload `completing` for the next caller.
pub async fn finishing_moves_the_state_machine(store: &dyn SessionStore) {
    let (r, now) = created(store).await;
    let last = all_but_last(store, &r, now).await;
    let fence = claim_of(&record(store, &r, last, now).await).expect("claimed");
    assert!(store.finish(&r.id, fence, &Finish::Release, now, ttl()).await.expect("release"));
    let stored = store.get(&r.id).await.expect("get").expect("record");
    assert_eq!((stored.state, stored.claim), (UploadState::Completing, None));
    let again = store.claim(&r.id, now, lease()).await.expect("claim").expect("claimable after release");
    let later = now + Duration::minutes(1);
    let done = Finish::Completed { etag: "etag".into(), checksum: None };
    assert!(store.finish(&r.id, again.fence, &done, later, ttl()).await.expect("finish"));
    assert!(store.parts(&r.id).await.expect("parts").is_empty());
    let stored = store.get(&r.id).await.expect("get").expect("record");
    assert_eq!(stored.expires_at, later + ttl());
    assert!(matches!(record(store, &r, 0, later).await, RecordOutcome::Refused(UploadState::Completed)));
    assert_eq!(
        store.cancel(&r.id, later, ttl()).await.expect("cancel"),
        CancelOutcome::Refused(UploadState::Completed)
    );
}

/// Reopening forgets the named chunks and takes chunks again.
pub async fn reopening_asks_for_chunks_again(store: &dyn SessionStore) {
    let (r, now) = created(store).await;
    let last = all_but_last(store, &r, now).await;
    let fence = claim_of(&record(store, &r, last, now).await).expect("claimed");
    let reopen = Finish::Reopen { chunks: vec![ChunkIndex(1), ChunkIndex(last)] };
    assert!(store.finish(&r.id, fence, &reopen, now, ttl()).await.expect("finish"));
    let stored = store.get(&r.id).await.expect("get").expect("record");
    assert_eq!(stored.state, UploadState::Uploading);
    assert_eq!((stored.received_chunks, stored.bytes_received), (3, 30));
    let indices: Vec<u32> = store.parts(&r.id).await.expect("parts").iter().map(|(i, _)| i.0).collect();
    assert_eq!(indices, vec![0, 2, 3]);
    assert_eq!(claim_of(&record(store, &r, 1, now).await), None);
    assert!(claim_of(&record(store, &r, last, now).await).is_some(), "the last gap claims again");
}

/// A failure is recorded with its reason.
pub async fn a_failed_upload_keeps_its_reason(store: &dyn SessionStore) {
    let (r, now) = created(store).await;
    let last = all_but_last(store, &r, now).await;
    let fence = claim_of(&record(store, &r, last, now).await).expect("claimed");
    let failed = Finish::Failed { error: "size mismatch".into() };
    assert!(store.finish(&r.id, fence, &failed, now, ttl()).await.expect("finish"));
    let stored = store.get(&r.id).await.expect("get").expect("record");
    assert_eq!((stored.state, stored.error.as_deref()), (UploadState::Failed, Some("size mismatch")));
}

/// Cancel leaves a tombstone, drops receipts, and refuses what cannot be canceled.
pub async fn cancel_leaves_a_tombstone(store: &dyn SessionStore) {
    let (r, now) = created(store).await;
    record(store, &r, 1, now).await;
    let before = match store.cancel(&r.id, now, ttl()).await.expect("cancel") {
        CancelOutcome::Canceled(before) => before,
        other => panic!("expected a cancel, got {other:?}"),
    };
    assert_eq!(before.state, UploadState::Uploading);
    assert_eq!(before.storage_upload_id.as_deref(), Some("multipart-1"));
    assert!(store.parts(&r.id).await.expect("parts").is_empty());
    assert_eq!(store.get(&r.id).await.expect("get").expect("tombstone").state, UploadState::Canceled);
    assert!(matches!(record(store, &r, 0, now).await, RecordOutcome::Refused(UploadState::Canceled)));
    assert_eq!(store.cancel(&r.id, now, ttl()).await.expect("cancel"), CancelOutcome::Refused(UploadState::Canceled));
    assert_eq!(store.touch(&r.id, now, ttl()).await.expect("touch"), None);
    assert_eq!(store.cancel(&UploadId::new(), now, ttl()).await.expect("cancel"), CancelOutcome::NotFound);
}

/// Cancel waits for nobody: it is refused while a live claim assembles the object, and
/// allowed once that claim has lapsed.
pub async fn cancel_never_interleaves_with_completion(store: &dyn SessionStore) {
    let (r, now) = created(store).await;
    let last = all_but_last(store, &r, now).await;
    let fence = claim_of(&record(store, &r, last, now).await).expect("claimed");
    assert_eq!(store.cancel(&r.id, now, ttl()).await.expect("cancel"), CancelOutcome::Refused(UploadState::Completing));
    let later = now + lease() + Duration::seconds(1);
    assert!(matches!(store.cancel(&r.id, later, ttl()).await.expect("cancel"), CancelOutcome::Canceled(_)));
    let done = Finish::Completed { etag: "late".into(), checksum: None };
    assert!(!store.finish(&r.id, fence, &done, later, ttl()).await.expect("finish"));
    assert_eq!(store.get(&r.id).await.expect("get").expect("record").state, UploadState::Canceled);
}

/// Touch moves expiry of a live upload only.
pub async fn touch_extends_a_live_upload(store: &dyn SessionStore) {
    let (r, now) = created(store).await;
    let later = now + Duration::minutes(10);
    let touched = store.touch(&r.id, later, ttl()).await.expect("touch").expect("live");
    assert_eq!(touched.expires_at, later + ttl());
    let past = later + ttl() + Duration::seconds(1);
    assert_eq!(store.touch(&r.id, past, ttl()).await.expect("touch"), None);
    assert_eq!(record(store, &r, 0, past).await, RecordOutcome::NotFound);
}

/// The store answers a ping.
pub async fn a_ping_answers(store: &dyn SessionStore) {
    store.ping().await.expect("ping");
}

/// Expands into one `#[tokio::test]` per contract case. `$store` is an async expression
/// giving something that derefs to a `SessionStore`; it is evaluated once per case.
#[macro_export]
macro_rules! session_store_contract {
    ($store:expr) => {
        $crate::session_store_contract!(@cases $store;
            a_record_reads_back_as_written,
            distinct_chunks_are_counted_once,
            a_range_of_receipts_reads_back,
            recording_a_chunk_refreshes_expiry,
            filling_the_last_gap_claims_exactly_once,
            concurrent_chunks_yield_one_claim,
            a_direct_upload_waits_for_its_confirmation,
            a_lapsed_claim_passes_to_the_next_caller,
            finishing_moves_the_state_machine,
            a_failed_upload_keeps_its_reason,
            reopening_asks_for_chunks_again,
            cancel_leaves_a_tombstone,
            cancel_never_interleaves_with_completion,
            touch_extends_a_live_upload,
            expired_uploads_are_removed_exactly_once,
            a_retired_upload_takes_nothing_more,
            a_live_claim_protects_from_the_sweeper,
            a_claim_lives_by_its_heartbeat,
            the_due_index_can_be_rescheduled,
            appends_move_the_offset_one_writer_at_a_time,
            the_last_append_claims_the_completion,
            a_lapsed_writer_is_taken_over_and_a_cancel_ends_an_append,
            a_chunked_upload_takes_no_appends,
            each_change_records_its_event_with_the_record_it_left,
            progress_is_recorded_when_asked_and_once_a_second,
            publishing_forgets_only_the_events_it_read,
            an_outbox_held_too_long_goes_to_the_next_publisher,
            the_outbox_backlog_counts_uploads_with_events_waiting,
            concatenation_roles_read_back_as_written,
            an_upload_inserted_under_a_claim_is_held_by_it,
            processing_moves_queued_running_done,
            processing_fails_from_queued,
            processing_needs_a_completed_upload_with_a_stage,
            concurrent_reports_each_apply_once,
            a_ping_answers,
        );
    };
    (@cases $store:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store = $store.await;
                $crate::session::contract::$case(&*store).await;
            }
        )*
    };
}
