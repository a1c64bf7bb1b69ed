//! Contract cases of tus concatenation: the part an upload plays is kept with its record,
//! and a final upload is created already holding its completion claim.

// Test support: a failed expectation is the case failing.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use super::*;
use crate::domain::Concat;

/// A fresh append upload of `length` at `offset`, playing `concat`, created at `now`.
fn concat_record(now: Timestamp, length: u64, offset: u64, concat: Concat) -> UploadRecord {
    let mut r = new_record(now);
    r.append = Some(AppendState { length: Some(length), offset, cursor: String::new(), crc64: None });
    r.concat = Some(concat);
    r
}

/// A partial and a final upload read back with their part, through every call that
/// answers a record (get, touch, cancel, retire, remove).
pub async fn concatenation_roles_read_back_as_written(store: &dyn SessionStore) {
    let now = SystemClock.now().trunc_subsecs(3);
    let partial = concat_record(now, 10, 0, Concat::Partial);
    store.insert(&partial).await.expect("insert");
    assert_eq!(store.get(&partial.id).await.expect("get"), Some(partial.clone()));
    let touched = store.touch(&partial.id, now, ttl()).await.expect("touch").expect("live");
    assert_eq!(touched.concat, Some(Concat::Partial));
    match store.cancel(&partial.id, now, ttl()).await.expect("cancel") {
        CancelOutcome::Canceled(before) => assert_eq!(before.concat, Some(Concat::Partial)),
        other => panic!("expected a cancel, got {other:?}"),
    }

    let (a, b) = (UploadId::new(), UploadId::new());
    let last = concat_record(now, 30, 30, Concat::Final { partials: vec![a, b, a] });
    store.insert(&last).await.expect("insert");
    let read = store.get(&last.id).await.expect("get").expect("record");
    assert_eq!(read, last);
    assert_eq!(read.partials(), Some(&[a, b, a][..]), "order and repeats are kept");
    let past = now + ttl() + Duration::seconds(1);
    match store.retire(&last.id, past).await.expect("retire") {
        Retired::Retired(before) => assert_eq!(before.partials(), Some(&[a, b, a][..])),
        other => panic!("expected a tombstone, got {other:?}"),
    }
    let removed = store.remove_expired(&last.id, past).await.expect("remove").expect("removed");
    assert_eq!(removed.partials(), Some(&[a, b, a][..]));
}

/// A record inserted `completing` under a claim (a final upload, whose bytes are all
/// there from the start) is held by that claim: nobody else claims it or sweeps it while
/// it lives, its holder renews and finishes it, and once it lapses the next caller takes over.
pub async fn an_upload_inserted_under_a_claim_is_held_by_it(store: &dyn SessionStore) {
    let now = SystemClock.now().trunc_subsecs(3);
    let mut r = concat_record(now, 30, 30, Concat::Final { partials: vec![UploadId::new()] });
    let claim = r.take_claim(now, lease());
    store.insert(&r).await.expect("insert");
    let read = store.get(&r.id).await.expect("get").expect("record");
    assert_eq!((read.state, read.claim), (UploadState::Completing, Some(claim)));
    assert_eq!(store.claim(&r.id, now, lease()).await.expect("claim"), None, "held");
    assert!(matches!(store.retire(&r.id, now).await.expect("retire"), Retired::NotDue(_)));
    assert_eq!(store.cancel(&r.id, now, ttl()).await.expect("cancel"), CancelOutcome::Refused(UploadState::Completing));
    assert!(store.renew(&r.id, claim.fence, now, lease()).await.expect("renew"));
    assert!(matches!(
        store.begin_append(&r.id, 30, now, ttl(), lease()).await.expect("begin_append"),
        AppendStart::Refused(UploadState::Completing)
    ));

    let later = now + lease() + Duration::seconds(1);
    let next = store.claim(&r.id, later, lease()).await.expect("claim").expect("a lapsed claim passes on");
    assert!(next.fence > claim.fence);
    let done = Finish::Completed { etag: "final".into(), checksum: None };
    assert!(!store.finish(&r.id, claim.fence, &done, later, ttl()).await.expect("finish"), "the old holder lost it");
    assert!(store.finish(&r.id, next.fence, &done, later, ttl()).await.expect("finish"));
    let read = store.get(&r.id).await.expect("get").expect("record");
    assert_eq!((read.state, read.etag.as_deref()), (UploadState::Completed, Some("final")));
    assert_eq!(read.append.map(|a| (a.offset, a.length)), Some((30, Some(30))));
}
