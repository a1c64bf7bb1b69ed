//! Contract cases of the processing stage: a completed upload's stage moves as its
//! processors report, each move recording its event in the same step, and no report takes
//! it anywhere the rules forbid.

// Test support: a failed expectation is the case failing.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use super::*;
use crate::domain::{EventKind, Processing, ProcessingRefusal, ProcessingReport, ProcessingStatus};
use crate::session::ProcessOutcome;

/// A completed upload with a processing stage, completed at `now`.
async fn completed(store: &dyn SessionStore) -> (UploadRecord, Timestamp) {
    let now = SystemClock.now().trunc_subsecs(3);
    let record = UploadRecord { processing: Some(Processing::queued()), ..new_record(now) };
    store.insert(&record).await.expect("insert");
    let fence = claim_of(&record_chunks(store, &record, now).await).expect("a claim");
    assert!(store
        .finish(&record.id, fence, &Finish::Completed { etag: "e".into(), checksum: None }, now, ttl())
        .await
        .expect("finish"));
    (record, now)
}

async fn record_chunks(store: &dyn SessionStore, r: &UploadRecord, now: Timestamp) -> RecordOutcome {
    let last = all_but_last(store, r, now).await;
    record(store, r, last, now).await
}

fn running(progress: u8) -> ProcessingReport {
    ProcessingReport::Running { progress }
}

fn stage_of(outcome: ProcessOutcome) -> Processing {
    match outcome {
        ProcessOutcome::Updated(record) => record.processing.expect("a stage"),
        other => panic!("expected the stage to move, got {other:?}"),
    }
}

async fn events_of(store: &dyn SessionStore, id: &UploadId, now: Timestamp) -> Vec<EventKind> {
    let batches = store.outbox(now, Duration::zero(), 1000).await.expect("outbox");
    let batch = batches.into_iter().find(|b| b.events.first().is_some_and(|e| e.record.id == *id));
    batch.map(|b| b.events.iter().map(|e| e.kind).collect()).unwrap_or_default()
}

/// queued -> running -> running -> done, each step recorded with its event and the record
/// it left; a slow processor keeps the upload remembered; nothing moves a finished stage.
pub async fn processing_moves_queued_running_done(store: &dyn SessionStore) {
    let (r, now) = completed(store).await;
    let later = now + ttl() - Duration::seconds(1);
    let stage = stage_of(store.process(&r.id, &running(45), now, ttl()).await.expect("process"));
    assert_eq!((stage.status, stage.progress), (ProcessingStatus::Running, 45));
    let outcome = store.process(&r.id, &running(80), later, ttl()).await.expect("process");
    let ProcessOutcome::Updated(after) = outcome else { panic!("expected an update, got {outcome:?}") };
    assert_eq!(after.expires_at, later + ttl(), "a report keeps the upload remembered");
    assert_eq!(after.processing.as_ref().map(|p| p.progress), Some(80));
    let result: serde_json::Map<_, _> =
        [("url".to_string(), serde_json::json!("https://cdn/x.mp4"))].into_iter().collect();
    let done = ProcessingReport::Done { result: Some(result.clone()) };
    let stage = stage_of(store.process(&r.id, &done, later, ttl()).await.expect("process"));
    assert_eq!((stage.status, stage.progress, stage.result), (ProcessingStatus::Done, 100, Some(result)));
    assert_eq!(store.get(&r.id).await.expect("get").expect("record").processing.map(|p| p.status), Some(stage.status));

    for report in [running(90), done, ProcessingReport::Failed { error: "late".into() }] {
        let to = report.status();
        let outcome = store.process(&r.id, &report, later, ttl()).await.expect("process");
        let refused = ProcessingRefusal::Transition { from: ProcessingStatus::Done, to };
        assert_eq!(outcome, ProcessOutcome::Refused(refused));
    }
    let kinds = events_of(store, &r.id, later).await;
    let processing: Vec<_> = kinds.iter().filter(|k| k.as_str().starts_with("processing.")).collect();
    assert_eq!(
        processing,
        [&EventKind::ProcessingUpdated, &EventKind::ProcessingUpdated, &EventKind::ProcessingDone],
        "one event per move, none for a refusal: {kinds:?}"
    );
}

/// queued -> failed directly, keeping the reason; a failed stage takes no more reports.
pub async fn processing_fails_from_queued(store: &dyn SessionStore) {
    let (r, now) = completed(store).await;
    let failed = ProcessingReport::Failed { error: "unreadable video".into() };
    let stage = stage_of(store.process(&r.id, &failed, now, ttl()).await.expect("process"));
    assert_eq!((stage.status, stage.error.as_deref()), (ProcessingStatus::Failed, Some("unreadable video")));
    let done = ProcessingReport::Done { result: None };
    let refused = ProcessingRefusal::Transition { from: ProcessingStatus::Failed, to: ProcessingStatus::Done };
    assert_eq!(store.process(&r.id, &done, now, ttl()).await.expect("process"), ProcessOutcome::Refused(refused));
    assert_eq!(events_of(store, &r.id, now).await.last(), Some(&EventKind::ProcessingFailed));
}

/// Reports on an upload still uploading, on one without a stage, and on none at all are
/// refused and change nothing.
pub async fn processing_needs_a_completed_upload_with_a_stage(store: &dyn SessionStore) {
    let now = SystemClock.now().trunc_subsecs(3);
    let uploading = UploadRecord { processing: Some(Processing::queued()), ..new_record(now) };
    store.insert(&uploading).await.expect("insert");
    let refused = ProcessOutcome::Refused(ProcessingRefusal::NotCompleted(UploadState::Uploading));
    assert_eq!(store.process(&uploading.id, &running(1), now, ttl()).await.expect("process"), refused);
    assert_eq!(store.get(&uploading.id).await.expect("get").expect("record"), uploading);

    let plain = new_record(now);
    store.insert(&plain).await.expect("insert");
    let fence = claim_of(&record_chunks(store, &plain, now).await).expect("a claim");
    assert!(store
        .finish(&plain.id, fence, &Finish::Completed { etag: "e".into(), checksum: None }, now, ttl())
        .await
        .expect("finish"));
    let outcome = store.process(&plain.id, &running(1), now, ttl()).await.expect("process");
    assert_eq!(outcome, ProcessOutcome::Refused(ProcessingRefusal::NoStage));

    let missing = store.process(&UploadId::new(), &running(1), now, ttl()).await.expect("process");
    assert_eq!(missing, ProcessOutcome::NotFound);
    let (r, now) = completed(store).await;
    let past = now + ttl() + Duration::seconds(1);
    assert_eq!(store.process(&r.id, &running(1), past, ttl()).await.expect("process"), ProcessOutcome::NotFound);
}

/// Reports that cross (two processors, or retries) each move the stage once: none is lost
/// to another, and each records its event.
pub async fn concurrent_reports_each_apply_once(store: &dyn SessionStore) {
    let (r, now) = completed(store).await;
    let reports: Vec<_> = (1..=8).map(|p| ProcessingReport::Running { progress: p * 10 }).collect();
    let calls: Vec<_> = reports.iter().map(|report| store.process(&r.id, report, now, ttl())).collect();
    for outcome in futures_util::future::join_all(calls).await {
        assert_eq!(stage_of(outcome.expect("process")).status, ProcessingStatus::Running);
    }
    let kinds = events_of(store, &r.id, now).await;
    assert_eq!(kinds.iter().filter(|k| **k == EventKind::ProcessingUpdated).count(), 8, "{kinds:?}");
}
