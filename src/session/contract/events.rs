//! Contract cases of the event outbox: each state change records its event in the same
//! step, publishers read them in order and forget what they published.

// Test support: a failed expectation is the case failing.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use super::*;
use crate::domain::EventKind;
use crate::session::PendingEvents;

/// The waiting events of upload `id`, read as a publisher at `now` with no lease.
async fn pending(store: &dyn SessionStore, id: &UploadId, now: Timestamp) -> Option<PendingEvents> {
    let batches = store.outbox(now, Duration::zero(), 1000).await.expect("outbox");
    batches.into_iter().find(|b| b.events.first().is_some_and(|e| e.record.id == *id))
}

fn kinds(batch: &PendingEvents) -> Vec<EventKind> {
    batch.events.iter().map(|e| e.kind).collect()
}

/// Creating, recording chunks, completing, failing, canceling and expiring each record
/// their event, numbered in order, with the record as the change left it.
pub async fn each_change_records_its_event_with_the_record_it_left(store: &dyn SessionStore) {
    let (r, now) = created(store).await;
    let later = now + Duration::seconds(5);
    let batch = pending(store, &r.id, later).await.expect("the created event");
    assert_eq!(kinds(&batch), [EventKind::Created]);
    assert_eq!((batch.events[0].time, batch.events[0].record.state), (now, UploadState::Uploading));
    let fence = claim_of(&record(store, &r, all_but_last(store, &r, now).await, now).await).expect("a claim");
    assert!(store
        .finish(&r.id, fence, &Finish::Completed { etag: "e".into(), checksum: None }, now, ttl())
        .await
        .expect("finish"));
    let batch = pending(store, &r.id, later).await.expect("events");
    assert_eq!(kinds(&batch), [EventKind::Created, EventKind::Progress, EventKind::Completed]);
    let numbers: Vec<u64> = batch.events.iter().map(|e| e.number).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "numbers increase: {numbers:?}");
    let completed = &batch.events[2].record;
    assert_eq!(
        (completed.state, completed.etag.as_deref(), completed.received_chunks),
        (UploadState::Completed, Some("e"), 5)
    );
    assert_ne!(batch.events[0].id(), batch.events[1].id());

    let (failed, now) = created(store).await;
    let fence = claim_of(&record(store, &failed, all_but_last(store, &failed, now).await, now).await).expect("a claim");
    let outcome = Finish::Failed { error: "broken".into() };
    assert!(store.finish(&failed.id, fence, &outcome, now, ttl()).await.expect("finish"));
    let batch = pending(store, &failed.id, later).await.expect("events");
    assert_eq!(kinds(&batch).last(), Some(&EventKind::Failed));
    assert_eq!(batch.events.last().unwrap().record.error.as_deref(), Some("broken"));

    let (canceled, now) = created(store).await;
    assert!(matches!(store.cancel(&canceled.id, now, ttl()).await.expect("cancel"), CancelOutcome::Canceled(_)));
    let batch = pending(store, &canceled.id, later).await.expect("events");
    assert_eq!(kinds(&batch), [EventKind::Created, EventKind::Canceled]);
    assert_eq!(batch.events[1].record.state, UploadState::Canceled);

    let (expired, now) = created(store).await;
    let past = now + ttl() + Duration::seconds(1);
    assert!(matches!(store.retire(&expired.id, past).await.expect("retire"), Retired::Retired(_)));
    let batch = pending(store, &expired.id, past).await.expect("events");
    assert_eq!(kinds(&batch), [EventKind::Created, EventKind::Expired]);
    assert_eq!((batch.events[1].record.state, batch.events[1].time), (UploadState::Expired, past));
}

/// A progress event is recorded only when the caller says one is due, and one a second
/// at most whatever the callers say.
pub async fn progress_is_recorded_when_asked_and_once_a_second(store: &dyn SessionStore) {
    let (r, now) = created(store).await;
    let quiet = store.record_part(&r.id, ChunkIndex(0), &receipt(&r, 0, "a"), now, ttl(), lease(), false).await;
    assert!(matches!(quiet.expect("record"), RecordOutcome::Recorded { .. }));
    record(store, &r, 1, now).await;
    record(store, &r, 2, now + Duration::milliseconds(999)).await;
    record(store, &r, 3, now + Duration::seconds(1)).await;
    let batch = pending(store, &r.id, now + Duration::seconds(5)).await.expect("events");
    assert_eq!(kinds(&batch), [EventKind::Created, EventKind::Progress, EventKind::Progress]);
    assert_eq!(batch.events[1].record.received_chunks, 2);
    assert_eq!(batch.events[2].time, now + Duration::seconds(1));
    let stored = store.get(&r.id).await.expect("get").expect("record");
    assert_eq!(stored.progress_at, Some(now + Duration::seconds(1)));
}

/// Forgetting a published batch leaves events recorded after it was read.
pub async fn publishing_forgets_only_the_events_it_read(store: &dyn SessionStore) {
    let (r, now) = created(store).await;
    let later = now + Duration::seconds(5);
    let batch = pending(store, &r.id, later).await.expect("events");
    assert!(matches!(store.cancel(&r.id, now, ttl()).await.expect("cancel"), CancelOutcome::Canceled(_)));
    store.published(&batch, later).await.expect("published");
    store.published(&batch, later).await.expect("published twice");
    let rest = pending(store, &r.id, later).await.expect("the cancel's event");
    assert_eq!(kinds(&rest), [EventKind::Canceled]);
    store.published(&rest, later).await.expect("published");
    assert_eq!(pending(store, &r.id, later).await, None);
}

/// A batch read under a lease comes back once the lease has lapsed, when its publisher
/// did not say it was published: at least once.
pub async fn an_outbox_held_too_long_goes_to_the_next_publisher(store: &dyn SessionStore) {
    let (r, now) = created(store).await;
    let first = store.outbox(now, Duration::seconds(30), 1000).await.expect("outbox");
    assert!(first.iter().any(|b| b.events[0].record.id == r.id));
    let again = pending(store, &r.id, now + Duration::seconds(31)).await.expect("the batch again");
    assert_eq!(kinds(&again), [EventKind::Created]);
}

/// The backlog counts the uploads with events waiting, each once however many it has, and
/// drops an upload once its events are published.
pub async fn the_outbox_backlog_counts_uploads_with_events_waiting(store: &dyn SessionStore) {
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 0, "a new store has none");
    let (first, now) = created(store).await;
    record(store, &first, 0, now).await;
    let (second, _) = created(store).await;
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 2, "two uploads, three events");
    let later = now + Duration::seconds(5);
    let batch = pending(store, &first.id, later).await.expect("the first's events");
    assert_eq!(batch.events.len(), 2);
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 2, "read is not published");
    store.published(&batch, later).await.expect("published");
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 1);
    let batch = pending(store, &second.id, later).await.expect("the second's event");
    store.published(&batch, later).await.expect("published");
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 0);
}
