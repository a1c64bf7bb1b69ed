//! Expiry under faults, apart from the matrix (a short TTL there would expire uploads that
//! are merely slow): uploads abandoned midway, and uploads canceled while S3 refuses to
//! abort, leave nothing in the bucket once their sessions expire and a sweeper runs.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::cluster::{Cluster, PART, SWEEP_SECS};
use crate::helpers::{bytes, content_md5, Upload};
use crate::support::s3_faults::{Fault, Op, Rule};

/// Long enough to open six uploads and cancel the last three before any expires.
const TTL_SECS: u64 = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abandoned_uploads_and_cancels_whose_abort_failed_leave_nothing_once_expired() {
    // Chunks of S3's smallest part go straight into parts here (part_size 5 MiB), so the six
    // uploads open quickly enough for the short TTL; grouped small chunks are the matrix's.
    let part_size = PART.to_string();
    let settings = [("FERRY__UPLOADS__SESSION_TTL_SECS", "6"), ("FERRY__STORAGE__S3__PART_SIZE", part_size.as_str())];
    let cluster = Cluster::start_with(8, &settings).await;
    let http = reqwest::Client::new();
    let mut uploads = Vec::new();
    for n in 0..6u64 {
        let address = cluster.address(n as usize % 3);
        let body = json!({"filename": format!("abandoned-{n}.bin"), "size": 3 * PART});
        let created = http.post(format!("{address}/v1/uploads")).json(&body).send().await.unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        let up = Upload::from_json(&created.json::<Value>().await.unwrap());
        for index in 0..=(n % 2) {
            let chunk = bytes(800 + n, PART as usize);
            let sent = http
                .put(format!("{}/v1/uploads/{}/chunks/{index}", cluster.address(index as usize), up.id))
                .bearer_auth(&up.token)
                .header("Content-MD5", content_md5(&chunk))
                .body(chunk)
                .send()
                .await
                .unwrap();
            assert_eq!(sent.status(), StatusCode::OK);
        }
        let multipart = cluster.multipart_id(&up.id).expect("a multipart upload");
        assert!(!cluster.multipart_leftovers(&multipart).is_empty(), "parts are stored");
        uploads.push((up, multipart));
    }

    // The first three are abandoned. Every abort fails for a while (the SDK's own retries included): the cancels below
    // cannot clean up at once.
    let abort_fails = Rule { ops: vec![Op::Abort], fault: Fault::InternalError, probability: 1.0, budget: 9 };
    cluster.proxy.add_rule(abort_fails);
    for (up, _) in &uploads[3..] {
        let canceled = http.delete(format!("{}/v1/uploads/{}", cluster.address(2), up.id)).bearer_auth(&up.token);
        assert_eq!(canceled.send().await.unwrap().status(), StatusCode::NO_CONTENT);
    }
    assert!(cluster.proxy.counts().get("s3-500").copied().unwrap_or(0) >= 3, "the cancels' aborts failed");
    let (_, multipart) = &uploads[3];
    assert!(!cluster.multipart_leftovers(multipart).is_empty(), "a failed abort leaves the parts for now");

    // Then S3 recovers; within the TTL and a few sweeps, nothing is left of any of them.
    cluster.proxy.clear();
    let deadline = Instant::now() + Duration::from_secs(TTL_SECS + 4 * SWEEP_SECS + 5);
    for (up, multipart) in &uploads {
        // The sweeper aborts first, then forgets the session: wait for both.
        loop {
            let left = cluster.multipart_leftovers(multipart);
            let status = http.get(format!("{}/v1/uploads/{}", cluster.address(1), up.id)).bearer_auth(&up.token);
            let status = status.send().await.unwrap().status();
            let state = cluster.stored_state(&up.id);
            if left.is_empty() && status == StatusCode::NOT_FOUND && state.is_none() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "upload {} after expiring: S3 keeps {left:?}, status {status}, record {state:?}",
                up.id
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(cluster.object(&up.key).await, None, "no object for an upload that never completed");
    }
}
