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
