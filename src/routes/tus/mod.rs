//! tus 1.0 at `/files/`: core, creation (with upload, deferred length), termination,
//! expiration, checksum and concatenation. An adapter: it translates tus headers and status codes and
//! calls the `UploadService`'s append operations; it knows no store and no other protocol.
//! A request is parsed once into an [`Endpoint`], then one `match` serves it; every answer,
//! errors included, carries `Tus-Resumable`.

mod concat;
mod handlers;
mod headers;
mod url;

use actix_web::dev::Payload;
use actix_web::http::header::HeaderValue;
use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, ResponseError};

use crate::auth::TokenSigner;
use crate::domain::UploadId;
use crate::error::{ApiError, ErrorCode};

pub use url::MOUNT;

/// What a tus request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `OPTIONS`: what the server supports (no credentials, no version needed).
    Discover,
    /// `POST /files/`: a new upload, maybe with its first bytes.
    Create,
    /// `HEAD <upload URL>`: where the upload stands.
    Offset(UploadId),
    /// `PATCH <upload URL>`: bytes at an offset.
    Append(UploadId),
    /// `DELETE <upload URL>`: termination.
    Terminate(UploadId),
}

impl Endpoint {
    /// The endpoint `method` names on `/files/` (`target` `None`) or on an upload URL's
    /// last segment. An upload URL whose token is wrong is a 404.
    pub fn parse(method: &Method, target: Option<&str>, tokens: &TokenSigner) -> Result<Self, ApiError> {
        let upload = || target.map_or_else(|| Err(not_allowed(method, "/files/")), |t| url::parse(t, tokens));
        match *method {
            Method::OPTIONS => Ok(Self::Discover),
            Method::POST if target.is_none() => Ok(Self::Create),
            Method::HEAD => upload().map(Self::Offset),
            Method::PATCH => upload().map(Self::Append),
            Method::DELETE => upload().map(Self::Terminate),
            _ => Err(not_allowed(method, if target.is_some() { "an upload URL" } else { "/files/" })),
        }
    }
}

fn not_allowed(method: &Method, what: &str) -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, format!("tus does not serve {method} on {what}"))
}

/// The method the client means: `X-HTTP-Method-Override` when it sends one (clients behind
/// proxies that drop PATCH, tus-js-client's `overridePatchMethod`), else the request's.
fn method(req: &HttpRequest) -> Result<Method, ApiError> {
    match req.headers().get(headers::METHOD_OVERRIDE) {
        None => Ok(req.method().clone()),
        Some(value) => Method::from_bytes(value.as_bytes())
            .map_err(|_| ApiError::new(ErrorCode::InvalidRequest, "X-HTTP-Method-Override is not a method")),
    }
}

/// Serves one tus request at `/files/` or `/files/{upload}`.
pub async fn serve(req: HttpRequest, payload: Payload) -> HttpResponse {
    let mut response = match answer(&req, payload).await {
        Ok(response) => response,
        Err(err) => refusal(&err),
    };
    response.headers_mut().insert(headers::TUS_RESUMABLE, HeaderValue::from_static(headers::VERSION));
    response
}

/// A refusal as tus clients read it: the problem, plus `Tus-Version` on a 412.
fn refusal(err: &ApiError) -> HttpResponse {
    let mut response = err.error_response();
    if err.code() == ErrorCode::UnsupportedVersion {
        response.headers_mut().insert(headers::TUS_VERSION, HeaderValue::from_static(headers::VERSION));
    }
    response
}

async fn answer(req: &HttpRequest, payload: Payload) -> Result<HttpResponse, ApiError> {
    let state = super::access::state(req)?.clone();
    let method = method(req)?;
    if method != Method::OPTIONS && !headers::speaks_tus(req.headers()) {
        return Err(ApiError::new(
            ErrorCode::UnsupportedVersion,
            format!("send `Tus-Resumable: {}`, the tus version served here", headers::VERSION),
        ));
    }
    let target = req.match_info().get("upload").filter(|s| !s.is_empty());
    match Endpoint::parse(&method, target, &state.tokens)? {
        Endpoint::Discover => Ok(handlers::options(&state)),
        Endpoint::Create => handlers::create(req, payload, &state).await,
        Endpoint::Offset(id) => handlers::head(req, &id, &state).await,
        Endpoint::Append(id) => handlers::patch(req, payload, &id, &state).await,
        Endpoint::Terminate(id) => handlers::delete(&id, &state).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_and_targets_make_endpoints() {
        let tokens = TokenSigner::new(b"0123456789abcdef0123456789abcdef");
        let id = UploadId::new();
        let segment = format!("{id}.{}", tokens.issue(&id));
        let parse = |m: Method, t: Option<&str>| Endpoint::parse(&m, t, &tokens);
        assert_eq!(parse(Method::OPTIONS, None).unwrap(), Endpoint::Discover);
        assert_eq!(parse(Method::OPTIONS, Some("anything")).unwrap(), Endpoint::Discover);
        assert_eq!(parse(Method::POST, None).unwrap(), Endpoint::Create);
        assert_eq!(parse(Method::HEAD, Some(&segment)).unwrap(), Endpoint::Offset(id));
        assert_eq!(parse(Method::PATCH, Some(&segment)).unwrap(), Endpoint::Append(id));
        assert_eq!(parse(Method::DELETE, Some(&segment)).unwrap(), Endpoint::Terminate(id));
        assert_eq!(parse(Method::POST, Some(&segment)).unwrap_err().code(), ErrorCode::MethodNotAllowed);
        assert_eq!(parse(Method::GET, None).unwrap_err().code(), ErrorCode::MethodNotAllowed);
        assert_eq!(parse(Method::PATCH, Some(&id.to_string())).unwrap_err().code(), ErrorCode::UploadNotFound);
    }
}
