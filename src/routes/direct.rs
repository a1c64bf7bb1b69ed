//! Direct transfers: `POST /v1/uploads/{upload_id}/parts` (the next page of part URLs),
//! `POST /v1/uploads/{upload_id}/complete` (the confirmation), and
//! `PUT /v1/uploads/{upload_id}/direct/{part}?expires=…&signature=…`, ferry's own part URL
//! on a store without presigning: the signature is the credential, no bearer needed.

use std::io;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;

use super::chunk::content_length;
use super::uploads::no_store;
use super::views::{PartView, Status};
use super::{UploadAccess, UploadBody};
use crate::domain::UploadId;
use crate::error::{ApiError, ErrorCode};
use crate::startup::AppState;
use crate::upload::{ListedByClient, PartTarget, PartUrl};

/// The body of `POST /v1/uploads/{upload_id}/parts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageRequest {
    /// The first part number, from 1.
    start: u32,
    /// How many; at most `direct.batch_size` (the default).
    count: Option<u32>,
}

/// The optional body of `POST /v1/uploads/{upload_id}/complete`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    #[serde(default)]
    parts: Vec<ClientPart>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientPart {
    part_number: u32,
    etag: String,
}

/// The query of ferry's own part URL.
#[derive(Debug, Deserialize)]
pub struct PartSignature {
    expires: i64,
    signature: String,
}

#[tracing::instrument(name = "Sign a page of part URLs", skip_all, fields(upload_id = %access.0))]
pub async fn page(
    access: UploadAccess,
    body: web::Json<PageRequest>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let count = body.count.unwrap_or(state.service.direct_policy().batch_size);
    let urls = state.service.part_urls(&access.0, body.start, count).await?;
    Ok(no_store().json(serde_json::json!({ "parts": part_views(&req, &state, &access.0, &urls) })))
}

#[tracing::instrument(name = "Confirm a direct upload", skip_all, fields(upload_id = %access.0))]
pub async fn complete(
    access: UploadAccess,
    body: Option<web::Json<CompleteRequest>>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let listed: Vec<_> = body
        .map(|b| b.into_inner().parts)
        .unwrap_or_default()
        .into_iter()
        .map(|p| ListedByClient { part_number: p.part_number, etag: p.etag })
        .collect();
    let status = state.service.confirm(&access.0, &listed).await?;
    Ok(no_store().json(Status::new(&status)))
}

#[tracing::instrument(name = "Receive a direct part", skip_all, fields(upload_id = %path.0, part = path.1))]
pub async fn put(
    path: web::Path<(String, u32)>,
    query: web::Query<PartSignature>,
    req: HttpRequest,
    body: UploadBody,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (id, part_number) = path.into_inner();
    let refused = || ApiError::new(ErrorCode::InvalidToken, "this part URL is not valid (sign a new one with /parts)");
    let id: UploadId = id.parse().map_err(|_| refused())?;
    if !state.tokens.verify_part(&id, part_number, query.expires, &query.signature) {
        return Err(refused());
    }
    if query.expires <= state.service.now().timestamp() {
        return Err(ApiError::new(ErrorCode::InvalidToken, "this part URL has expired (sign a new one with /parts)"));
    }
    let len = content_length(req.headers())?;
    let (body, guard) = body.split();
    let body = body
        .map(|piece| piece.map_err(|e| io::Error::new(io::ErrorKind::ConnectionAborted, e.to_string())))
        .boxed_local();
    let etag = state.service.put_direct_part(&id, part_number, len, body).await.map_err(|e| guard.explain(e.into()))?;
    Ok(HttpResponse::Ok().insert_header((header::ETAG, format!("\"{etag}\""))).finish())
}

/// The API's view of `urls`: the store's own, or ferry's, signed here, on the scheme and
/// host the request came in by (as tus upload URLs are).
pub(super) fn part_views(req: &HttpRequest, state: &AppState, id: &UploadId, urls: &[PartUrl]) -> Vec<PartView> {
    let info = req.connection_info();
    urls.iter()
        .map(|url| {
            let (href, headers) = match &url.target {
                PartTarget::Store(put) => (put.url.clone(), put.headers.clone()),
                PartTarget::Ferry => {
                    let expires = url.expires_at.timestamp();
                    let signature = state.tokens.sign_part(id, url.part_number, expires);
                    let href = format!(
                        "{}://{}/v1/uploads/{id}/direct/{}?expires={expires}&signature={signature}",
                        info.scheme(),
                        info.host(),
                        url.part_number
                    );
                    (href, Vec::new())
                }
            };
            PartView::new(url, href, headers)
        })
        .collect()
}
