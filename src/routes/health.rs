//! Operations: liveness, readiness and metrics.

use std::sync::atomic::Ordering;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::error::{ApiError, ErrorCode};
use crate::startup::AppState;

/// 200 while the process serves.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// 200 when both stores answer and the process is not draining; 503 otherwise.
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.draining.load(Ordering::SeqCst) {
        return Err(ApiError::new(ErrorCode::ShuttingDown, "this instance is shutting down"));
    }
    state.service.ready().await?;
    Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
}

/// Prometheus text exposition.
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    // Gauges read from the disk are measured when asked for.
    state.service.measure_staging().await;
    let text = state.metrics.render().map_err(|e| {
        tracing::error!(error = %e, "metrics could not be rendered");
        ApiError::new(ErrorCode::InternalError, "metrics could not be rendered")
    })?;
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(text))
}
