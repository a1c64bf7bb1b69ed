//! Direct transfers: parts PUT straight to the store on signed URLs (S3's presigned ones,
//! or ferry's own on the embedded default), then confirmed. The same client code runs on
//! the embedded default and on Redis + S3 (s3s-fs and moto).

use ferry::config::{RedisSettings, Settings};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::support::redis::RedisServer;
use crate::support::s3::{Kind, S3Server, BUCKET, PREFIX};

const MIB: usize = 1024 * 1024;

/// Where a test runs: the embedded default, or Redis and one S3 server.
#[derive(Clone, Copy, PartialEq)]
enum Setup {
    Embedded,
    Cloud(Kind),
}

impl Setup {
    /// The part size the tests ask for: S3 takes no part under 5 MiB but the last.
    fn part(self) -> usize {
        match self {
            Setup::Embedded => CHUNK as usize,
            Setup::Cloud(_) => 5 * MIB,
        }
    }

    /// Whether a stored part's ETag can be told from the store's listing (s3s-fs lists none).
    fn lists_etags(self) -> bool {
        self != Setup::Cloud(Kind::S3sFs)
    }

    /// Whether the store refuses a presigned URL past its expiry (moto 5.1 does not).
    fn checks_expiry(self) -> bool {
        self != Setup::Cloud(Kind::Moto)
    }
}

fn app(setup: Setup, redis: &Option<RedisServer>, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with(|s| {
        if let (Setup::Cloud(kind), Some(redis)) = (setup, redis) {
            crate::cluster::cloud(
                s,
                RedisSettings { url: redis.url(), ..RedisSettings::default() },
                S3Server::shared(kind),
            );
        }
        s.direct.batch_size = 2;
        s.direct.single_part_max = 1000;
        tweak(s)
    })
}

fn redis_for(setup: Setup) -> Option<RedisServer> {
    matches!(setup, Setup::Cloud(_)).then(RedisServer::start)
}

async fn create(app: &TestApp, size: usize, part: Option<usize>, checksum: Option<String>) -> Value {
    let mut body =
        json!({"filename": "movie.mkv", "size": size, "content_type": "video/x-matroska", "transfer": "direct"});
    if let Some(part) = part {
        body["chunk_size"] = json!(part);
    }
    if let Some(crc) = checksum {
        body["checksum"] = json!({"crc64nvme": crc});
    }
    let response = app.post_json("/v1/uploads", &body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

/// PUTs `data` to a part URL as a browser or curl would: exactly the headers it lists.
async fn put(part: &Value, data: &[u8]) -> (StatusCode, Option<String>) {
    assert_eq!(part["method"], "PUT");
    let mut request = reqwest::Client::new().put(part["url"].as_str().unwrap()).body(data.to_vec());
    for (name, value) in part["headers"].as_object().unwrap() {
        request = request.header(name, value.as_str().unwrap());
    }
    let response = request.send().await.unwrap();
    let etag = response.headers().get("etag").map(|e| e.to_str().unwrap().to_owned());
    (response.status(), etag)
}

async fn post(app: &TestApp, up: &Value, path: &str, body: Option<Value>) -> reqwest::Response {
    let id = up["upload_id"].as_str().unwrap();
    let mut request = app.client.post(app.url(&format!("/v1/uploads/{id}/{path}")));
    request = request.bearer_auth(up["upload_token"].as_str().unwrap());
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

async fn status(app: &TestApp, up: &Value) -> Value {
    app.status(&Upload::from_json(up)).await.json().await.unwrap()
}

async fn a_small_file_is_one_put_then_confirmed(setup: Setup) {
    let redis = redis_for(setup);
    let app = app(setup, &redis, |_| {});
    let data = bytes(81, 900);
    let up = create(&app, data.len(), None, Some(crc64nvme(&data))).await;
    assert_eq!((&up["transfer"], &up["total_parts"]), (&json!("direct"), &json!(1)), "{up}");
    let parts = up["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!(status(&app, &up).await["missing_parts"], json!([1]));
    let (code, etag) = put(&parts[0], &data).await;
    assert_eq!(code, StatusCode::OK);
    assert!(etag.is_some());
    assert_eq!(status(&app, &up).await["missing_parts"], json!([]));

    let done = post(&app, &up, "complete", None).await;
    assert_eq!(done.status(), StatusCode::OK);
    let done: Value = done.json().await.unwrap();
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(app.read_object(up["key"].as_str().unwrap()).await.as_deref(), Some(&data[..]));
    let again: Value = post(&app, &up, "complete", None).await.json().await.unwrap();
    assert_eq!(again["state"], "completed", "confirming again answers the status");
    // ferry saw the bytes (embedded) or s3s-fs checked the declared CRC and reports it;
    // moto does neither, so no checksum is reported there.
    let expected = if setup == Setup::Cloud(Kind::Moto) { Value::Null } else { json!({"crc64nvme": crc64nvme(&data)}) };
    assert_eq!(done["checksum"], expected, "{done}");
}

async fn parts_out_of_order_are_paged_checked_and_assembled(setup: Setup) {
    let redis = redis_for(setup);
    let app = app(setup, &redis, |_| {});
    let part = setup.part();
    let data = bytes(82, 2 * part + 1234);
    let up = create(&app, data.len(), Some(part), None).await;
    assert_eq!((&up["total_parts"], &up["part_size"]), (&json!(3), &json!(part)), "{up}");
    let mut urls: Vec<Value> = up["parts"].as_array().unwrap().clone();
    assert_eq!(urls.iter().map(|p| p["part_number"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2], "one page of two");
    let next: Value = post(&app, &up, "parts", Some(json!({"start": 3, "count": 500}))).await.json().await.unwrap();
    urls.extend(next["parts"].as_array().unwrap().iter().cloned());
    assert_eq!(urls.len(), 3, "{next}");

    let piece = |n: usize| &data[(n - 1) * part..(n * part).min(data.len())];
    let mut etags = vec![String::new(); 4];
    for n in [3, 1] {
        let (code, etag) = put(&urls[n - 1], piece(n)).await;
        assert_eq!(code, StatusCode::OK, "part {n}");
        etags[n] = etag.unwrap();
    }
    let missing = assert_problem(post(&app, &up, "complete", None).await, StatusCode::CONFLICT, "parts-missing").await;
    assert_eq!(missing["missing_parts"], json!([2]));
    assert_eq!(status(&app, &up).await["missing_parts"], json!([2]));

    let (code, etag) = put(&urls[1], piece(2)).await;
    assert_eq!(code, StatusCode::OK);
    etags[2] = etag.unwrap();
    let listed = |wrong: bool| {
        let parts: Vec<Value> = (1..=3)
            .map(|n| json!({"part_number": n, "etag": if wrong && n == 1 { "\"0123456789abcdef0123456789abcdef\"".to_owned() } else { etags[n].clone() }}))
            .collect();
        json!({ "parts": parts })
    };
    if setup.lists_etags() {
        let mismatch = post(&app, &up, "complete", Some(listed(true))).await;
        let mismatch = assert_problem(mismatch, StatusCode::CONFLICT, "part-mismatch").await;
        assert_eq!(mismatch["part_number"], 1);
    }
    let done = post(&app, &up, "complete", Some(listed(false))).await;
    assert_eq!(done.status(), StatusCode::OK);
    assert_eq!(done.json::<Value>().await.unwrap()["state"], "completed");
    assert!(app.read_object(up["key"].as_str().unwrap()).await == Some(data), "the object differs from the file");
}

async fn an_expired_url_is_refused_and_signed_again(setup: Setup) {
    let redis = redis_for(setup);
    let app = app(setup, &redis, |s| s.direct.url_ttl_secs = 1);
    let data = bytes(83, 700);
    let up = create(&app, data.len(), None, None).await;
    // ferry's own URLs expire by its clock; S3's by the store's.
    app.clock.advance(chrono::Duration::seconds(2));
    if setup != Setup::Embedded {
        tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    }
    if setup.checks_expiry() {
        let (code, _) = put(&up["parts"][0], &data).await;
        assert_eq!(code, StatusCode::FORBIDDEN, "an expired URL is refused");
    }
    let fresh: Value = post(&app, &up, "parts", Some(json!({"start": 1}))).await.json().await.unwrap();
    assert_eq!(put(&fresh["parts"][0], &data).await.0, StatusCode::OK);
    assert_eq!(post(&app, &up, "complete", None).await.status(), StatusCode::OK);
    assert_eq!(app.read_object(up["key"].as_str().unwrap()).await.as_deref(), Some(&data[..]));
}

/// Whether the store still holds a multipart upload for `key` (moto lists them; s3s-fs
/// does not, and the embedded store keeps a staging folder).
async fn multipart_left(app: &TestApp, setup: Setup, up: &Value) -> bool {
    match setup {
        Setup::Embedded => app.staging_dir(up["upload_id"].as_str().unwrap()).exists(),
        Setup::Cloud(kind) => {
            let key = format!("{PREFIX}/{}", up["key"].as_str().unwrap());
            match S3Server::shared(kind).client().list_multipart_uploads().bucket(BUCKET).prefix(&key).send().await {
                Ok(list) => !list.uploads().is_empty(),
                Err(_) => false,
            }
        }
    }
}

async fn cancel_and_expiry_leave_no_multipart_upload(setup: Setup) {
    let redis = redis_for(setup);
    let app = app(setup, &redis, |s| s.uploads.session_ttl_secs = 60);
    let part = setup.part();
    let data = bytes(84, part + 10);
    for ending in ["cancel", "expiry"] {
        let up = create(&app, data.len(), Some(part), None).await;
        assert_eq!(put(&up["parts"][0], &data[..part]).await.0, StatusCode::OK);
        if setup != Setup::Cloud(Kind::S3sFs) {
            assert!(multipart_left(&app, setup, &up).await, "the part is held");
        }
        if ending == "cancel" {
            assert_eq!(app.cancel(&Upload::from_json(&up)).await.status(), StatusCode::NO_CONTENT);
        } else {
            app.clock.advance(chrono::Duration::seconds(61));
        }
        eventually(&format!("the {ending} aborted the multipart upload"), || async {
            !multipart_left(&app, setup, &up).await
        })
        .await;
        let gone = post(&app, &up, "complete", None).await;
        assert!(gone.status().is_client_error(), "{ending}: {}", gone.status());
    }
}

async fn parts_and_complete_need_the_upload_token(setup: Setup) {
    let redis = redis_for(setup);
    let app = app(setup, &redis, |_| {});
    let (up, other) = (create(&app, 500, None, None).await, create(&app, 500, None, None).await);
    let id = up["upload_id"].as_str().unwrap();
    for path in ["parts", "complete"] {
        let url = app.url(&format!("/v1/uploads/{id}/{path}"));
        let bare = app.client.post(&url).json(&json!({"start": 1})).send().await.unwrap();
        assert_problem(bare, StatusCode::UNAUTHORIZED, "missing-token").await;
        let token = other["upload_token"].as_str().unwrap();
        let wrong = app.client.post(&url).bearer_auth(token).json(&json!({"start": 1})).send().await.unwrap();
        assert_problem(wrong, StatusCode::FORBIDDEN, "invalid-token").await;
    }
}

macro_rules! direct_suite {
    ($name:ident, $setup:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn a_small_file_is_one_put_then_confirmed() {
                super::a_small_file_is_one_put_then_confirmed($setup).await;
            }

            #[tokio::test]
            async fn parts_out_of_order_are_paged_checked_and_assembled() {
                super::parts_out_of_order_are_paged_checked_and_assembled($setup).await;
            }

            #[tokio::test]
            async fn an_expired_url_is_refused_and_signed_again() {
                super::an_expired_url_is_refused_and_signed_again($setup).await;
            }

            #[tokio::test]
            async fn cancel_and_expiry_leave_no_multipart_upload() {
                super::cancel_and_expiry_leave_no_multipart_upload($setup).await;
            }

            #[tokio::test]
            async fn parts_and_complete_need_the_upload_token() {
                super::parts_and_complete_need_the_upload_token($setup).await;
            }
        }
    };
}

direct_suite!(embedded, Setup::Embedded);
direct_suite!(s3s_fs, Setup::Cloud(Kind::S3sFs));
direct_suite!(moto, Setup::Cloud(Kind::Moto));

#[tokio::test]
async fn on_the_embedded_default_a_wrong_declared_checksum_fails_the_upload() {
    let app = app(Setup::Embedded, &None, |_| {});
    let data = bytes(85, 3 * CHUNK as usize);
    let up = create(&app, data.len(), Some(CHUNK as usize), Some(crc64nvme(b"other bytes"))).await;
    let mut urls = up["parts"].as_array().unwrap().clone();
    let next: Value = post(&app, &up, "parts", Some(json!({"start": 3}))).await.json().await.unwrap();
    urls.extend(next["parts"].as_array().unwrap().iter().cloned());
    for (n, piece) in data.chunks(CHUNK as usize).enumerate() {
        assert_eq!(put(&urls[n], piece).await.0, StatusCode::OK);
    }
    let done: Value = post(&app, &up, "complete", None).await.json().await.unwrap();
    assert_eq!((&done["state"], &done["checksum"]), (&json!("failed"), &Value::Null), "{done}");
    assert_eq!(app.read_object(up["key"].as_str().unwrap()).await, None);
}

#[tokio::test]
async fn a_part_url_opens_only_its_own_part_with_its_length() {
    let app = app(Setup::Embedded, &None, |_| {});
    let data = bytes(86, 2 * CHUNK as usize);
    let up = create(&app, data.len(), Some(CHUNK as usize), None).await;
    let url = up["parts"][0]["url"].as_str().unwrap();
    let other_part = url.replace("/direct/1?", "/direct/2?");
    let response = app.client.put(&other_part).body(data[..CHUNK as usize].to_vec()).send().await.unwrap();
    assert_problem(response, StatusCode::FORBIDDEN, "invalid-token").await;
    let short = app.client.put(url).body(data[..10].to_vec()).send().await.unwrap();
    assert_problem(short, StatusCode::BAD_REQUEST, "chunk-size-mismatch").await;
    let chunk = app.put_chunk(&Upload::from_json(&up), 0, &data[..CHUNK as usize]).await;
    assert_problem(chunk, StatusCode::CONFLICT, "direct-upload").await;
}
