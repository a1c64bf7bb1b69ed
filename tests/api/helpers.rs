//! Spawning the application and talking to it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use actix_web::dev::ServerHandle;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ferry::config::Settings;
use ferry::domain::{Clock, ManualClock};
use ferry::Application;
use md5::{Digest, Md5};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

/// Small chunks keep the suite fast; the rules are the same at any size.
pub const MIN_CHUNK: u64 = 1024;
pub const CHUNK: u64 = 4096;
pub const MAX_CHUNK: u64 = 64 * 1024;
pub const MAX_FILE: u64 = 16 * 1024 * 1024;

/// Settings for a test application keeping its data under `dir`.
pub fn settings(dir: &Path) -> Settings {
    let mut s = Settings::default();
    s.server.listen = "127.0.0.1:0".into();
    s.server.workers = 2;
    s.server.shutdown_timeout_secs = 5;
    s.storage.fs.root = dir.join("objects");
    s.sessions.embedded.path = dir.join("sessions");
    s.uploads.min_chunk_size = MIN_CHUNK;
    s.uploads.default_chunk_size = CHUNK;
    s.uploads.max_chunk_size = MAX_CHUNK;
    s.uploads.max_file_size = MAX_FILE;
    s.uploads.sweep_interval_secs = 1;
    s
}

/// A running application on its own thread and actix system, as in production.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub dir: PathBuf,
    /// Where the application keeps objects.
    pub storage: ferry::config::StorageSettings,
    /// Servers this application needs (a Redis of its own), stopped when it is dropped.
    guards: Vec<Box<dyn std::any::Any + Send>>,
    _tempdir: Option<Arc<tempfile::TempDir>>,
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

/// A fresh application in a fresh folder with the test settings.
pub fn spawn_app() -> TestApp {
    spawn_app_with(|_| {})
}

/// A fresh application whose settings `tweak` adjusts.
pub fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let tempdir = Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(tempdir.path());
    tweak(&mut s);
    let mut app = spawn(s, tempdir.path().to_path_buf(), Arc::new(ManualClock::new()));
    app._tempdir = Some(tempdir);
    app
}

/// An application on existing settings and clock (for restarts on the same folder).
pub fn spawn(settings: Settings, dir: PathBuf, clock: Arc<ManualClock>) -> TestApp {
    let storage = settings.storage.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let app_clock: Arc<dyn Clock> = clock.clone();
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            // A stopped predecessor's worker threads may hold the store a moment longer.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let app = loop {
                match Application::build_with_clock(&settings, app_clock.clone()).await {
                    Ok(app) => break app,
                    Err(e) if std::time::Instant::now() < deadline && format!("{e:#}").contains("already open") => {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                    Err(e) => panic!("the application builds: {e:#}"),
                }
            };
            tx.send((app.port(), app.handle())).unwrap();
            app.run_until_stopped().await.expect("the server runs");
        })
    });
    let (port, handle) = rx.recv().expect("the application started");
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::new(),
        clock,
        dir,
        storage,
        guards: Vec::new(),
        _tempdir: None,
        handle,
        thread: Some(thread),
    }
}

impl TestApp {
    /// Stops the server and waits until it has let go of its stores; returns the folder
    /// (kept alive) so a new application can take over.
    pub fn stop(mut self) -> (PathBuf, Arc<ManualClock>, Option<Arc<tempfile::TempDir>>) {
        self.shutdown();
        (self.dir.clone(), self.clock.clone(), self._tempdir.take())
    }

    /// Stops the server at once, cutting requests in flight, as a crashed pod would.
    pub fn kill(mut self) {
        if let Some(thread) = self.thread.take() {
            drop(self.handle.stop(false));
            thread.join().expect("the server thread ends");
        }
    }

    fn shutdown(&mut self) {
        if let Some(thread) = self.thread.take() {
            drop(self.handle.stop(true));
            thread.join().expect("the server thread ends cleanly");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Keeps `guard` (a server this application uses) alive as long as the application.
    pub fn keeping(mut self, guard: impl std::any::Any + Send) -> Self {
        self.guards.push(Box::new(guard));
        self
    }

    /// The finished object's bytes, wherever the application keeps objects.
    pub async fn read_object(&self, key: &str) -> Option<Vec<u8>> {
        match self.storage.backend {
            ferry::config::StorageBackend::Fs => std::fs::read(self.object_path(key)).ok(),
            ferry::config::StorageBackend::S3 => {
                let store = ferry::storage::S3ObjectStore::new(&self.storage.s3).await.unwrap();
                let key: ferry::domain::ObjectKey = serde_json::from_value(serde_json::json!(key)).unwrap();
                ferry::storage::contract::Inspect::object(&store, &key).await
            }
        }
    }

    /// Where a finished object lives.
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.dir.join("objects").join(key)
    }

    /// Where an unfinished upload's chunks live.
    pub fn staging_dir(&self, id: &str) -> PathBuf {
        self.dir.join("objects/.ferry/staging").join(id)
    }

    /// Files in the temporary folder (torn writes would linger here).
    pub fn temp_files(&self) -> usize {
        std::fs::read_dir(self.dir.join("objects/.ferry/tmp")).map(|d| d.count()).unwrap_or(0)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client.post(self.url(path)).json(body).send().await.unwrap()
    }

    /// Opens an upload of `size` bytes with the given chunk size; panics unless 201.
    pub async fn create(&self, size: u64, chunk_size: Option<u64>) -> Upload {
        let mut body = json!({"filename": "video.mp4", "size": size, "content_type": "video/mp4"});
        if let Some(c) = chunk_size {
            body["chunk_size"] = json!(c);
        }
        let response = self.post_json("/v1/uploads", &body).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        Upload::from_json(&response.json::<Value>().await.unwrap())
    }

    /// Sends chunk `index` with its correct MD5.
    pub async fn put_chunk(&self, up: &Upload, index: u32, data: &[u8]) -> Response {
        self.client
            .put(self.url(&format!("/v1/uploads/{}/chunks/{index}", up.id)))
            .bearer_auth(&up.token)
            .header("Content-MD5", content_md5(data))
            .body(data.to_vec())
            .send()
            .await
            .unwrap()
    }

    /// Sends every chunk of `data` in order; returns the last response body.
    pub async fn put_all(&self, up: &Upload, data: &[u8]) -> Value {
        let mut last = Value::Null;
        for (i, chunk) in data.chunks(up.chunk_size as usize).enumerate() {
            let response = self.put_chunk(up, i as u32, chunk).await;
            assert_eq!(response.status(), StatusCode::OK, "chunk {i}");
            last = response.json().await.unwrap();
        }
        last
    }

    pub async fn status(&self, up: &Upload) -> Response {
        self.client.get(self.url(&format!("/v1/uploads/{}", up.id))).bearer_auth(&up.token).send().await.unwrap()
    }

    pub async fn resume(&self, up: &Upload) -> Response {
        self.client
            .post(self.url(&format!("/v1/uploads/{}/resume", up.id)))
            .bearer_auth(&up.token)
            .send()
            .await
            .unwrap()
    }

    pub async fn cancel(&self, up: &Upload) -> Response {
        self.client.delete(self.url(&format!("/v1/uploads/{}", up.id))).bearer_auth(&up.token).send().await.unwrap()
    }

    pub async fn metrics(&self) -> String {
        self.client.get(self.url("/metrics")).send().await.unwrap().text().await.unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What creating an upload answered.
#[derive(Debug, Clone)]
pub struct Upload {
    pub id: String,
    pub token: String,
    pub key: String,
    pub chunk_size: u64,
    pub total_chunks: u32,
}

impl Upload {
    pub fn from_json(v: &Value) -> Self {
        Self {
            id: v["upload_id"].as_str().unwrap().to_owned(),
            token: v["upload_token"].as_str().unwrap().to_owned(),
            key: v["key"].as_str().unwrap().to_owned(),
            chunk_size: v["chunk_size"].as_u64().unwrap(),
            total_chunks: v["total_chunks"].as_u64().unwrap() as u32,
        }
    }
}

/// `Content-MD5` of `data`.
pub fn content_md5(data: &[u8]) -> String {
    STANDARD.encode(Md5::digest(data))
}

/// CRC-64/NVME bit by bit from the catalogue's parameters, as S3 shows it (the base64 of
/// its 8 big-endian bytes): an implementation independent of ferry's.
pub fn crc64nvme(data: &[u8]) -> String {
    let mut crc = u64::MAX;
    for byte in data {
        crc ^= u64::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x9a6c_9329_ac4b_c9b5 } else { crc >> 1 };
        }
    }
    STANDARD.encode((!crc).to_be_bytes())
}

/// Deterministic bytes that differ for every `seed`.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    ferry::storage::contract::bytes(seed, len)
}

/// Checks a problem+json answer and returns its body.
pub async fn assert_problem(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status, "status of a {code} problem");
    assert!(response.headers().contains_key("x-request-id"));
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.as_u16());
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body["detail"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body["type"].as_str().is_some_and(|t| t.ends_with(code)));
    body
}

/// Sends raw HTTP/1.1 `head` (and `body`) over TCP, then reads what the server answers
/// before the connection closes or `read_for` passes. For requests no client library
/// sends: lying lengths, bodies cut short.
pub async fn raw_request(app: &TestApp, head: &str, body: &[u8], close_after: bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    if close_after {
        stream.shutdown().await.unwrap();
        return String::new();
    }
    // Every refusal closes the connection: read until it does.
    let mut answer = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server answers without waiting for the body")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// Polls `check` until it holds or 15 s pass.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Opens a raw connection and sends `head` and the start of a body, leaving it open: a
/// client that stalls mid-body.
pub async fn raw_open(app: &TestApp, head: &str, body: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    stream
}

/// Reads what the server sends on `stream` until it closes the connection, or 10 s pass.
pub async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server answers or closes within 10 s")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// The head of a raw chunk PUT with a Content-Length.
pub fn chunk_head(up: &Upload, index: u32, length: u64, md5: &str) -> String {
    format!(
        "PUT /v1/uploads/{}/chunks/{index} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\nContent-MD5: {md5}\r\nContent-Length: {length}\r\n\r\n",
        up.id, up.token
    )
}
