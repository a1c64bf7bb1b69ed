//! `PUT /v1/uploads/{upload_id}/chunks/{index}`: one chunk, streamed.

use std::io;

use actix_web::http::header::{self, HeaderMap};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::views::Chunk;
use super::{UploadAccess, UploadBody};
use crate::domain::Md5Digest;
use crate::error::{ApiError, ErrorCode};
use crate::startup::AppState;

/// The header that carries a chunk's MD5 (RFC 1864).
const CONTENT_MD5: &str = "content-md5";

#[tracing::instrument(name = "Receive a chunk", skip_all, fields(upload_id = %access.0, chunk = %path.1))]
pub async fn put(
    access: UploadAccess,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    body: UploadBody,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let index = chunk_index(&path.1)?;
    let len = content_length(req.headers())?;
    let md5 = content_md5(req.headers())?;
    let (body, guard) = body.split();
    let body = body
        .map(|piece| piece.map_err(|e| io::Error::new(io::ErrorKind::ConnectionAborted, e.to_string())))
        .boxed_local();
    let accepted =
        state.service.put_chunk(&access.0, index, len, md5, body).await.map_err(|e| guard.explain(e.into()))?;
    Ok(HttpResponse::Ok().json(Chunk::from(&accepted)))
}

/// The chunk index in the path.
pub(super) fn chunk_index(segment: &str) -> Result<u32, ApiError> {
    segment
        .parse()
        .map_err(|_| ApiError::new(ErrorCode::InvalidChunkIndex, "the chunk index must be a non-negative integer"))
}

/// The declared chunk length.
pub(super) fn content_length(headers: &HeaderMap) -> Result<u64, ApiError> {
    let value = headers
        .get(header::CONTENT_LENGTH)
        .ok_or_else(|| ApiError::new(ErrorCode::LengthRequired, "send the chunk with a Content-Length"))?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, "Content-Length must be a number"))
}

/// The chunk's MD5, if sent.
pub(super) fn content_md5(headers: &HeaderMap) -> Result<Option<Md5Digest>, ApiError> {
    let Some(value) = headers.get(CONTENT_MD5) else {
        return Ok(None);
    };
    value.to_str().ok().and_then(|v| v.parse().ok()).map(Some).ok_or_else(|| {
        ApiError::new(ErrorCode::InvalidRequest, "Content-MD5 must be the base64 of the chunk's 16-byte MD5")
    })
}
