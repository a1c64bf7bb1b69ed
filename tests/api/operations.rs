//! Health, readiness, metrics, request ids and unknown routes.

use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app();
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
}

#[tokio::test]
async fn readiness_fails_when_the_storage_folder_is_gone() {
    let app = spawn_app();
    std::fs::remove_dir_all(app.dir.join("objects")).unwrap();
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    let body = assert_problem(ready, StatusCode::SERVICE_UNAVAILABLE, "storage-unavailable").await;
    let text = body.to_string();
    assert!(!text.contains(app.dir.to_str().unwrap()), "a 5xx body says nothing internal: {text}");
}

#[tokio::test]
async fn metrics_count_uploads_bytes_and_request_durations() {
    let app = spawn_app();
    let up = app.create(5, None).await;
    app.put_chunk(&up, 0, b"12345").await;
    let metrics = app.metrics().await;
    for line in [
        "ferry_uploads_created_total 1",
        "ferry_uploads_completed_total 1",
        "ferry_chunks_received_total 1",
        "ferry_bytes_received_total 5",
        "ferry_uploads_canceled_total 0",
        "ferry_uploads_expired_total 0",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
    assert!(metrics.contains(
        "ferry_http_request_duration_seconds_count{method=\"PUT\",route=\"/v1/uploads/{upload_id}/chunks/{index}\",status=\"200\"} 1"
    ), "{metrics}");
}

/// The value of the sample `name` (with its labels) in a scrape; panics when it is absent.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no sample {name} in\n{metrics}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn completed_uploads_are_timed_from_creation_and_sized() {
    let app = spawn_app();
    let up = app.create(5000, None).await;
    let data = bytes(21, 5000);
    app.put_chunk(&up, 0, &data[..CHUNK as usize]).await;
    app.clock.advance(chrono::Duration::seconds(90));
    let last: Value = app.put_chunk(&up, 1, &data[CHUNK as usize..]).await.json().await.unwrap();
    assert_eq!(last["state"], "completed");

    let metrics = app.metrics().await;
    let duration = "ferry_upload_duration_seconds";
    assert_eq!(sample(&metrics, &format!("{duration}_bucket{{le=\"60\"}}")), 0.0, "{metrics}");
    assert_eq!(sample(&metrics, &format!("{duration}_bucket{{le=\"120\"}}")), 1.0);
    assert_eq!(sample(&metrics, &format!("{duration}_sum")), 90.0);
    let size = "ferry_upload_size_bytes";
    assert_eq!(sample(&metrics, &format!("{size}_bucket{{le=\"4096\"}}")), 0.0, "{metrics}");
    assert_eq!(sample(&metrics, &format!("{size}_bucket{{le=\"16384\"}}")), 1.0);
    assert_eq!(sample(&metrics, &format!("{size}_sum")), 5000.0);

    // An empty file completes as it is created, and a form upload as its body ends.
    let empty = app.create(0, None).await;
    assert_eq!(app.status(&empty).await.json::<Value>().await.unwrap()["state"], "completed");
    let form = Form::new().part("file", Part::bytes(bytes(22, 20_000)).file_name("form.bin"));
    let response = app.client.post(app.url("/v1/uploads/form")).multipart(form).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let metrics = app.metrics().await;
    assert_eq!(sample(&metrics, &format!("{duration}_count")), 3.0, "{metrics}");
    assert_eq!(sample(&metrics, &format!("{duration}_bucket{{le=\"1\"}}")), 2.0);
    assert_eq!(sample(&metrics, &format!("{size}_bucket{{le=\"1024\"}}")), 1.0, "the empty file");
    assert_eq!(sample(&metrics, &format!("{size}_bucket{{le=\"65536\"}}")), 3.0, "the form's file");
    assert_eq!(sample(&metrics, &format!("{size}_sum")), 25_000.0);
    assert_eq!(sample(&metrics, "ferry_uploads_completed_total"), 3.0);
}

#[tokio::test]
async fn the_staging_gauge_follows_the_chunks_on_disk() {
    let app = spawn_app();
    let staged = |bytes: u64| {
        let app = &app;
        async move {
            eventually(&format!("{bytes} bytes are staged"), || async {
                sample(&app.metrics().await, "ferry_staging_bytes") == bytes as f64
            })
            .await
        }
    };
    staged(0).await;
    let canceled = app.create(2 * CHUNK, None).await;
    app.put_chunk(&canceled, 0, &bytes(23, CHUNK as usize)).await;
    staged(CHUNK).await;
    let completed = app.create(CHUNK + 100, None).await;
    app.put_chunk(&completed, 0, &bytes(24, CHUNK as usize)).await;
    staged(2 * CHUNK).await;
    assert_eq!(app.cancel(&canceled).await.status(), StatusCode::NO_CONTENT);
    staged(CHUNK).await;
    let last: Value = app.put_chunk(&completed, 1, &bytes(25, 100)).await.json().await.unwrap();
    assert_eq!(last["state"], "completed");
    staged(0).await;
}

#[tokio::test]
async fn request_ids_are_echoed_or_made_up() {
    let app = spawn_app();
    let echoed = app.client.get(app.url("/healthz")).header("X-Request-Id", "trace-me-42").send().await.unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-me-42");
    let made = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(made.headers()["x-request-id"].len(), 36);
}

#[tokio::test]
async fn unknown_routes_and_methods_get_problems() {
    let app = spawn_app();
    let response = app.client.get(app.url("/v2/nothing")).send().await.unwrap();
    assert_problem(response, StatusCode::NOT_FOUND, "not-found").await;
    let response = app.client.patch(app.url("/v1/uploads")).send().await.unwrap();
    assert_problem(response, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed").await;
}
