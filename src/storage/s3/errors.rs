//! How S3 failures become `StorageError`s: what may pass (transport, timeouts, 5xx,
//! throttling) is `Unavailable`, any other answer of the store is a refusal.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ConnectorError, ProvideErrorMetadata, SdkError};

use crate::storage::StorageError;

/// Error codes that mean "too fast, try again later", whatever their HTTP status.
const PASSING_CODES: &[&str] =
    &["SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests", "RequestTimeout"];

/// A failed S3 call.
pub(super) type S3Error<E> = SdkError<E, HttpResponse>;

/// Sends an SDK call from the I/O runtime (`crate::runtime`), so that its pooled
/// connection outlives the server worker that asked for it.
pub(super) async fn on_io<T, E>(
    send: impl std::future::Future<Output = Result<T, S3Error<E>>> + Send + 'static,
) -> Result<T, S3Error<E>>
where
    T: Send + 'static,
    E: Send + 'static,
{
    match crate::runtime::spawn(send).await {
        Ok(result) => result,
        Err(join) => Err(SdkError::dispatch_failure(ConnectorError::other(Box::new(join), None))),
    }
}

/// The S3 error code of a failure, if the store answered with one.
pub(super) fn code<E: ProvideErrorMetadata>(err: &S3Error<E>) -> Option<&str> {
    err.code()
}

/// Whether the store found the body's MD5 other than its `Content-MD5`.
pub(super) fn is_digest_refusal<E: ProvideErrorMetadata>(err: &S3Error<E>) -> bool {
    matches!(err.code(), Some("BadDigest" | "InvalidDigest"))
}

/// Whether the store answered 404 (a HEAD answer has no body, hence no code).
pub(super) fn is_not_found<E>(err: &S3Error<E>) -> bool {
    matches!(err, SdkError::ServiceError(e) if e.raw().status().as_u16() == 404)
}

/// The `StorageError` of a failed call. The store's own words go into `Refused` (logged,
/// never shown to clients: the API answers a refusal with a bare 500); an `Unavailable`
/// keeps the whole SDK error as its source for the logs.
pub(super) fn storage<E>(err: S3Error<E>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let SdkError::ServiceError(service) = &err else {
        // Construction, dispatch (connect, TLS, reset), timeouts, unreadable answers.
        return StorageError::unavailable(err);
    };
    let status = service.raw().status().as_u16();
    let code = service.err().code().unwrap_or("Unknown");
    if status >= 500 || status == 429 || PASSING_CODES.contains(&code) {
        return StorageError::unavailable(err);
    }
    let message = service.err().message().unwrap_or("no message");
    StorageError::Refused(format!("{code} (HTTP {status}): {message}"))
}
