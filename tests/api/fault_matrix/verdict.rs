//! After the faults: what must hold of every upload. Records left `completing` are
//! finished by a sweeper without any client (within the lease and one sweep); the
//! unfinished uploads resume to completion; every completed upload's object is its file,
//! byte for byte, and its record says `completed`; canceled uploads answer 410 and leave
//! no object and no multipart upload; S3 keeps no multipart upload of a finished one.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::StatusCode;

use super::client::{Job, Outcome, Shared};
use super::cluster::{Cluster, LEASE_SECS, SWEEP_SECS};

/// Margin over the lease and the sweep interval (a sweep itself takes a moment).
const MARGIN: Duration = Duration::from_secs(3);
/// How long an unfinished upload has to complete once every fault is gone.
const RESUME_LIMIT: Duration = Duration::from_secs(45);

pub async fn judge(cluster: &Cluster, shared: &Shared, jobs: &mut [Job]) {
    no_record_stays_completing(cluster, shared, jobs).await;

    let deadline = Instant::now() + RESUME_LIMIT;
    let unfinished = jobs.iter_mut().filter(|j| j.outcome == Outcome::Unfinished);
    let resumed = join_all(unfinished.map(|job| job.drive(shared, false, deadline))).await.len();
    shared.tally.add_n("resumed", resumed);

    shared.tally.add_n("uploads", jobs.len());
    for job in jobs.iter_mut() {
        match job.outcome.clone() {
            Outcome::Completed => {
                shared.tally.add("completed");
                if completed_holds(cluster, shared, job).await {
                    shared.tally.add("verified");
                }
            }
            Outcome::Canceled => {
                shared.tally.add("canceled");
                canceled_leaves_nothing(cluster, shared, job).await;
            }
            Outcome::Lost(why) => {
                shared.tally.add("lost");
                shared.tally.violation(format!("{} LOST: {why}", job.label()));
            }
            Outcome::Unfinished => unreachable!("every client ran to an outcome"),
        }
    }
}

/// Hands off: no client calls anything; a record left `completing` (its claimer killed,
/// or its assembly failed for a passing reason) must be finished by some instance's
/// sweeper within the lease plus one sweep interval. A `failed` record is a loss.
async fn no_record_stays_completing(cluster: &Cluster, shared: &Shared, jobs: &mut [Job]) {
    let ids = |state: &str| -> Vec<String> {
        let ids = jobs.iter().filter_map(|j| j.up.as_ref()).map(|u| u.id.clone());
        ids.filter(|id| cluster.stored_state(id).as_deref() == Some(state)).collect()
    };
    let window = Duration::from_secs(LEASE_SECS + SWEEP_SECS) + MARGIN;
    let completing = ids("completing");
    shared.tally.add_n("left-completing", completing.len());
    let deadline = Instant::now() + window;
    let mut stuck = completing.clone();
    while !stuck.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stuck.retain(|id| cluster.stored_state(id).as_deref() == Some("completing"));
    }
    for id in &stuck {
        shared.tally.add("stuck-completing");
        shared.tally.violation(format!(
            "upload {id} STUCK completing for {window:?} with no client (a lapsed claim must be finished by a sweeper)"
        ));
    }
    for job in jobs.iter_mut() {
        let failed = job.up.as_ref().is_some_and(|u| cluster.stored_state(&u.id).as_deref() == Some("failed"));
        if failed && !matches!(job.outcome, Outcome::Lost(_)) {
            job.outcome = Outcome::Lost("its record says failed".into());
        }
    }
}

/// The object is the file, the record says `completed`, and no multipart upload is left.
async fn completed_holds(cluster: &Cluster, shared: &Shared, job: &Job) -> bool {
    let up = job.up.as_ref().unwrap();
    let mut holds = true;
    if cluster.object(&up.key).await.as_deref() != Some(&job.data[..]) {
        shared.tally.violation(format!("{}: completed, but the object is not the file at the end", job.label()));
        holds = false;
    }
    let state = cluster.stored_state(&up.id);
    if state.as_deref() != Some("completed") {
        shared.tally.violation(format!("{}: the client saw completed, the record says {state:?}", job.label()));
        holds = false;
    }
    holds && no_multipart_left(cluster, shared, job).await
}

async fn canceled_leaves_nothing(cluster: &Cluster, shared: &Shared, job: &mut Job) {
    let up = job.up.clone().unwrap();
    if let Some((status, body)) = job.status(shared).await {
        if status != StatusCode::GONE {
            shared.tally.violation(format!("{}: canceled, but status answers {status}: {body}", job.label()));
        }
    }
    if cluster.object(&up.key).await.is_some() {
        shared.tally.violation(format!("{}: canceled, but its object is in the bucket", job.label()));
    }
    no_multipart_left(cluster, shared, job).await;
}

/// S3 keeps nothing of the upload's multipart upload (a straggling part may land just
/// after a cancel: ferry aborts again when that part is refused, so allow a moment).
///
/// Part files without the upload's record are not held against ferry: s3s-fs checks the
/// upload id when an UploadPart starts and writes the part when its body ends, so a part
/// still streaming from an instance killed mid-chunk lands after the completion (or
/// abort) that removed the record and the other parts. No S3 call removes such a file
/// (AbortMultipartUpload answers AccessDenied without the record); they are counted as `orphan-parts` (soak seed 462882).
async fn no_multipart_left(cluster: &Cluster, shared: &Shared, job: &Job) -> bool {
    let Some(multipart) = job.up.as_ref().and_then(|u| cluster.multipart_id(&u.id)) else { return true };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let open = cluster.multipart_open(&multipart);
        let left = cluster.multipart_leftovers(&multipart);
        if left.is_empty() {
            return true;
        }
        if !open {
            shared.tally.add_n("orphan-parts", left.len());
            return true;
        }
        if Instant::now() > deadline {
            shared.tally.add("multipart-left");
            shared.tally.violation(format!("{}: S3 still keeps {left:?}", job.label()));
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
