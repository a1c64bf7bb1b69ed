//! `hooks.pre_create`: every way of creating an upload (native, tus, form) asks a real HTTP
//! hook first; what it answers decides, and a refusal or a silent hook leaves nothing behind.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::multipart::{Form, Part};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::*;

const API_KEY: &str = "key-for-the-hook-tests";

/// A real HTTP server in the test's runtime, playing the operator's hook: it records each
/// request's JSON body and answers every one with `status` and `body`, after `delay`.
struct Hook {
    url: String,
    seen: Arc<Mutex<Vec<Value>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Hook {
    async fn answering(status: u16, body: &str) -> Self {
        Self::start(status, body.to_owned(), Duration::ZERO).await
    }

    async fn start(status: u16, body: String, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/approve", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&seen);
        let server = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (recorded, body) = (Arc::clone(&recorded), body.clone());
                tokio::spawn(async move {
                    let request = read_request(&mut stream).await;
                    recorded.lock().unwrap().push(request);
                    tokio::time::sleep(delay).await;
                    answer(&mut stream, status, &body).await;
                });
            }
        });
        Self { url, seen, server }
    }

    /// The request bodies the hook received, in order.
    fn seen(&self) -> Vec<Value> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Reads one POST to `/approve` (checking its head) and returns its body.
async fn read_request(stream: &mut TcpStream) -> Value {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the request ended in its head");
        received.extend_from_slice(&buf[..n]);
        if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8(received[..head_end].to_vec()).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("post /approve http/1.1\r\n"), "{head}");
    assert!(head.contains("\r\ncontent-type: application/json\r\n"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("a Content-Length")
        .trim()
        .parse()
        .unwrap();
    while received.len() < head_end + length {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the request ended in its body");
        received.extend_from_slice(&buf[..n]);
    }
    serde_json::from_slice(&received[head_end..]).unwrap()
}

/// Answers `status` with the JSON `body`, and closes.
async fn answer(stream: &mut TcpStream, status: u16, body: &str) {
    let answer = format!(
        "HTTP/1.1 {status} Hook\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // A caller that gave up has closed the connection: nothing to write to.
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// An application that asks the hook at `url`, waiting 1 s at most, with creation behind
/// an API key (so the hook has a credential to see).
fn app_with_hook(url: &str) -> TestApp {
    let url = url.to_owned();
    spawn_app_with(move |s| {
        s.hooks.pre_create = Some(url);
        s.hooks.timeout_secs = 1;
        s.auth.api_keys = vec![API_KEY.into()];
    })
}

fn bearer() -> String {
    format!("Bearer {API_KEY}")
}

async fn create_native(app: &TestApp, size: u64) -> Response {
    let body = json!({"filename": "clip.mp4", "size": size, "content_type": "video/mp4", "metadata": {"user": "42"}});
    app.client.post(app.url("/v1/uploads")).header("Authorization", bearer()).json(&body).send().await.unwrap()
}

/// A tus creation; with `data`, creation-with-upload.
async fn create_tus(app: &TestApp, length: Option<u64>, data: Option<&[u8]>) -> Response {
    let metadata = format!("filename {},filetype {},user {}", b64("clip.bin"), b64("video/mp4"), b64("42"));
    let mut request = app
        .client
        .post(app.url("/files/"))
        .header("Tus-Resumable", "1.0.0")
        .header("Authorization", bearer())
        .header("Upload-Metadata", metadata);
    request = match length {
        Some(length) => request.header("Upload-Length", length),
        None => request.header("Upload-Defer-Length", "1"),
    };
    if let Some(data) = data {
        request = request.header("Content-Type", "application/offset+octet-stream").body(data.to_vec());
    }
    request.send().await.unwrap()
}

/// A form with a text field before its file (and `after` after it, when given).
async fn create_form(app: &TestApp, data: &[u8], after: Option<(&'static str, &'static str)>) -> Response {
    let mut form = Form::new()
        .text("user", "42")
        .part("file", Part::bytes(data.to_vec()).file_name("notes.txt").mime_str("text/plain").unwrap());
    if let Some((name, value)) = after {
        form = form.text(name, value);
    }
    app.client.post(app.url("/v1/uploads/form")).header("Authorization", bearer()).multipart(form).send().await.unwrap()
}

fn b64(s: &str) -> String {
    STANDARD.encode(s)
}

/// The native credentials of a tus upload, from its URL.
fn tus_upload(response: &Response) -> Upload {
    let location = response.headers()["location"].to_str().unwrap();
    let (id, token) = location.rsplit('/').next().unwrap().split_once('.').unwrap();
    Upload { id: id.into(), token: token.into(), key: String::new(), chunk_size: 0, total_chunks: 0 }
}

async fn status_of(app: &TestApp, up: &Upload) -> Value {
    let response = app.status(up).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// No upload was opened and storage holds nothing: no object, no staged bytes.
async fn assert_nothing_created(app: &TestApp) {
    assert!(app.metrics().await.contains("ferry_uploads_created_total 0"), "no session was opened");
    let objects: Vec<_> = std::fs::read_dir(app.dir.join("objects")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(objects, vec![std::ffi::OsString::from(".ferry")], "no object was stored");
    let staged = std::fs::read_dir(app.dir.join("objects/.ferry/staging")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(staged, 0, "no bytes were staged");
    assert_eq!(app.temp_files(), 0);
}

/// The hook's counter for `outcome`.
async fn hook_calls(app: &TestApp, outcome: &str) -> u64 {
    let line = format!("ferry_pre_create_hook_calls_total{{outcome=\"{outcome}\"}} ");
    let metrics = app.metrics().await;
    metrics.lines().find_map(|l| l.strip_prefix(line.as_str())).map_or(0, |n| n.parse().unwrap())
}

#[tokio::test]
async fn an_approving_hook_sees_every_native_creation_and_it_goes_on() {
    let hook = Hook::answering(200, "{}").await;
    let app = app_with_hook(&hook.url);
    let response = create_native(&app, 10_000).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let up = Upload::from_json(&response.json().await.unwrap());
    assert_eq!(
        hook.seen(),
        vec![json!({"filename": "clip.mp4", "size": 10_000, "content_type": "video/mp4", "metadata": {"user": "42"},
            "protocol": "native", "transfer": "relay", "authorization": bearer()})]
    );
    assert_eq!(status_of(&app, &up).await["metadata"], json!({"user": "42"}));
    let data = bytes(1, 10_000);
    assert_eq!(app.put_all(&up, &data).await["state"], "completed");
    assert_eq!(hook.seen().len(), 1, "only creation asks the hook");
    assert_eq!(hook_calls(&app, "approved").await, 1);
}

#[tokio::test]
async fn an_approving_hook_sees_tus_creations_with_their_length_or_none() {
    let hook = Hook::answering(200, "").await;
    let app = app_with_hook(&hook.url);
    let data = bytes(2, 3000);
    let response = create_tus(&app, Some(3000), Some(&data)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["upload-offset"], "3000");
    let up = tus_upload(&response);
    let status = status_of(&app, &up).await;
    assert_eq!((&status["state"], &status["metadata"]), (&json!("completed"), &json!({"user": "42"})));
    let response = create_tus(&app, None, None).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let expected = |size: Value| {
        json!({"filename": "clip.bin", "size": size, "content_type": "video/mp4", "metadata": {"user": "42"},
            "protocol": "tus", "transfer": "relay", "authorization": bearer()})
    };
    assert_eq!(hook.seen(), vec![expected(json!(3000)), expected(Value::Null)]);
}

/// A tus final upload is an upload the app sees: the hook is asked for it too, with the
/// partials' length together, and its refusal makes no final.
#[tokio::test]
async fn a_tus_final_upload_asks_the_hook_with_its_whole_length() {
    let hook = Hook::answering(200, "").await;
    let app = app_with_hook(&hook.url);
    let mut urls = Vec::new();
    for (seed, len) in [(3, 1000), (4, 2000)] {
        let response = app
            .client
            .post(app.url("/files/"))
            .header("Tus-Resumable", "1.0.0")
            .header("Authorization", bearer())
            .header("Upload-Concat", "partial")
            .header("Upload-Length", len)
            .header("Content-Type", "application/offset+octet-stream")
            .body(bytes(seed, len))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        urls.push(response.headers()["location"].to_str().unwrap().to_owned());
    }
    let final_request = app
        .client
        .post(app.url("/files/"))
        .header("Tus-Resumable", "1.0.0")
        .header("Authorization", bearer())
        .header("Upload-Concat", format!("final;{}", urls.join(" ")))
        .header("Upload-Metadata", format!("filename {}", b64("whole.bin")));
    assert_eq!(final_request.send().await.unwrap().status(), StatusCode::CREATED);
    let seen = hook.seen();
    assert_eq!(seen.len(), 3, "two partials and the final: {seen:#?}");
    assert_eq!(
        (&seen[2]["filename"], &seen[2]["size"], &seen[2]["protocol"]),
        (&json!("whole.bin"), &json!(3000), &json!("tus"))
    );
}

#[tokio::test]
async fn an_approving_hook_sees_a_form_with_the_fields_before_its_file() {
    let hook = Hook::answering(201, r#"{"metadata": null}"#).await;
    let app = app_with_hook(&hook.url);
    let data = b"hello, hook";
    let response = create_form(&app, data, None).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!((&body["state"], &body["metadata"]), (&json!("completed"), &json!({"user": "42"})));
    assert_eq!(std::fs::read(app.object_path(body["key"].as_str().unwrap())).unwrap(), data);
    assert_eq!(
        hook.seen(),
        vec![json!({"filename": "notes.txt", "size": null, "content_type": "text/plain", "metadata": {"user": "42"},
            "protocol": "form", "transfer": "relay", "authorization": bearer()})]
    );
}

#[tokio::test]
async fn with_a_hook_a_form_field_after_the_file_is_refused_and_nothing_kept() {
    let hook = Hook::answering(200, "{}").await;
    let app = app_with_hook(&hook.url);
    let response = create_form(&app, b"late", Some(("album", "holidays"))).await;
    let problem = assert_problem(response, StatusCode::BAD_REQUEST, "invalid-request").await;
    assert!(problem["detail"].as_str().unwrap().contains("before the file"), "{problem}");
    assert_nothing_created(&app).await;
}

#[tokio::test]
async fn the_hooks_metadata_replaces_the_clients_for_every_protocol() {
    let hook = Hook::answering(200, r#"{"metadata": {"owner": "7", "tier": "gold"}, "ignored": true}"#).await;
    let app = app_with_hook(&hook.url);
    let replaced = json!({"owner": "7", "tier": "gold"});

    let response = create_native(&app, 5000).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let up = Upload::from_json(&response.json().await.unwrap());
    assert_eq!(status_of(&app, &up).await["metadata"], replaced);

    let response = create_tus(&app, Some(10), None).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(status_of(&app, &tus_upload(&response)).await["metadata"], replaced);

    let response = create_form(&app, b"form bytes", None).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["metadata"], replaced);
    assert_eq!(status_of(&app, &Upload::from_json(&body)).await["metadata"], replaced);
    assert_eq!(hook.seen().len(), 3);
}

#[tokio::test]
async fn a_refusing_hook_gives_403_with_its_message_and_nothing_is_created() {
    let hook = Hook::answering(422, r#"{"message": "quota exceeded\nfor user 42"}"#).await;
    let app = app_with_hook(&hook.url);
    let refused = [
        create_native(&app, 0).await,
        create_native(&app, 5000).await,
        create_tus(&app, Some(100), Some(&bytes(3, 100))).await,
        create_form(&app, b"refused bytes", None).await,
    ];
    for response in refused {
        assert!(response.headers().get("location").is_none());
        let problem = assert_problem(response, StatusCode::FORBIDDEN, "rejected-by-hook").await;
        assert_eq!(problem["detail"], "quota exceeded for user 42");
    }
    assert_eq!(hook.seen().len(), 4);
    assert_eq!(hook_calls(&app, "rejected").await, 4);
    assert_nothing_created(&app).await;
}

#[tokio::test]
async fn a_refusal_without_a_message_gets_a_fixed_detail() {
    let hook = Hook::answering(404, "<html>no such page</html>").await;
    let app = app_with_hook(&hook.url);
    let problem = assert_problem(create_native(&app, 5000).await, StatusCode::FORBIDDEN, "rejected-by-hook").await;
    assert!(!problem["detail"].as_str().unwrap().contains("html"), "{problem}");
}

#[tokio::test]
async fn a_malformed_request_is_refused_without_asking_the_hook() {
    let hook = Hook::answering(200, "{}").await;
    let app = app_with_hook(&hook.url);
    let body = json!({"filename": " ", "size": 10});
    let response =
        app.client.post(app.url("/v1/uploads")).header("Authorization", bearer()).json(&body).send().await.unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST, "invalid-request").await;
    let response = create_native(&app, MAX_FILE + 1).await;
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "file-too-large").await;
    let response = app.client.post(app.url("/v1/uploads")).json(&json!({"filename": "a", "size": 1})).send().await;
    assert_problem(response.unwrap(), StatusCode::UNAUTHORIZED, "missing-token").await;
    assert!(hook.seen().is_empty());
}

/// Every protocol answers 503 `hook-unavailable`, with `Retry-After`, and keeps nothing.
async fn assert_unavailable_everywhere(app: &TestApp) {
    let answers = [
        create_native(app, 0).await,
        create_tus(app, Some(100), Some(&bytes(4, 100))).await,
        create_form(app, b"unapproved bytes", None).await,
    ];
    for response in answers {
        assert_eq!(response.headers()["retry-after"], "2");
        let problem = assert_problem(response, StatusCode::SERVICE_UNAVAILABLE, "hook-unavailable").await;
        assert!(!problem["detail"].as_str().unwrap().contains("127.0.0.1"), "{problem}");
    }
    assert_eq!(hook_calls(app, "unavailable").await, 3);
    assert_nothing_created(app).await;
}

/// `assert_unavailable_everywhere` against a hook that was asked each time.
async fn assert_asked_and_unavailable(hook: &Hook, app: &TestApp) {
    assert_unavailable_everywhere(app).await;
    let protocols: Vec<_> = hook.seen().iter().map(|r| r["protocol"].clone()).collect();
    assert_eq!(protocols, vec!["native", "tus", "form"], "one call per creation, no redirect followed");
}

#[tokio::test]
async fn a_hook_that_is_down_makes_creation_unavailable() {
    let port = crate::support::s3::free_port();
    let app = app_with_hook(&format!("http://127.0.0.1:{port}/approve"));
    assert_unavailable_everywhere(&app).await;
}

#[tokio::test]
async fn a_hook_slower_than_its_timeout_makes_creation_unavailable() {
    let hook = Hook::start(200, "{}".into(), Duration::from_millis(2500)).await;
    let app = app_with_hook(&hook.url);
    let started = std::time::Instant::now();
    assert_asked_and_unavailable(&hook, &app).await;
    assert!(started.elapsed() < Duration::from_secs(7), "each creation waited about 1 s, not for the hook");
}

#[tokio::test]
async fn a_hook_failing_or_redirecting_makes_creation_unavailable() {
    for (status, body) in [(500, r#"{"message": "boom"}"#), (503, ""), (307, "")] {
        let hook = Hook::answering(status, body).await;
        let app = app_with_hook(&hook.url);
        assert_asked_and_unavailable(&hook, &app).await;
    }
}

#[tokio::test]
async fn a_hook_answering_what_ferry_cannot_use_makes_creation_unavailable() {
    let too_big = format!(r#"{{"metadata": {{"note": "{}"}}}}"#, "x".repeat(5000));
    for body in [too_big.as_str(), r#"{"metadata": {"count": 3}}"#, "approved"] {
        let hook = Hook::answering(200, body).await;
        let app = app_with_hook(&hook.url);
        assert_asked_and_unavailable(&hook, &app).await;
    }
}
