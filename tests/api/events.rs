//! Events: webhooks signed per Standard Webhooks and delivered at least once, and the Redis
//! stream workers read with consumer groups; on the embedded default and on Redis + S3.

use ferry::config::{Settings, WebhookSettings};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;
use crate::support::redis::RedisServer;
use crate::support::s3::Kind;
use crate::support::webhook::{Receiver, SECRET};

fn hook(s: &mut Settings, url: &str, types: &[&str]) {
    let types = types.iter().map(|t| (*t).to_owned()).collect();
    s.events.webhooks.push(WebhookSettings { url: url.to_owned(), secret: SECRET.into(), types });
}

/// An embedded-default instance posting events to `url`.
fn embedded(url: &str, types: &[&str]) -> TestApp {
    spawn_app_with(|s| hook(s, url, types))
}

/// A Redis + S3 instance on `redis`, posting events to `url`.
fn cloud(redis: &RedisServer, url: &str) -> TestApp {
    crate::cluster::cloud_app(redis, Kind::S3sFs, |s| hook(s, url, &[]))
}

/// Creates an upload of two chunks and sends them; answers it.
async fn upload(app: &TestApp) -> Upload {
    let data = bytes(91, 2 * CHUNK as usize);
    let up = app.create(data.len() as u64, Some(CHUNK)).await;
    let last = app.put_all(&up, &data).await;
    assert_eq!(last["state"], "completed", "{last}");
    up
}

async fn an_upload_s_events_reach_the_webhook_signed(app: TestApp, receiver: Receiver) {
    let up = upload(&app).await;
    let completed = receiver.await_event(&up.id, "upload.completed").await;
    assert_eq!(completed["data"]["state"], "completed");
    assert_eq!(completed["data"]["upload_id"], up.id.as_str());
    assert!(completed["id"].as_str().unwrap().starts_with(&up.id));
    // Deliveries may arrive in any order; the number in the id orders them.
    let number = |e: &Value| e["id"].as_str().and_then(|id| id.rsplit('-').next()?.parse::<u64>().ok()).unwrap();
    let mut events: Vec<Value> = receiver.accepted().into_iter().filter(|e| e["upload_id"] == up.id.as_str()).collect();
    events.sort_by_key(number);
    let kinds: Vec<&Value> = events.iter().map(|e| &e["type"]).collect();
    assert_eq!(kinds, ["upload.created", "upload.progress", "upload.completed"]);
    assert!(receiver.got().iter().all(|r| r.verified), "every delivery is signed: {:#?}", receiver.got());
    let metrics = app.metrics().await;
    assert!(metrics.contains("ferry_events_published_total{type=\"upload.completed\"} 1"), "{metrics}");
}

#[tokio::test]
async fn embedded_events_reach_a_webhook_signed() {
    let receiver = Receiver::start(0);
    let app = embedded(&receiver.url, &[]);
    an_upload_s_events_reach_the_webhook_signed(app, receiver).await;
}

#[tokio::test]
async fn cloud_events_reach_a_webhook_signed() {
    let receiver = Receiver::start(0);
    let redis = RedisServer::start();
    let app = cloud(&redis, &receiver.url);
    an_upload_s_events_reach_the_webhook_signed(app, receiver).await;
}

#[tokio::test]
async fn a_failing_receiver_gets_the_event_again_signed_afresh_until_it_accepts() {
    let receiver = Receiver::start(2);
    let app = embedded(&receiver.url, &["upload.completed"]);
    let up = upload(&app).await;
    receiver.await_event(&up.id, "upload.completed").await;
    let tries: Vec<_> = receiver.got().into_iter().filter(|r| r.event["upload_id"] == up.id.as_str()).collect();
    assert_eq!(tries.len(), 3, "two refusals, then the delivery: {tries:#?}");
    assert!(tries.iter().all(|t| t.verified && t.id == tries[0].id && t.event["type"] == "upload.completed"));
    let metrics = app.metrics().await;
    let count = |outcome: &str| {
        let prefix = format!("ferry_webhook_deliveries_total{{outcome=\"{outcome}\",");
        metrics.lines().find(|l| l.starts_with(&prefix)).and_then(|l| l.rsplit(' ').next()).map(str::to_owned)
    };
    assert_eq!((count("failed").as_deref(), count("delivered").as_deref()), (Some("2"), Some("1")), "{metrics}");
}

#[tokio::test]
async fn a_receiver_that_was_down_gets_the_events_once_it_is_up() {
    let port = crate::support::s3::free_port();
    let app = embedded(&format!("http://127.0.0.1:{port}/hook"), &[]);
    let up = upload(&app).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let receiver = Receiver::start_on(port, 0);
    receiver.await_event(&up.id, "upload.completed").await;
    receiver.await_event(&up.id, "upload.created").await;
}

#[tokio::test]
async fn a_canceled_upload_is_announced_and_types_filter_what_an_endpoint_gets() {
    let receiver = Receiver::start(0);
    let app = embedded(&receiver.url, &["upload.canceled"]);
    let up = app.create(3 * CHUNK, Some(CHUNK)).await;
    assert_eq!(app.cancel(&up).await.status(), StatusCode::NO_CONTENT);
    let canceled = receiver.await_event(&up.id, "upload.canceled").await;
    assert_eq!(canceled["data"]["state"], "canceled");
    assert!(receiver.accepted().iter().all(|e| e["type"] == "upload.canceled"), "{:#?}", receiver.accepted());
}

/// The instance that completed an upload dies at once: another instance publishes the
/// events it recorded, and the webhook gets them.
#[tokio::test]
async fn events_survive_the_instance_that_recorded_them() {
    let receiver = Receiver::start(0);
    let redis = RedisServer::start();
    let _other = cloud(&redis, &receiver.url);
    let doomed = cloud(&redis, &receiver.url);
    let up = upload(&doomed).await;
    doomed.kill();
    // Whatever the dead instance had not done (publishing its outbox, delivering), the
    // other takes over: once its outbox lease (10 s) or the delivery's retry delay lapses.
    let completed = receiver.await_event(&up.id, "upload.completed").await;
    assert_eq!(completed["data"]["state"], "completed");
}

/// Workers read the stream `<prefix>:v1:events` with a consumer group of their own.
#[tokio::test]
async fn a_worker_reads_completed_uploads_from_the_redis_stream() {
    let redis = RedisServer::start();
    let created = redis.cli(&["XGROUP", "CREATE", "ferry:v1:events", "workers", "$", "MKSTREAM"]);
    assert!(created.contains("OK"), "{created}");
    let app = cloud(&redis, "http://127.0.0.1:9/nowhere");
    let up = upload(&app).await;
    let mut found = None;
    for _ in 0..100 {
        let read =
            redis.cli(&["XREADGROUP", "GROUP", "workers", "w1", "COUNT", "100", "STREAMS", "ferry:v1:events", ">"]);
        if let Some(line) = read.lines().find(|l| l.contains("upload.completed") && l.contains(&up.id)) {
            found = Some(line.to_owned());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let event: Value = serde_json::from_str(found.expect("the completed event in the stream").trim()).unwrap();
    assert_eq!(event["data"]["key"], up.key.as_str());
}
