//! POST /v1/uploads: opening uploads and every way to get it wrong.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn creating_an_upload_returns_its_plan_token_and_location() {
    let app = spawn_app();
    let response = app
        .post_json(
            "/v1/uploads",
            &json!({"filename": "video.mp4", "size": 10_000, "content_type": "video/mp4",
                    "chunk_size": 4096, "metadata": {"user": "42"}}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    let id = body["upload_id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/uploads/{id}"));
    assert_eq!(body["state"], "uploading");
    assert_eq!(body["size"], 10_000);
    assert_eq!(body["chunk_size"], 4096);
    assert_eq!(body["total_chunks"], 3);
    assert_eq!(body["key"], format!("{id}/video.mp4"));
    assert!(body["upload_token"].as_str().unwrap().len() >= 40);
    let expires = chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
    assert!(expires > chrono::Utc::now() + chrono::Duration::hours(23));
}

#[tokio::test]
async fn without_a_chunk_size_the_server_picks_one_within_max_chunks() {
    let app = spawn_app_with(|s| {
        s.uploads.max_chunks = 10;
        s.uploads.max_file_size = 10 * MAX_CHUNK;
    });
    let up = app.create(100_000, None).await;
    assert_eq!(up.chunk_size, 10_000, "the default 4096 would make 25 chunks");
    assert_eq!(up.total_chunks, 10);
}

#[tokio::test]
async fn a_chunk_size_outside_the_limits_is_refused() {
    let app = spawn_app();
    for chunk_size in [MIN_CHUNK - 1, MAX_CHUNK + 1] {
        let response =
            app.post_json("/v1/uploads", &json!({"filename": "a", "size": 10_000, "chunk_size": chunk_size})).await;
        let body = assert_problem(response, StatusCode::BAD_REQUEST, "invalid-chunk-size").await;
        assert_eq!(body["min_chunk_size"], MIN_CHUNK);
        assert_eq!(body["max_chunk_size"], MAX_CHUNK);
    }
}

#[tokio::test]
async fn a_chunk_size_making_too_many_chunks_is_refused() {
    let app = spawn_app_with(|s| {
        s.uploads.max_chunks = 10;
        s.uploads.max_file_size = 10 * MAX_CHUNK;
    });
    let response = app.post_json("/v1/uploads", &json!({"filename": "a", "size": 100_000, "chunk_size": 4096})).await;
    let body = assert_problem(response, StatusCode::BAD_REQUEST, "too-many-chunks").await;
    assert_eq!(body["max_chunks"], 10);
}

#[tokio::test]
async fn a_file_over_the_size_limit_is_refused() {
    let app = spawn_app();
    let response = app.post_json("/v1/uploads", &json!({"filename": "a", "size": MAX_FILE + 1})).await;
    let body = assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "file-too-large").await;
    assert_eq!(body["max_file_size"], MAX_FILE);
}

#[tokio::test]
async fn a_content_type_outside_the_allowed_list_is_refused() {
    let app = spawn_app_with(|s| s.uploads.allowed_content_types = vec!["video/mp4".into()]);
    let response = app
        .post_json("/v1/uploads", &json!({"filename": "a.exe", "size": 10, "content_type": "application/x-msdownload"}))
        .await;
    assert_problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-content-type").await;
    let response = app.post_json("/v1/uploads", &json!({"filename": "a", "size": 10})).await;
    assert_problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-content-type").await;
    let response = app
        .post_json("/v1/uploads", &json!({"filename": "a.mp4", "size": 10, "content_type": "Video/MP4; codecs=avc1"}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn malformed_creation_requests_are_refused() {
    let app = spawn_app();
    let big_metadata: serde_json::Map<String, Value> =
        (0..100).map(|i| (format!("key{i}"), json!("x".repeat(40)))).collect();
    let cases = [
        json!({"size": 10}),
        json!({"filename": "a"}),
        json!({"filename": "", "size": 10}),
        json!({"filename": "   ", "size": 10}),
        json!({"filename": "a", "size": -1}),
        json!({"filename": "a", "size": "ten"}),
        json!({"filename": "a", "size": 10, "metadata": {"n": 1}}),
        json!({"filename": "a", "size": 10, "metadata": big_metadata}),
        json!({"filename": "a".repeat(5000), "size": 10}),
    ];
    for case in cases {
        let response = app.post_json("/v1/uploads", &case).await;
        assert_problem(response, StatusCode::BAD_REQUEST, "invalid-request").await;
    }
    let response = app
        .client
        .post(app.url("/v1/uploads"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST, "invalid-request").await;
}

#[tokio::test]
async fn an_empty_file_is_completed_at_once() {
    let app = spawn_app();
    let response = app.post_json("/v1/uploads", &json!({"filename": "empty.txt", "size": 0})).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["state"], "completed");
    assert_eq!(body["total_chunks"], 0);
    let up = Upload::from_json(&body);
    assert_eq!(std::fs::read(app.object_path(&up.key)).unwrap(), Vec::<u8>::new());
    let status: Value = app.status(&up).await.json().await.unwrap();
    assert_eq!(status["state"], "completed");
    assert_eq!(status["etag"], "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(status["missing_chunks"], json!([]));
}

#[tokio::test]
async fn hostile_file_names_cannot_escape_the_upload_folder() {
    let app = spawn_app();
    let long = format!("{}.mp4", "n".repeat(996));
    let names = [
        "../../etc/passwd",
        "/absolute/path",
        "..",
        "a\u{0}b\nc\u{1b}[31m.txt",
        "C:\\windows\\evil.dll",
        long.as_str(),
    ];
    for name in names {
        let response = app.post_json("/v1/uploads", &json!({"filename": name, "size": 5})).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{name:?}");
        let body: Value = response.json().await.unwrap();
        let up = Upload::from_json(&body);
        let (id, file) = up.key.split_once('/').unwrap();
        assert_eq!(id, up.id);
        assert!(!file.is_empty() && file.len() <= 255, "{file:?}");
        assert!(!file.contains('/') && !file.contains("..") && !file.starts_with('.'), "{file:?}");
        assert!(!file.chars().any(char::is_control), "{file:?}");
        let last = app.put_chunk(&up, 0, b"hello").await;
        assert_eq!(last.status(), StatusCode::OK);
        let path = app.object_path(&up.key);
        assert!(path.starts_with(app.dir.join("objects").join(&up.id)));
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        let status: Value = app.status(&up).await.json().await.unwrap();
        assert_eq!(status["filename"], name, "the status reports the name as given");
    }
    assert!(long.len() > 255);
}
