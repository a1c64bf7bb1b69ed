//! The processing stage: processors report on completed uploads with their own keys, the
//! stage shows in status and moves only the allowed ways, each move an event; on the
//! embedded default and across two Redis + S3 instances.

use ferry::config::Settings;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::support::redis::RedisServer;
use crate::support::s3::Kind;
use crate::support::webhook::Receiver;

const PROCESSOR_KEY: &str = "processor-key-0123456789";
const API_KEY: &str = "api-key-0123456789";

fn processing_on(s: &mut Settings) {
    s.processing.enabled = true;
    s.auth.processor_keys = vec![PROCESSOR_KEY.into()];
}

/// A Redis + S3 instance with the processing stage, its events going to `webhook`.
fn cloud(redis: &RedisServer, webhook: &str) -> TestApp {
    crate::cluster::cloud_app(redis, Kind::S3sFs, |s| {
        processing_on(s);
        s.events.webhooks.push(ferry::config::WebhookSettings {
            url: webhook.to_owned(),
            secret: crate::support::webhook::SECRET.into(),
            types: Vec::new(),
        });
    })
}

async fn report(app: &TestApp, id: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = app.client.post(app.url(&format!("/v1/uploads/{id}/processing"))).json(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.unwrap()
}

async fn reported(app: &TestApp, id: &str, body: Value) -> Value {
    let response = report(app, id, Some(PROCESSOR_KEY), &body).await;
    assert_eq!(response.status(), StatusCode::OK, "{body}");
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

async fn completed(app: &TestApp) -> Upload {
    let data = bytes(7, 2 * CHUNK as usize);
    let up = app.create(data.len() as u64, Some(CHUNK)).await;
    assert_eq!(app.put_all(&up, &data).await["state"], "completed");
    up
}

async fn status_of(app: &TestApp, up: &Upload) -> Value {
    app.status(up).await.json().await.unwrap()
}

#[tokio::test]
async fn a_completed_upload_goes_queued_running_done_and_status_shows_each_step() {
    let app = spawn_app_with(processing_on);
    let data = bytes(3, 2 * CHUNK as usize);
    let up = app.create(data.len() as u64, Some(CHUNK)).await;
    let first = status_of(&app, &up).await;
    assert_eq!((&first["stage"], &first["processing"]), (&json!("uploading"), &Value::Null), "{first}");
    app.put_all(&up, &data).await;
    let queued = status_of(&app, &up).await;
    assert_eq!((&queued["state"], &queued["stage"]), (&json!("completed"), &json!("processing")));
    assert_eq!(queued["processing"], json!({"status": "queued", "progress": 0}));

    let running = reported(&app, &up.id, json!({"status": "running", "progress": 45})).await;
    assert_eq!((&running["stage"], &running["processing"]["progress"]), (&json!("processing"), &json!(45)));
    assert_eq!(status_of(&app, &up).await["processing"], json!({"status": "running", "progress": 45}));
    reported(&app, &up.id, json!({"status": "running", "progress": 90})).await;

    let result = json!({"url": "https://cdn.example/v.mp4", "frames": 1200});
    let done = reported(&app, &up.id, json!({"status": "done", "result": result})).await;
    assert_eq!(done["stage"], "done");
    assert_eq!(done["processing"], json!({"status": "done", "progress": 100, "result": result}));
    assert_eq!(status_of(&app, &up).await, done);
}

#[tokio::test]
async fn every_refused_transition_is_a_409_and_changes_nothing() {
    let app = spawn_app_with(processing_on);
    let uploading = app.create(2 * CHUNK, Some(CHUNK)).await;
    let refused = report(&app, &uploading.id, Some(PROCESSOR_KEY), &json!({"status": "running", "progress": 1})).await;
    let body = assert_problem(refused, StatusCode::CONFLICT, "invalid-transition").await;
    assert_eq!(body["state"], "uploading");

    let all = [
        json!({"status": "running", "progress": 5}),
        json!({"status": "done"}),
        json!({"status": "failed", "error": "x"}),
    ];
    for (last, reason) in [
        (json!({"status": "done", "result": {"ok": true}}), "done"),
        (json!({"status": "failed", "error": "corrupt"}), "failed"),
    ] {
        let up = completed(&app).await;
        let after = reported(&app, &up.id, last).await;
        for next in &all {
            let response = report(&app, &up.id, Some(PROCESSOR_KEY), next).await;
            let body = assert_problem(response, StatusCode::CONFLICT, "invalid-transition").await;
            assert_eq!((&body["from"], &body["to"]), (&json!(reason), &next["status"]), "{body}");
        }
        assert_eq!(status_of(&app, &up).await, after, "a refused report changes nothing");
    }
    // queued -> failed is allowed, with its reason shown; the stage is then `failed`.
    let up = completed(&app).await;
    let failed = reported(&app, &up.id, json!({"status": "failed", "error": "unreadable"})).await;
    assert_eq!((&failed["stage"], &failed["processing"]["error"]), (&json!("failed"), &json!("unreadable")));

    let plain = spawn_app_with(|s| s.auth.processor_keys = vec![PROCESSOR_KEY.into()]);
    let up = completed(&plain).await;
    assert_eq!(status_of(&plain, &up).await["stage"], "done", "no processing stage: done once completed");
    let response = report(&plain, &up.id, Some(PROCESSOR_KEY), &json!({"status": "running"})).await;
    assert_problem(response, StatusCode::CONFLICT, "invalid-transition").await;
}

#[tokio::test]
async fn only_a_processor_key_may_report_and_reports_are_checked() {
    let app = spawn_app_with(|s| {
        processing_on(s);
        s.auth.api_keys = vec![API_KEY.into()];
    });
    let response = app
        .client
        .post(app.url("/v1/uploads"))
        .bearer_auth(API_KEY)
        .json(&json!({"filename": "a.bin", "size": 2 * CHUNK, "chunk_size": CHUNK}))
        .send()
        .await
        .unwrap();
    let up = Upload::from_json(&response.json::<Value>().await.unwrap());
    for chunk in 0..2 {
        assert_eq!(app.put_chunk(&up, chunk, &bytes(chunk.into(), CHUNK as usize)).await.status(), StatusCode::OK);
    }
    let body = json!({"status": "running", "progress": 10});
    assert_problem(report(&app, &up.id, None, &body).await, StatusCode::UNAUTHORIZED, "missing-token").await;
    for key in [up.token.as_str(), API_KEY, "not-a-key"] {
        assert_problem(report(&app, &up.id, Some(key), &body).await, StatusCode::FORBIDDEN, "invalid-token").await;
    }
    let big = "x".repeat(17 * 1024);
    for bad in [
        json!({"status": "running", "progress": 101}),
        json!({"status": "running", "progress": -1}),
        json!({"status": "done", "result": {"blob": big}}),
        json!({"status": "done", "result": [1, 2]}),
        json!({"status": "failed"}),
        json!({"status": "paused"}),
        json!({"progress": 3}),
    ] {
        let response = report(&app, &up.id, Some(PROCESSOR_KEY), &bad).await;
        assert_problem(response, StatusCode::BAD_REQUEST, "invalid-request").await;
    }
    let unknown = report(&app, "0190b5a0-0000-7000-8000-000000000000", Some(PROCESSOR_KEY), &body).await;
    assert_problem(unknown, StatusCode::NOT_FOUND, "upload-not-found").await;
    assert_problem(report(&app, "nope", Some(PROCESSOR_KEY), &body).await, StatusCode::NOT_FOUND, "upload-not-found")
        .await;
    assert_eq!(status_of(&app, &up).await["processing"], json!({"status": "queued", "progress": 0}));
}

#[tokio::test]
async fn processing_without_processor_keys_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.processing.enabled = true;
    let err = ferry::startup::Application::build(&s).await.err().expect("a configuration error");
    assert!(format!("{err:#}").contains("auth.processor_keys"), "{err:#}");
}

/// Completed on one instance, reported on by a processor through another: every instance
/// sees the stage, and each move reaches the webhook as its event.
#[tokio::test]
async fn across_instances_each_move_is_seen_everywhere_and_sent_as_an_event() {
    let receiver = Receiver::start(0);
    let redis = RedisServer::start();
    let (a, b) = (cloud(&redis, &receiver.url), cloud(&redis, &receiver.url));
    let up = completed(&a).await;
    assert_eq!(status_of(&b, &up).await["stage"], "processing");
    reported(&b, &up.id, json!({"status": "running", "progress": 30})).await;
    assert_eq!(status_of(&a, &up).await["processing"]["progress"], 30);
    reported(&a, &up.id, json!({"status": "done", "result": {"sha256": "abc"}})).await;
    let done = receiver.await_event(&up.id, "processing.done").await;
    assert_eq!(done["data"]["processing"], json!({"status": "done", "progress": 100, "result": {"sha256": "abc"}}));
    assert_eq!(done["data"]["stage"], "done");
    let updated = receiver.await_event(&up.id, "processing.updated").await;
    assert_eq!(updated["data"]["processing"]["progress"], 30);
    let completed = receiver.await_event(&up.id, "upload.completed").await;
    assert_eq!(completed["data"]["stage"], "processing");
}
