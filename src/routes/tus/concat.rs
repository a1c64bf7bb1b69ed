//! The concatenation extension's side of the tus endpoints: creating a final upload from
//! `Upload-Concat: final;<url> <url> …`, and the `Upload-Concat` that HEAD echoes.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};

use super::headers::{self as tus};
use super::url;
use crate::auth::TokenSigner;
use crate::domain::{UploadRecord, UploadState};
use crate::error::{ApiError, ErrorCode};
use crate::routes::CreatorAccess;
use crate::startup::AppState;
use crate::upload::{NewFinalUpload, Protocol, UploadError};

/// `POST /files/` with `Upload-Concat: final;…`: makes the final upload of the partial
/// uploads at `urls` and assembles it before answering 201 with `Location`. Its length is
/// theirs, so a length header is a 400; it takes no bytes, so a body is a 403 (as tusd
/// answers). A URL whose token is wrong reads exactly like an unknown partial.
#[tracing::instrument(name = "Make a tus final upload", skip_all, fields(upload_id, partials = urls.len()))]
pub async fn create_final(
    req: &HttpRequest,
    urls: &[&str],
    access: CreatorAccess,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let h = req.headers();
    if h.contains_key(tus::UPLOAD_LENGTH) || h.contains_key(tus::UPLOAD_DEFER_LENGTH) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "a final upload is as long as its partial uploads together: send no Upload-Length",
        ));
    }
    if tus::is_offset_stream(h) {
        return Err(UploadError::FinalUploadImmutable.into());
    }
    let meta = tus::metadata(h)?;
    let partials = urls
        .iter()
        .enumerate()
        .map(|(i, u)| url::named(u, &state.tokens).map_err(|_| UploadError::PartialNotFound { position: i + 1 }))
        .collect::<Result<Vec<_>, _>>()?;
    let record = state
        .service
        .init_final(NewFinalUpload {
            filename: meta.filename.unwrap_or_else(|| super::handlers::DEFAULT_FILENAME.into()),
            content_type: meta.content_type,
            metadata: meta.metadata,
            partials,
            caller: access.caller(Protocol::Tus),
        })
        .await?;
    tracing::Span::current().record("upload_id", tracing::field::display(record.id));
    let location = url::absolute(req, &record.id, &state.tokens);
    if record.state == UploadState::Failed {
        // It exists, failed: its URL still tells the client (and HEAD) so.
        let detail = record.error.unwrap_or_else(|| "the partial uploads could not be concatenated".into());
        let mut response = super::refusal(&ApiError::new(ErrorCode::UploadFailed, detail).with("state", "failed"));
        if let Ok(value) = header::HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        return Ok(response);
    }
    Ok(HttpResponse::Created().insert_header((header::LOCATION, location)).finish())
}

/// The `Upload-Concat` HEAD reports, as tus says: `partial`, or `final;` and the partial
/// uploads' URLs (absolute, on the request's host); `None` for other uploads.
pub fn echo(req: &HttpRequest, record: &UploadRecord, tokens: &TokenSigner) -> Option<String> {
    if record.is_partial() {
        return Some("partial".into());
    }
    let urls: Vec<String> = record.partials()?.iter().map(|id| url::absolute(req, id, tokens)).collect();
    Some(format!("final;{}", urls.join(" ")))
}
