//! Hostile and malformed requests, sent raw over TCP: each gets a clean 4xx problem (or,
//! where HTTP/1.1 framing itself is broken, the HTTP layer's bare 400 or 431, and a closed
//! connection), nothing is stored for any of them, and the server keeps serving.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

/// What a case must get.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// A problem+json answer with this status and code.
    Problem(u16, &'static str),
    /// Broken HTTP/1.1 framing: actix's HTTP layer answers this bare status, with no body,
    /// and closes the connection. No route ever sees the request, so no problem body can be
    /// made for it (actix-http offers no hook for its parse errors).
    Framing(u16),
}
use Expect::{Framing, Problem};

/// The parts of an answer the table checks.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

/// Sends `request` on a fresh connection; reads one answer (stopping once it is whole, so
/// an unread body does not keep the test waiting), or `None` when the server closes first.
async fn exchange(app: &TestApp, request: &[u8]) -> Option<Answer> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    // A server may close mid-send on a request it refuses: that is an answer too.
    let _ = stream.write_all(request).await;
    let mut got = Vec::new();
    let deadline = std::time::Duration::from_secs(10);
    let read = async {
        let mut buf = [0u8; 8192];
        loop {
            if let Some(answer) = parse(&got) {
                return Some(answer);
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return parse(&got),
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(deadline, read).await.expect("the server answers or closes within 10 s")
}

/// One whole HTTP/1.1 answer at the start of `bytes`, if there is one yet.
fn parse(bytes: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(bytes);
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_owned())
        })
    };
    let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    if rest.len() < length {
        return None;
    }
    Some(Answer { status, content_type: header("content-type").unwrap_or_default(), body: rest[..length].to_owned() })
}

/// A request: `head_line` (method and target), extra header lines, and a body (its
/// Content-Length added unless `headers` sets framing itself).
fn req(line: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{line} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n").into_bytes();
    let framed = headers.iter().any(|h| {
        let h = h.to_ascii_lowercase();
        h.starts_with("content-length") || h.starts_with("transfer-encoding")
    });
    for h in headers {
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !framed && !body.is_empty() {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// `request` (with no body) with one more header line of any bytes.
fn with_raw_header(mut request: Vec<u8>, line: &[u8]) -> Vec<u8> {
    request.truncate(request.len() - 2);
    request.extend_from_slice(line);
    request.extend_from_slice(b"\r\n\r\n");
    request
}

fn raw(bytes: &[u8]) -> Vec<u8> {
    bytes.to_vec()
}

#[tokio::test]
async fn malformed_requests_get_clean_refusals_and_store_nothing() {
    let app = spawn_app();
    let up = app.create(2 * CHUNK, None).await;
    let id = up.id.clone();
    let auth = format!("Authorization: Bearer {}", up.token);
    let auth = auth.as_str();
    let chunk = format!("PUT /v1/uploads/{id}/chunks/0");
    let chunk = chunk.as_str();
    let md5 = format!("Content-MD5: {}", content_md5(&[0u8; CHUNK as usize]));
    let md5 = md5.as_str();
    let json = "Content-Type: application/json";
    let create = "POST /v1/uploads";
    let form = "POST /v1/uploads/form";
    let long = "a".repeat(100_000);
    let longer = "a".repeat(200_000);
    let nested =
        format!("{{\"filename\":\"a\",\"size\":1,\"metadata\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
    let big_json = format!("{{\"filename\":\"{}\",\"size\":1}}", "a".repeat(70_000));
    let huge_auth = format!("Authorization: Bearer {}", "x".repeat(7000));
    let other_upload = uuid::Uuid::new_v4();
    let bad_utf8_json: &[u8] = b"{\"filename\":\"\xff\xfe\",\"size\":1}";

    #[rustfmt::skip]
    let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        // Framing: the HTTP layer refuses these before any route runs.
        ("overlong URL", req(&format!("GET /{long}"), &[], b""), Framing(400)),
        ("overlong header", req("GET /healthz", &[&format!("X-Long: {longer}")], b""), Framing(431)),
        ("too many headers", req("GET /healthz", &vec!["X-A: 1"; 200], b""), Framing(431)),
        ("null byte in the path", req("GET /v1/uploads/\0", &[], b""), Framing(400)),
        ("null byte in a header", req("GET /healthz", &["X-A: a\0b"], b""), Framing(400)),
        ("raw bad UTF-8 in the path", raw(b"GET /v1/uploads/\xff\xfe HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"), Framing(400)),
        ("two different Content-Lengths", req(chunk, &[auth, md5, "Content-Length: 10", "Content-Length: 20"], b""), Framing(400)),
        ("negative Content-Length", req(chunk, &[auth, md5, "Content-Length: -1"], b""), Framing(400)),
        ("Content-Length not a number", req(chunk, &[auth, md5, "Content-Length: ten"], b""), Framing(400)),
        ("Content-Length over u64", req(chunk, &[auth, md5, "Content-Length: 99999999999999999999"], b""), Framing(400)),
        ("Content-Length with chunked encoding", req(chunk, &[auth, md5, "Content-Length: 4096", "Transfer-Encoding: chunked"], b"0\r\n\r\n"), Framing(400)),
        ("unknown transfer encoding", req(chunk, &[auth, md5, "Transfer-Encoding: rot13"], b""), Framing(400)),
        ("garbage request line", raw(b"GARBAGE\r\n\r\n"), Framing(400)),
        ("unknown HTTP version", raw(b"GET /healthz HTTP/9.9\r\nHost: t\r\n\r\n"), Framing(400)),
        ("header without a colon", req("GET /healthz", &["NoColonHere"], b""), Framing(400)),
        ("space before a header colon", req("GET /healthz", &["X-A : 1"], b""), Framing(400)),
        ("broken chunked form body", req(form, &["Content-Type: multipart/form-data; boundary=XyZ", "Transfer-Encoding: chunked"], b"zz\r\nabc\r\n"), Problem(400, "invalid-request")),
        // Paths and methods.
        ("unknown path", req("GET /nothing/here", &[], b""), Problem(404, "not-found")),
        ("dot segments", req("GET /v1/uploads/../../etc/passwd", &[], b""), Problem(404, "not-found")),
        ("unknown method", req("FOO /v1/uploads", &[], b""), Problem(405, "method-not-allowed")),
        ("known path, wrong method", req(&format!("PATCH /v1/uploads/{id}"), &[auth], b""), Problem(405, "method-not-allowed")),
        ("percent-encoded bad UTF-8 id", req("GET /v1/uploads/%FF%FE", &[auth], b""), Problem(404, "upload-not-found")),
        ("upload id not a UUID", req("GET /v1/uploads/12345", &[auth], b""), Problem(404, "upload-not-found")),
        ("upload id upper case", req(&format!("GET /v1/uploads/{}", id.to_uppercase()), &[auth], b""), Problem(404, "upload-not-found")),
        ("upload id overlong", req(&format!("GET /v1/uploads/{}", "9".repeat(5000)), &[auth], b""), Problem(404, "upload-not-found")),
        ("upload id with a null escape", req("GET /v1/uploads/%00", &[auth], b""), Problem(404, "upload-not-found")),
        ("empty chunk index", req(&format!("PUT /v1/uploads/{id}/chunks/"), &[auth, md5], b""), Problem(404, "not-found")),
        ("chunk index -1", req(&format!("PUT /v1/uploads/{id}/chunks/-1"), &[auth, md5, "Content-Length: 0"], b""), Problem(400, "invalid-chunk-index")),
        ("chunk index 1e3", req(&format!("PUT /v1/uploads/{id}/chunks/1e3"), &[auth, md5, "Content-Length: 0"], b""), Problem(400, "invalid-chunk-index")),
        ("chunk index over u64", req(&format!("PUT /v1/uploads/{id}/chunks/99999999999999999999"), &[auth, md5, "Content-Length: 0"], b""), Problem(400, "invalid-chunk-index")),
        ("chunk index past the plan", req(&format!("PUT /v1/uploads/{id}/chunks/2"), &[auth, md5, "Content-Length: 4096"], b""), Problem(400, "invalid-chunk-index")),
        ("chunk index with a null escape", req(&format!("PUT /v1/uploads/{id}/chunks/0%00"), &[auth, md5, "Content-Length: 0"], b""), Problem(400, "invalid-chunk-index")),
        // Credentials.
        ("no Authorization", req(chunk, &[md5, "Content-Length: 0"], b""), Problem(401, "missing-token")),
        ("empty Authorization", req(chunk, &["Authorization: ", md5, "Content-Length: 0"], b""), Problem(401, "missing-token")),
        ("Bearer without a token", req(chunk, &["Authorization: Bearer", md5, "Content-Length: 0"], b""), Problem(401, "missing-token")),
        ("Basic credentials", req(chunk, &["Authorization: Basic YTpi", md5, "Content-Length: 0"], b""), Problem(401, "missing-token")),
        ("bad UTF-8 Authorization", with_raw_header(req(chunk, &[md5, "Content-Length: 0"], b""), b"Authorization: Bearer \xff\xfe"), Problem(401, "missing-token")),
        ("huge Authorization", req(chunk, &[&huge_auth, md5, "Content-Length: 0"], b""), Problem(403, "invalid-token")),
        ("another upload's token", req(&format!("PUT /v1/uploads/{other_upload}/chunks/0"), &[auth, md5, "Content-Length: 0"], b""), Problem(403, "invalid-token")),
        ("malformed token", req(chunk, &["Authorization: Bearer !!!***", md5, "Content-Length: 0"], b""), Problem(403, "invalid-token")),
        // Chunk headers.
        ("chunk without a length", req(chunk, &[auth, md5, "Transfer-Encoding: chunked"], b"0\r\n\r\n"), Problem(411, "length-required")),
        ("chunk over the limit", req(chunk, &[auth, md5, &format!("Content-Length: {}", MAX_CHUNK + 1)], b""), Problem(413, "chunk-too-large")),
        ("chunk of the wrong length", req(chunk, &[auth, md5, "Content-Length: 1"], b"x"), Problem(400, "chunk-size-mismatch")),
        ("Content-MD5 not base64", req(chunk, &[auth, "Content-MD5: %%%", "Content-Length: 0"], b""), Problem(400, "invalid-request")),
        ("Content-MD5 in hex", req(chunk, &[auth, "Content-MD5: 0cc175b9c0f1b6a831c399e269772661", "Content-Length: 0"], b""), Problem(400, "invalid-request")),
        ("Content-MD5 of 15 bytes", req(chunk, &[auth, "Content-MD5: AAAAAAAAAAAAAAAAAAAA", "Content-Length: 0"], b""), Problem(400, "invalid-request")),
        ("Content-MD5 empty", req(chunk, &[auth, "Content-MD5: ", "Content-Length: 0"], b""), Problem(400, "invalid-request")),
        ("chunk with a wrong MD5", req(chunk, &[auth, "Content-MD5: AAAAAAAAAAAAAAAAAAAAAA==", "Content-Length: 4096"], &[0u8; CHUNK as usize]), Problem(422, "checksum-mismatch")),
        // Creating: JSON.
        ("JSON with bad UTF-8", req(create, &[json], bad_utf8_json), Problem(400, "invalid-request")),
        ("deeply nested JSON", req(create, &[json], nested.as_bytes()), Problem(400, "invalid-request")),
        ("JSON over 64 KiB", req(create, &[json], big_json.as_bytes()), Problem(400, "invalid-request")),
        ("truncated JSON", req(create, &[json], b"{\"filename\":"), Problem(400, "invalid-request")),
        ("empty JSON body", req(create, &[json, "Content-Length: 0"], b""), Problem(400, "invalid-request")),
        ("JSON that is not an object", req(create, &[json], b"[1,2,3]"), Problem(400, "invalid-request")),
        ("size 1e400", req(create, &[json], br#"{"filename":"a","size":1e400}"#), Problem(400, "invalid-request")),
        ("size -1", req(create, &[json], br#"{"filename":"a","size":-1}"#), Problem(400, "invalid-request")),
        ("size u64::MAX + 1", req(create, &[json], br#"{"filename":"a","size":18446744073709551616}"#), Problem(400, "invalid-request")),
        ("size as a string", req(create, &[json], br#"{"filename":"a","size":"10"}"#), Problem(400, "invalid-request")),
        ("size 1.5", req(create, &[json], br#"{"filename":"a","size":1.5}"#), Problem(400, "invalid-request")),
        ("chunk_size 0", req(create, &[json], br#"{"filename":"a","size":10,"chunk_size":0}"#), Problem(400, "invalid-chunk-size")),
        ("size u64::MAX", req(create, &[json], br#"{"filename":"a","size":18446744073709551615}"#), Problem(413, "file-too-large")),
        ("no filename", req(create, &[json], br#"{"size":10}"#), Problem(400, "invalid-request")),
        ("empty filename", req(create, &[json], br#"{"filename":"","size":10}"#), Problem(400, "invalid-request")),
        ("metadata not strings", req(create, &[json], br#"{"filename":"a","size":10,"metadata":{"a":{"b":1}}}"#), Problem(400, "invalid-request")),
        ("JSON as text/plain", req(create, &["Content-Type: text/plain"], br#"{"filename":"a","size":10}"#), Problem(400, "invalid-request")),
        ("JSON without a content type", req(create, &[], br#"{"filename":"a","size":10}"#), Problem(400, "invalid-request")),
        // Creating: forms.
        ("form without a boundary", req(form, &["Content-Type: multipart/form-data"], b"--x\r\n"), Problem(400, "invalid-request")),
        ("form as text/plain", req(form, &["Content-Type: text/plain"], b"hello"), Problem(400, "invalid-request")),
        ("form with a garbage body", req(form, &["Content-Type: multipart/form-data; boundary=XyZ"], b"no boundary here at all"), Problem(400, "invalid-request")),
        ("form part without a disposition", req(form, &["Content-Type: multipart/form-data; boundary=XyZ"], b"--XyZ\r\nX-A: 1\r\n\r\nabc\r\n--XyZ--\r\n"), Problem(400, "invalid-request")),
        ("form cut before its end", req(form, &["Content-Type: multipart/form-data; boundary=XyZ"], b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nabc"), Problem(400, "incomplete-body")),
    ];
    assert!(cases.len() >= 40, "{} cases", cases.len());

    let mut failures = Vec::new();
    for (name, request, expect) in &cases {
        let answer = exchange(&app, request).await;
        let ok = match (expect, &answer) {
            (Framing(status), Some(a)) => a.status == *status && a.body.is_empty(),
            (Framing(_), None) => false,
            (Problem(status, code), Some(a)) => {
                let body: Value = serde_json::from_str(&a.body).unwrap_or(Value::Null);
                a.status == *status && a.content_type == "application/problem+json" && body["code"] == *code
            }
            (Problem(..), None) => false,
        };
        if !ok {
            failures.push(format!("{name}: expected {expect:?}, got {answer:?}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));

    // Nothing of any of them was kept.
    let status: Value = app.status(&up).await.json().await.unwrap();
    assert_eq!(status["received_chunks"], 0);
    assert!(!app.staging_dir(&up.id).exists());
    assert_eq!(app.temp_files(), 0);
    let objects: Vec<_> = std::fs::read_dir(app.dir.join("objects")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(objects, vec![std::ffi::OsString::from(".ferry")], "no object was stored");
    let metrics = app.metrics().await;
    assert!(metrics.contains("ferry_uploads_created_total 1"), "only the test's own upload was opened");
    assert!(metrics.contains("ferry_chunks_received_total 0"));

    // And the server still serves a whole upload.
    let data = bytes(30, 2 * CHUNK as usize);
    let last = app.put_all(&up, &data).await;
    assert_eq!(last["state"], "completed");
    assert_eq!(std::fs::read(app.object_path(&up.key)).unwrap(), data);
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), StatusCode::OK);
}
