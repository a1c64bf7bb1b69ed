//! Logging and request tracing: the subscriber, and a middleware that gives every request
//! an id (echoing `X-Request-Id`), a span, a log line and a duration in the metrics.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, Error};
use tracing::{Instrument, Span};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, TelemetrySettings};
use crate::metrics::Metrics;
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
    let trace = RequestTrace::start(req.headers(), req.method(), req.path());
    let metrics = req.app_data::<web::Data<AppState>>().map(|s| s.metrics.clone());
    let mut response = next.call(req).instrument(trace.span.clone()).await?;
    let route = response.request().match_pattern().unwrap_or_else(|| "unmatched".into());
    let status = response.status();
    trace.finish(response.headers_mut(), status, &route, metrics.as_ref());
    Ok(response)
}

/// One request's id, span and start: what `trace_requests` keeps, and what a request
/// answered before it reaches the app (a refused `Expect: 100-continue`) keeps too.
pub struct RequestTrace {
    id: String,
    /// The request's span: work done for the request belongs in it.
    pub span: Span,
    method: &'static str,
    started: Instant,
}

impl RequestTrace {
    /// Starts tracing a request: its id is its own `X-Request-Id` when it sent a usable
    /// one, else a fresh UUID.
    pub fn start(headers: &HeaderMap, method: &Method, path: &str) -> Self {
        let id = headers
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 200)
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let span = tracing::info_span!("request", request_id = %id, method = %method, path = %path);
        Self { id, span, method: method_label(method), started: Instant::now() }
    }

    /// Passes the request's id on in its `headers`, for the tracing that follows (the
    /// app's middleware) to use the same one.
    pub fn hand_over(self, headers: &mut HeaderMap) {
        if let Ok(value) = HeaderValue::from_str(&self.id) {
            headers.insert(REQUEST_ID, value);
        }
    }

    /// Ends the trace: sets `X-Request-Id` in `headers`, records the duration under
    /// `route` (a route pattern, never a raw path) and logs the outcome.
    pub fn finish(self, headers: &mut HeaderMap, status: StatusCode, route: &str, metrics: Option<&Metrics>) {
        let elapsed = self.started.elapsed();
        if let Some(metrics) = metrics {
            metrics.observe_request(self.method, route, status.as_u16(), elapsed.as_secs_f64());
        }
        if let Ok(value) = HeaderValue::from_str(&self.id) {
            headers.insert(REQUEST_ID, value);
        }
        self.span.in_scope(|| {
            tracing::info!(status = status.as_u16(), elapsed_ms = elapsed.as_millis() as u64, "request finished");
        });
    }
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
