//! One fault of the matrix, alone and certain (soak seeds 984256 and 984269 lost an upload to
//! it at random): S3 completes the multipart upload but its answer is lost, so the SDK sends
//! CompleteMultipartUpload again. The object is there, whole; the upload must end
//! `completed` with it, not `failed`.

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::cluster::{Cluster, PART};
use crate::helpers::{bytes, content_md5, Upload};
use crate::support::s3_faults::{Fault, Op, Rule};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_completion_whose_answer_is_lost_ends_completed() {
    let cluster = Cluster::start(984_269).await;
    let http = reqwest::Client::new();
    let data = bytes(984_269, (PART / 2) as usize);
    let created = http
        .post(format!("{}/v1/uploads", cluster.address(0)))
        .json(&json!({"filename": "lost-answer.bin", "size": data.len()}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let up = Upload::from_json(&created.json::<Value>().await.unwrap());

    // S3 gets the whole CompleteMultipartUpload and finishes it; ferry hears a reset.
    cluster.proxy.add_rule(Rule { ops: vec![Op::Complete], fault: Fault::AnswerLost, probability: 1.0, budget: 1 });
    let sent = http
        .put(format!("{}/v1/uploads/{}/chunks/0", cluster.address(0), up.id))
        .bearer_auth(&up.token)
        .header("Content-MD5", content_md5(&data))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(cluster.proxy.counts().get("s3-answer-lost"), Some(&1), "the completion's answer was lost");
    let status = sent.status();
    let answer: Value = sent.json().await.unwrap();
    assert_eq!(cluster.object(&up.key).await.as_deref(), Some(&data[..]), "S3 assembled the object");
    assert_eq!((status, answer["state"].as_str()), (StatusCode::OK, Some("completed")), "{answer}");
    assert_eq!(cluster.stored_state(&up.id).as_deref(), Some("completed"));
}
