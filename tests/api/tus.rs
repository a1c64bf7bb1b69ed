//! The tus 1.0 conformance suite: every header rule and status code ferry's `/files/`
//! promises, through HTTP. Each case is a function of the setup it runs on (`Spawn`), so
//! the same cases can run against another setup (Redis + S3) from a module of its own:
//! `tus::cases!(crate::tus; cloud_spawn)`. `embedded` below runs them on the default.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ferry::config::{RedisSettings, Settings, StorageBackend};
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;

use crate::helpers::*;

/// Starts an application of the setup under test with `tweak` applied to its settings.
pub type Spawn = fn(fn(&mut Settings)) -> TestApp;

pub(crate) const TUS: &str = "1.0.0";
pub(crate) const OCTETS: &str = "application/offset+octet-stream";

pub(crate) fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).map(|v| v.to_str().unwrap())
}

pub(crate) fn number(h: &HeaderMap, name: &str) -> u64 {
    header(h, name).unwrap_or_else(|| panic!("{name} is missing")).parse().unwrap()
}

pub(crate) fn b64(s: &str) -> String {
    STANDARD.encode(s)
}

/// A tus client over the test application, with no cleverness: every header explicit.
pub(crate) struct Tus<'a> {
    pub(crate) app: &'a TestApp,
}

impl<'a> Tus<'a> {
    pub(crate) fn new(app: &'a TestApp) -> Self {
        Self { app }
    }

    pub(crate) fn request(&self, method: Method, url: &str) -> RequestBuilder {
        self.app.client.request(method, url).header("Tus-Resumable", TUS)
    }

    pub(crate) fn files(&self) -> String {
        self.app.url("/files/")
    }

    /// Creates an upload of `length` bytes; returns its URL.
    pub(crate) async fn create(&self, length: u64) -> String {
        let response = self
            .request(Method::POST, &self.files())
            .header("Upload-Length", length)
            .header("Upload-Metadata", format!("filename {},filetype {}", b64("clip.bin"), b64("video/mp4")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        header(response.headers(), "location").unwrap().to_owned()
    }

    pub(crate) async fn head(&self, url: &str) -> Response {
        self.request(Method::HEAD, url).send().await.unwrap()
    }

    pub(crate) async fn offset(&self, url: &str) -> u64 {
        let response = self.head(url).await;
        assert_eq!(response.status(), StatusCode::OK);
        number(response.headers(), "upload-offset")
    }

    pub(crate) fn patch(&self, url: &str, offset: u64, data: &[u8]) -> RequestBuilder {
        self.request(Method::PATCH, url)
            .header("Content-Type", OCTETS)
            .header("Upload-Offset", offset)
            .body(data.to_vec())
    }

    /// The upload's id and token, from its URL's last segment.
    pub(crate) fn credentials(url: &str) -> Upload {
        let segment = url.rsplit('/').next().unwrap();
        let (id, token) = segment.split_once('.').unwrap();
        Upload { id: id.into(), token: token.into(), key: String::new(), chunk_size: 0, total_chunks: 0 }
    }

    /// The native status of the upload at `url`.
    pub(crate) async fn native(&self, url: &str) -> Value {
        let response = self.app.status(&Self::credentials(url)).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// The finished object's bytes (its key comes from the native status).
    pub(crate) async fn object(&self, url: &str) -> Vec<u8> {
        let status = self.native(url).await;
        assert_eq!(status["state"], "completed", "{status}");
        self.app.read_object(status["key"].as_str().unwrap()).await.expect("the object is stored")
    }

    /// The path of `url` (for raw requests).
    pub(crate) fn path<'u>(&self, url: &'u str) -> &'u str {
        url.strip_prefix(&self.app.address).unwrap()
    }
}

pub(crate) fn assert_tus(response: &Response) {
    assert_eq!(header(response.headers(), "tus-resumable"), Some(TUS), "{} {}", response.status(), response.url());
}

pub async fn options_lists_the_version_extensions_and_limits(spawn: Spawn) {
    let app = spawn(|_| {});
    for path in ["/files/", "/files/anything"] {
        // OPTIONS needs neither Tus-Resumable nor credentials.
        let response = app.client.request(Method::OPTIONS, app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let h = response.headers();
        assert_tus(&response);
        assert_eq!(header(h, "tus-version"), Some(TUS));
        assert_eq!(number(h, "tus-max-size"), MAX_FILE);
        assert_eq!(
            header(h, "tus-extension"),
            Some("creation,creation-with-upload,creation-defer-length,termination,expiration,checksum,concatenation")
        );
        assert_eq!(header(h, "tus-checksum-algorithm"), Some("md5,sha1,sha256,crc32"));
    }
}

pub async fn a_request_without_the_tus_version_gets_412_with_tus_version(spawn: Spawn) {
    let app = spawn(|_| {});
    let tus = Tus::new(&app);
    let url = tus.create(10).await;
    for (method, target, version) in [
        (Method::POST, tus.files(), None),
        (Method::POST, tus.files(), Some("0.2.2")),
        (Method::HEAD, url.clone(), None),
        (Method::PATCH, url.clone(), None),
        (Method::DELETE, url.clone(), Some("2.0.0")),
    ] {
        let mut request = app.client.request(method.clone(), &target).header("Upload-Length", 10);
        if let Some(v) = version {
            request = request.header("Tus-Resumable", v);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED, "{method} {version:?}");
        assert_tus(&response);
        assert_eq!(header(response.headers(), "tus-version"), Some(TUS));
        if method != Method::HEAD {
            assert_problem(response, StatusCode::PRECONDITION_FAILED, "unsupported-version").await;
        }
    }
    assert_eq!(tus.offset(&url).await, 0, "nothing was deleted");
}

pub async fn creation_answers_201_with_a_capability_url_and_head_reports_it(spawn: Spawn) {
    let app = spawn(|_| {});
    let tus = Tus::new(&app);
    let metadata = format!("filename {},filetype {},user {},flag", b64("clip.mov"), b64("video/quicktime"), b64("42"));
    let response = tus
        .request(Method::POST, &tus.files())
        .header("Upload-Length", 3000)
        .header("Upload-Metadata", &metadata)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_tus(&response);
    let url = header(response.headers(), "location").unwrap().to_owned();
    assert!(url.starts_with(&format!("{}/files/", app.address)), "{url}");
    let expires = httpdate::parse_http_date(header(response.headers(), "upload-expires").unwrap()).unwrap();
    assert!(expires > std::time::SystemTime::now() + std::time::Duration::from_secs(86_000));

    let response = tus.head(&url).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_tus(&response);
    let h = response.headers();
    assert_eq!(number(h, "upload-offset"), 0);
    assert_eq!(number(h, "upload-length"), 3000);
    assert!(h.get("upload-defer-length").is_none());
    assert_eq!(header(h, "cache-control"), Some("no-store"));
    assert_eq!(
        header(h, "upload-metadata"),
        Some(
            format!("filename {},filetype {},flag,user {}", b64("clip.mov"), b64("video/quicktime"), b64("42"))
                .as_str()
        )
    );
    httpdate::parse_http_date(header(h, "upload-expires").unwrap()).unwrap();

    // The same upload on the native API, with its token from the URL.
    let status = tus.native(&url).await;
    assert_eq!(status["state"], "uploading");
    assert_eq!(status["filename"], "clip.mov");
    assert_eq!(status["content_type"], "video/quicktime");
    assert_eq!(status["metadata"], serde_json::json!({"user": "42", "flag": ""}));
    assert_eq!(
        (status["offset"].as_u64(), status["length"].as_u64(), status["size"].as_u64()),
        (Some(0), Some(3000), Some(3000))
    );
    // Its chunk endpoint refuses: it takes appends.
    let up = Tus::credentials(&url);
    assert_problem(app.put_chunk(&up, 0, b"abc").await, StatusCode::CONFLICT, "not-a-chunked-upload").await;
}

pub async fn creation_refuses_bad_lengths_metadata_and_concatenation_values(spawn: Spawn) {
    let app = spawn(|_| {});
    let tus = Tus::new(&app);
    let post = || tus.request(Method::POST, &tus.files());
    let cases: Vec<(RequestBuilder, StatusCode, &str)> = vec![
        (post(), StatusCode::BAD_REQUEST, "invalid-request"),
        (post().header("Upload-Length", "ten"), StatusCode::BAD_REQUEST, "invalid-request"),
        (
            post().header("Upload-Length", 5).header("Upload-Defer-Length", 1),
            StatusCode::BAD_REQUEST,
            "invalid-request",
        ),
        (post().header("Upload-Defer-Length", 2), StatusCode::BAD_REQUEST, "invalid-request"),
        (post().header("Upload-Length", MAX_FILE + 1), StatusCode::PAYLOAD_TOO_LARGE, "file-too-large"),
        (
            post().header("Upload-Length", 5).header("Upload-Metadata", "filename !!"),
            StatusCode::BAD_REQUEST,
            "invalid-request",
        ),
        (
            post().header("Upload-Length", 5).header("Upload-Metadata", "filename /w=="),
            StatusCode::BAD_REQUEST,
            "invalid-request",
        ),
        (
            post().header("Upload-Length", 5).header("Upload-Concat", "partial;"),
            StatusCode::BAD_REQUEST,
            "invalid-request",
        ),
        (post().header("Upload-Concat", "final;"), StatusCode::BAD_REQUEST, "invalid-request"),
    ];
    for (request, status, code) in cases {
        let response = request.send().await.unwrap();
        assert_tus(&response);
        assert_problem(response, status, code).await;
    }
}

pub async fn patches_append_in_order_and_the_object_is_byte_identical(spawn: Spawn) {
    let app = spawn(|_| {});
    let tus = Tus::new(&app);
    let data = bytes(1, 10_000);
    let url = tus.create(data.len() as u64).await;
    let mut offset = 0;
    for piece in [&data[..1], &data[1..4096], &data[4096..9999], &data[9999..]] {
        let response = tus.patch(&url, offset, piece).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_tus(&response);
        offset += piece.len() as u64;
        assert_eq!(number(response.headers(), "upload-offset"), offset);
        if offset < data.len() as u64 {
            httpdate::parse_http_date(header(response.headers(), "upload-expires").unwrap()).unwrap();
            assert_eq!(tus.offset(&url).await, offset, "HEAD after PATCH");
        }
    }
    assert_eq!(tus.offset(&url).await, data.len() as u64);
    assert_eq!(tus.object(&url).await, data);
    let status = tus.native(&url).await;
    assert_eq!((status["offset"].as_u64(), status["length"].as_u64()), (Some(10_000), Some(10_000)));
    assert_eq!(status["checksum"]["crc64nvme"], crc64nvme(&data), "combined across the PATCHes");
}

pub async fn patch_refusals_follow_the_spec(spawn: Spawn) {
    let app = spawn(|_| {});
    let tus = Tus::new(&app);
    let url = tus.create(100).await;
    tus.patch(&url, 0, &bytes(2, 10)).send().await.unwrap();

    let wrong_type = tus
        .request(Method::PATCH, &url)
        .header("Content-Type", "application/octet-stream")
        .header("Upload-Offset", 10)
        .body("x");
    assert_problem(wrong_type.send().await.unwrap(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-content-type")
        .await;
    let no_offset = tus.request(Method::PATCH, &url).header("Content-Type", OCTETS).body("x");
    assert_problem(no_offset.send().await.unwrap(), StatusCode::BAD_REQUEST, "invalid-request").await;
    let behind =
        assert_problem(tus.patch(&url, 5, b"x").send().await.unwrap(), StatusCode::CONFLICT, "offset-mismatch").await;
    assert_eq!((behind["expected_offset"].as_u64(), behind["provided_offset"].as_u64()), (Some(10), Some(5)));
    let past = tus.patch(&url, 10, &bytes(3, 91)).send().await.unwrap();
    assert_problem(past, StatusCode::PAYLOAD_TOO_LARGE, "length-exceeded").await;
    let algorithm = tus.patch(&url, 10, b"x").header("Upload-Checksum", "sha512 AAAA");
    assert_problem(algorithm.send().await.unwrap(), StatusCode::BAD_REQUEST, "invalid-request").await;
    let other_length = tus.patch(&url, 10, b"x").header("Upload-Length", 50);
    assert_problem(other_length.send().await.unwrap(), StatusCode::BAD_REQUEST, "invalid-length").await;
    assert_eq!(tus.offset(&url).await, 10, "no refusal moved the offset");
}

pub async fn a_body_without_length_that_goes_past_the_end_is_413(spawn: Spawn) {
    let app = spawn(|_| {});
    let tus = Tus::new(&app);
    let url = tus.create(100).await;
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(bytes(10, 60)), Ok(bytes(11, 60))];
    let chunked = reqwest::Body::wrap_stream(futures_util::stream::iter(pieces));
    let response = tus
        .request(Method::PATCH, &url)
        .header("Content-Type", OCTETS)
        .header("Upload-Offset", 0)
        .body(chunked)
        .send()
        .await
        .unwrap();
    // S3 needs each write's length before its first byte: a body of unknown length is
    // refused there (411) before it is read.
    let refusal = match app.storage.backend {
        StorageBackend::Fs => StatusCode::PAYLOAD_TOO_LARGE,
        StorageBackend::S3 => StatusCode::LENGTH_REQUIRED,
    };
    assert_eq!(response.status(), refusal);
    let kept = tus.offset(&url).await;
    assert!(kept <= 100, "nothing past the length is kept: {kept}");
}

pub async fn a_checksum_mismatch_is_460_and_keeps_nothing(spawn: Spawn) {
    let app = spawn(|_| {});
    let tus = Tus::new(&app);
    let data = bytes(4, 4000);
    let url = tus.create(data.len() as u64).await;
    let response = tus
        .patch(&url, 0, &data[..1000])
        .header("Upload-Checksum", format!("sha1 {}", STANDARD.encode([0u8; 20])))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 460);
    assert_tus(&response);
    let body: Value = response.json().await.unwrap();
    assert_eq!((body["code"].as_str(), body["status"].as_u64()), (Some("digest-mismatch"), Some(460)));
    assert_eq!(tus.offset(&url).await, 0, "nothing of the request was kept");

    // Every advertised algorithm, with the right digest, is accepted.
    use md5::Digest as _;
    let pieces = data.chunks(1000).collect::<Vec<_>>();
    let digests = [
        format!("md5 {}", STANDARD.encode(md5::Md5::digest(pieces[0]))),
        format!("sha1 {}", STANDARD.encode(sha1::Sha1::digest(pieces[1]))),
        format!("sha256 {}", STANDARD.encode(sha2::Sha256::digest(pieces[2]))),
        format!("crc32 {}", STANDARD.encode(crc32fast::hash(pieces[3]).to_be_bytes())),
    ];
    let mut offset = 0;
    for (piece, checksum) in pieces.iter().zip(digests) {
        let response = tus.patch(&url, offset, piece).header("Upload-Checksum", &checksum).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{checksum}");
        offset += piece.len() as u64;
    }
    assert_eq!(tus.object(&url).await, data);
}

pub async fn creation_with_upload_stores_the_first_bytes(spawn: Spawn) {
    let app = spawn(|_| {});
    let tus = Tus::new(&app);
    let data = bytes(5, 5000);
    let response = tus
        .request(Method::POST, &tus.files())
        .header("Upload-Length", data.len())
        .header("Content-Type", OCTETS)
        .body(data[..3000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_tus(&response);
    assert_eq!(number(response.headers(), "upload-offset"), 3000);
    let url = header(response.headers(), "location").unwrap().to_owned();
    assert_eq!(tus.offset(&url).await, 3000);
    assert_eq!(tus.native(&url).await["filename"], "upload", "no metadata: the default name");
    assert_eq!(tus.patch(&url, 3000, &data[3000..]).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(tus.object(&url).await, data);

    // The whole file in the creation request completes it at once.
    let response = tus
        .request(Method::POST, &tus.files())
        .header("Upload-Length", 700)
        .header("Content-Type", OCTETS)
        .body(data[..700].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(number(response.headers(), "upload-offset"), 700);
    let url = header(response.headers(), "location").unwrap().to_owned();
    assert_eq!(tus.object(&url).await, &data[..700]);
}

pub async fn a_deferred_length_is_declared_by_a_later_patch(spawn: Spawn) {
    let app = spawn(|_| {});
    let tus = Tus::new(&app);
    let data = bytes(6, 6000);
    let response = tus.request(Method::POST, &tus.files()).header("Upload-Defer-Length", 1).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let url = header(response.headers(), "location").unwrap().to_owned();
    let response = tus.head(&url).await;
    assert_eq!(header(response.headers(), "upload-defer-length"), Some("1"));
    assert!(response.headers().get("upload-length").is_none());
    let status = tus.native(&url).await;
    assert!(status["length"].is_null() && status["size"].is_null(), "{status}");

    assert_eq!(tus.patch(&url, 0, &data[..2500]).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    let response = tus.head(&url).await;
    assert_eq!(number(response.headers(), "upload-offset"), 2500);
    assert_eq!(header(response.headers(), "upload-defer-length"), Some("1"));
    let last = tus.patch(&url, 2500, &data[2500..]).header("Upload-Length", data.len()).send().await.unwrap();
    assert_eq!(last.status(), StatusCode::NO_CONTENT);
    assert_eq!(number(last.headers(), "upload-offset"), data.len() as u64);
    let response = tus.head(&url).await;
    assert_eq!(number(response.headers(), "upload-length"), data.len() as u64);
    assert_eq!(tus.object(&url).await, data);
}

pub async fn a_patch_cut_mid_body_keeps_what_arrived_and_the_upload_goes_on(spawn: Spawn) {
    let app = spawn(|_| {});
    let tus = Tus::new(&app);
    let data = bytes(7, 20_000);
    let url = tus.create(data.len() as u64).await;
    let head = format!(
        "PATCH {} HTTP/1.1\r\nHost: test\r\nTus-Resumable: 1.0.0\r\nContent-Type: {OCTETS}\r\nUpload-Offset: 0\r\nContent-Length: {}\r\n\r\n",
        tus.path(&url),
        data.len()
    );
    raw_request(&app, &head, &data[..7000], true).await;
    // What was stored is kept: on local files every byte that arrived; on S3 the parts
    // finished before the cut (none of 7000 bytes). The writer's claim is released, and
    // the client goes on from the reported offset.
    let kept = if app.storage.backend == StorageBackend::Fs { 7000 } else { 0 };
    eventually("the cut PATCH lets go of the upload", || async {
        let response = tus.patch(&url, kept, &data[kept as usize..]).send().await.unwrap();
        response.status() == StatusCode::NO_CONTENT
    })
    .await;
    assert_eq!(tus.object(&url).await, data);
    assert_eq!(tus.native(&url).await["checksum"]["crc64nvme"], crc64nvme(&data), "the cut kept the CRC right");
}

pub async fn of_two_concurrent_patches_one_wins_and_the_other_is_told_to_retry(spawn: Spawn) {
    let app = spawn(|_| {});
    let tus = Tus::new(&app);
    let data = bytes(8, 8000);
    let url = tus.create(data.len() as u64).await;
    let head = format!(
        "PATCH {} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nTus-Resumable: 1.0.0\r\nContent-Type: {OCTETS}\r\nUpload-Offset: 0\r\nContent-Length: {}\r\n\r\n",
        tus.path(&url),
        data.len()
    );
    let mut first = raw_open(&app, &head, &data[..3000]).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let second = tus.patch(&url, 0, &bytes(9, 8000)).send().await.unwrap();
    assert_tus(&second);
    assert_problem(second, StatusCode::LOCKED, "append-in-progress").await;
    use tokio::io::AsyncWriteExt;
    first.write_all(&data[3000..]).await.unwrap();
    let answer = read_until_closed(&mut first).await;
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("upload-offset: 8000"), "{answer}");
    assert_eq!(tus.object(&url).await, data, "the winner's bytes, exactly");
}

pub async fn a_wrong_or_missing_secret_answers_404(spawn: Spawn) {
    let app = spawn(|_| {});
    let tus = Tus::new(&app);
    let url = tus.create(100).await;
    let other = tus.create(100).await;
    let up = Tus::credentials(&url);
    let stolen = Tus::credentials(&other).token;
    for bad in [
        format!("{}/files/{}", app.address, up.id),
        format!("{}/files/{}.", app.address, up.id),
        format!("{}/files/{}.{stolen}", app.address, up.id),
        format!("{}/files/{}.{}x", app.address, up.id, up.token),
    ] {
        let head = tus.head(&bad).await;
        assert_eq!(head.status(), StatusCode::NOT_FOUND, "{bad}");
        assert_tus(&head);
        assert_problem(tus.patch(&bad, 0, b"x").send().await.unwrap(), StatusCode::NOT_FOUND, "upload-not-found").await;
        let delete = tus.request(Method::DELETE, &bad).send().await.unwrap();
        assert_problem(delete, StatusCode::NOT_FOUND, "upload-not-found").await;
    }
    assert_eq!(tus.offset(&url).await, 0);
}

pub async fn creation_honours_api_keys_and_options_needs_none(spawn: Spawn) {
    let app = spawn(|s| s.auth.api_keys = vec!["k-123".into()]);
    let tus = Tus::new(&app);
    let post = || tus.request(Method::POST, &tus.files()).header("Upload-Length", 5);
    assert_problem(post().send().await.unwrap(), StatusCode::UNAUTHORIZED, "missing-token").await;
    assert_problem(post().bearer_auth("nope").send().await.unwrap(), StatusCode::FORBIDDEN, "invalid-token").await;
    let response = post().bearer_auth("k-123").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let url = header(response.headers(), "location").unwrap().to_owned();
    let options = app.client.request(Method::OPTIONS, tus.files()).send().await.unwrap();
    assert_eq!(options.status(), StatusCode::NO_CONTENT);
    // The upload URL is the capability: no API key needed to go on.
    assert_eq!(tus.patch(&url, 0, b"12345").send().await.unwrap().status(), StatusCode::NO_CONTENT);
}

pub async fn an_expired_upload_answers_404(spawn: Spawn) {
    let app = spawn(|_| {});
    let tus = Tus::new(&app);
    let url = tus.create(100).await;
    tus.patch(&url, 0, b"abc").send().await.unwrap();
    app.clock.advance(chrono::Duration::seconds(86_401));
    assert_eq!(tus.head(&url).await.status(), StatusCode::NOT_FOUND);
    assert_problem(tus.patch(&url, 3, b"d").send().await.unwrap(), StatusCode::NOT_FOUND, "upload-not-found").await;
}

pub async fn a_patch_moves_the_expiry(spawn: Spawn) {
    let app = spawn(|_| {});
    let tus = Tus::new(&app);
    let url = tus.create(100).await;
    let expiry = |h: &HeaderMap| httpdate::parse_http_date(header(h, "upload-expires").unwrap()).unwrap();
    let before = expiry(tus.head(&url).await.headers());
    app.clock.advance(chrono::Duration::hours(20));
    let response = tus.patch(&url, 0, b"abc").send().await.unwrap();
    let after = expiry(response.headers());
    assert_eq!(after.duration_since(before).unwrap().as_secs(), 20 * 3600);
    app.clock.advance(chrono::Duration::hours(20));
    assert_eq!(tus.offset(&url).await, 3, "alive 40 h after creation: the PATCH renewed it");
}

pub async fn termination_answers_204_and_later_requests_410_or_404(spawn: Spawn) {
    let app = spawn(|_| {});
    let tus = Tus::new(&app);
    let url = tus.create(100).await;
    tus.patch(&url, 0, b"abc").send().await.unwrap();
    let response = tus.request(Method::DELETE, &url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_tus(&response);
    let head = tus.head(&url).await.status();
    assert!(head == StatusCode::GONE || head == StatusCode::NOT_FOUND, "{head}");
    let patch = tus.patch(&url, 3, b"d").send().await.unwrap().status();
    assert!(patch == StatusCode::GONE || patch == StatusCode::NOT_FOUND, "{patch}");
    let again = tus.request(Method::DELETE, &url).send().await.unwrap().status();
    assert!(again == StatusCode::GONE || again == StatusCode::NOT_FOUND, "{again}");
    let status = app.status(&Tus::credentials(&url)).await;
    assert_problem(status, StatusCode::GONE, "upload-canceled").await;
}

pub async fn x_http_method_override_carries_patch_and_delete(spawn: Spawn) {
    let app = spawn(|_| {});
    let tus = Tus::new(&app);
    let url = tus.create(6).await;
    let patch = tus
        .request(Method::POST, &url)
        .header("X-HTTP-Method-Override", "PATCH")
        .header("Content-Type", OCTETS)
        .header("Upload-Offset", 0)
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), StatusCode::NO_CONTENT);
    assert_eq!(number(patch.headers(), "upload-offset"), 3);
    let delete = tus.request(Method::POST, &url).header("X-HTTP-Method-Override", "DELETE").send().await.unwrap();
    assert_eq!(delete.status(), StatusCode::NO_CONTENT);
}

pub async fn other_methods_are_refused_with_405(spawn: Spawn) {
    let app = spawn(|_| {});
    let tus = Tus::new(&app);
    let url = tus.create(6).await;
    let get = tus.request(Method::GET, &url).send().await.unwrap();
    assert_tus(&get);
    assert_problem(get, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed").await;
    let post = tus.request(Method::POST, &url).send().await.unwrap();
    assert_problem(post, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed").await;
}

/// Runs every case above as a test on the setup `$spawn` starts.
macro_rules! cases {
    ($suite:path; $spawn:expr) => {
        cases!(@each $suite; $spawn;
            options_lists_the_version_extensions_and_limits,
            a_request_without_the_tus_version_gets_412_with_tus_version,
            creation_answers_201_with_a_capability_url_and_head_reports_it,
            creation_refuses_bad_lengths_metadata_and_concatenation_values,
            patches_append_in_order_and_the_object_is_byte_identical,
            patch_refusals_follow_the_spec,
            a_checksum_mismatch_is_460_and_keeps_nothing,
            a_body_without_length_that_goes_past_the_end_is_413,
            creation_with_upload_stores_the_first_bytes,
            a_deferred_length_is_declared_by_a_later_patch,
            a_patch_cut_mid_body_keeps_what_arrived_and_the_upload_goes_on,
            of_two_concurrent_patches_one_wins_and_the_other_is_told_to_retry,
            a_wrong_or_missing_secret_answers_404,
            creation_honours_api_keys_and_options_needs_none,
            an_expired_upload_answers_404,
            a_patch_moves_the_expiry,
            termination_answers_204_and_later_requests_410_or_404,
            x_http_method_override_carries_patch_and_delete,
            other_methods_are_refused_with_405,
        );
    };
    (@each $suite:path; $spawn:expr; $($case:ident,)*) => {
        $(
            #[tokio::test]
            async fn $case() {
                use $suite as suite;
                suite::$case($spawn).await;
            }
        )*
    };
}
pub(crate) use cases;

/// The suite on the embedded default: local files and the embedded session store.
pub(crate) mod embedded {
    pub(crate) fn spawn(tweak: fn(&mut ferry::config::Settings)) -> crate::helpers::TestApp {
        crate::helpers::spawn_app_with(tweak)
    }
    super::cases!(crate::tus; spawn);
}

/// The suite on the cloud setup: sessions in a Redis of the test's own, objects in S3
/// (s3s-fs), parts of 5 MiB with the unfinished tail kept in the bucket.
pub(crate) mod cloud {
    pub(crate) fn spawn(tweak: fn(&mut ferry::config::Settings)) -> crate::helpers::TestApp {
        let redis = crate::support::redis::RedisServer::start();
        let s3 = crate::support::s3::S3Server::shared(crate::support::s3::Kind::S3sFs);
        let url = redis.url();
        crate::helpers::spawn_app_with(|s| {
            crate::cluster::cloud(s, super::RedisSettings { url, ..super::RedisSettings::default() }, s3);
            // The cases measure limits against the suite's own.
            s.uploads.max_file_size = crate::helpers::MAX_FILE;
            tweak(s);
        })
        .keeping(redis)
    }
    super::cases!(crate::tus; spawn);

    /// Three instances on one Redis and one bucket, no sticky sessions: PATCHes go round
    /// robin, the instance that created the upload dies between two of them, one PATCH is
    /// cut mid-body and the next instance goes on from the offset HEAD reports there.
    #[tokio::test]
    async fn patches_round_robin_over_three_instances_survive_a_kill_and_a_cut() {
        use super::{Method, StatusCode, Tus, OCTETS};
        use crate::helpers::*;

        const MIB: usize = 1024 * 1024;
        let redis = crate::support::redis::RedisServer::start();
        let s3 = crate::support::s3::S3Server::shared(crate::support::s3::Kind::S3sFs);
        let settings = super::RedisSettings { url: redis.url(), ..super::RedisSettings::default() };
        let spawn = || spawn_app_with(|s| crate::cluster::cloud(s, settings.clone(), s3));
        let (creator, first, second) = (spawn(), spawn(), spawn());
        let data = bytes(77, 17 * MIB + 1234);
        let url = Tus::new(&creator).create(data.len() as u64).await;
        let path = Tus::new(&creator).path(&url).to_owned();
        let on = |app: &TestApp| format!("{}{path}", app.address);

        // 6 MiB through the first instance: one part and a tail kept in the bucket.
        let patch = Tus::new(&first).patch(&on(&first), 0, &data[..6 * MIB]);
        assert_eq!(patch.send().await.unwrap().status(), StatusCode::NO_CONTENT);
        creator.kill();

        // The second instance gets a PATCH that stops after 7 MiB of the 11 MiB it announced.
        let head = format!(
            "PATCH {path} HTTP/1.1\r\nHost: test\r\nTus-Resumable: 1.0.0\r\nContent-Type: {OCTETS}\r\nUpload-Offset: {}\r\nContent-Length: {}\r\n\r\n",
            6 * MIB,
            11 * MIB
        );
        raw_request(&second, &head, &data[6 * MIB..13 * MIB], true).await;

        // The first instance reports what was kept (never less than before) and takes the
        // rest once the cut PATCH has let go of the upload.
        let tus = Tus::new(&first);
        let here = on(&first);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        let offset = loop {
            let offset = tus.offset(&here).await;
            assert!(offset >= 6 * MIB as u64, "HEAD never goes backwards: {offset}");
            let rest = tus.patch(&here, offset, &data[offset as usize..]).send().await.unwrap();
            if rest.status() == StatusCode::NO_CONTENT {
                break offset;
            }
            assert!(std::time::Instant::now() < deadline, "the cut PATCH never let go: {}", rest.status());
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        assert!(offset <= 13 * MIB as u64);
        let done = tus.request(Method::HEAD, &here).send().await.unwrap();
        assert_eq!(done.headers()["upload-offset"].to_str().unwrap(), data.len().to_string());
        assert_eq!(tus.object(&here).await, data, "byte-identical, whichever instance took each PATCH");
        drop(second);
        drop(redis);
    }
}

/// Requests that name the IETF draft are told apart and (for now) refused.
#[tokio::test]
async fn a_request_speaking_the_ietf_draft_is_not_taken_for_tus() {
    let app = spawn_app();
    let response = app
        .client
        .post(app.url("/files/"))
        .header("Upload-Draft-Interop-Version", "6")
        .header("Upload-Complete", "?1")
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::PRECONDITION_FAILED, "unsupported-version").await;
}

/// CORS for `server.cors_origins`: preflights pass, tus headers and `Location` are
/// exposed, the native API is covered too, and other origins get no CORS headers.
#[tokio::test]
async fn cors_origins_open_files_and_the_native_api_to_the_listed_origins_only() {
    const APP: &str = "https://app.example.com";
    let app = spawn_app_with(|s| s.server.cors_origins = vec![APP.into()]);
    let preflight = |origin: &str, path: &str| {
        app.client
            .request(Method::OPTIONS, app.url(path))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "PATCH")
            .header("Access-Control-Request-Headers", "tus-resumable,upload-offset,upload-checksum,content-type")
    };
    let response = preflight(APP, "/files/some-upload").send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let h = response.headers();
    assert_eq!(header(h, "access-control-allow-origin"), Some(APP));
    assert!(header(h, "access-control-allow-methods").unwrap().contains("PATCH"));
    let allowed = header(h, "access-control-allow-headers").unwrap().to_ascii_lowercase();
    assert!(allowed.contains("upload-offset") && allowed.contains("tus-resumable"), "{allowed}");

    let created = app
        .client
        .post(app.url("/files/"))
        .header("Origin", APP)
        .header("Tus-Resumable", TUS)
        .header("Upload-Length", 3)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(header(created.headers(), "access-control-allow-origin"), Some(APP));
    let exposed = header(created.headers(), "access-control-expose-headers").unwrap().to_ascii_lowercase();
    for name in ["location", "upload-offset", "upload-length", "upload-expires", "tus-resumable", "x-request-id"] {
        assert!(exposed.contains(name), "{name} in {exposed}");
    }

    let native = app.client.post(app.url("/v1/uploads")).header("Origin", APP).body("{}").send().await.unwrap();
    assert_eq!(header(native.headers(), "access-control-allow-origin"), Some(APP), "the native API too");

    let stranger = app.client.get(app.url("/healthz")).header("Origin", "https://evil.example").send().await.unwrap();
    assert_eq!(stranger.status(), StatusCode::OK, "served, but the browser keeps it from the page");
    assert!(stranger.headers().get("access-control-allow-origin").is_none());

    let closed = spawn_app();
    let response = closed.client.get(closed.url("/healthz")).header("Origin", APP).send().await.unwrap();
    assert!(response.headers().get("access-control-allow-origin").is_none(), "no origins: no CORS");
}
