//! The HTTP API as the client sees it: one method per call, each retried by policy.

use std::time::Duration;

use bytes::Bytes;
use reqwest::{RequestBuilder, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::retry::{Attempts, RetryPolicy};

/// A problem+json answer the client will not retry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Problem {
    /// The HTTP status.
    #[serde(default)]
    pub status: u16,
    /// The stable problem code.
    #[serde(default)]
    pub code: String,
    /// What went wrong, in words.
    #[serde(default)]
    pub detail: String,
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused the request for good.
    #[error("the server refused: {} ({}, HTTP {})", .0.detail, .0.code, .0.status)]
    Refused(Problem),
    /// Every retry failed until the time was up.
    #[error("gave up after {attempts} failed attempts: {last}")]
    GaveUp {
        /// Failed attempts.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// The local file could not be read.
    #[error("cannot read the file: {0}")]
    File(#[from] std::io::Error),
    /// The server answered something the client does not understand.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The problem code, when the server refused.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Refused(problem) => Some(&problem.code),
            _ => None,
        }
    }
}

/// Why a part's PUT to its signed URL did not store it.
#[derive(Debug)]
pub enum PartPut {
    /// The URL is no longer valid: ask for a fresh one.
    Expired,
    /// A failure that may pass (a 5xx, a dropped connection).
    Retry(String),
    /// Refused for good.
    Refused(Problem),
}

/// A ferry server, reached over HTTP.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    server: String,
    retry: RetryPolicy,
}

enum Verdict {
    Retry(String, Option<Duration>),
    Refuse(Problem),
}

impl Api {
    /// A client of the server at `server` (e.g. `http://127.0.0.1:8080`).
    pub fn new(server: &str, retry: RetryPolicy) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(Self { http, server: server.trim_end_matches('/').to_owned(), retry })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    /// Opens an upload.
    pub async fn create(&self, body: &Value, api_key: Option<&str>) -> Result<Value, ClientError> {
        self.send(|| {
            let request = self.http.post(self.url("/v1/uploads")).json(body);
            match api_key {
                Some(key) => request.bearer_auth(key),
                None => request,
            }
        })
        .await
    }

    /// Sends one chunk with its MD5 (base64).
    pub async fn put_chunk(
        &self,
        id: &str,
        token: &str,
        index: u32,
        data: Bytes,
        md5: &str,
    ) -> Result<Value, ClientError> {
        let url = self.url(&format!("/v1/uploads/{id}/chunks/{index}"));
        self.send(|| self.http.put(&url).bearer_auth(token).header("Content-MD5", md5).body(data.clone())).await
    }

    /// Signed URLs for `count` parts of a direct upload from part `start`.
    pub async fn parts(&self, id: &str, token: &str, start: u32, count: u32) -> Result<Value, ClientError> {
        let url = self.url(&format!("/v1/uploads/{id}/parts"));
        let body = serde_json::json!({ "start": start, "count": count });
        self.send(|| self.http.post(&url).bearer_auth(token).json(&body)).await
    }

    /// Confirms a direct upload whose parts are all sent, listing their ETags.
    pub async fn complete(&self, id: &str, token: &str, parts: &Value) -> Result<Value, ClientError> {
        let url = self.url(&format!("/v1/uploads/{id}/complete"));
        let body = serde_json::json!({ "parts": parts });
        self.send(|| self.http.post(&url).bearer_auth(token).json(&body)).await
    }

    /// PUTs `data` to a part's signed URL with exactly its `headers`: the ETag the store
    /// answers, or why not.
    pub async fn put_part(&self, url: &str, headers: &Value, data: Bytes) -> Result<String, PartPut> {
        let mut request = self.http.put(url).body(data);
        for (name, value) in headers.as_object().into_iter().flatten() {
            request = request.header(name.as_str(), value.as_str().unwrap_or_default());
        }
        let response = request.send().await.map_err(|e| PartPut::Retry(describe(&e)))?;
        let status = response.status();
        if status.is_success() {
            let etag = response.headers().get(reqwest::header::ETAG).and_then(|v| v.to_str().ok());
            return Ok(etag.unwrap_or_default().trim_matches('"').to_owned());
        }
        Err(match judge(response).await {
            // A signed URL past its time: the store says 403 (ferry's own, 403 too).
            _ if status == StatusCode::FORBIDDEN => PartPut::Expired,
            Verdict::Retry(reason, _) => PartPut::Retry(reason),
            Verdict::Refuse(problem) => PartPut::Refused(problem),
        })
    }

    /// The upload's status.
    pub async fn status(&self, id: &str, token: &str) -> Result<Value, ClientError> {
        self.send(|| self.http.get(self.url(&format!("/v1/uploads/{id}"))).bearer_auth(token)).await
    }

    /// Resumes the upload: extends it and lists what is missing.
    pub async fn resume(&self, id: &str, token: &str) -> Result<Value, ClientError> {
        self.send(|| self.http.post(self.url(&format!("/v1/uploads/{id}/resume"))).bearer_auth(token)).await
    }

    /// Cancels the upload.
    pub async fn cancel(&self, id: &str, token: &str) -> Result<(), ClientError> {
        self.send(|| self.http.delete(self.url(&format!("/v1/uploads/{id}"))).bearer_auth(token)).await.map(drop)
    }

    /// Sends the request `make` builds until it succeeds, is refused for good, or the
    /// retry policy gives up. A 204 answers `null`.
    async fn send(&self, make: impl Fn() -> RequestBuilder) -> Result<Value, ClientError> {
        let mut attempts = Attempts::new(self.retry);
        loop {
            let verdict = match make().send().await {
                Ok(response) if response.status() == StatusCode::NO_CONTENT => return Ok(Value::Null),
                Ok(response) if response.status().is_success() => {
                    return response.json().await.map_err(|e| ClientError::Protocol(e.to_string()))
                }
                Ok(response) => judge(response).await,
                Err(err) => Verdict::Retry(describe(&err), None),
            };
            match verdict {
                Verdict::Refuse(problem) => return Err(ClientError::Refused(problem)),
                Verdict::Retry(reason, retry_after) => match attempts.next_delay(retry_after) {
                    Some(delay) => {
                        tracing::debug!(%reason, ?delay, "retrying");
                        tokio::time::sleep(delay).await;
                    }
                    None => return Err(ClientError::GaveUp { attempts: attempts.failures(), last: reason }),
                },
            }
        }
    }
}

/// Whether an error answer is worth another try: 5xx, 429 and a checksum mismatch (the
/// bytes were damaged on the way) are; any other refusal is final.
async fn judge(response: reqwest::Response) -> Verdict {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .map(Duration::from_secs);
    let text = response.text().await.unwrap_or_default();
    let problem = serde_json::from_str::<Problem>(&text).unwrap_or_else(|_| Problem {
        status: status.as_u16(),
        code: format!("http-{}", status.as_u16()),
        detail: text.chars().take(200).collect(),
    });
    let problem = Problem { status: status.as_u16(), ..problem };
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || problem.code == "checksum-mismatch" {
        Verdict::Retry(format!("HTTP {}: {}", status.as_u16(), problem.code), retry_after)
    } else {
        Verdict::Refuse(problem)
    }
}

fn describe(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The body of a creation request.
pub(crate) fn create_body(
    filename: &str,
    size: u64,
    chunk_size: Option<u64>,
    content_type: Option<&str>,
    metadata: &[(String, String)],
) -> Value {
    let mut body = json!({"filename": filename, "size": size});
    if let Some(chunk_size) = chunk_size {
        body["chunk_size"] = json!(chunk_size);
    }
    if let Some(content_type) = content_type {
        body["content_type"] = json!(content_type);
    }
    if !metadata.is_empty() {
        body["metadata"] = metadata.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    }
    body
}
