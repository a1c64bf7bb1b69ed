//! The browser side: the upload page at `/` and its files under `/client/`, the client
//! module `ferry.js` among them. They are compiled into the binary from `web/`, so ferry
//! serves them with no files beside it and no CDN.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};

use crate::error::{ApiError, ErrorCode};

/// One file compiled into the binary.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: u64,
}

impl Asset {
    const fn new(body: &'static str, content_type: &'static str) -> Self {
        Self { body, content_type, etag: fnv1a(body.as_bytes()) }
    }
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// The upload page.
const PAGE: Asset = Asset::new(include_str!("../../web/index.html"), "text/html; charset=utf-8");

/// What `/client/{file}` serves: the client module, and the page's script, styles and icon.
const CLIENT_FILES: [(&str, Asset); 4] = [
    ("ferry.js", Asset::new(include_str!("../../web/ferry.js"), JAVASCRIPT)),
    ("app.js", Asset::new(include_str!("../../web/app.js"), JAVASCRIPT)),
    ("ferry.css", Asset::new(include_str!("../../web/ferry.css"), "text/css; charset=utf-8")),
    ("favicon.svg", Asset::new(include_str!("../../web/favicon.svg"), "image/svg+xml")),
];

/// The page runs only ferry's own script and styles, and talks only to ferry.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                        connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /`: the upload page (routed only while `server.ui` is on).
#[tracing::instrument(name = "Serve the upload page", skip_all)]
pub async fn page(req: HttpRequest) -> HttpResponse {
    let mut response = serve(&req, &PAGE);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_CSP));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// `GET /client/{file}`: the client module and the page's files.
#[tracing::instrument(name = "Serve a client file", skip_all)]
pub async fn client_file(req: HttpRequest, file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let asset = CLIENT_FILES
        .iter()
        .find(|(name, _)| *name == file.as_str())
        .map(|(_, asset)| asset)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("nothing is served at {}", req.path())))?;
    Ok(serve(&req, asset))
}

/// The asset with validators: browsers check back each time (`no-cache`) and get a 304
/// while it has not changed, so a new ferry release is picked up at once.
fn serve(req: &HttpRequest, asset: &Asset) -> HttpResponse {
    // Weak: the compression middleware may re-encode the body.
    let etag = format!("W/\"{:016x}\"", asset.etag);
    let not_modified = matches_etag(req, &etag);
    let mut response = if not_modified { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    response
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if not_modified {
        return response.finish();
    }
    response.content_type(asset.content_type).body(asset.body)
}

/// Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110 asks for GET).
fn matches_etag(req: &HttpRequest, etag: &str) -> bool {
    let ours = etag.trim_start_matches("W/");
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == ours)
}

/// FNV-1a, 64 bits: a content fingerprint for the ETag, computed at compile time.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn an_etag_matches_in_any_form_and_in_a_list() {
        let etag = "W/\"00000000000000ab\"";
        for header in ["W/\"00000000000000ab\"", "\"00000000000000ab\"", "\"x\", W/\"00000000000000ab\"", "*"] {
            let req = TestRequest::default().insert_header((header::IF_NONE_MATCH, header)).to_http_request();
            assert!(matches_etag(&req, etag), "{header}");
        }
        let req = TestRequest::default().insert_header((header::IF_NONE_MATCH, "\"other\"")).to_http_request();
        assert!(!matches_etag(&req, etag));
        assert!(!matches_etag(&TestRequest::default().to_http_request(), etag));
    }

    #[test]
    fn every_file_has_its_own_fingerprint() {
        let mut tags: Vec<u64> = CLIENT_FILES.iter().map(|(_, a)| a.etag).collect();
        tags.push(PAGE.etag);
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), CLIENT_FILES.len() + 1);
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
    }
}
