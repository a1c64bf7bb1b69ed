//! The tus endpoints: each parses its headers, calls the `UploadService`, and answers with
//! tus headers. Errors stay problem+json with ferry's codes; only the checksum mismatch
//! changes status (tus's 460).

use std::io;

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderMap};
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse, HttpResponseBuilder};
use futures_util::StreamExt;

use super::headers::{self as tus, UploadConcat, UPLOAD_EXPIRES, UPLOAD_OFFSET};
use super::url;
use crate::domain::{DeclaredDigest, UploadId, UploadState};
use crate::error::{ApiError, ErrorCode};
use crate::routes::{CreatorAccess, UploadBody};
use crate::startup::AppState;
use crate::upload::{AppendRequest, Appended, NewAppendUpload, Protocol, UploadError};

/// The file name of an upload whose metadata names none.
pub(super) const DEFAULT_FILENAME: &str = "upload";

/// tus's status for a checksum mismatch.
const CHECKSUM_MISMATCH: u16 = 460;

/// `OPTIONS`: version, size limit, extensions, checksum algorithms.
pub fn options(state: &AppState) -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((tus::TUS_VERSION, tus::VERSION))
        .insert_header((tus::TUS_MAX_SIZE, state.max_file_size.to_string()))
        .insert_header((tus::TUS_EXTENSION, tus::EXTENSIONS))
        .insert_header((tus::TUS_CHECKSUM_ALGORITHM, tus::algorithms()))
        .finish()
}

/// `POST /files/`: opens an append upload (a partial one with `Upload-Concat: partial`);
/// a body of `application/offset+octet-stream` is its first append (creation-with-upload).
/// `Upload-Concat: final;…` makes a final upload instead (see `concat`).
#[tracing::instrument(name = "Create a tus upload", skip_all, fields(upload_id))]
pub async fn create(req: &HttpRequest, mut payload: Payload, state: &AppState) -> Result<HttpResponse, ApiError> {
    let access = CreatorAccess::from_request(req, &mut Payload::None).await?;
    let h = req.headers();
    let partial = match tus::concat(h)? {
        Some(UploadConcat::Final(urls)) => return super::concat::create_final(req, &urls, access, state).await,
        Some(UploadConcat::Partial) => true,
        None => false,
    };
    let length = tus::creation_length(h)?;
    let meta = tus::metadata(h)?;
    let with_body = tus::is_offset_stream(h);
    let digest = if with_body { tus::checksum(h)? } else { None };
    let content_length = content_length(h)?;
    // The body's slot is taken first: a busy instance refuses before anything exists.
    let body = if with_body { Some(UploadBody::from_request(req, &mut payload).await?) } else { None };
    let record = state
        .service
        .init_append(NewAppendUpload {
            filename: meta.filename.unwrap_or_else(|| DEFAULT_FILENAME.into()),
            length,
            content_type: meta.content_type,
            metadata: meta.metadata,
            partial,
            caller: access.caller(Protocol::Tus),
        })
        .await?;
    tracing::Span::current().record("upload_id", tracing::field::display(record.id));
    let location = url::absolute(req, &record.id, &state.tokens);
    let mut at = (0, record.state, record.expires_at);
    if let Some(body) = body {
        match append(state, &record.id, 0, None, content_length, digest, body).await {
            Ok(appended) => at = (appended.offset, appended.state, appended.expires_at),
            Err(err) => {
                // The upload exists: the client may go on from its URL after a HEAD.
                let mut response = super::refusal(&err);
                if let Ok(value) = header::HeaderValue::from_str(&location) {
                    response.headers_mut().insert(header::LOCATION, value);
                }
                return Ok(response);
            }
        }
    }
    let mut response = HttpResponse::Created();
    response.insert_header((header::LOCATION, location)).insert_header((UPLOAD_OFFSET, at.0.to_string()));
    expires(&mut response, at.1, &at.2);
    Ok(response.finish())
}

/// `HEAD <upload URL>`: offset, length, metadata and expiry; never cached. A partial or
/// final upload also reports `Upload-Concat`; a final one reports its offset only once it
/// is assembled, as tus says.
#[tracing::instrument(name = "Report a tus upload's offset", skip_all, fields(upload_id = %id))]
pub async fn head(req: &HttpRequest, id: &UploadId, state: &AppState) -> Result<HttpResponse, ApiError> {
    let status = state.service.status(id).await?;
    let record = &status.record;
    let append = record.append.as_ref().ok_or(UploadError::NotAnAppendUpload)?;
    if record.state == UploadState::Failed {
        return Err(UploadError::WrongState(UploadState::Failed).into());
    }
    let mut response = HttpResponse::Ok();
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    if record.partials().is_none() || record.state == UploadState::Completed {
        response.insert_header((UPLOAD_OFFSET, append.offset.to_string()));
    }
    if let Some(concat) = super::concat::echo(req, record, &state.tokens) {
        response.insert_header((tus::UPLOAD_CONCAT, concat));
    }
    match append.length {
        Some(length) => response.insert_header((tus::UPLOAD_LENGTH, length.to_string())),
        None => response.insert_header((tus::UPLOAD_DEFER_LENGTH, "1")),
    };
    let metadata = tus::format_metadata(&record.filename, record.content_type.as_deref(), &record.metadata);
    if !metadata.is_empty() {
        response.insert_header((tus::UPLOAD_METADATA, metadata));
    }
    expires(&mut response, record.state, &record.expires_at);
    Ok(response.finish())
}

/// `PATCH <upload URL>`: appends the body at `Upload-Offset`.
#[tracing::instrument(name = "Append to a tus upload", skip_all, fields(upload_id = %id))]
pub async fn patch(
    req: &HttpRequest,
    mut payload: Payload,
    id: &UploadId,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let h = req.headers();
    if !tus::is_offset_stream(h) {
        return Err(ApiError::new(
            ErrorCode::UnsupportedContentType,
            format!("a PATCH body is Content-Type: {}", tus::OFFSET_OCTET_STREAM),
        ));
    }
    let offset = tus::number(h, &UPLOAD_OFFSET)?
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, "Upload-Offset is required"))?;
    let length = tus::number(h, &tus::UPLOAD_LENGTH)?;
    let digest = tus::checksum(h)?;
    let content_length = content_length(h)?;
    let body = UploadBody::from_request(req, &mut payload).await?;
    let appended = append(state, id, offset, length, content_length, digest, body).await?;
    let mut response = HttpResponse::NoContent();
    response.insert_header((UPLOAD_OFFSET, appended.offset.to_string()));
    expires(&mut response, appended.state, &appended.expires_at);
    Ok(response.finish())
}

/// `DELETE <upload URL>`: termination, as cancel.
#[tracing::instrument(name = "Terminate a tus upload", skip_all, fields(upload_id = %id))]
pub async fn delete(id: &UploadId, state: &AppState) -> Result<HttpResponse, ApiError> {
    state.service.cancel(id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[allow(clippy::too_many_arguments)]
async fn append(
    state: &AppState,
    id: &UploadId,
    offset: u64,
    length: Option<u64>,
    content_length: Option<u64>,
    digest: Option<DeclaredDigest>,
    body: UploadBody,
) -> Result<Appended, ApiError> {
    let (body, guard) = body.split();
    let body = body
        .map(|piece| piece.map_err(|e| io::Error::new(io::ErrorKind::ConnectionAborted, e.to_string())))
        .boxed_local();
    let request = AppendRequest { offset, length, content_length, digest, body };
    state.service.append(id, request).await.map_err(|err| guard.explain(tus_error(err)))
}

/// An engine error with the status tus names for it.
fn tus_error(err: UploadError) -> ApiError {
    let api = ApiError::from(err);
    match api.code() {
        ErrorCode::DigestMismatch => {
            api.with_status(StatusCode::from_u16(CHECKSUM_MISMATCH).unwrap_or(StatusCode::BAD_REQUEST))
        }
        _ => api,
    }
}

/// `Upload-Expires`, for an upload that will expire unless it goes on.
fn expires(response: &mut HttpResponseBuilder, state: UploadState, at: &crate::domain::Timestamp) {
    if state == UploadState::Uploading {
        response.insert_header((UPLOAD_EXPIRES, tus::http_date(at)));
    }
}

fn content_length(h: &HeaderMap) -> Result<Option<u64>, ApiError> {
    tus::number(h, &header::CONTENT_LENGTH)
}

#[cfg(test)]
mod tests {
    use actix_web::ResponseError;

    use super::*;

    #[test]
    fn a_checksum_mismatch_is_a_460_and_other_errors_keep_their_status() {
        let mismatch = tus_error(UploadError::DigestMismatch { algorithm: crate::domain::DigestAlgorithm::Sha1 });
        assert_eq!(mismatch.status_code().as_u16(), 460);
        assert_eq!(mismatch.code(), ErrorCode::DigestMismatch);
        assert_eq!(tus_error(UploadError::AppendBusy).status_code(), StatusCode::LOCKED);
        let offset = tus_error(UploadError::OffsetMismatch { expected: 1, provided: 2 });
        assert_eq!(offset.status_code(), StatusCode::CONFLICT);
    }
}
