//! Cross-origin access for browser apps on other origins (`server.cors_origins`): Uppy on
//! `app.example.com` uploading to ferry on `upload.example.com`. Wraps every route, the
//! native API and `/files/` alike, with the tus and draft headers exposed.

use actix_cors::Cors;
use actix_web::http::{header, Method};

/// Request headers a browser app may send cross-origin: the native API's and tus's, and
/// `Last-Event-ID` (a browser's own `EventSource` sends it without asking; a fetch-based
/// one asks first).
const CORS_REQUEST_HEADERS: [&str; 14] = [
    "authorization",
    "content-type",
    "content-md5",
    "x-request-id",
    "x-http-method-override",
    "x-requested-with",
    "tus-resumable",
    "upload-length",
    "upload-offset",
    "upload-metadata",
    "upload-defer-length",
    "upload-checksum",
    "upload-concat",
    "last-event-id",
];

/// Response headers a browser app on another origin may read.
const CORS_EXPOSED_HEADERS: [&str; 14] = [
    "location",
    "upload-offset",
    "upload-length",
    "upload-metadata",
    "upload-expires",
    "upload-defer-length",
    "upload-concat",
    "tus-resumable",
    "tus-version",
    "tus-max-size",
    "tus-extension",
    "tus-checksum-algorithm",
    "x-request-id",
    "retry-after",
];

/// CORS for `server.cors_origins`: exactly those origins, every method ferry serves.
/// A request from another origin is served without CORS headers (the browser then keeps
/// the answer from the page) rather than refused, so same-origin pages, whose browsers
/// send `Origin` too, keep working.
pub fn cors(origins: &[String]) -> Cors {
    let methods =
        [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS];
    let mut cors = Cors::default()
        .allowed_methods(methods)
        .allowed_headers(CORS_REQUEST_HEADERS.map(header::HeaderName::from_static))
        .expose_headers(CORS_EXPOSED_HEADERS.map(header::HeaderName::from_static))
        .block_on_origin_mismatch(false)
        .max_age(3600);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}
