//! Contract cases of the sweeper's side: the due index, tombstones, claims that lapse.

// Test support: a failed expectation is the case failing.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use super::*;

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
    let done = Finish::Completed { etag: "late".into(), checksum: None };
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
    let done = Finish::Completed { etag: "late".into(), checksum: None };
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
