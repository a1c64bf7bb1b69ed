//! `/v1/uploads` and `/v1/uploads/{upload_id}`: create, status, resume, cancel.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::views::{Created, Status};
use super::{CreatorAccess, UploadAccess};
use crate::domain::{Crc64, Metadata, Transfer};
use crate::error::ApiError;
use crate::startup::AppState;
use crate::upload::{NewUpload, Protocol};

/// The body of `POST /v1/uploads`.
#[derive(Debug, Deserialize)]
pub struct CreateRequest {
    filename: String,
    size: u64,
    content_type: Option<String>,
    chunk_size: Option<u64>,
    #[serde(default)]
    metadata: Metadata,
    /// The whole file's checksums, as the client declares them.
    checksum: Option<Checksums>,
    /// `relay` (the default: chunks through ferry) or `direct` (parts to signed URLs).
    #[serde(default)]
    transfer: Transfer,
}

/// Checksums of a whole file: `{"crc64nvme": "<base64 of 8 big-endian bytes>"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checksums {
    crc64nvme: Crc64,
}

#[tracing::instrument(name = "Create an upload", skip_all)]
pub async fn create(
    access: CreatorAccess,
    body: web::Json<CreateRequest>,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let mut caller = access.caller(Protocol::Native);
    caller.transfer = body.transfer;
    let record = state
        .service
        .init(NewUpload {
            filename: body.filename,
            size: body.size,
            content_type: body.content_type,
            chunk_size: body.chunk_size,
            metadata: body.metadata,
            caller,
            checksum: body.checksum.map(|c| c.crc64nvme),
        })
        .await?;
    let token = state.tokens.issue(&record.id);
    let mut created = Created::new(&record, token);
    if record.transfer == Transfer::Direct {
        let urls = match record.awaits_confirmation() {
            true => state.service.sign_parts(&record, 1, state.service.direct_policy().batch_size).await?,
            false => Vec::new(),
        };
        created = created.with_parts(&record, super::direct::part_views(&req, &state, &record.id, &urls));
    }
    Ok(HttpResponse::Created().insert_header((header::LOCATION, format!("/v1/uploads/{}", record.id))).json(created))
}

#[tracing::instrument(name = "Report an upload's status", skip_all, fields(upload_id = %access.0))]
pub async fn status(access: UploadAccess, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let status = state.service.status(&access.0).await?;
    Ok(no_store().json(Status::new(&status)))
}

#[tracing::instrument(name = "Resume an upload", skip_all, fields(upload_id = %access.0))]
pub async fn resume(access: UploadAccess, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let status = state.service.resume(&access.0).await?;
    Ok(no_store().json(Status::new(&status)))
}

#[tracing::instrument(name = "Cancel an upload", skip_all, fields(upload_id = %access.0))]
pub async fn cancel(access: UploadAccess, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.service.cancel(&access.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub(super) fn no_store() -> actix_web::HttpResponseBuilder {
    let mut response = HttpResponse::Ok();
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    response
}
