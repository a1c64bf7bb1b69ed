//! POST /v1/uploads/form: a whole file in one request.

use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn a_form_upload_is_stored_and_completed() {
    let app = spawn_app();
    let data = bytes(9, 3 * MAX_CHUNK as usize + 5);
    let form = Form::new()
        .text("user", "42")
        .part("file", Part::bytes(data.clone()).file_name("../report.pdf").mime_str("application/pdf").unwrap())
        .text("album", "holidays");
    let response = app.client.post(app.url("/v1/uploads/form")).multipart(form).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["state"], "completed");
    assert_eq!(body["size"], data.len());
    assert_eq!(body["filename"], "../report.pdf");
    assert_eq!(body["content_type"], "application/pdf");
    assert_eq!(body["metadata"], json!({"user": "42", "album": "holidays"}));
    assert_eq!(body["missing_chunks"], json!([]));
    let up = Upload::from_json(&body);
    assert!(up.key.ends_with("/_report.pdf"));
    assert_eq!(std::fs::read(app.object_path(&up.key)).unwrap(), data);
    let status: Value = app.status(&up).await.json().await.unwrap();
    assert_eq!(status["state"], "completed");
    assert_eq!(status["etag"], format!("{:x}", <md5::Md5 as md5::Digest>::digest(&data)));
}

#[tokio::test]
async fn a_form_file_over_the_limit_is_refused_and_leaves_nothing() {
    let app = spawn_app_with(|s| s.uploads.max_file_size = 100_000);
    let form = Form::new().part("file", Part::bytes(bytes(10, 100_001)).file_name("big.bin"));
    let response = app.client.post(app.url("/v1/uploads/form")).multipart(form).send().await.unwrap();
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "file-too-large").await;
    assert_eq!(app.temp_files(), 0);
    let objects: Vec<_> = std::fs::read_dir(app.dir.join("objects")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(objects, vec![std::ffi::OsString::from(".ferry")], "no object was left");
}

#[tokio::test]
async fn a_form_without_a_file_is_refused() {
    let app = spawn_app();
    let form = Form::new().text("user", "42");
    let response = app.client.post(app.url("/v1/uploads/form")).multipart(form).send().await.unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST, "invalid-request").await;
    let response = app.client.post(app.url("/v1/uploads/form")).body("plain").send().await.unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST, "invalid-request").await;
}
