//! Server-sent events: `GET /v1/uploads/{id}/events` streams an upload's events as they
//! happen, on any instance whichever instance made the change, and resumes after
//! `Last-Event-ID`; on the embedded default and on Redis + S3.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::*;
use crate::support::redis::RedisServer;
use crate::support::s3::Kind;
use crate::support::sse::{Block, EventStream, SseEvent};

/// Asks for the events of upload `id` with `query` and `headers`.
async fn request(app: &TestApp, id: &str, query: &[(&str, &str)], headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request =
        app.client.get(app.url(&format!("/v1/uploads/{id}/events"))).query(query).header("Accept", "text/event-stream");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// Opens `up`'s stream with its bearer token, resuming after `last_event_id`, as a
/// browser would: accepting gzip (the stream must not wait in a compressor).
async fn follow(app: &TestApp, up: &Upload, last_event_id: Option<&str>) -> EventStream {
    let bearer = format!("Bearer {}", up.token);
    let mut headers = vec![("Authorization", bearer.as_str()), ("Accept-Encoding", "gzip, deflate")];
    headers.extend(last_event_id.map(|id| ("Last-Event-ID", id)));
    open(request(app, &up.id, &[], &headers).await).await
}

/// Checks the head of a stream's answer and its opening comment.
async fn open(response: reqwest::Response) -> EventStream {
    assert_eq!(response.status(), StatusCode::OK);
    let h = response.headers();
    assert_eq!(h["content-type"], "text/event-stream");
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-accel-buffering"], "no");
    assert!(h.get("content-encoding").is_none_or(|e| e == "identity"), "{h:?}");
    let mut stream = EventStream::new(response);
    assert_eq!(stream.block().await, Some(Block::Comment("connected".into())));
    stream
}

/// Checks that `event` is `up`'s event of type `kind`, as webhooks get it; its JSON.
fn check(event: &SseEvent, up: &Upload, kind: &str) -> Value {
    assert_eq!(event.kind(), kind, "{event:?}");
    let json = event.json();
    assert_eq!(json["type"], kind);
    assert_eq!(json["upload_id"], up.id.as_str());
    assert_eq!(json["data"]["upload_id"], up.id.as_str());
    assert!(json["id"].as_str().unwrap().starts_with(&up.id), "{json}");
    assert!(json["time"].is_string());
    json
}

/// How an `id` sorts: Redis stream ids `ms-seq`, the embedded log's numbers.
fn order(id: &str) -> (u64, u64) {
    match id.split_once('-') {
        Some((ms, seq)) => (ms.parse().unwrap(), seq.parse().unwrap()),
        None => (id.parse().unwrap(), 0),
    }
}

fn ascending(events: &[SseEvent], after: &str) {
    let mut last = order(after);
    for event in events {
        assert!(order(event.id()) > last, "{} comes after {last:?}: {events:#?}", event.id());
        last = order(event.id());
    }
}

/// Waits until `apps` have put at least `count` events of type `kind` in the log.
async fn published(apps: &[&TestApp], kind: &str, count: u64) {
    let prefix = format!("ferry_events_published_total{{type=\"{kind}\"}} ");
    eventually(&format!("{prefix}>= {count}"), || async {
        let mut sum = 0;
        for app in apps {
            let metrics = app.metrics().await;
            sum += metrics.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0, |n| n.parse::<u64>().unwrap());
        }
        sum >= count
    })
    .await;
}

async fn put(app: &TestApp, up: &Upload, data: &[u8], index: u32) {
    let size = up.chunk_size as usize;
    let chunk = &data[index as usize * size..((index as usize + 1) * size).min(data.len())];
    assert_eq!(app.put_chunk(up, index, chunk).await.status(), StatusCode::OK, "chunk {index}");
}

#[tokio::test]
async fn an_upload_s_events_stream_as_they_happen_from_the_moment_it_connects() {
    let app = spawn_app();
    let data = bytes(5, 2 * CHUNK as usize);
    let up = app.create(data.len() as u64, Some(CHUNK)).await;
    published(&[&app], "upload.created", 1).await;
    let mut stream = follow(&app, &up, None).await;
    assert!(app.metrics().await.contains("ferry_sse_connections 1"));

    put(&app, &up, &data, 0).await;
    let progress = stream.event().await.unwrap();
    let json = check(&progress, &up, "upload.progress");
    assert_eq!(json["data"]["received_chunks"], 1, "the created event came before the stream: {json}");
    put(&app, &up, &data, 1).await;
    let completed = stream.event().await.unwrap();
    let json = check(&completed, &up, "upload.completed");
    assert_eq!((&json["data"]["state"], &json["data"]["key"]), (&"completed".into(), &up.key.as_str().into()));
    ascending(&[progress, completed], "0");
}

/// A client that left is noticed at the latest when the keep-alive comment (every 15 s)
/// finds no one: its stream ends and is no longer counted.
#[tokio::test]
async fn a_stream_whose_client_left_ends_by_the_next_keep_alive() {
    let app = spawn_app();
    let up = app.create(10, None).await;
    let stream = follow(&app, &up, None).await;
    assert!(app.metrics().await.contains("ferry_sse_connections 1"));
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(40);
    while !app.metrics().await.contains("ferry_sse_connections 0") {
        assert!(Instant::now() < deadline, "the stream is still counted");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_gets_exactly_the_events_it_missed_then_live_ones() {
    let app = spawn_app();
    let data = bytes(7, 5 * CHUNK as usize);
    let up = app.create(data.len() as u64, Some(CHUNK)).await;
    let other_data = bytes(8, 3 * CHUNK as usize);
    let other = app.create(other_data.len() as u64, Some(CHUNK)).await;
    published(&[&app], "upload.created", 2).await;
    let mut stream = follow(&app, &up, None).await;
    put(&app, &up, &data, 0).await;
    let first = stream.event().await.unwrap();
    check(&first, &up, "upload.progress");
    drop(stream);

    // While it is away: three more progress events (one a second at most), and another
    // upload's events between them.
    for index in 1..4 {
        app.clock.advance(chrono::Duration::seconds(2));
        put(&app, &up, &data, index).await;
        put(&app, &other, &other_data, index - 1).await;
    }
    published(&[&app], "upload.progress", 6).await;
    published(&[&app], "upload.completed", 1).await;

    let mut stream = follow(&app, &up, Some(first.id())).await;
    let mut missed = Vec::new();
    for received in 2..5 {
        let event = stream.event().await.unwrap();
        assert_eq!(check(&event, &up, "upload.progress")["data"]["received_chunks"], received);
        missed.push(event);
    }
    ascending(&missed, first.id());
    put(&app, &up, &data, 4).await;
    let completed = stream.event().await.unwrap();
    check(&completed, &up, "upload.completed");
    ascending(&[completed], missed[2].id());
    stream.assert_quiet(Duration::from_millis(700)).await;
}

#[tokio::test]
async fn the_token_comes_as_the_bearer_header_or_in_the_query_and_is_checked() {
    let app = spawn_app_with(|s| s.uploads.session_ttl_secs = 60);
    let up = app.create(10, None).await;
    let other = app.create(10, None).await;
    published(&[&app], "upload.created", 2).await;

    // A browser's EventSource: the token and (here) where to resume in the query.
    let response = request(&app, &up.id, &[("token", &up.token), ("last_event_id", "0")], &[]).await;
    let mut stream = open(response).await;
    let created = stream.event().await.unwrap();
    check(&created, &up, "upload.created");
    drop(stream);

    assert_problem(request(&app, &up.id, &[], &[]).await, StatusCode::UNAUTHORIZED, "missing-token").await;
    let theirs = format!("Bearer {}", other.token);
    let response = request(&app, &up.id, &[], &[("Authorization", &theirs)]).await;
    assert_problem(response, StatusCode::FORBIDDEN, "invalid-token").await;
    let response = request(&app, &up.id, &[("token", &other.token)], &[]).await;
    assert_problem(response, StatusCode::FORBIDDEN, "invalid-token").await;
    let mine = format!("Bearer {}", up.token);
    let response = request(&app, &up.id, &[], &[("Authorization", &mine), ("Last-Event-ID", "not-an-id")]).await;
    assert_problem(response, StatusCode::BAD_REQUEST, "invalid-request").await;

    let secret = std::fs::read_to_string(app.dir.join("sessions/auth-secret")).unwrap();
    let secret = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, secret.trim()).unwrap();
    let ghost = ferry::domain::UploadId::new();
    let token = ferry::auth::TokenSigner::new(&secret).issue(&ghost);
    let response = request(&app, &ghost.to_string(), &[("token", &token)], &[]).await;
    assert_problem(response, StatusCode::NOT_FOUND, "upload-not-found").await;

    app.clock.advance(chrono::Duration::seconds(61));
    let response = request(&app, &up.id, &[("token", &up.token)], &[]).await;
    assert_problem(response, StatusCode::NOT_FOUND, "upload-not-found").await;
}

#[tokio::test]
async fn a_browser_on_a_listed_origin_may_follow_events() {
    const ORIGIN: &str = "https://app.example.com";
    let app = spawn_app_with(|s| s.server.cors_origins = vec![ORIGIN.into()]);
    let up = app.create(10, None).await;
    let url = app.url(&format!("/v1/uploads/{}/events", up.id));
    let preflight = app
        .client
        .request(Method::OPTIONS, &url)
        .header("Origin", ORIGIN)
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "last-event-id")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let allowed = preflight.headers()["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(allowed.contains("last-event-id"), "{allowed}");

    let response = request(&app, &up.id, &[("token", &up.token)], &[("Origin", ORIGIN)]).await;
    assert_eq!(response.headers()["access-control-allow-origin"], ORIGIN);
    open(response).await;
}

#[tokio::test]
async fn open_streams_end_as_the_server_stops_without_holding_it_up() {
    let app = spawn_app_with(|s| s.server.shutdown_timeout_secs = 30);
    let up = app.create(10, None).await;
    let mut stream = follow(&app, &up, None).await;
    let started = Instant::now();
    let stopping = tokio::task::spawn_blocking(move || drop(app.stop()));
    assert_eq!(stream.block().await, None, "the stream ends");
    stopping.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "stopped in {:?}", started.elapsed());
}

/// A Redis + S3 (moto) instance on `redis`, with small chunks.
fn cloud(redis: &RedisServer) -> TestApp {
    crate::cluster::cloud_app(redis, Kind::Moto, |_| {})
}

/// A stream on instance A sees what is done on instance B; after a reconnect to B with
/// `Last-Event-ID`, the events missed meanwhile arrive, each the Redis stream's entry.
#[tokio::test]
async fn a_stream_follows_changes_made_on_another_instance_and_resumes_on_any() {
    let redis = RedisServer::start();
    let (a, b) = (cloud(&redis), cloud(&redis));
    let data = bytes(17, 4 * CHUNK as usize);
    let up = b.create(data.len() as u64, Some(CHUNK)).await;
    published(&[&a, &b], "upload.created", 1).await;

    let mut on_a = follow(&a, &up, None).await;
    put(&b, &up, &data, 0).await;
    let first = on_a.event().await.unwrap();
    assert_eq!(check(&first, &up, "upload.progress")["data"]["received_chunks"], 1);
    b.clock.advance(chrono::Duration::seconds(2));
    put(&b, &up, &data, 1).await;
    let second = on_a.event().await.unwrap();
    assert_eq!(check(&second, &up, "upload.progress")["data"]["received_chunks"], 2);
    ascending(&[first, second.clone()], "0-0");
    drop(on_a);

    b.clock.advance(chrono::Duration::seconds(2));
    put(&b, &up, &data, 2).await;
    put(&b, &up, &data, 3).await;
    // In the log before B follows it: only reading the log back gives them.
    published(&[&a, &b], "upload.completed", 1).await;
    let mut on_b = follow(&b, &up, Some(second.id())).await;
    let missed = on_b.events_until("upload.completed").await;
    assert_eq!(missed.len(), 2, "{missed:#?}");
    assert_eq!(check(&missed[0], &up, "upload.progress")["data"]["received_chunks"], 3);
    check(&missed[1], &up, "upload.completed");
    ascending(&missed, second.id());
    on_b.assert_quiet(Duration::from_millis(700)).await;

    let entry = redis.cli(&["XRANGE", "ferry:v1:events", missed[1].id(), missed[1].id()]);
    let json = entry.lines().find(|l| l.contains("upload.completed")).expect("the entry");
    assert_eq!(serde_json::from_str::<Value>(json.trim()).unwrap(), missed[1].json());
    eventually("A counts no stream", || async { a.metrics().await.contains("ferry_sse_connections 0") }).await;
    assert!(b.metrics().await.contains("ferry_sse_connections 1"));
}
