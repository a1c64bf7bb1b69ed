//! Limits that keep one instance standing: stalled bodies, too many bodies at once,
//! bounded metric labels, bounded forms.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn a_stalled_chunk_body_is_cut_after_the_idle_timeout_and_records_nothing() {
    let app = spawn_app_with(|s| s.server.body_idle_timeout_secs = 1);
    let data = bytes(20, CHUNK as usize);
    let up = app.create(2 * CHUNK, None).await;
    let mut stream = raw_open(&app, &chunk_head(&up, 0, CHUNK, &content_md5(&data)), &data[..100]).await;
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408") && answer.contains("\"code\":\"body-timeout\""), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");

    let status: Value = app.status(&up).await.json().await.unwrap();
    assert_eq!(status["received_chunks"], 0);
    assert!(!app.staging_dir(&up.id).exists());
    assert_eq!(app.temp_files(), 0, "the temp file is gone");
    assert_eq!(app.put_chunk(&up, 0, &data).await.status(), StatusCode::OK, "the re-send is taken");
}

#[tokio::test]
async fn a_stalled_form_body_is_cut_after_the_idle_timeout_and_stores_nothing() {
    let app = spawn_app_with(|s| s.server.body_idle_timeout_secs = 1);
    let start = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n\r\n0123456789";
    let head = "POST /v1/uploads/form HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 100000\r\n\r\n";
    let mut stream = raw_open(&app, head, start.as_bytes()).await;
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408") && answer.contains("\"code\":\"body-timeout\""), "{answer}");
    assert_eq!(app.temp_files(), 0, "the temp file is gone");
    let objects: Vec<_> = std::fs::read_dir(app.dir.join("objects")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(objects, vec![std::ffi::OsString::from(".ferry")], "no object was left");
}

#[tokio::test]
async fn bodies_over_the_in_flight_limit_get_503_busy_until_one_ends() {
    let app = spawn_app_with(|s| s.server.max_bodies_in_flight = 1);
    let data = bytes(21, CHUNK as usize);
    let up = app.create(3 * CHUNK, None).await;
    let stalled = raw_open(&app, &chunk_head(&up, 0, CHUNK, &content_md5(&data)), &data[..100]).await;
    eventually("the stalled body holds the only slot", || async {
        app.metrics().await.contains("ferry_bodies_in_flight 1")
    })
    .await;

    let response = app.put_chunk(&up, 1, &data).await;
    assert_eq!(response.headers()["retry-after"], "2");
    assert_problem(response, StatusCode::SERVICE_UNAVAILABLE, "busy").await;
    let form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(b"abc".to_vec()));
    let response = app.client.post(app.url("/v1/uploads/form")).multipart(form).send().await.unwrap();
    assert_problem(response, StatusCode::SERVICE_UNAVAILABLE, "busy").await;
    assert_eq!(app.status(&up).await.status(), StatusCode::OK, "bodiless calls are not limited");
    let asked = expect_continue(&app, &format!("/v1/uploads/{}/chunks/1", up.id), &up.token, CHUNK).await;
    assert!(asked.starts_with("HTTP/1.1 503 ") && asked.contains("\"code\":\"busy\""), "{asked}");

    drop(stalled);
    eventually("the cut body let go of its slot", || async {
        app.metrics().await.contains("ferry_bodies_in_flight 0")
    })
    .await;
    assert_eq!(app.put_chunk(&up, 1, &data).await.status(), StatusCode::OK);
    assert_eq!(app.put_chunk(&up, 0, &data).await.status(), StatusCode::OK);
    let status: Value = app.status(&up).await.json().await.unwrap();
    assert_eq!(status["received_chunks"], 2);
}

/// The distinct `(method, route)` label pairs of the request-duration histogram.
fn request_series(metrics: &str) -> std::collections::BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| l.starts_with("ferry_http_request_duration_seconds_count{"))
        .map(|l| {
            let labels = l.split_once('{').unwrap().1.split_once('}').unwrap().0;
            labels.split(',').filter(|kv| !kv.starts_with("status=")).collect::<Vec<_>>().join(",")
        })
        .collect()
}

#[tokio::test]
async fn made_up_methods_and_random_paths_do_not_grow_the_metric_labels() {
    let app = spawn_app();
    let up = app.create(10, None).await;
    for (i, method) in ["FOO", "BAR", "PROPFIND", "X-Y-Z", "GET", "OPTIONS"].into_iter().enumerate() {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        for path in [
            format!("/random-{i}"),
            format!("/v1/uploads/{i}/x/y"),
            format!("/v1/uploads/{}/chunks/{i}", up.id),
            format!("/v1/nothing/{i}"),
            format!("/client/{i}.js"),
        ] {
            app.client.request(method.clone(), app.url(&path)).send().await.unwrap();
        }
    }
    let metrics = app.metrics().await;
    let series = request_series(&metrics);
    for s in &series {
        let method = s.split("method=\"").nth(1).unwrap().split('"').next().unwrap();
        assert!(["GET", "POST", "PUT", "OPTIONS", "OTHER"].contains(&method), "{s}");
        assert!(!s.contains("random") && !s.contains("/x/y") && !s.contains("nothing/"), "{s}");
        assert!(!s.contains(&up.id), "{s}");
    }
    assert!(series.len() <= 20, "{series:#?}");
}

#[tokio::test]
async fn form_field_names_count_toward_the_metadata_limit() {
    let app = spawn_app();
    let long = "n".repeat(3000);
    let form = reqwest::multipart::Form::new()
        .text(long.clone(), "a")
        .text(format!("{long}2"), "b")
        .part("file", reqwest::multipart::Part::bytes(b"abc".to_vec()).file_name("a.bin"));
    let response = app.client.post(app.url("/v1/uploads/form")).multipart(form).send().await.unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST, "invalid-request").await;
    assert_eq!(app.temp_files(), 0);
    assert!(app.metrics().await.contains("ferry_bytes_received_total 0"), "refused before the file was stored");
}

#[tokio::test]
async fn a_form_with_too_many_fields_is_refused() {
    let app = spawn_app();
    let mut form = reqwest::multipart::Form::new();
    for i in 0..65 {
        form = form.text(format!("f{i}"), "");
    }
    let form = form.part("file", reqwest::multipart::Part::bytes(b"abc".to_vec()).file_name("a.bin"));
    let response = app.client.post(app.url("/v1/uploads/form")).multipart(form).send().await.unwrap();
    let body = assert_problem(response, StatusCode::BAD_REQUEST, "invalid-request").await;
    assert!(body["detail"].as_str().unwrap().contains("64"), "{body}");
}

/// Sends a chunk head with `Expect: 100-continue`, sends none of the body, and returns
/// everything the server answers before it closes the connection.
async fn expect_continue(app: &TestApp, path: &str, token: &str, length: u64) -> String {
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\nContent-MD5: {}\r\nContent-Length: {length}\r\nExpect: 100-continue\r\n\r\n",
        content_md5(b"x")
    );
    let mut stream = raw_open(app, &head, b"").await;
    read_until_closed(&mut stream).await
}

#[tokio::test]
async fn a_refused_chunk_is_refused_before_100_continue_and_a_good_one_gets_it() {
    let secret = "a shared secret of enough length";
    let app = spawn_app_with(|s| s.auth.secret = Some(secret.into()));
    let up = app.create(2 * CHUNK, None).await;
    let chunk = |i: u32| format!("/v1/uploads/{}/chunks/{i}", up.id);
    let unknown: ferry::domain::UploadId = uuid::Uuid::new_v4().to_string().parse().unwrap();
    let unknown_token = ferry::auth::TokenSigner::new(secret.as_bytes()).issue(&unknown);
    let done = app.create(CHUNK, None).await;
    assert_eq!(app.put_chunk(&done, 0, &bytes(23, CHUNK as usize)).await.status(), StatusCode::OK);
    let refusals = [
        ("a bad token", chunk(0), "not-the-token".to_owned(), CHUNK, "403", "invalid-token"),
        ("a wrong length", chunk(0), up.token.clone(), CHUNK - 1, "400", "chunk-size-mismatch"),
        ("too large", chunk(0), up.token.clone(), MAX_CHUNK + 1, "413", "chunk-too-large"),
        ("an index past the plan", chunk(5), up.token.clone(), CHUNK, "400", "invalid-chunk-index"),
        (
            "an index that is no number",
            format!("/v1/uploads/{}/chunks/x", up.id),
            up.token.clone(),
            CHUNK,
            "400",
            "invalid-chunk-index",
        ),
        (
            "an unknown upload",
            format!("/v1/uploads/{unknown}/chunks/0"),
            unknown_token,
            CHUNK,
            "404",
            "upload-not-found",
        ),
        (
            "a completed upload",
            format!("/v1/uploads/{}/chunks/0", done.id),
            done.token.clone(),
            CHUNK,
            "409",
            "upload-completed",
        ),
    ];
    for (what, path, token, length, status, code) in refusals {
        let answer = expect_continue(&app, &path, &token, length).await;
        assert!(answer.starts_with(&format!("HTTP/1.1 {status} ")), "{what}: no 100 Continue first: {answer}");
        assert!(!answer.contains("100 Continue"), "{what}: {answer}");
        assert!(answer.contains(&format!("\"code\":\"{code}\"")), "{what}: {answer}");
        let lower = answer.to_ascii_lowercase();
        assert!(lower.contains("content-type: application/problem+json"), "{what}: {answer}");
        assert!(lower.contains("x-request-id: "), "{what}: {answer}");
    }

    // The problem is the handler's own, word for word, and the request id is echoed.
    let with_id = format!(
        "PUT {} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\nX-Request-Id: asked-first\r\n",
        chunk(1),
        up.token,
        CHUNK - 1
    );
    let asked = raw_request(&app, &format!("{with_id}Expect: 100-continue\r\n\r\n"), b"", false).await;
    let sent = raw_request(&app, &format!("{with_id}\r\n"), &vec![0u8; CHUNK as usize - 1], false).await;
    assert!(asked.to_ascii_lowercase().contains("x-request-id: asked-first"), "{asked}");
    let problem = |answer: &str| answer.split("\r\n\r\n").nth(1).map(str::to_owned);
    assert_eq!(problem(&asked), problem(&sent), "{asked}\n{sent}");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"ferry_http_request_duration_seconds_count{method="PUT",route="/v1/uploads/{upload_id}/chunks/{index}",status="409"} 1"#),
        "a refusal before the body is counted under its route:\n{metrics}"
    );
    assert!(metrics.contains(r#"ferry_chunks_rejected_total{reason="upload-completed"} 1"#), "{metrics}");
    assert!(
        metrics.contains("ferry_bytes_received_total 4096"),
        "only the completed upload's chunk was read: {metrics}"
    );

    let data = bytes(22, CHUNK as usize);
    let head = format!(
        "PUT {} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\nContent-MD5: {}\r\nContent-Length: {CHUNK}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        chunk(0), up.token, content_md5(&data)
    );
    let mut stream = raw_open(&app, &head, b"").await;
    let continued = b"HTTP/1.1 100 Continue\r\n\r\n";
    let mut first = vec![0u8; continued.len()];
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_exact(&mut stream, &mut first),
    )
    .await
    .expect("100 Continue comes before the body is sent")
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&first), String::from_utf8_lossy(continued));
    tokio::io::AsyncWriteExt::write_all(&mut stream, &data).await.unwrap();
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("\"index\":0"), "{answer}");
    let status: Value = app.status(&up).await.json().await.unwrap();
    assert_eq!(status["received_chunks"], 1);
}
