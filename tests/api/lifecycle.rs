//! Status, resume and cancel.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn status_reports_progress_and_is_not_cached() {
    let app = spawn_app();
    let response = app
        .post_json(
            "/v1/uploads",
            &json!({"filename": "clip.mov", "size": 3 * CHUNK, "content_type": "video/quicktime", "metadata": {"user": "42"}}),
        )
        .await;
    let up = Upload::from_json(&response.json::<Value>().await.unwrap());
    app.put_chunk(&up, 1, &bytes(7, CHUNK as usize)).await;
    let response = app.status(&up).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let status: Value = response.json().await.unwrap();
    assert_eq!(status["upload_id"], up.id);
    assert_eq!(status["state"], "uploading");
    assert_eq!(status["filename"], "clip.mov");
    assert_eq!(status["content_type"], "video/quicktime");
    assert_eq!(status["size"], 3 * CHUNK);
    assert_eq!(status["chunk_size"], CHUNK);
    assert_eq!(status["total_chunks"], 3);
    assert_eq!(status["received_chunks"], 1);
    assert_eq!(status["bytes_received"], CHUNK);
    assert_eq!(status["missing_chunks"], json!([0, 2]));
    assert_eq!(status["key"], up.key);
    assert_eq!(status["metadata"], json!({"user": "42"}));
    for field in ["created_at", "updated_at", "expires_at"] {
        chrono::DateTime::parse_from_rfc3339(status[field].as_str().unwrap()).unwrap();
    }
    assert!(status.get("etag").is_none());
}

#[tokio::test]
async fn resume_extends_the_expiry_and_lists_what_is_missing() {
    let app = spawn_app();
    let up = app.create(2 * CHUNK, None).await;
    let before: Value = app.status(&up).await.json().await.unwrap();
    app.clock.advance(chrono::Duration::hours(2));
    let response = app.resume(&up).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let after: Value = response.json().await.unwrap();
    let expiry = |v: &Value| chrono::DateTime::parse_from_rfc3339(v["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expiry(&after) - expiry(&before), chrono::Duration::hours(2));
    assert_eq!(after["missing_chunks"], json!([0, 1]));
}

#[tokio::test]
async fn cancel_removes_the_stored_chunks_and_refuses_later_calls() {
    let app = spawn_app();
    let up = app.create(2 * CHUNK, None).await;
    app.put_chunk(&up, 0, &bytes(8, CHUNK as usize)).await;
    assert!(app.staging_dir(&up.id).exists());
    let response = app.cancel(&up).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(!app.staging_dir(&up.id).exists());
    assert!(!app.object_path(&up.key).exists());
    assert_problem(app.status(&up).await, StatusCode::GONE, "upload-canceled").await;
    assert_problem(app.resume(&up).await, StatusCode::GONE, "upload-canceled").await;
    assert_problem(app.cancel(&up).await, StatusCode::GONE, "upload-canceled").await;
    assert!(app.metrics().await.contains("ferry_uploads_canceled_total 1"));
}

#[tokio::test]
async fn a_canceled_upload_is_forgotten_after_its_ttl() {
    let app = spawn_app();
    let up = app.create(2 * CHUNK, None).await;
    app.cancel(&up).await;
    app.clock.advance(chrono::Duration::seconds(86_401));
    assert_problem(app.status(&up).await, StatusCode::NOT_FOUND, "upload-not-found").await;
}

#[tokio::test]
async fn canceling_a_completed_upload_keeps_the_object() {
    let app = spawn_app();
    let up = app.create(5, None).await;
    app.put_chunk(&up, 0, b"keep!").await;
    assert_problem(app.cancel(&up).await, StatusCode::CONFLICT, "upload-completed").await;
    assert_eq!(std::fs::read(app.object_path(&up.key)).unwrap(), b"keep!");
    assert_eq!(app.status(&up).await.status(), StatusCode::OK);
}
