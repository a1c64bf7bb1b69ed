//! `GET /v1/uploads/{upload_id}/events`: the upload's events as server-sent events, live
//! from any instance, resumed after `Last-Event-ID`. The upload token comes as the bearer
//! header or as `?token=`, since a browser's `EventSource` cannot send headers.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::access::{bearer, UploadAccess};
use crate::error::{ApiError, ErrorCode};
use crate::events::FollowError;
use crate::startup::AppState;

/// The query a browser's `EventSource` can send.
#[derive(Debug, Deserialize)]
struct EventsQuery {
    token: Option<String>,
    /// For clients that cannot send `Last-Event-ID` either; the header wins.
    last_event_id: Option<String>,
}

#[tracing::instrument(name = "Follow an upload's events", skip_all)]
pub async fn follow(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let query = web::Query::<EventsQuery>::from_query(req.query_string())
        .map_err(|err| ApiError::new(ErrorCode::InvalidRequest, err.to_string()))?
        .into_inner();
    let token = bearer(req.headers()).or(query.token.as_deref());
    let UploadAccess(id) = UploadAccess::verify(token, req.match_info().get("upload_id"), &state.tokens)?;
    state.service.status(&id).await?;
    let last_event_id = match req.headers().get("last-event-id") {
        Some(value) => Some(value.to_str().map_err(|_| FollowError::UnknownEventId).map_err(refused)?.to_owned()),
        None => query.last_event_id,
    };
    let last_event_id = last_event_id.filter(|id| !id.is_empty());
    let events = state.tail.follow(id, last_event_id.as_deref()).await.map_err(refused)?;
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // nginx would buffer the stream otherwise.
        .insert_header(("x-accel-buffering", "no"))
        // The compression middleware leaves a body with an encoding alone; gzip would
        // hold events back until its buffer filled.
        .insert_header((header::CONTENT_ENCODING, "identity"))
        .streaming(events))
}

fn refused(err: FollowError) -> ApiError {
    let code = match err {
        FollowError::UnknownEventId => ErrorCode::InvalidRequest,
        FollowError::Unavailable => ErrorCode::StoreUnavailable,
    };
    ApiError::new(code, err.to_string())
}
