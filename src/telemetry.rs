//! Logging and request tracing: the subscriber, and a middleware that gives every request
//! an id (echoing `X-Request-Id`), a span, a log line and a duration in the metrics.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, Error};
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, TelemetrySettings};
use crate::startup::AppState;

/// The header that carries a request's id.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Installs the global subscriber: `RUST_LOG` if set, else `telemetry.log_level`. Does
/// nothing if one is installed already (as in tests that build several applications).
pub fn init(settings: &TelemetrySettings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match settings.log_format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Wraps every request in a span carrying its id, answers with `X-Request-Id`, and
/// records the outcome in the log and the request-duration histogram.
pub async fn trace_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %req.method(),
        path = %req.path(),
    );
    let metrics = req.app_data::<web::Data<AppState>>().map(|s| s.metrics.clone());
    let method = method_label(req.method());
    let started = Instant::now();
    let mut response = next.call(req).instrument(span.clone()).await?;

    let status = response.status();
    let elapsed = started.elapsed();
    let route = response.request().match_pattern().unwrap_or_else(|| "unmatched".into());
    if let Some(metrics) = metrics {
        metrics.observe_request(method, &route, status.as_u16(), elapsed.as_secs_f64());
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    span.in_scope(|| {
        tracing::info!(status = status.as_u16(), elapsed_ms = elapsed.as_millis() as u64, "request finished");
    });
    Ok(response)
}

/// The method as a metric label: any token is a valid HTTP method, so anything ferry does
/// not serve is `OTHER`, and a client cannot add series at will.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}
