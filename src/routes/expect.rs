//! `Expect: 100-continue`: the head of a chunk `PUT` is checked before the client is told
//! to send its body, so a refused chunk costs one round trip, not one chunk of upload.
//! The server wiring calls [`continue_or_refuse`] for every request that asks; anything
//! but a chunk is waved through, and an admitted chunk is checked again by its handler.

use std::sync::LazyLock;

use actix_http::Request;
use actix_web::body::BoxBody;
use actix_web::dev::{Path, ResourceDef, Response, Url};
use actix_web::http::header::HeaderMap;
use actix_web::http::Method;
use actix_web::{web, HttpMessage, ResponseError};
use tracing::Instrument;

use super::chunk::{chunk_index, content_length, content_md5};
use super::UploadAccess;
use crate::error::ApiError;
use crate::startup::AppState;
use crate::telemetry::RequestTrace;

/// The chunk route, as the route table spells it (also its metrics label).
const CHUNK_ROUTE: &str = "/v1/uploads/{upload_id}/chunks/{index}";

/// Matched the way the router matches it (same percent-decoding).
static CHUNK_RESOURCE: LazyLock<ResourceDef> = LazyLock::new(|| ResourceDef::new(CHUNK_ROUTE));

/// Lets `req` go on (the caller then sends `100 Continue`), or answers it with the problem
/// its handler would give, without its body being read. Only a chunk `PUT` is checked.
pub async fn continue_or_refuse(state: web::Data<AppState>, mut req: Request) -> Result<Request, Response<BoxBody>> {
    if req.method() != Method::PUT {
        return Ok(req);
    }
    let mut path = Path::new(Url::new(req.uri().clone()));
    if !CHUNK_RESOURCE.capture_match_info(&mut path) {
        return Ok(req);
    }
    let trace = RequestTrace::start(req.headers(), req.method(), req.path());
    let checked = check_chunk(&state, req.headers(), path.get("upload_id"), path.get("index").unwrap_or_default())
        .instrument(trace.span.clone())
        .await;
    match checked {
        Ok(()) => {
            // The app traces the request from here, under the same id.
            trace.hand_over(req.headers_mut());
            Ok(req)
        }
        Err(err) => {
            let mut response = trace.span.in_scope(|| err.error_response());
            let status = response.status();
            trace.finish(response.headers_mut(), status, CHUNK_ROUTE, Some(&state.metrics));
            Err(response.into())
        }
    }
}

/// The checks of a chunk `PUT` made before its body is read, in the order the extractors
/// and the handler make them (only the body slot is not taken, just looked at).
async fn check_chunk(
    state: &AppState,
    headers: &HeaderMap,
    upload_id: Option<&str>,
    index: &str,
) -> Result<(), ApiError> {
    let access = UploadAccess::check(headers, upload_id, &state.tokens)?;
    state.bodies.check_free()?;
    let index = chunk_index(index)?;
    let len = content_length(headers)?;
    let has_md5 = content_md5(headers)?.is_some();
    state.service.admit_chunk(&access.0, index, len, has_md5).await?;
    Ok(())
}
