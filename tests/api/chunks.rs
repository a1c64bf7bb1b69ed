//! PUT /v1/uploads/{id}/chunks/{index}: order, integrity, lengths and torn bodies.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn chunks_out_of_order_and_resent_assemble_the_exact_file() {
    let app = spawn_app();
    let data = bytes(1, 4 * CHUNK as usize + 123);
    let up = app.create(data.len() as u64, None).await;
    assert_eq!(up.total_chunks, 5);
    let chunk = |i: usize| &data[i * CHUNK as usize..((i + 1) * CHUNK as usize).min(data.len())];

    for (sent, i) in [3usize, 0, 4, 0, 3].into_iter().enumerate() {
        let response = app.put_chunk(&up, i as u32, chunk(i)).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["index"], i);
        assert_eq!(body["md5"], content_md5(chunk(i)));
        assert_eq!(body["state"], "uploading");
        let distinct = [1, 2, 3, 3, 3][sent];
        assert_eq!(body["received_chunks"], distinct, "a re-sent chunk does not count twice");
    }
    let status: Value = app.status(&up).await.json().await.unwrap();
    assert_eq!(status["missing_chunks"], json!([1, 2]));
    assert_eq!(status["bytes_received"], 2 * CHUNK + 123);

    app.put_chunk(&up, 2, chunk(2)).await;
    let last: Value = app.put_chunk(&up, 1, chunk(1)).await.json().await.unwrap();
    assert_eq!(last["state"], "completed");
    assert_eq!(last["received_chunks"], 5);
    assert_eq!(last["bytes_received"], data.len());
    assert_eq!(std::fs::read(app.object_path(&up.key)).unwrap(), data);
    assert!(!app.staging_dir(&up.id).exists(), "the staged chunks are gone");

    let status: Value = app.status(&up).await.json().await.unwrap();
    assert_eq!(status["state"], "completed");
    assert!(status["etag"].as_str().unwrap().ends_with("-5"));
}

#[tokio::test]
async fn a_realistic_upload_with_the_default_limits_stores_the_file() {
    let app = spawn_app_with(|s| s.uploads = Default::default());
    let data = bytes(2, 12 * 1024 * 1024 + 7);
    let up = app.create(data.len() as u64, Some(5 * 1024 * 1024)).await;
    assert_eq!(up.total_chunks, 3);
    let last = app.put_all(&up, &data).await;
    assert_eq!(last["state"], "completed");
    assert_eq!(std::fs::read(app.object_path(&up.key)).unwrap(), data);
}

#[tokio::test]
async fn a_wrong_md5_is_refused_and_records_nothing() {
    let app = spawn_app();
    let data = bytes(3, 2 * CHUNK as usize);
    let up = app.create(data.len() as u64, None).await;
    let response = app
        .client
        .put(app.url(&format!("/v1/uploads/{}/chunks/0", up.id)))
        .bearer_auth(&up.token)
        .header("Content-MD5", content_md5(b"something else"))
        .body(data[..CHUNK as usize].to_vec())
        .send()
        .await
        .unwrap();
    let body = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "checksum-mismatch").await;
    assert_eq!(body["actual_md5"], content_md5(&data[..CHUNK as usize]));
    let status: Value = app.status(&up).await.json().await.unwrap();
    assert_eq!(status["received_chunks"], 0);
    assert_eq!(status["missing_chunks"], json!([0, 1]));
    assert!(!app.staging_dir(&up.id).exists());
    assert_eq!(app.temp_files(), 0);
    assert!(app.metrics().await.contains("ferry_chunks_rejected_total{reason=\"checksum-mismatch\"} 1"));
}

#[tokio::test]
async fn a_malformed_or_missing_md5_is_refused() {
    let app = spawn_app();
    let up = app.create(10, None).await;
    let url = app.url(&format!("/v1/uploads/{}/chunks/0", up.id));
    let response = app.client.put(&url).bearer_auth(&up.token).body(vec![0u8; 10]).send().await.unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST, "missing-checksum").await;
    let response = app
        .client
        .put(&url)
        .bearer_auth(&up.token)
        .header("Content-MD5", "zz")
        .body(vec![0u8; 10])
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST, "invalid-request").await;
}

#[tokio::test]
async fn without_required_md5_a_chunk_without_one_is_taken() {
    let app = spawn_app_with(|s| s.uploads.require_chunk_md5 = false);
    let up = app.create(10, None).await;
    let url = app.url(&format!("/v1/uploads/{}/chunks/0", up.id));
    let response = app.client.put(&url).bearer_auth(&up.token).body(b"0123456789".to_vec()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(std::fs::read(app.object_path(&up.key)).unwrap(), b"0123456789");
}

#[tokio::test]
async fn chunk_indices_outside_the_plan_are_refused() {
    let app = spawn_app();
    let up = app.create(2 * CHUNK, None).await;
    for index in ["2", "-1", "x", "99999999999"] {
        let response = app
            .client
            .put(app.url(&format!("/v1/uploads/{}/chunks/{index}", up.id)))
            .bearer_auth(&up.token)
            .header("Content-MD5", content_md5(b"a"))
            .body(b"a".to_vec())
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::BAD_REQUEST, "invalid-chunk-index").await;
    }
}

fn put_head(up: &Upload, index: u32, length: Option<u64>, md5: &str) -> String {
    let length =
        length.map(|l| format!("Content-Length: {l}\r\n")).unwrap_or_else(|| "Transfer-Encoding: chunked\r\n".into());
    format!(
        "PUT /v1/uploads/{}/chunks/{index} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\nContent-MD5: {md5}\r\n{length}\r\n",
        up.id, up.token
    )
}

#[tokio::test]
async fn a_wrong_length_is_refused_before_the_body_is_read() {
    let app = spawn_app();
    let up = app.create(2 * CHUNK + 10, None).await;
    // No body follows these heads: an answer proves the server did not wait for one.
    let md5 = content_md5(b"x");
    let answer = raw_request(&app, &put_head(&up, 0, Some(CHUNK - 1), &md5), b"", false).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("chunk-size-mismatch") && answer.contains(&format!("\"expected_size\":{CHUNK}")),
        "{answer}"
    );
    let answer = raw_request(&app, &put_head(&up, 2, Some(CHUNK), &md5), b"", false).await;
    assert!(answer.contains("chunk-size-mismatch") && answer.contains("\"expected_size\":10"), "{answer}");
    let answer = raw_request(&app, &put_head(&up, 0, Some(MAX_CHUNK + 1), &md5), b"", false).await;
    assert!(answer.starts_with("HTTP/1.1 413") && answer.contains("chunk-too-large"), "{answer}");
}

#[tokio::test]
async fn a_chunk_without_content_length_is_refused() {
    let app = spawn_app();
    let up = app.create(10, None).await;
    let head = put_head(&up, 0, None, &content_md5(b"0123456789"));
    let answer = raw_request(&app, &head, b"a\r\n0123456789\r\n0\r\n\r\n", false).await;
    assert!(answer.starts_with("HTTP/1.1 411") && answer.contains("length-required"), "{answer}");
}

#[tokio::test]
async fn a_body_cut_short_records_nothing_and_leaves_no_bytes() {
    let app = spawn_app();
    let data = bytes(4, CHUNK as usize);
    let up = app.create(2 * CHUNK, None).await;
    let head = put_head(&up, 0, Some(CHUNK), &content_md5(&data));
    raw_request(&app, &head, &data[..1000], true).await;

    eventually("the cut request is over", || async {
        app.metrics().await.contains("ferry_chunks_rejected_total{reason=\"incomplete-body\"} 1")
    })
    .await;
    let status: Value = app.status(&up).await.json().await.unwrap();
    assert_eq!(status["received_chunks"], 0);
    assert!(!app.staging_dir(&up.id).exists());
    assert_eq!(app.temp_files(), 0, "no torn bytes linger");
    assert_eq!(app.put_chunk(&up, 0, &data).await.status(), StatusCode::OK, "the re-send is taken");
}

#[tokio::test]
async fn concurrent_sends_of_one_chunk_one_corrupt_keep_the_good_bytes() {
    let app = spawn_app();
    let data = bytes(5, 2 * MAX_CHUNK as usize);
    let up = app.create(data.len() as u64, Some(MAX_CHUNK)).await;
    let good = &data[..MAX_CHUNK as usize];
    let mut bad = good.to_vec();
    bad[100] ^= 1;
    let url = app.url(&format!("/v1/uploads/{}/chunks/0", up.id));
    let sends = (0..6).map(|i| {
        let body = if i % 2 == 0 { good.to_vec() } else { bad.clone() };
        app.client.put(&url).bearer_auth(&up.token).header("Content-MD5", content_md5(good)).body(body).send()
    });
    let statuses: Vec<_> =
        futures_util::future::join_all(sends).await.into_iter().map(|r| r.unwrap().status()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::UNPROCESSABLE_ENTITY).count(), 3, "{statuses:?}");
    let last: Value = app.put_chunk(&up, 1, &data[MAX_CHUNK as usize..]).await.json().await.unwrap();
    assert_eq!(last["state"], "completed");
    assert_eq!(std::fs::read(app.object_path(&up.key)).unwrap(), data);
}

#[tokio::test]
async fn the_last_two_chunks_at_once_complete_exactly_once() {
    let app = spawn_app();
    let data = bytes(6, 3 * CHUNK as usize);
    let up = app.create(data.len() as u64, None).await;
    app.put_chunk(&up, 0, &data[..CHUNK as usize]).await;
    let (a, b) = tokio::join!(
        app.put_chunk(&up, 1, &data[CHUNK as usize..2 * CHUNK as usize]),
        app.put_chunk(&up, 2, &data[2 * CHUNK as usize..]),
    );
    let a: Value = a.json().await.unwrap();
    let b: Value = b.json().await.unwrap();
    let states = [a["state"].as_str().unwrap(), b["state"].as_str().unwrap()];
    assert_eq!(states.iter().filter(|s| **s == "completed").count(), 1, "{states:?}");
    assert_eq!(std::fs::read(app.object_path(&up.key)).unwrap(), data);
    assert!(app.metrics().await.contains("ferry_uploads_completed_total 1"));
}

#[tokio::test]
async fn chunks_for_finished_canceled_or_unknown_uploads_are_refused() {
    let app = spawn_app();
    let up = app.create(5, None).await;
    app.put_chunk(&up, 0, b"12345").await;
    assert_problem(app.put_chunk(&up, 0, b"12345").await, StatusCode::CONFLICT, "upload-completed").await;

    let up = app.create(5, None).await;
    assert_eq!(app.cancel(&up).await.status(), StatusCode::NO_CONTENT);
    assert_problem(app.put_chunk(&up, 0, b"12345").await, StatusCode::GONE, "upload-canceled").await;
    assert!(!app.staging_dir(&up.id).exists());
}
