//! `/v1/uploads/{upload_id}/processing`: the app's processors report on a completed upload.

use actix_web::{web, HttpResponse};

use super::views::Status;
use super::ProcessorAccess;
use crate::domain::{ProcessingReport, UploadId};
use crate::error::{ApiError, ErrorCode};
use crate::startup::AppState;

#[tracing::instrument(name = "Report on processing", skip_all, fields(upload_id = %upload_id))]
pub async fn report(
    _: ProcessorAccess,
    upload_id: web::Path<String>,
    body: web::Json<ProcessingReport>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id: UploadId =
        upload_id.parse().map_err(|_| ApiError::new(ErrorCode::UploadNotFound, "no upload has this id"))?;
    let status = state.service.process(&id, body.into_inner()).await?;
    Ok(super::uploads::no_store().json(Status::new(&status)))
}
