//! Nothing is lost when the process goes away: a clean restart in-process, a `kill -9`
//! of the real binary, and a graceful SIGTERM that lets a chunk in flight finish.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::support::process::FerryProcess as Process;
use crate::support::s3::free_port;

#[tokio::test]
async fn a_restart_on_the_same_data_dir_resumes_the_upload() {
    let app = spawn_app();
    let data = bytes(14, 5 * CHUNK as usize);
    let up = app.create(data.len() as u64, None).await;
    for i in [0usize, 3] {
        app.put_chunk(&up, i as u32, &data[i * CHUNK as usize..(i + 1) * CHUNK as usize]).await;
    }
    let dir = app.dir.clone();
    let (_, clock, tempdir) = app.stop();

    let app = spawn(settings(&dir), dir, clock);
    let status: Value = app.resume(&up).await.json().await.unwrap();
    assert_eq!(status["missing_chunks"], json!([1, 2, 4]), "the token and the progress survived");
    for i in [1usize, 2, 4] {
        app.put_chunk(&up, i as u32, &data[i * CHUNK as usize..(i + 1) * CHUNK as usize]).await;
    }
    assert_eq!(std::fs::read(app.object_path(&up.key)).unwrap(), data);
    drop(app);
    drop(tempdir);
}

/// Sends chunk `index` of `data` to the server at `address`, with its MD5.
async fn put(client: &reqwest::Client, address: &str, up: &Upload, index: usize, data: &[u8]) -> StatusCode {
    let chunk = &data[index * up.chunk_size as usize..((index + 1) * up.chunk_size as usize).min(data.len())];
    client
        .put(format!("{address}/v1/uploads/{}/chunks/{index}", up.id))
        .bearer_auth(&up.token)
        .header("Content-MD5", content_md5(chunk))
        .body(chunk.to_vec())
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn kill_9_mid_upload_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let client = reqwest::Client::new();
    let data = bytes(15, 6 * CHUNK as usize + 99);

    let first = Process::start(dir.path(), port).await;
    let up = first.create(&client, "movie.mkv", data.len()).await;
    for i in [6, 1, 4] {
        assert_eq!(put(&client, &first.address, &up, i, &data).await, StatusCode::OK);
    }
    first.kill9();

    let second = Process::start(dir.path(), port).await;
    let status: Value = client
        .post(format!("{}/v1/uploads/{}/resume", second.address, up.id))
        .bearer_auth(&up.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["missing_chunks"], json!([0, 2, 3, 5]));
    for i in [0, 2, 3, 5] {
        assert_eq!(put(&client, &second.address, &up, i, &data).await, StatusCode::OK);
    }
    assert_eq!(std::fs::read(dir.path().join("objects").join(&up.key)).unwrap(), data);
}

#[tokio::test]
async fn sigterm_fails_readiness_drains_a_chunk_in_flight_then_exits() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let client = reqwest::Client::new();
    let mut process = Process::start_with(dir.path(), port, [("FERRY__SERVER__DRAIN_DELAY_SECS", "2")]).await;
    let up = process.create(&client, "a.bin", CHUNK as usize).await;
    let data = bytes(16, CHUNK as usize);

    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let head = format!(
        "PUT /v1/uploads/{}/chunks/0 HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\nContent-MD5: {}\r\nContent-Length: {CHUNK}\r\n\r\n",
        up.id,
        up.token,
        content_md5(&data)
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&data[..100]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    process.signal("TERM");
    let fresh = reqwest::Client::new();
    eventually("readiness fails while draining", || async {
        let ready = fresh.get(format!("{}/readyz", process.address)).send().await.unwrap();
        ready.status() == StatusCode::SERVICE_UNAVAILABLE && ready.text().await.unwrap().contains("shutting-down")
    })
    .await;
    assert_eq!(fresh.get(format!("{}/healthz", process.address)).send().await.unwrap().status(), StatusCode::OK);
    stream.write_all(&data[100..]).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let read = stream.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 200"), "the chunk in flight finished: {answer}");
    assert!(answer.contains("\"state\":\"completed\""), "{answer}");
    drop(stream);

    let exited = tokio::task::spawn_blocking(move || {
        let status = process.child.wait().unwrap();
        std::mem::forget(process);
        status
    })
    .await
    .unwrap();
    assert!(exited.success(), "ferry exits cleanly after draining: {exited:?}");
    assert_eq!(std::fs::read(dir.path().join("objects").join(&up.key)).unwrap(), data);
}

#[tokio::test]
async fn the_binary_reads_lists_and_numbers_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let env = [
        ("FERRY__AUTH__API_KEYS", "12345, key-two"),
        ("FERRY__UPLOADS__ALLOWED_CONTENT_TYPES", "video/mp4, image/png"),
        ("FERRY__AUTH__SECRET", "0123456789abcdef0123"),
    ];
    let process = Process::start_with(dir.path(), port, env).await;
    let client = reqwest::Client::new();
    let create = |key: &'static str, content_type: &'static str| {
        client
            .post(format!("{}/v1/uploads", process.address))
            .bearer_auth(key)
            .json(&json!({"filename": "a", "size": 1, "content_type": content_type}))
            .send()
    };
    assert_eq!(create("12345", "image/png").await.unwrap().status(), StatusCode::CREATED);
    assert_eq!(create("key-two", "video/mp4").await.unwrap().status(), StatusCode::CREATED);
    assert_eq!(create("nope", "video/mp4").await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(create("12345", "text/plain").await.unwrap().status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(!dir.path().join("sessions/auth-secret").exists(), "a configured secret is used, not generated");
}
