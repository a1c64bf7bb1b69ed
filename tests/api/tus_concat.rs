//! The tus concatenation extension's conformance suite: partial uploads, final uploads
//! made of them, and every refusal the spec and ferry name. Like `tus`, each case is a
//! function of the setup it runs on, run on the embedded default and on Redis + S3; on S3
//! the partials' sizes straddle the 5 MiB part minimum, so a final takes server-side copies
//! and parts streamed from small partials.

use ferry::config::StorageBackend;
use ferry::domain::{ObjectKey, UploadId};
use ferry::storage::{ObjectStore, S3ObjectStore, StagedUpload};
use reqwest::{Method, RequestBuilder, StatusCode};

use crate::helpers::*;
use crate::tus::{assert_tus, b64, header, number, Spawn, Tus, OCTETS};

const MIB: usize = 1024 * 1024;

/// Creates a partial upload of `data` and sends it in one PATCH; returns its URL.
async fn partial(tus: &Tus<'_>, data: &[u8]) -> String {
    let url = open_partial(tus, data.len() as u64).await;
    if !data.is_empty() {
        let response = tus.patch(&url, 0, data).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{}", response.text().await.unwrap());
    }
    url
}

/// Creates a partial upload of `length` bytes and sends nothing; returns its URL.
async fn open_partial(tus: &Tus<'_>, length: u64) -> String {
    let response = tus
        .request(Method::POST, &tus.files())
        .header("Upload-Concat", "partial")
        .header("Upload-Length", length)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    header(response.headers(), "location").unwrap().to_owned()
}

/// `POST /files/` for a final upload of the partials at `urls`.
fn final_of(tus: &Tus<'_>, urls: &[&str]) -> RequestBuilder {
    tus.request(Method::POST, &tus.files())
        .header("Upload-Concat", format!("final;{}", urls.join(" ")))
        .header("Upload-Metadata", format!("filename {},filetype {}", b64("joined.bin"), b64("video/mp4")))
}

/// Makes the final upload of `urls`; returns its URL.
async fn make_final(tus: &Tus<'_>, urls: &[&str]) -> String {
    let response = final_of(tus, urls).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_tus(&response);
    header(response.headers(), "location").unwrap().to_owned()
}

/// The bytes the store keeps for the partial upload at `url`, wherever it keeps them.
async fn kept_bytes(app: &TestApp, url: &str) -> Option<Vec<u8>> {
    let id = Tus::credentials(url).id;
    match app.storage.backend {
        StorageBackend::Fs => std::fs::read(app.staging_dir(&id).join("append.data")).ok(),
        StorageBackend::S3 => app.read_object(&format!(".ferry/{id}/partial")).await,
    }
}

/// The staging area of the partial upload at `url`, as the store sees it.
fn staged_partial(url: &str) -> StagedUpload {
    let id: UploadId = Tus::credentials(url).id.parse().unwrap();
    StagedUpload { append: true, partial: true, ..StagedUpload::new(id, ObjectKey::new(&id, "x")) }
}

/// Whether the store holds anything staged for the partial at `url` (kept bytes, tails).
async fn has_staged(app: &TestApp, url: &str) -> bool {
    let staged = staged_partial(url);
    match app.storage.backend {
        StorageBackend::Fs => app.staging_dir(&staged.id.to_string()).exists(),
        StorageBackend::S3 => {
            let store = S3ObjectStore::new(&app.storage.s3).await.unwrap();
            ferry::storage::contract::Inspect::has_staged_parts(&store, &staged).await
        }
    }
}

/// Removes what the store keeps for the partial at `url` behind ferry's back.
async fn lose_kept_bytes(app: &TestApp, url: &str) {
    let staged = staged_partial(url);
    match app.storage.backend {
        StorageBackend::Fs => std::fs::remove_dir_all(app.staging_dir(&staged.id.to_string())).unwrap(),
        StorageBackend::S3 => S3ObjectStore::new(&app.storage.s3).await.unwrap().abort(&staged).await.unwrap(),
    }
    assert!(!has_staged(app, url).await);
}

pub async fn partials_then_a_final_make_the_partials_bytes_in_order(spawn: Spawn) {
    let app = spawn(|_| {});
    let tus = Tus::new(&app);
    // On S3: the first is copied, the small ones are grouped into streamed parts.
    let data = [bytes(1, 6 * MIB + 5), bytes(2, 3000), bytes(3, 1000), bytes(4, 5 * MIB), bytes(5, 7)];
    let mut urls = Vec::new();
    for piece in &data {
        urls.push(partial(&tus, piece).await);
    }
    let head = tus.head(&urls[0]).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_tus(&head);
    assert_eq!(header(head.headers(), "upload-concat"), Some("partial"));
    assert_eq!(
        (number(head.headers(), "upload-offset"), number(head.headers(), "upload-length")),
        (6 * MIB as u64 + 5, 6 * MIB as u64 + 5)
    );
    let native = tus.native(&urls[0]).await;
    assert_eq!((native["state"].as_str(), native["concat"].as_str()), (Some("completed"), Some("partial")));
    assert_eq!(
        app.read_object(native["key"].as_str().unwrap()).await,
        None,
        "a partial is no object among the uploads"
    );
    assert_eq!(kept_bytes(&app, &urls[0]).await, Some(data[0].clone()), "its bytes are kept aside");

    // Out of creation order, one partial twice; absolute URLs and paths, as clients send them.
    let order = [0, 2, 1, 3, 4, 2];
    let named: Vec<&str> = order
        .iter()
        .enumerate()
        .map(|(i, &p)| if i % 2 == 0 { urls[p].as_str() } else { tus.path(&urls[p]) })
        .collect();
    let url = make_final(&tus, &named).await;
    let expected: Vec<u8> = order.iter().flat_map(|&p| data[p].iter().copied()).collect();
    let head = tus.head(&url).await;
    assert_eq!(head.status(), StatusCode::OK);
    let h = head.headers();
    let absolute: Vec<&str> = order.iter().map(|&p| urls[p].as_str()).collect();
    assert_eq!(header(h, "upload-concat"), Some(format!("final;{}", absolute.join(" ")).as_str()));
    assert_eq!(
        (number(h, "upload-offset"), number(h, "upload-length")),
        (expected.len() as u64, expected.len() as u64)
    );
    assert!(h.get("upload-expires").is_none(), "a finished upload does not expire as an unfinished one");
    assert_eq!(
        header(h, "upload-metadata"),
        Some(format!("filename {},filetype {}", b64("joined.bin"), b64("video/mp4")).as_str())
    );
    assert_eq!(tus.object(&url).await, expected, "the partials' bytes, in the final's order");
    let checksum = &tus.native(&url).await["checksum"]["crc64nvme"];
    assert_eq!(checksum, &crc64nvme(&expected), "combined from the partials' own, never read again");
    assert_eq!(kept_bytes(&app, &urls[2]).await, Some(data[2].clone()), "the partials stay for another final");
}

pub async fn a_final_naming_an_unfinished_partial_is_refused(spawn: Spawn) {
    let app = spawn(|_| {});
    let tus = Tus::new(&app);
    let data = bytes(6, 3000);
    let done = partial(&tus, &bytes(7, 100)).await;
    let url = open_partial(&tus, data.len() as u64).await;
    assert_eq!(tus.patch(&url, 0, &data[..1000]).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    let refused = final_of(&tus, &[&done, &url]).send().await.unwrap();
    assert_tus(&refused);
    let body = assert_problem(refused, StatusCode::BAD_REQUEST, "partial-upload-unfinished").await;
    assert_eq!((body["position"].as_u64(), body["state"].as_str()), (Some(2), Some("uploading")));

    // A PATCH still receiving the rest: the partial is refused while its bytes come in.
    let path = tus.path(&url);
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: test\r\nTus-Resumable: 1.0.0\r\nContent-Type: {OCTETS}\r\nUpload-Offset: 1000\r\nContent-Length: 2000\r\nConnection: close\r\n\r\n"
    );
    let mut stream = raw_open(&app, &head, &data[1000..1500]).await;
    let refused = final_of(&tus, &[&url]).send().await.unwrap();
    assert_problem(refused, StatusCode::BAD_REQUEST, "partial-upload-unfinished").await;
    tokio::io::AsyncWriteExt::write_all(&mut stream, &data[1500..]).await.unwrap();
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");

    let joined = make_final(&tus, &[&url, &done]).await;
    assert_eq!(tus.object(&joined).await, [&data[..], &bytes(7, 100)].concat());
}

pub async fn a_final_with_a_length_or_a_body_or_no_partial_is_refused(spawn: Spawn) {
    let app = spawn(|_| {});
    let tus = Tus::new(&app);
    let done = partial(&tus, b"abc").await;
    let cases: Vec<(RequestBuilder, StatusCode, &str)> = vec![
        (final_of(&tus, &[&done]).header("Upload-Length", 3), StatusCode::BAD_REQUEST, "invalid-request"),
        (final_of(&tus, &[&done]).header("Upload-Defer-Length", 1), StatusCode::BAD_REQUEST, "invalid-request"),
        (
            final_of(&tus, &[&done]).header("Content-Type", OCTETS).body("abc"),
            StatusCode::FORBIDDEN,
            "final-upload-immutable",
        ),
        (final_of(&tus, &[]), StatusCode::BAD_REQUEST, "invalid-request"),
        (
            tus.request(Method::POST, &tus.files()).header("Upload-Concat", format!("final {done}")),
            StatusCode::BAD_REQUEST,
            "invalid-request",
        ),
    ];
    for (request, status, code) in cases {
        let response = request.send().await.unwrap();
        assert_tus(&response);
        assert_problem(response, status, code).await;
    }
    assert_eq!(kept_bytes(&app, &done).await.as_deref(), Some(&b"abc"[..]), "nothing was touched");
}

pub async fn a_wrong_token_reads_like_an_unknown_partial(spawn: Spawn) {
    let app = spawn(|_| {});
    let tus = Tus::new(&app);
    let done = partial(&tus, b"abc").await;
    let other = partial(&tus, b"de").await;
    let up = Tus::credentials(&done);
    let wrong_token = done.replace(&up.token, &Tus::credentials(&other).token);
    let unknown = done.replace(&up.id, &uuid::Uuid::new_v4().to_string());
    let mut bodies = Vec::new();
    for bad in [wrong_token.as_str(), unknown.as_str(), "/files/not-an-upload"] {
        let response = final_of(&tus, &[&other, bad]).send().await.unwrap();
        let body = assert_problem(response, StatusCode::BAD_REQUEST, "partial-upload-not-found").await;
        assert_eq!(body["position"], 2);
        bodies.push(body["detail"].clone());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "the same answer: {bodies:?}");

    // A canceled partial is gone; an upload not made as a partial (a plain one, a final) is no partial.
    let canceled = open_partial(&tus, 10).await;
    assert_eq!(tus.request(Method::DELETE, &canceled).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    let response = final_of(&tus, &[&canceled]).send().await.unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST, "partial-upload-not-found").await;
    let plain = tus.create(3).await;
    tus.patch(&plain, 0, b"xyz").send().await.unwrap();
    let joined = make_final(&tus, &[&done, &other]).await;
    for not_partial in [&plain, &joined] {
        let response = final_of(&tus, &[&done, not_partial]).send().await.unwrap();
        let body = assert_problem(response, StatusCode::BAD_REQUEST, "not-a-partial-upload").await;
        assert_eq!(body["position"], 2);
    }
}

pub async fn a_final_takes_no_patch_and_is_an_upload_like_the_others(spawn: Spawn) {
    let app = spawn(|_| {});
    let tus = Tus::new(&app);
    let a = partial(&tus, &bytes(9, 2000)).await;
    let b = partial(&tus, &bytes(10, 3000)).await;
    let joined = make_final(&tus, &[&a, &b]).await;
    let patch = tus.patch(&joined, 5000, b"more").send().await.unwrap();
    assert_tus(&patch);
    assert_problem(patch, StatusCode::FORBIDDEN, "final-upload-immutable").await;
    let patch = tus.patch(&joined, 0, b"over").send().await.unwrap();
    assert_problem(patch, StatusCode::FORBIDDEN, "final-upload-immutable").await;

    let status = tus.native(&joined).await;
    assert_eq!(status["state"], "completed");
    assert_eq!(status["concat"], "final");
    assert_eq!(
        (status["size"].as_u64(), status["offset"].as_u64(), status["length"].as_u64()),
        (Some(5000), Some(5000), Some(5000))
    );
    assert!(status["etag"].as_str().is_some_and(|e| !e.is_empty()), "{status}");
    assert_eq!(status["bytes_received"], 5000, "as for any tus upload, bytes_received is the offset");
    assert_eq!((status["filename"].as_str(), status["content_type"].as_str()), (Some("joined.bin"), Some("video/mp4")));
    let up = Tus::credentials(&joined);
    assert_problem(app.put_chunk(&up, 0, b"abc").await, StatusCode::CONFLICT, "not-a-chunked-upload").await;
    let delete = tus.request(Method::DELETE, &joined).send().await.unwrap();
    assert_problem(delete, StatusCode::CONFLICT, "upload-completed").await;
    assert_eq!(tus.object(&joined).await, [bytes(9, 2000), bytes(10, 3000)].concat(), "untouched");
}

pub async fn partials_take_creation_with_upload_and_a_deferred_length(spawn: Spawn) {
    let app = spawn(|_| {});
    let tus = Tus::new(&app);
    let first = bytes(11, 4000);
    let created = tus
        .request(Method::POST, &tus.files())
        .header("Upload-Concat", "partial")
        .header("Upload-Length", first.len())
        .header("Content-Type", OCTETS)
        .body(first.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(number(created.headers(), "upload-offset"), 4000);
    let with_upload = header(created.headers(), "location").unwrap().to_owned();

    let deferred = tus
        .request(Method::POST, &tus.files())
        .header("Upload-Concat", "partial")
        .header("Upload-Defer-Length", 1)
        .send()
        .await
        .unwrap();
    assert_eq!(deferred.status(), StatusCode::CREATED);
    let deferred = header(deferred.headers(), "location").unwrap().to_owned();
    let head = tus.head(&deferred).await;
    assert_eq!(header(head.headers(), "upload-concat"), Some("partial"));
    assert_eq!(header(head.headers(), "upload-defer-length"), Some("1"));
    let response = final_of(&tus, &[&with_upload, &deferred]).send().await.unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST, "partial-upload-unfinished").await;
    let rest = bytes(12, 2500);
    let patch = tus.patch(&deferred, 0, &rest).header("Upload-Length", rest.len()).send().await.unwrap();
    assert_eq!(patch.status(), StatusCode::NO_CONTENT);

    let empty = partial(&tus, b"").await;
    let joined = make_final(&tus, &[&with_upload, &empty, &deferred]).await;
    assert_eq!(tus.object(&joined).await, [first, rest].concat());
    let nothing = make_final(&tus, &[&empty, &empty]).await;
    assert_eq!(tus.object(&nothing).await, Vec::<u8>::new(), "empty partials make an empty object");
}

pub async fn two_finals_of_the_same_partials_at_once_are_both_whole(spawn: Spawn) {
    let app = spawn(|_| {});
    let tus = Tus::new(&app);
    let data = [bytes(13, 5 * MIB + 1), bytes(14, 1234)];
    let a = partial(&tus, &data[0]).await;
    let b = partial(&tus, &data[1]).await;
    let (one, two) = tokio::join!(final_of(&tus, &[&a, &b]).send(), final_of(&tus, &[&b, &a, &b]).send());
    let (one, two) = (one.unwrap(), two.unwrap());
    assert_eq!((one.status(), two.status()), (StatusCode::CREATED, StatusCode::CREATED));
    let one = header(one.headers(), "location").unwrap().to_owned();
    let two = header(two.headers(), "location").unwrap().to_owned();
    assert_ne!(one, two);
    assert_eq!(tus.object(&one).await, [&data[0][..], &data[1]].concat());
    assert_eq!(tus.object(&two).await, [&data[1][..], &data[0], &data[1]].concat());
}

pub async fn expired_partials_are_swept_with_their_kept_bytes(spawn: Spawn) {
    let app = spawn(|_| {});
    let tus = Tus::new(&app);
    let used = partial(&tus, &bytes(15, 3000)).await;
    let unused = partial(&tus, &bytes(16, 2000)).await;
    let unfinished = open_partial(&tus, 100).await;
    tus.patch(&unfinished, 0, b"half").send().await.unwrap();
    let joined = make_final(&tus, &[&used]).await;
    let key = tus.native(&joined).await["key"].as_str().unwrap().to_owned();
    assert!(kept_bytes(&app, &unused).await.is_some());

    assert!(has_staged(&app, &unfinished).await);

    app.clock.advance(chrono::Duration::seconds(86_401));
    for url in [&used, &unused, &unfinished] {
        eventually("the sweeper removes a partial's bytes", || async { !has_staged(&app, url).await }).await;
    }
    assert_eq!(app.read_object(&key).await, Some(bytes(15, 3000)), "the final's object stays");
    let response = final_of(&tus, &[&unused]).send().await.unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST, "partial-upload-not-found").await;
}

pub async fn a_final_whose_partial_lost_its_bytes_fails_and_makes_no_object(spawn: Spawn) {
    let app = spawn(|_| {});
    let tus = Tus::new(&app);
    let kept = partial(&tus, &bytes(17, 5 * MIB + 10)).await;
    let lost = partial(&tus, &bytes(18, 500)).await;
    lose_kept_bytes(&app, &lost).await;
    let response = final_of(&tus, &[&kept, &lost]).send().await.unwrap();
    assert_tus(&response);
    let joined = header(response.headers(), "location").expect("the failed final's URL").to_owned();
    let body = assert_problem(response, StatusCode::CONFLICT, "upload-failed").await;
    assert_eq!(body["state"], "failed");
    assert_eq!(tus.head(&joined).await.status(), StatusCode::CONFLICT, "HEAD: upload-failed");
    let status = tus.native(&joined).await;
    assert_eq!(status["state"], "failed");
    assert_eq!(app.read_object(status["key"].as_str().unwrap()).await, None, "never a half object");
    assert!(kept_bytes(&app, &kept).await.is_some(), "the other partial is untouched");
    let metrics = app.metrics().await;
    for line in ["ferry_uploads_failed_total 1", "ferry_uploads_completed_total 2", "ferry_upload_size_bytes_count 2"] {
        assert!(metrics.contains(line), "the partials completed, the final failed: no {line:?} in\n{metrics}");
    }
}

pub async fn partials_need_no_content_type_but_the_final_does(spawn: Spawn) {
    let app = spawn(|s| s.uploads.allowed_content_types = vec!["video/mp4".into()]);
    let tus = Tus::new(&app);
    let a = partial(&tus, b"abc").await;
    let b = partial(&tus, b"def").await;
    let untyped =
        tus.request(Method::POST, &tus.files()).header("Upload-Concat", format!("final;{a} {b}")).send().await.unwrap();
    assert_problem(untyped, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-content-type").await;
    let joined = make_final(&tus, &[&a, &b]).await;
    assert_eq!(tus.object(&joined).await, b"abcdef");
}

/// Runs every case above as a test on the setup `$spawn` starts.
macro_rules! cases {
    ($suite:path; $spawn:expr) => {
        crate::tus::cases!(@each $suite; $spawn;
            partials_then_a_final_make_the_partials_bytes_in_order,
            a_final_naming_an_unfinished_partial_is_refused,
            a_final_with_a_length_or_a_body_or_no_partial_is_refused,
            a_wrong_token_reads_like_an_unknown_partial,
            a_final_takes_no_patch_and_is_an_upload_like_the_others,
            partials_take_creation_with_upload_and_a_deferred_length,
            two_finals_of_the_same_partials_at_once_are_both_whole,
            expired_partials_are_swept_with_their_kept_bytes,
            a_final_whose_partial_lost_its_bytes_fails_and_makes_no_object,
            partials_need_no_content_type_but_the_final_does,
        );
    };
}

/// On the embedded default: local files and the embedded session store.
mod embedded {
    cases!(crate::tus_concat; crate::tus::embedded::spawn);
}

/// On Redis + S3 (s3s-fs), parts of 5 MiB.
mod cloud {
    cases!(crate::tus_concat; crate::tus::cloud::spawn);

    /// S3 failing every part upload and copy mid-assembly leaves the final `completing`,
    /// with no object and no offset to report; once S3 is back, the server finishes it
    /// (the sweeper takes the released job up again), byte-identical.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_s3_outage_mid_assembly_leaves_the_final_to_be_finished_later() {
        use super::*;
        use crate::support::s3_faults::{Fault, Op, Rule, S3FaultProxy};

        let redis = tokio::task::block_in_place(crate::support::redis::RedisServer::start);
        let s3 = tokio::task::block_in_place(|| crate::support::s3::S3Server::shared(crate::support::s3::Kind::S3sFs));
        let proxy = S3FaultProxy::start(&s3.endpoint(), 1, 7).await;
        let settings = ferry::config::RedisSettings { url: redis.url(), ..Default::default() };
        let endpoint = proxy.addresses[0].clone();
        let app = tokio::task::block_in_place(|| {
            spawn_app_with(|s| {
                crate::cluster::cloud(s, settings, s3);
                s.storage.s3.endpoint = Some(endpoint);
            })
        });
        let tus = Tus::new(&app);
        let data = [bytes(19, 5 * MIB + 3), bytes(20, 777)];
        let a = partial(&tus, &data[0]).await;
        let b = partial(&tus, &data[1]).await;

        proxy.add_rule(Rule {
            ops: vec![Op::UploadPart],
            fault: Fault::InternalError,
            probability: 1.0,
            budget: 10_000,
        });
        let joined = make_final(&tus, &[&a, &b]).await;
        let head = tus.head(&joined).await;
        assert_eq!(head.status(), StatusCode::OK);
        assert!(head.headers().get("upload-offset").is_none(), "no offset before the concatenation is done");
        assert_eq!(number(head.headers(), "upload-length"), (data[0].len() + data[1].len()) as u64);
        let status = tus.native(&joined).await;
        assert_eq!(status["state"], "completing", "{status}");
        assert_eq!(app.read_object(status["key"].as_str().unwrap()).await, None, "never a half object");
        assert!(proxy.counts().get("s3-500").is_some_and(|n| *n > 0), "the faults were met");

        proxy.clear();
        eventually("the server finishes the final once S3 is back", || async {
            tus.native(&joined).await["state"] == "completed"
        })
        .await;
        assert_eq!(tus.object(&joined).await, [&data[0][..], &data[1]].concat());
        drop(redis);
    }
}
