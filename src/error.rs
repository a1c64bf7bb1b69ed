//! `ApiError`: every error the API returns, as RFC 9457 problem+json. The list of stable
//! problem codes lives here, once. A 5xx body never says anything internal; the log line,
//! written inside the request's span, carries the whole cause chain.

use std::fmt;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Map, Value};

use crate::domain::{ChunkPlanError, ProcessingRefusal, UploadState};
use crate::session::SessionError;
use crate::storage::StorageError;
use crate::upload::UploadError;

/// Seconds a client should wait before retrying a 503.
const RETRY_AFTER_SECS: u32 = 2;

macro_rules! error_codes {
    ($($variant:ident = ($code:literal, $status:ident, $title:literal),)*) => {
        /// A stable, kebab-case problem code with its HTTP status and title.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode { $(#[doc = $title] $variant,)* }

        impl ErrorCode {
            /// Every code, for documentation and tests.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as it appears in `code`.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $code,)* }
            }

            /// The HTTP status that carries it.
            pub fn status(self) -> StatusCode {
                match self { $(Self::$variant => StatusCode::$status,)* }
            }

            /// A short, fixed summary.
            pub fn title(self) -> &'static str {
                match self { $(Self::$variant => $title,)* }
            }
        }
    };
}

error_codes! {
    InvalidRequest = ("invalid-request", BAD_REQUEST, "The request is malformed or a field is invalid"),
    InvalidChunkSize = ("invalid-chunk-size", BAD_REQUEST, "The chunk size is outside the allowed range"),
    TooManyChunks = ("too-many-chunks", BAD_REQUEST, "The chunk size makes too many chunks"),
    FileTooLarge = ("file-too-large", PAYLOAD_TOO_LARGE, "The file is larger than allowed"),
    UnsupportedContentType = ("unsupported-content-type", UNSUPPORTED_MEDIA_TYPE, "The content type is not accepted"),
    InvalidChunkIndex = ("invalid-chunk-index", BAD_REQUEST, "The chunk index is out of range"),
    LengthRequired = ("length-required", LENGTH_REQUIRED, "Content-Length is required"),
    ChunkSizeMismatch = ("chunk-size-mismatch", BAD_REQUEST, "The chunk length does not match the chunk plan"),
    ChunkTooLarge = ("chunk-too-large", PAYLOAD_TOO_LARGE, "The chunk is larger than allowed"),
    MissingChecksum = ("missing-checksum", BAD_REQUEST, "Content-MD5 is required"),
    ChecksumMismatch = ("checksum-mismatch", UNPROCESSABLE_ENTITY, "The chunk does not match its Content-MD5"),
    IncompleteBody = ("incomplete-body", BAD_REQUEST, "The request body ended early"),
    BodyTimeout = ("body-timeout", REQUEST_TIMEOUT, "The request body stopped arriving"),
    MissingToken = ("missing-token", UNAUTHORIZED, "Credentials are required"),
    InvalidToken = ("invalid-token", FORBIDDEN, "The credentials are not valid for this resource"),
    UploadNotFound = ("upload-not-found", NOT_FOUND, "No such upload"),
    UploadCanceled = ("upload-canceled", GONE, "The upload was canceled"),
    UploadCompleted = ("upload-completed", CONFLICT, "The upload is already completed"),
    UploadCompleting = ("upload-completing", CONFLICT, "The upload is being assembled"),
    UploadFailed = ("upload-failed", CONFLICT, "The upload has failed"),
    NotAChunkedUpload = ("not-a-chunked-upload", CONFLICT, "The upload takes appends, not chunks"),
    NotAnAppendUpload = ("not-an-append-upload", CONFLICT, "The upload takes chunks, not appends"),
    OffsetMismatch = ("offset-mismatch", CONFLICT, "The offset is not the upload's"),
    LengthExceeded = ("length-exceeded", PAYLOAD_TOO_LARGE, "The bytes go past the upload's length"),
    InvalidLength = ("invalid-length", BAD_REQUEST, "The length contradicts the upload"),
    AppendBusy = ("append-in-progress", LOCKED, "Another append to this upload is in progress"),
    DigestMismatch = ("digest-mismatch", UNPROCESSABLE_ENTITY, "The bytes do not match their declared digest"),
    PartialUploadNotFound = ("partial-upload-not-found", BAD_REQUEST, "A partial upload the final names does not exist"),
    NotAPartialUpload = ("not-a-partial-upload", BAD_REQUEST, "An upload the final names is not a partial upload"),
    PartialUploadUnfinished = ("partial-upload-unfinished", BAD_REQUEST, "A partial upload the final names is not finished"),
    FinalUploadImmutable = ("final-upload-immutable", FORBIDDEN, "A final upload takes no appends"),
    UnsupportedVersion = ("unsupported-version", PRECONDITION_FAILED, "The protocol version is not supported"),
    InvalidTransition = ("invalid-transition", CONFLICT, "The processing stage cannot move that way"),
    NotADirectUpload = ("not-a-direct-upload", CONFLICT, "The upload's bytes go through ferry, not to part URLs"),
    DirectUpload = ("direct-upload", CONFLICT, "The upload is a direct transfer: parts go to their URLs"),
    PartsMissing = ("parts-missing", CONFLICT, "The store does not hold every part"),
    PartMismatch = ("part-mismatch", CONFLICT, "A stored part is not the one the client listed"),
    RejectedByHook = ("rejected-by-hook", FORBIDDEN, "The server's approval hook refused the upload"),
    NotFound = ("not-found", NOT_FOUND, "No such resource"),
    MethodNotAllowed = ("method-not-allowed", METHOD_NOT_ALLOWED, "Method not allowed on this resource"),
    StoreUnavailable = ("store-unavailable", SERVICE_UNAVAILABLE, "The session store is unavailable"),
    StorageUnavailable = ("storage-unavailable", SERVICE_UNAVAILABLE, "The object storage is unavailable"),
    HookUnavailable = ("hook-unavailable", SERVICE_UNAVAILABLE, "The server's approval hook is unavailable"),
    ShuttingDown = ("shutting-down", SERVICE_UNAVAILABLE, "This instance is shutting down"),
    Busy = ("busy", SERVICE_UNAVAILABLE, "This instance is reading as many upload bodies as it may"),
    InternalError = ("internal-error", INTERNAL_SERVER_ERROR, "Internal error"),
}

/// An error on its way to the client as problem+json.
pub struct ApiError {
    code: ErrorCode,
    status: Option<StatusCode>,
    detail: String,
    extra: Map<String, Value>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ApiError {
    /// An error with `code` and a detail for the client.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self { code, status: None, detail: detail.into(), extra: Map::new(), source: None }
    }

    /// Adds an extension member (a figure the client can act on).
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(name.to_owned(), value.into());
        self
    }

    /// Answers with `status` instead of the code's own: a protocol adapter whose spec names
    /// another status for the same refusal (tus's 460 for a checksum mismatch).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    fn caused_by(mut self, err: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(err));
        self
    }

    /// The problem code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.detail)?;
        if let Some(source) = &self.source {
            write!(f, " ({})", chain(source.as_ref()))?;
        }
        Ok(())
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status.unwrap_or(self.code.status())
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if self.source.is_some() {
            tracing::error!(code = self.code.as_str(), cause = ?self, "request failed");
        } else if status.is_server_error() {
            tracing::warn!(code = self.code.as_str(), detail = %self.detail, "request failed");
        } else {
            tracing::info!(code = self.code.as_str(), detail = %self.detail, "request refused");
        }
        let mut body = json!({
            "type": format!("urn:ferry:problem:{}", self.code.as_str()),
            "title": self.code.title(),
            "status": status.as_u16(),
            "detail": self.detail,
            "code": self.code.as_str(),
        });
        if let Value::Object(members) = &mut body {
            members.extend(self.extra.clone());
        }
        let mut response = HttpResponse::build(status);
        response.content_type("application/problem+json");
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS.to_string()));
        }
        response.body(body.to_string())
    }
}

/// The problem code an upload error maps to.
pub fn code_of(err: &UploadError) -> ErrorCode {
    match err {
        UploadError::NotFound | UploadError::WrongState(UploadState::Expired) => ErrorCode::UploadNotFound,
        UploadError::WrongState(state) => match state {
            UploadState::Canceled => ErrorCode::UploadCanceled,
            UploadState::Completed => ErrorCode::UploadCompleted,
            UploadState::Completing => ErrorCode::UploadCompleting,
            UploadState::Failed => ErrorCode::UploadFailed,
            UploadState::Uploading | UploadState::Expired => ErrorCode::InternalError,
        },
        UploadError::InvalidRequest(_) => ErrorCode::InvalidRequest,
        UploadError::Plan(ChunkPlanError::FileTooLarge { .. }) | UploadError::FileTooLarge { .. } => {
            ErrorCode::FileTooLarge
        }
        UploadError::Plan(ChunkPlanError::InvalidChunkSize { .. }) => ErrorCode::InvalidChunkSize,
        UploadError::Plan(ChunkPlanError::TooManyChunks { .. }) => ErrorCode::TooManyChunks,
        UploadError::UnsupportedContentType(_) => ErrorCode::UnsupportedContentType,
        UploadError::InvalidChunkIndex { .. } => ErrorCode::InvalidChunkIndex,
        UploadError::ChunkTooLarge { .. } => ErrorCode::ChunkTooLarge,
        UploadError::ChunkSizeMismatch { .. } => ErrorCode::ChunkSizeMismatch,
        UploadError::MissingChecksum => ErrorCode::MissingChecksum,
        UploadError::ChecksumMismatch { .. } => ErrorCode::ChecksumMismatch,
        UploadError::IncompleteBody => ErrorCode::IncompleteBody,
        UploadError::NotAChunkedUpload => ErrorCode::NotAChunkedUpload,
        UploadError::NotAnAppendUpload => ErrorCode::NotAnAppendUpload,
        UploadError::OffsetMismatch { .. } => ErrorCode::OffsetMismatch,
        UploadError::LengthExceeded { .. } => ErrorCode::LengthExceeded,
        UploadError::InvalidLength(_) => ErrorCode::InvalidLength,
        UploadError::AppendBusy => ErrorCode::AppendBusy,
        UploadError::DigestMismatch { .. } => ErrorCode::DigestMismatch,
        UploadError::LengthRequired => ErrorCode::LengthRequired,
        UploadError::PartialNotFound { .. } => ErrorCode::PartialUploadNotFound,
        UploadError::NotAPartialUpload { .. } => ErrorCode::NotAPartialUpload,
        UploadError::PartialUnfinished { .. } => ErrorCode::PartialUploadUnfinished,
        UploadError::FinalUploadImmutable => ErrorCode::FinalUploadImmutable,
        UploadError::InvalidTransition(_) => ErrorCode::InvalidTransition,
        UploadError::NotADirectUpload => ErrorCode::NotADirectUpload,
        UploadError::DirectUpload => ErrorCode::DirectUpload,
        UploadError::PartsMissing { .. } => ErrorCode::PartsMissing,
        UploadError::PartMismatch { .. } => ErrorCode::PartMismatch,
        UploadError::RejectedByHook(_) => ErrorCode::RejectedByHook,
        UploadError::HookUnavailable(_) => ErrorCode::HookUnavailable,
        UploadError::Session(SessionError::Unavailable(_)) => ErrorCode::StoreUnavailable,
        UploadError::Session(_) => ErrorCode::InternalError,
        UploadError::Storage(StorageError::Unavailable(_)) => ErrorCode::StorageUnavailable,
        UploadError::Storage(_) => ErrorCode::InternalError,
    }
}

impl From<UploadError> for ApiError {
    fn from(err: UploadError) -> Self {
        let code = code_of(&err);
        if code.status().is_server_error() {
            return ApiError::new(code, server_detail(code)).caused_by(err);
        }
        let api = ApiError::new(code, err.to_string());
        match err {
            UploadError::WrongState(state) => api.with("state", state.as_str()),
            UploadError::Plan(ChunkPlanError::FileTooLarge { max }) | UploadError::FileTooLarge { max } => {
                api.with("max_file_size", max)
            }
            UploadError::Plan(ChunkPlanError::InvalidChunkSize { min, max }) => {
                api.with("min_chunk_size", min).with("max_chunk_size", max)
            }
            UploadError::Plan(ChunkPlanError::TooManyChunks { max, min_chunk_size }) => {
                api.with("max_chunks", max).with("min_chunk_size", min_chunk_size)
            }
            UploadError::InvalidChunkIndex { total } => api.with("total_chunks", total),
            UploadError::ChunkTooLarge { max } => api.with("max_chunk_size", max),
            UploadError::ChunkSizeMismatch { expected, .. } => api.with("expected_size", expected),
            UploadError::OffsetMismatch { expected, provided } => {
                api.with("expected_offset", expected).with("provided_offset", provided)
            }
            UploadError::LengthExceeded { length } => api.with("length", length),
            UploadError::PartsMissing { parts } => api.with("missing_parts", parts),
            UploadError::PartMismatch { part_number } => api.with("part_number", part_number),
            UploadError::PartialNotFound { position } | UploadError::NotAPartialUpload { position } => {
                api.with("position", position)
            }
            UploadError::PartialUnfinished { position, state } => {
                api.with("position", position).with("state", state.as_str())
            }
            UploadError::InvalidTransition(ProcessingRefusal::NotCompleted(state)) => api.with("state", state.as_str()),
            UploadError::InvalidTransition(ProcessingRefusal::Transition { from, to }) => {
                api.with("from", from.as_str()).with("to", to.as_str())
            }
            UploadError::ChecksumMismatch { expected, actual } => {
                api.with("expected_md5", expected.to_string()).with("actual_md5", actual.to_string())
            }
            _ => api,
        }
    }
}

fn server_detail(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::StoreUnavailable => "The session store is unavailable. Retry shortly.",
        ErrorCode::StorageUnavailable => "The object storage is unavailable. Retry shortly.",
        ErrorCode::HookUnavailable => "The service that approves new uploads did not answer usably. Retry shortly.",
        _ => "Something went wrong on our side. The request id in X-Request-Id identifies it in the logs.",
    }
}

/// `err` and each of its sources, joined with `: `, for logs.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(source) = next {
        out.push_str(": ");
        out.push_str(&source.to_string());
        next = source.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_kebab_case() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "duplicate code {s}");
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '-'), "{s}");
        }
    }

    #[test]
    fn a_server_error_body_hides_its_cause() {
        let cause = std::io::Error::other("connection refused by redis-7.internal:6379");
        let api: ApiError = UploadError::Session(SessionError::unavailable(cause)).into();
        assert_eq!(api.code(), ErrorCode::StoreUnavailable);
        let response = api.error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
        assert!(!api.to_string().contains("redis-7"));
        assert!(format!("{api:?}").contains("redis-7.internal"), "the log form keeps the cause");
    }
}
