//! The whole-file checksum: every completed upload reports the CRC-64/NVME of its object,
//! combined from its chunks' without reading the object again; a declared checksum that
//! does not match leaves no object and a `failed` upload. On the embedded default, and on
//! Redis + S3 (s3s-fs and moto).

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::support::redis::RedisServer;
use crate::support::s3::Kind;

async fn create(app: &TestApp, size: usize, checksum: Option<&str>) -> reqwest::Response {
    let mut body = json!({"filename": "clip.mp4", "size": size, "chunk_size": CHUNK});
    if let Some(crc) = checksum {
        body["checksum"] = json!({"crc64nvme": crc});
    }
    app.post_json("/v1/uploads", &body).await
}

/// Sends `data`'s chunks last first (any order is fine), answers the last body.
async fn send(app: &TestApp, up: &Upload, data: &[u8]) -> Value {
    let chunks: Vec<_> = data.chunks(CHUNK as usize).enumerate().collect();
    let mut last = Value::Null;
    for (i, chunk) in chunks.into_iter().rev() {
        let response = app.put_chunk(up, i as u32, chunk).await;
        assert_eq!(response.status(), StatusCode::OK);
        last = response.json().await.unwrap();
    }
    last
}

async fn status(app: &TestApp, up: &Upload) -> Value {
    app.status(up).await.json().await.unwrap()
}

async fn reported_and_checked(app: &TestApp) {
    assert_eq!(crc64nvme(b"123456789"), "rosUhgp5mIg=", "the reference meets the catalogue's check value");
    let data = bytes(51, 3 * CHUNK as usize + 123);
    let up = Upload::from_json(&create(app, data.len(), None).await.json().await.unwrap());
    assert_eq!(send(app, &up, &data).await["state"], "completed");
    let done = status(app, &up).await;
    assert_eq!(done["checksum"], json!({"crc64nvme": crc64nvme(&data)}), "{done}");

    let declared = Upload::from_json(&create(app, data.len(), Some(&crc64nvme(&data))).await.json().await.unwrap());
    send(app, &declared, &data).await;
    assert_eq!(status(app, &declared).await["checksum"]["crc64nvme"], crc64nvme(&data));
    assert_eq!(app.read_object(&declared.key).await.as_deref(), Some(&data[..]));

    let mut other = data.clone();
    other[5] ^= 1;
    let wrong = Upload::from_json(&create(app, data.len(), Some(&crc64nvme(&other))).await.json().await.unwrap());
    assert_eq!(send(app, &wrong, &data).await["state"], "failed");
    let failed = status(app, &wrong).await;
    assert_eq!(
        (&failed["state"], &failed["stage"], &failed["checksum"]),
        (&json!("failed"), &json!("failed"), &Value::Null)
    );
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains(&crc64nvme(&data)) && error.contains("not made"), "{error}");
    assert_eq!(app.read_object(&wrong.key).await, None, "no object for a file that is not the one declared");
}

#[tokio::test]
async fn embedded_uploads_report_their_crc64nvme_and_a_wrong_declaration_fails() {
    let app = spawn_app();
    reported_and_checked(&app).await;
}

#[tokio::test]
async fn a_wrong_declaration_leaves_no_chunk_behind() {
    let app = spawn_app();
    let data = bytes(52, 2 * CHUNK as usize);
    let up = Upload::from_json(&create(&app, data.len(), Some(&crc64nvme(b"other"))).await.json().await.unwrap());
    send(&app, &up, &data).await;
    eventually("the staged chunks are removed", || async { !app.staging_dir(&up.id).exists() }).await;
}

fn cloud(kind: Kind, redis: &RedisServer) -> TestApp {
    crate::cluster::cloud_app(redis, kind, |_| {})
}

#[tokio::test]
async fn on_redis_and_s3s_fs_uploads_report_their_crc64nvme() {
    let redis = RedisServer::start();
    reported_and_checked(&cloud(Kind::S3sFs, &redis)).await;
}

#[tokio::test]
async fn on_redis_and_moto_uploads_report_their_crc64nvme() {
    let redis = RedisServer::start();
    reported_and_checked(&cloud(Kind::Moto, &redis)).await;
}

#[tokio::test]
async fn form_and_empty_uploads_report_theirs_and_bad_declarations_are_refused() {
    let app = spawn_app();
    let data = bytes(53, 5000);
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(data.clone()).file_name("photo.jpg"));
    let response = app.client.post(app.url("/v1/uploads/form")).multipart(form).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["checksum"]["crc64nvme"], crc64nvme(&data));

    let empty: Value = create(&app, 0, Some(&crc64nvme(b""))).await.json().await.unwrap();
    let empty = status(&app, &Upload::from_json(&empty)).await;
    assert_eq!((&empty["state"], &empty["checksum"]["crc64nvme"]), (&json!("completed"), &json!("AAAAAAAAAAA=")));
    for bad in [json!({"crc64nvme": "abc"}), json!({"crc64nvme": 5}), json!({"sha1": "x"}), json!("AAAAAAAAAAA=")] {
        let body = json!({"filename": "a", "size": 10, "checksum": bad});
        assert_problem(app.post_json("/v1/uploads", &body).await, StatusCode::BAD_REQUEST, "invalid-request").await;
    }
    let empty_but_not = create(&app, 0, Some(&crc64nvme(b"x"))).await;
    assert_problem(empty_but_not, StatusCode::BAD_REQUEST, "invalid-request").await;
}
