//! The shared contract suite of `SessionStore`: every backend runs these same cases,
//! unchanged, through `session_store_contract!`. Each case uses fresh upload ids, so one
//! store may serve them all.

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
    }
}

fn receipt(record: &UploadRecord, index: u32, tag: &str) -> PartReceipt {
    let size = record.plan.chunk_len(ChunkIndex(index));
    PartReceipt { md5: Md5Digest::of(tag.as_bytes()), etag: tag.into(), size }
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
        .record_part(&r.id, ChunkIndex(index), &receipt(r, index, &format!("etag-{index}")), now, ttl(), lease())
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
        .record_part(&r.id, ChunkIndex(2), &receipt(&r, 2, "etag-2-again"), now, ttl(), lease())
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
    let done = Finish::Completed { etag: "stale".into() };
    assert!(!store.finish(&r.id, first, &done, later, ttl()).await.expect("finish"));
    let done = Finish::Completed { etag: "fresh".into() };
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
    let done = Finish::Completed { etag: "etag".into() };
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
    let done = Finish::Completed { etag: "late".into() };
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

fn indexed(entries: &[(UploadId, Timestamp)], id: &UploadId) -> bool {
    entries.iter().any(|(i, _)| i == id)
}

/// The due index finds expired uploads; an idle one becomes a tombstone, and exactly one
/// of several concurrent sweepers removes it.
pub async fn expired_uploads_are_removed_exactly_once(store: &dyn SessionStore) {
    let (r, now) = created(store).await;
    record(store, &r, 0, now).await;
    let (fresh, _) = created(store).await;
    let past = now + ttl() + Duration::seconds(1);
    assert!(indexed(&store.due(past, 10_000).await.expect("due"), &r.id));
    assert!(!indexed(&store.due(now - Duration::seconds(1), 10_000).await.expect("due"), &r.id));
    assert_eq!(store.remove_expired(&r.id, past).await.expect("remove"), None, "not a tombstone yet");
    match store.retire(&r.id, past).await.expect("retire") {
        Retired::Retired(before) => assert_eq!((before.state, before.received_chunks), (UploadState::Uploading, 1)),
        other => panic!("expected a tombstone, got {other:?}"),
    }
    let (a, b) = tokio::join!(store.remove_expired(&r.id, past), store.remove_expired(&r.id, past));
    let removed: Vec<_> = [a.expect("remove"), b.expect("remove")].into_iter().flatten().collect();
    assert_eq!(removed.len(), 1);
    assert_eq!((removed[0].id, removed[0].state), (r.id, UploadState::Expired));
    assert_eq!(store.get(&r.id).await.expect("get"), None);
    assert!(store.parts(&r.id).await.expect("parts").is_empty());
    assert!(!indexed(&store.due(past, 10_000).await.expect("due"), &r.id));
    assert!(matches!(store.retire(&fresh.id, now).await.expect("retire"), Retired::NotDue(_)), "not expired yet");
    assert_eq!(store.retire(&UploadId::new(), now).await.expect("retire"), Retired::NotFound);
}

/// An idle upload retired by the sweeper is a tombstone under a new fence: no chunk, no
/// claim, no late finish gets through.
pub async fn a_retired_upload_takes_nothing_more(store: &dyn SessionStore) {
    let (r, now) = created(store).await;
    let last = all_but_last(store, &r, now).await;
    let fence = claim_of(&record(store, &r, last, now).await).expect("claimed");
    let reopen = Finish::Reopen { chunks: vec![ChunkIndex(0)] };
    assert!(store.finish(&r.id, fence, &reopen, now, ttl()).await.expect("reopen"));
    let past = now + ttl() + Duration::seconds(1);
    assert!(matches!(store.retire(&r.id, past).await.expect("retire"), Retired::Retired(_)));
    let tombstone = store.get(&r.id).await.expect("get").expect("tombstone");
    assert_eq!(tombstone.state, UploadState::Expired);
    assert!(tombstone.fence > fence);
    assert!(store.parts(&r.id).await.expect("parts").is_empty());
    assert_eq!(record(store, &r, 0, past).await, RecordOutcome::NotFound);
    assert_eq!(store.claim(&r.id, past, lease()).await.expect("claim"), None);
    let done = Finish::Completed { etag: "late".into() };
    assert!(!store.finish(&r.id, fence, &done, past, ttl()).await.expect("finish"));
    match store.retire(&r.id, past).await.expect("retire again") {
        Retired::Retired(again) => assert_eq!(again.state, UploadState::Expired),
        other => panic!("expected the tombstone, got {other:?}"),
    }
}

/// An expired upload under a live claim is left to its claimer: it is due when the claim
/// lapses, and a claim keeps the upload from expiring before then.
pub async fn a_live_claim_protects_from_the_sweeper(store: &dyn SessionStore) {
    let (r, now) = created(store).await;
    let last = all_but_last(store, &r, now).await;
    let fence = claim_of(&record(store, &r, last, now).await).expect("claimed");
    let near_end = now + ttl() - Duration::seconds(1);
    assert!(store.finish(&r.id, fence, &Finish::Release, now, ttl()).await.expect("release"));
    let claim = store.claim(&r.id, near_end, lease()).await.expect("claim").expect("claimed again");
    let stored = store.get(&r.id).await.expect("get").expect("record");
    assert!(stored.expires_at >= claim.until, "a claim extends expiry to its lease");
    let past = now + ttl() + Duration::seconds(1);
    assert_eq!(store.retire(&r.id, past).await.expect("retire"), Retired::NotDue(claim.until));
    assert_eq!(store.remove_expired(&r.id, past).await.expect("remove"), None);
    assert!(indexed(&store.due(claim.until, 10_000).await.expect("due"), &r.id), "due when the claim lapses");
}

/// A claim lives as long as its heartbeat renews it; finishing needs a live claim; once it
/// lapses, the upload is left for the sweeper to finish, even past its expiry.
pub async fn a_claim_lives_by_its_heartbeat(store: &dyn SessionStore) {
    let (r, now) = created(store).await;
    let last = all_but_last(store, &r, now).await;
    let fence = claim_of(&record(store, &r, last, now).await).expect("claimed");
    let later = now + lease() - Duration::seconds(1);
    assert!(store.renew(&r.id, fence, later, lease()).await.expect("renew"));
    assert!(!store.renew(&r.id, fence + 1, later, lease()).await.expect("renew"), "not its fence");
    let stored = store.get(&r.id).await.expect("get").expect("record");
    assert_eq!(stored.claim.map(|c| c.until), Some(later + lease()));
    let lapsed = later + lease() + Duration::seconds(1);
    assert!(!store.renew(&r.id, fence, lapsed, lease()).await.expect("renew"), "lapsed");
    let done = Finish::Completed { etag: "late".into() };
    assert!(!store.finish(&r.id, fence, &done, lapsed, ttl()).await.expect("finish"), "a lapsed claim");
    let abandoned = now + ttl() + lease() * 3;
    assert_eq!(store.retire(&r.id, abandoned).await.expect("retire"), Retired::Unfinished);
    let adopted = store.claim(&r.id, abandoned, lease()).await.expect("claim").expect("claimable past expiry");
    assert!(adopted.fence > fence);
    assert!(store.get(&r.id).await.expect("get").expect("record").expires_at >= adopted.until);
    assert!(store.finish(&r.id, adopted.fence, &done, abandoned, ttl()).await.expect("finish"));
}

/// The sweeper moves an entry it found early; a claim taken meanwhile keeps its place;
/// an entry with no record can be dropped.
pub async fn the_due_index_can_be_rescheduled(store: &dyn SessionStore) {
    let (r, now) = created(store).await;
    let (_, at) =
        store.due(now + ttl(), 10_000).await.expect("due").into_iter().find(|(i, _)| *i == r.id).expect("indexed");
    let later = now + ttl() * 2;
    store.reschedule(&r.id, at, Some(later)).await.expect("reschedule");
    assert!(!indexed(&store.due(now + ttl(), 10_000).await.expect("due"), &r.id));
    assert!(indexed(&store.due(later, 10_000).await.expect("due"), &r.id));
    store.reschedule(&r.id, later, None).await.expect("drop");
    assert!(!indexed(&store.due(later, 10_000).await.expect("due"), &r.id));
    store.reschedule(&UploadId::new(), now, None).await.expect("an entry already gone is no error");
}

/// A fresh append upload of `length` (or a deferred length) created at `now`.
async fn created_append(store: &dyn SessionStore, length: Option<u64>) -> (UploadRecord, Timestamp) {
    let now = SystemClock.now().trunc_subsecs(3);
    let mut r = new_record(now);
    r.append = Some(AppendState { length, offset: 0, cursor: String::new() });
    store.insert(&r).await.expect("insert");
    (r, now)
}

fn progress(offset: u64, cursor: &str) -> AppendProgress {
    AppendProgress { offset, cursor: cursor.into(), parts: Vec::new(), length: None }
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
    let first =
        AppendProgress { offset: 10, cursor: "t".into(), parts: vec![(ChunkIndex(0), part.clone())], length: None };
    let end = store.end_append(&r.id, fence, &first, now, ttl(), lease()).await.expect("end");
    assert_eq!(end, AppendEnd::Recorded { offset: 10, length: None, claim: None }, "no length yet: no completion");
    assert_eq!(store.parts(&r.id).await.expect("parts"), vec![(ChunkIndex(0), part)]);
    let (fence, _) = granted(begin(store, &r, 10, now).await);
    let last = AppendProgress { offset: 25, cursor: String::new(), parts: Vec::new(), length: Some(25) };
    let claim = match store.end_append(&r.id, fence, &last, now, ttl(), lease()).await.expect("end") {
        AppendEnd::Recorded { offset: 25, length: Some(25), claim: Some(claim) } => claim,
        other => panic!("expected the completion claim, got {other:?}"),
    };
    let stored = store.get(&r.id).await.expect("get").expect("record");
    assert_eq!(stored.state, UploadState::Completing);
    assert!(stored.has_all_chunks());
    assert_eq!(begin(store, &r, 25, now).await, AppendStart::Refused(UploadState::Completing));
    let done = Finish::Completed { etag: "appended".into() };
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
            recording_a_chunk_refreshes_expiry,
            filling_the_last_gap_claims_exactly_once,
            concurrent_chunks_yield_one_claim,
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
