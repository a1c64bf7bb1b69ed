//! `ferry upload`, `ferry status` and `ferry cancel`: the real binary against a real server.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

use crate::helpers::*;
use crate::support::faults::FaultyProxy;

fn ferry(state: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
    command.env("FERRY_STATE_DIR", state).env_remove("FERRY_SERVER").env_remove("FERRY_API_KEY");
    command
}

async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
}

fn write_file(dir: &Path, name: &str, data: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

fn last_json(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|_| panic!("no JSON line: {stdout}\n{}", String::from_utf8_lossy(&output.stderr)))
}

async fn chunks_received(app: &TestApp) -> u64 {
    let metrics = app.metrics().await;
    let line = metrics.lines().find(|l| l.starts_with("ferry_chunks_received_total ")).unwrap();
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn ferry_upload_stores_the_file_and_prints_its_status() {
    let app = spawn_app();
    let dir = tempfile::tempdir().unwrap();
    let data = bytes(31, 10 * CHUNK as usize + 77);
    let file = write_file(dir.path(), "clip.mov", &data);
    let mut command = ferry(&dir.path().join("state"));
    command.args(["upload", "--server", &app.address, "--json", "--parallel", "3", "--metadata", "user=42"]).arg(&file);
    let output = run(command).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let status = last_json(&output);
    assert_eq!(status["state"], "completed");
    assert_eq!(status["metadata"]["user"], "42");
    assert_eq!(std::fs::read(app.object_path(status["key"].as_str().unwrap())).unwrap(), data);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("11 of 11 chunks sent"), "a plain final line when stderr is no terminal: {stderr}");
}

#[tokio::test]
async fn an_interrupted_upload_resumes_and_sends_only_the_missing_chunks() {
    let app = spawn_app_with(|s| s.uploads.default_chunk_size = MIN_CHUNK);
    let dir = tempfile::tempdir().unwrap();
    let data = bytes(32, 1200 * MIN_CHUNK as usize);
    let file = write_file(dir.path(), "big.iso", &data);
    let state = dir.path().join("state");
    let args = ["upload", "--server", app.address.as_str(), "--json", "--parallel", "1"];

    let mut first = ferry(&state);
    first.args(args).arg(&file).stdout(Stdio::piped()).stderr(Stdio::piped());
    let first = first.spawn().unwrap();
    eventually("part of the file is stored", || async { chunks_received(&app).await >= 100 }).await;
    assert!(Command::new("kill").args(["-INT", &first.id().to_string()]).status().unwrap().success());
    let first = tokio::task::spawn_blocking(move || first.wait_with_output().unwrap()).await.unwrap();
    assert_eq!(first.status.code(), Some(130), "Ctrl-C exits promptly and non-zero");
    assert!(String::from_utf8_lossy(&first.stderr).contains("run the same command again to resume"));
    let stored_before = chunks_received(&app).await;
    assert!(stored_before < 1200, "interrupted mid-way ({stored_before} chunks)");

    let mut second = ferry(&state);
    second.args(args).arg(&file);
    let output = run(second).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let status = last_json(&output);
    assert_eq!(std::fs::read(app.object_path(status["key"].as_str().unwrap())).unwrap(), data);
    assert_eq!(chunks_received(&app).await, 1200, "the second run sent only what was missing");
    // A chunk whose body had fully arrived may be recorded after the first run died, so
    // the second run may find a few more than `stored_before`; never fewer.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let sent: u64 = stderr
        .split(" of 1200 chunks sent by this run (resumed)")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resumed summary in {stderr}"));
    assert!(sent <= 1200 - stored_before && sent + 4 >= 1200 - stored_before, "{sent} sent after {stored_before}");
}

#[tokio::test]
async fn retries_carry_an_upload_through_503s_and_connection_resets() {
    let app = spawn_app();
    let proxy = FaultyProxy::start(&app.address, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let data = bytes(33, 40 * CHUNK as usize);
    let file = write_file(dir.path(), "flaky.bin", &data);
    let mut command = ferry(&dir.path().join("state"));
    command.args(["upload", "--server", &proxy.address, "--json", "--parallel", "4"]).arg(&file);
    let output = run(command).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let status = last_json(&output);
    assert_eq!(std::fs::read(app.object_path(status["key"].as_str().unwrap())).unwrap(), data);
    use std::sync::atomic::Ordering::SeqCst;
    assert!(proxy.counts.unavailable.load(SeqCst) >= 1 && proxy.counts.reset.load(SeqCst) >= 1);
}

#[tokio::test]
async fn a_refusal_stops_with_the_servers_reason() {
    let app = spawn_app_with(|s| s.uploads.max_file_size = 1000);
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "huge.bin", &bytes(34, 5000));
    let mut command = ferry(&dir.path().join("state"));
    command.args(["upload", "--server", &app.address]).arg(&file);
    let output = run(command).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("file-too-large") && stderr.contains("1000 bytes"), "{stderr}");
}

#[tokio::test]
async fn an_unreachable_server_makes_the_client_give_up_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "a.bin", b"hello");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut command = ferry(&dir.path().join("state"));
    command.args(["upload", "--server", &format!("http://127.0.0.1:{port}"), "--retry-for", "2"]).arg(&file);
    let output = run(command).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("gave up after"));
}

#[tokio::test]
async fn status_and_cancel_commands_use_the_upload_token() {
    let app = spawn_app();
    let up = app.create(3 * CHUNK, None).await;
    let state = tempfile::tempdir().unwrap();
    let mut status = ferry(state.path());
    status.args(["status", &up.id, "--server", &app.address, "--token", &up.token]);
    let output = run(status).await;
    assert!(output.status.success());
    assert_eq!(last_json(&output)["missing_chunks"], serde_json::json!([0, 1, 2]));

    let mut cancel = ferry(state.path());
    cancel.args(["cancel", &up.id, "--server", &app.address, "--token", &up.token]);
    assert!(run(cancel).await.status.success());
    let mut again = ferry(state.path());
    again.args(["status", &up.id, "--server", &app.address, "--token", &up.token]);
    let output = run(again).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("upload-canceled"));
}

/// `ferry upload --wait` with a processing stage: the test plays the app's processor,
/// which it learns of from the completion webhook.
async fn upload_and_wait(processor_says: Value) -> (Output, Value) {
    const KEY: &str = "processor-key-for-the-cli";
    let receiver = crate::support::webhook::Receiver::start(0);
    let app = spawn_app_with(|s| {
        s.processing.enabled = true;
        s.auth.processor_keys = vec![KEY.into()];
        s.events.webhooks.push(ferry::config::WebhookSettings {
            url: receiver.url.clone(),
            secret: crate::support::webhook::SECRET.into(),
            types: vec!["upload.completed".into()],
        });
    });
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "talk.mp4", &bytes(41, 3 * CHUNK as usize));
    let mut command = ferry(&dir.path().join("state"));
    command.args(["upload", "--wait", "--server", &app.address]).arg(&file);
    let cli = tokio::task::spawn_blocking(move || command.output().unwrap());
    eventually("the upload completes", || async { !receiver.accepted().is_empty() }).await;
    let completed = receiver.accepted();
    let id = completed[0]["upload_id"].as_str().unwrap().to_owned();
    let report = |body: Value| {
        app.client.post(app.url(&format!("/v1/uploads/{id}/processing"))).bearer_auth(KEY).json(&body).send()
    };
    assert_eq!(report(serde_json::json!({"status": "running", "progress": 50})).await.unwrap().status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(!cli.is_finished(), "--wait waits while the stage is processing");
    assert_eq!(report(processor_says).await.unwrap().status(), 200);
    (cli.await.unwrap(), completed[0].clone())
}

#[tokio::test]
async fn ferry_upload_wait_waits_for_processing_and_prints_its_result() {
    let result = serde_json::json!({"url": "https://cdn.example/talk.mp4", "duration": 12.5});
    let (output, _) = upload_and_wait(serde_json::json!({"status": "done", "result": result})).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(last_json(&output), result, "the processor's result on stdout");
    assert!(String::from_utf8_lossy(&output.stderr).contains("processed"));
}

#[tokio::test]
async fn ferry_upload_wait_fails_when_processing_fails() {
    let (output, completed) = upload_and_wait(serde_json::json!({"status": "failed", "error": "codec unknown"})).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("processing failed: codec unknown"), "{stderr}");
    assert_eq!(completed["data"]["stage"], "processing");
}

/// A file that changes while it is sent (a log still being written, a video still being
/// saved): with the CRC-64/NVME declared (the default), the server makes no object of the
/// mix and the upload fails; with `--no-checksum`, the mix is stored.
async fn upload_a_file_that_changes(extra: &[&str]) -> (Output, TestApp) {
    let app = spawn_app_with(|s| s.uploads.default_chunk_size = MIN_CHUNK);
    let dir = tempfile::tempdir().unwrap();
    let data = bytes(34, 1200 * MIN_CHUNK as usize);
    let file = write_file(dir.path(), "growing.log", &data);
    let mut command = ferry(&dir.path().join("state"));
    command.args(["upload", "--server", app.address.as_str(), "--json", "--parallel", "1"]).args(extra).arg(&file);
    let cli = tokio::task::spawn_blocking(move || command.output().unwrap());
    eventually("part of the file is stored", || async { chunks_received(&app).await >= 50 }).await;
    let mut changed = data.clone();
    changed[data.len() - 10..].copy_from_slice(b"0123456789");
    std::fs::write(&file, &changed).unwrap();
    (cli.await.unwrap(), app)
}

#[tokio::test]
async fn a_file_changed_while_it_is_sent_is_not_stored_under_its_declared_checksum() {
    let (output, app) = upload_a_file_that_changes(&[]).await;
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stdout));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("CRC-64/NVME") && stderr.contains("not made"), "{stderr}");
    assert!(app.metrics().await.contains("ferry_uploads_failed_total 1"));

    let (output, _) = upload_a_file_that_changes(&["--no-checksum"]).await;
    assert!(output.status.success(), "without a declared checksum the mix is stored");
    assert!(last_json(&output)["checksum"]["crc64nvme"].is_string(), "the server still reports what it stored");
}

async fn upload_direct(app: &TestApp, data: &[u8], transfer: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "film.mkv", data);
    let mut command = ferry(&dir.path().join("state"));
    command.args(["upload", "--server", &app.address, "--json", "--parallel", "2", "--transfer", transfer]).arg(&file);
    let output = run(command).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let status = last_json(&output);
    assert_eq!(status["state"], "completed", "{status}");
    assert_eq!(app.read_object(status["key"].as_str().unwrap()).await.as_deref(), Some(data), "byte-identical");
    status
}

#[tokio::test]
async fn ferry_upload_transfer_direct_sends_parts_to_the_signed_urls_and_confirms() {
    // The embedded default: the URLs are ferry's own, and ferry computes the CRC.
    let app = spawn_app();
    let data = bytes(35, 20 * CHUNK as usize + 5);
    let status = upload_direct(&app, &data, "direct").await;
    assert_eq!((&status["transfer"], &status["checksum"]["crc64nvme"]), (&json!("direct"), &json!(crc64nvme(&data))));

    // Redis + S3: the parts go to the bucket on the store's presigned URLs, three of them.
    let redis = crate::support::redis::RedisServer::start();
    let cloud = crate::cluster::cloud_app(&redis, crate::support::s3::Kind::S3sFs, |s| {
        s.uploads.max_chunk_size = 8 * 1024 * 1024;
        s.uploads.max_file_size = 64 * 1024 * 1024;
    });
    let data = bytes(36, 12 * 1024 * 1024 + 77);
    let status = upload_direct(&cloud, &data, "direct").await;
    assert_eq!((&status["transfer"], &status["total_parts"]), (&json!("direct"), &json!(3)), "{status}");
    let metrics = cloud.metrics().await;
    assert!(metrics.contains("ferry_chunks_received_total 0"), "no byte came through ferry");

    // `auto` keeps a small file on the chunk API.
    let status = upload_direct(&app, &bytes(37, 3 * CHUNK as usize), "auto").await;
    assert!(status["transfer"].is_null(), "{status}");
}

fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| if e.path().is_dir() { files_under(&e.path()) } else { 1 }).sum())
        .unwrap_or(0)
}

/// A direct upload interrupted mid-way resumes from the parts the store holds, pages of
/// URLs signed as it goes (small pages here), and sends only the rest.
#[tokio::test]
async fn an_interrupted_direct_upload_resumes_from_the_parts_the_store_holds() {
    let app = spawn_app_with(|s| {
        s.uploads.default_chunk_size = MIN_CHUNK;
        s.direct.single_part_max = 0;
        s.direct.batch_size = 7;
    });
    let dir = tempfile::tempdir().unwrap();
    let data = bytes(38, 1200 * MIN_CHUNK as usize);
    let file = write_file(dir.path(), "long.mov", &data);
    let state = dir.path().join("state");
    let args = ["upload", "--server", app.address.as_str(), "--json", "--parallel", "1", "--transfer", "direct"];
    let mut first = ferry(&state);
    first.args(args).arg(&file).stdout(Stdio::piped()).stderr(Stdio::piped());
    let first = first.spawn().unwrap();
    let staging = app.dir.join("objects/.ferry/staging");
    eventually("part of the file is stored", || async { files_under(&staging) >= 100 }).await;
    assert!(Command::new("kill").args(["-INT", &first.id().to_string()]).status().unwrap().success());
    let first = tokio::task::spawn_blocking(move || first.wait_with_output().unwrap()).await.unwrap();
    assert_eq!(first.status.code(), Some(130));
    let stored_before = files_under(&staging);
    assert!((100..1200).contains(&stored_before), "interrupted mid-way ({stored_before} parts)");

    let mut second = ferry(&state);
    second.args(args).arg(&file);
    let output = run(second).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let status = last_json(&output);
    assert_eq!((&status["state"], &status["total_parts"]), (&json!("completed"), &json!(1200)));
    assert_eq!(std::fs::read(app.object_path(status["key"].as_str().unwrap())).unwrap(), data);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("(resumed)"), "{stderr}");
    let sent: u32 =
        stderr.split(" of 1200 chunks sent").next().and_then(|s| s.rsplit(' ').next()?.parse().ok()).unwrap();
    assert!(sent <= 1200 - 100, "only the parts the store lacked were sent again: {sent}");
}
