//! The pre-create hook (`hooks.pre_create`): before any upload is created, by any protocol,
//! ferry POSTs what the upload would be to the operator's service and waits for its word.
//! 2xx: go on (its JSON body may replace the metadata); 4xx: refused, with the hook's
//! message; anything else (no answer in time, 5xx, 3xx, an answer ferry cannot use): the
//! hook is unavailable and nothing is created. The call runs on the I/O runtime, so its
//! pooled connection outlives the worker that opened it.

use std::fmt;
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use reqwest::{StatusCode, Url};
use serde::Serialize;
use serde_json::Value;

use super::{check_metadata, NewAppendUpload, NewFormFile, NewUpload, UploadError};
use crate::domain::{Metadata, Transfer};
use crate::metrics::Metrics;

/// Most bytes of a hook's answer read; a longer answer is not a usable one.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Most bytes of a hook's refusal message passed on to the client.
const MAX_MESSAGE_BYTES: usize = 1024;

/// The detail of a refusal whose answer carries no `message`.
const DEFAULT_REFUSAL: &str = "the upload was refused by the server's approval hook";

/// The protocol an upload is created through, as the hook is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// `POST /v1/uploads`.
    Native,
    /// tus 1.0 at `/files/`.
    Tus,
    /// `POST /v1/uploads/form`.
    Form,
}

/// Who asks for an upload, and how: what the hook is told besides the upload itself.
#[derive(Clone, Serialize)]
pub struct Caller {
    /// The protocol of the creating request.
    pub protocol: Protocol,
    /// How the bytes will travel.
    pub transfer: Transfer,
    /// The creating request's `Authorization` header, as it came.
    pub authorization: Option<String>,
}

impl Caller {
    /// A caller whose bytes go through ferry.
    pub fn relay(protocol: Protocol, authorization: Option<String>) -> Self {
        Self { protocol, transfer: Transfer::Relay, authorization }
    }
}

impl fmt::Debug for Caller {
    // The credential stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("protocol", &self.protocol)
            .field("transfer", &self.transfer)
            .field("authorization", &self.authorization.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// What ferry POSTs to the hook: `{"filename", "size", "content_type", "metadata",
/// "protocol", "transfer", "authorization"}`.
#[derive(Debug, Serialize)]
pub struct HookRequest<'a> {
    /// The file's name, as the client sent it.
    pub filename: &'a str,
    /// The declared size; `None` when not known yet (a deferred tus length, a form).
    pub size: Option<u64>,
    /// The content type, if any.
    pub content_type: Option<&'a str>,
    /// The client's metadata.
    pub metadata: &'a Metadata,
    /// Protocol, transfer and credentials.
    #[serde(flatten)]
    pub caller: &'a Caller,
}

impl<'a> From<&'a NewUpload> for HookRequest<'a> {
    fn from(new: &'a NewUpload) -> Self {
        let content_type = new.content_type.as_deref();
        Self {
            filename: &new.filename,
            size: Some(new.size),
            content_type,
            metadata: &new.metadata,
            caller: &new.caller,
        }
    }
}

impl<'a> From<&'a NewAppendUpload> for HookRequest<'a> {
    fn from(new: &'a NewAppendUpload) -> Self {
        let content_type = new.content_type.as_deref();
        Self { filename: &new.filename, size: new.length, content_type, metadata: &new.metadata, caller: &new.caller }
    }
}

impl<'a> From<&'a NewFormFile> for HookRequest<'a> {
    fn from(new: &'a NewFormFile) -> Self {
        // A form file's length is known only once it is stored.
        let content_type = new.content_type.as_deref();
        Self { filename: &new.filename, size: None, content_type, metadata: &new.metadata, caller: &new.caller }
    }
}

/// Why the hook gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// No connection, or no whole answer within `hooks.timeout_secs`.
    #[error("the pre-create hook did not answer")]
    NoAnswer(#[source] reqwest::Error),
    /// A status that neither approves nor refuses: 1xx, 3xx (redirects are not followed), 5xx.
    #[error("the pre-create hook answered {0}")]
    Status(StatusCode),
    /// A 2xx whose body ferry cannot use.
    #[error("the pre-create hook's answer is unusable: {0}")]
    Answer(String),
    /// The call's task ended without an answer (the I/O runtime is going away).
    #[error("the pre-create hook's call was cut off")]
    Aborted,
}

/// The hook ferry asks before it creates an upload (`hooks.pre_create`). Cloning shares
/// the connection pool.
#[derive(Clone)]
pub struct PreCreateHook {
    client: reqwest::Client,
    url: Url,
    metrics: Metrics,
}

impl PreCreateHook {
    /// A hook at `url` given `timeout` for its whole answer. Redirects are not followed.
    pub fn new(url: Url, timeout: Duration, metrics: Metrics) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client, url, metrics })
    }

    /// Asks the hook whether `request` may be created: `Ok(Some(metadata))` when its answer
    /// replaces the metadata, `Ok(None)` to go on as asked; `RejectedByHook` on a 4xx;
    /// `HookUnavailable` when it gave no usable answer (replacement metadata over the
    /// client's limits included: the operator's hook is at fault, not the client).
    pub async fn approve(&self, request: HookRequest<'_>) -> Result<Option<Metadata>, UploadError> {
        let verdict = match self.call(&request).await {
            Ok((status, answer)) => judge(status, &answer),
            Err(err) => Err(err.into()),
        };
        let outcome = match &verdict {
            Ok(_) => "approved",
            Err(UploadError::RejectedByHook(_)) => "rejected",
            Err(_) => "unavailable",
        };
        self.metrics.pre_create_hook_called(outcome);
        verdict
    }

    /// POSTs `request` and reads at most `MAX_ANSWER_BYTES + 1` bytes of the answer.
    async fn call(&self, request: &HookRequest<'_>) -> Result<(StatusCode, Vec<u8>), HookError> {
        let body =
            serde_json::to_vec(request).map_err(|e| HookError::Answer(format!("cannot encode the request: {e}")))?;
        let call = self.client.post(self.url.clone()).header(CONTENT_TYPE, "application/json").body(body);
        let exchange = crate::runtime::spawn(async move {
            let mut response = call.send().await?;
            let status = response.status();
            let mut answer = Vec::new();
            while let Some(piece) = response.chunk().await? {
                answer.extend_from_slice(&piece);
                if answer.len() > MAX_ANSWER_BYTES {
                    break;
                }
            }
            Ok((status, answer))
        });
        // Without the URL: it may carry a credential of the hook's own.
        exchange
            .await
            .map_err(|_| HookError::Aborted)?
            .map_err(|e: reqwest::Error| HookError::NoAnswer(e.without_url()))
    }
}

/// What the hook's answer means.
fn judge(status: StatusCode, answer: &[u8]) -> Result<Option<Metadata>, UploadError> {
    if status.is_success() {
        return replacement(answer).map_err(|why| HookError::Answer(why).into());
    }
    if status.is_client_error() {
        tracing::info!(status = status.as_u16(), "the pre-create hook refused the upload");
        return Err(UploadError::RejectedByHook(message(answer)));
    }
    Err(HookError::Status(status).into())
}

/// The metadata a 2xx answer puts in place of the client's: none for an empty body or one
/// without `metadata` (or with `null`); otherwise it must be an object of strings within
/// the client's limits.
fn replacement(answer: &[u8]) -> Result<Option<Metadata>, String> {
    if answer.len() > MAX_ANSWER_BYTES {
        return Err(format!("it is over {MAX_ANSWER_BYTES} bytes"));
    }
    if answer.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let Ok(Value::Object(mut answer)) = serde_json::from_slice(answer) else {
        return Err("it is not a JSON object".into());
    };
    let metadata = match answer.remove("metadata") {
        None | Some(Value::Null) => return Ok(None),
        Some(metadata) => metadata,
    };
    let metadata: Metadata =
        serde_json::from_value(metadata).map_err(|_| "its `metadata` is not an object of strings".to_owned())?;
    check_metadata(&metadata).map_err(|e| format!("its `metadata` breaks the client's limits: {e}"))?;
    Ok(Some(metadata))
}

/// A refusal's detail: the answer's `message`, without control characters and cut to
/// `MAX_MESSAGE_BYTES`, or a fixed sentence.
fn message(answer: &[u8]) -> String {
    let message = match serde_json::from_slice::<Value>(answer) {
        Ok(Value::Object(mut answer)) => match answer.remove("message") {
            Some(Value::String(message)) => message,
            _ => String::new(),
        },
        _ => String::new(),
    };
    let clean: String = message.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let mut clean = clean.trim();
    if clean.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES;
        while !clean.is_char_boundary(end) {
            end -= 1;
        }
        clean = clean[..end].trim_end();
    }
    if clean.is_empty() {
        DEFAULT_REFUSAL.to_owned()
    } else {
        clean.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(status: u16, body: &str) -> String {
        match judge(StatusCode::from_u16(status).unwrap(), body.as_bytes()) {
            Err(UploadError::RejectedByHook(detail)) => detail,
            other => panic!("{status} {body}: {other:?}"),
        }
    }

    fn unusable(status: u16, body: &str) -> bool {
        matches!(judge(StatusCode::from_u16(status).unwrap(), body.as_bytes()), Err(UploadError::HookUnavailable(_)))
    }

    #[test]
    fn a_2xx_goes_on_and_may_replace_the_metadata() {
        for (body, expected) in [
            ("", None),
            (" \n", None),
            ("{}", None),
            (r#"{"metadata": null, "other": 1}"#, None),
            (r#"{"metadata": {"owner": "7"}}"#, Some(Metadata::from([("owner".into(), "7".into())]))),
            (r#"{"metadata": {}}"#, Some(Metadata::new())),
        ] {
            assert_eq!(judge(StatusCode::OK, body.as_bytes()).unwrap(), expected, "{body}");
        }
        assert_eq!(judge(StatusCode::NO_CONTENT, b"").unwrap(), None);
    }

    #[test]
    fn a_2xx_ferry_cannot_use_is_the_hook_being_unavailable() {
        let big = format!(r#"{{"metadata": {{"k": "{}"}}}}"#, "x".repeat(5000));
        for body in ["OK", "[]", "null", r#"{"metadata": {"n": 1}}"#, r#"{"metadata": "a"}"#, &big] {
            assert!(unusable(200, body), "{body}");
        }
        assert!(unusable(200, &" ".repeat(MAX_ANSWER_BYTES + 1)), "an answer over the limit");
    }

    #[test]
    fn a_4xx_refuses_with_the_hooks_message_made_safe() {
        assert_eq!(refusal(403, r#"{"message": "quota exceeded"}"#), "quota exceeded");
        assert_eq!(refusal(422, "{\"message\": \"line one\\nline\\u0007two \"}"), "line one line two");
        assert_eq!(refusal(404, "<html>not found</html>"), DEFAULT_REFUSAL);
        assert_eq!(refusal(400, r#"{"message": 42}"#), DEFAULT_REFUSAL);
        assert_eq!(refusal(400, r#"{"message": "\u0000 "}"#), DEFAULT_REFUSAL);
        let long = refusal(400, &format!(r#"{{"message": "{}"}}"#, "é".repeat(1000)));
        assert!(long.len() <= MAX_MESSAGE_BYTES && long.len() > MAX_MESSAGE_BYTES - 2, "{}", long.len());
    }

    #[test]
    fn other_statuses_are_the_hook_being_unavailable() {
        for status in [101, 301, 302, 307, 500, 502, 503] {
            assert!(unusable(status, r#"{"message": "no"}"#), "{status}");
        }
    }

    #[test]
    fn the_request_carries_every_field_and_hides_the_credential_from_debug() {
        let caller = Caller::relay(Protocol::Tus, Some("Bearer k".into()));
        let metadata = Metadata::from([("a".into(), "b".into())]);
        let request =
            HookRequest { filename: "f.bin", size: None, content_type: None, metadata: &metadata, caller: &caller };
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            serde_json::json!({"filename": "f.bin", "size": null, "content_type": null, "metadata": {"a": "b"},
                "protocol": "tus", "transfer": "relay", "authorization": "Bearer k"})
        );
        assert!(!format!("{request:?}").contains("Bearer k"));
    }
}
