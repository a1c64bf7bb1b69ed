//! Expiry: idle uploads are swept with their bytes; live ones are not.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn an_idle_upload_expires_and_its_bytes_are_swept() {
    let app = spawn_app_with(|s| s.uploads.session_ttl_secs = 60);
    let idle = app.create(2 * CHUNK, None).await;
    let active = app.create(2 * CHUNK, None).await;
    app.put_chunk(&idle, 0, &bytes(11, CHUNK as usize)).await;
    app.put_chunk(&active, 0, &bytes(12, CHUNK as usize)).await;
    assert!(app.staging_dir(&idle.id).exists());

    app.clock.advance(chrono::Duration::seconds(45));
    assert_eq!(app.resume(&active).await.status(), StatusCode::OK);
    app.clock.advance(chrono::Duration::seconds(30));

    assert_problem(app.status(&idle).await, StatusCode::NOT_FOUND, "upload-not-found").await;
    assert_problem(
        app.put_chunk(&idle, 1, &bytes(13, CHUNK as usize)).await,
        StatusCode::NOT_FOUND,
        "upload-not-found",
    )
    .await;
    eventually("the sweeper removed the idle upload's chunks", || async { !app.staging_dir(&idle.id).exists() }).await;
    eventually("the expiry is counted", || async { app.metrics().await.contains("ferry_uploads_expired_total 1") })
        .await;

    let status: Value = app.status(&active).await.json().await.unwrap();
    assert_eq!(status["received_chunks"], 1, "the resumed upload lives on");
    assert!(app.staging_dir(&active.id).exists());
}

#[tokio::test]
async fn a_completed_upload_outlives_its_session() {
    let app = spawn_app_with(|s| s.uploads.session_ttl_secs = 60);
    let up = app.create(5, None).await;
    app.put_chunk(&up, 0, b"stays").await;
    app.clock.advance(chrono::Duration::seconds(61));
    eventually("the finished session is forgotten", || async {
        app.status(&up).await.status() == StatusCode::NOT_FOUND
    })
    .await;
    // Give the sweeper a tick to do anything it (wrongly) might.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(std::fs::read(app.object_path(&up.key)).unwrap(), b"stays");
    assert!(app.metrics().await.contains("ferry_uploads_expired_total 0"));
}
