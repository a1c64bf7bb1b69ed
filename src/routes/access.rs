//! Who may do what: extractors that check the bearer credentials before a handler runs.

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderMap};
use actix_web::{web, FromRequest, HttpRequest};

use crate::auth::TokenSigner;
use crate::domain::UploadId;
use crate::error::{ApiError, ErrorCode};
use crate::startup::AppState;
use crate::upload::{Caller, Protocol};

/// The request carries the upload token of the upload named in its path.
#[derive(Debug, Clone, Copy)]
pub struct UploadAccess(pub UploadId);

/// The request carries a processor key (`auth.processor_keys`): it may report on uploads'
/// processing. No other credential may, whatever it opens elsewhere.
#[derive(Debug, Clone, Copy)]
pub struct ProcessorAccess;

/// The request may create uploads (it carries an API key, or none is required). Keeps
/// the request's `Authorization` header, which the pre-create hook is told.
#[derive(Clone)]
pub struct CreatorAccess {
    authorization: Option<String>,
}

impl CreatorAccess {
    /// Who creates, through `protocol`, with the bytes relayed by ferry.
    pub fn caller(self, protocol: Protocol) -> Caller {
        Caller::relay(protocol, self.authorization)
    }
}

impl std::fmt::Debug for CreatorAccess {
    // The credential stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatorAccess").finish_non_exhaustive()
    }
}

pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = value.split_once(' ')?;
    let credentials = credentials.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credentials.is_empty()).then_some(credentials)
}

pub(super) fn state(req: &HttpRequest) -> Result<&web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::new(ErrorCode::InternalError, "application state missing"))
}

fn missing() -> ApiError {
    ApiError::new(ErrorCode::MissingToken, "send `Authorization: Bearer <token>`")
}

impl FromRequest for UploadAccess {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            state(req)
                .and_then(|state| UploadAccess::check(req.headers(), req.match_info().get("upload_id"), &state.tokens)),
        )
    }
}

impl UploadAccess {
    /// Whether `headers` carry a token for the upload whose id is `upload_id` (the raw
    /// path segment): the extractor's check, for callers that hold only a request head.
    pub(super) fn check(headers: &HeaderMap, upload_id: Option<&str>, tokens: &TokenSigner) -> Result<Self, ApiError> {
        Self::verify(bearer(headers), upload_id, tokens)
    }

    /// Whether `token` (from wherever the route takes it) is one for the upload whose id
    /// is `upload_id`: the same answers as the bearer check.
    pub(super) fn verify(token: Option<&str>, upload_id: Option<&str>, tokens: &TokenSigner) -> Result<Self, ApiError> {
        let token = token.ok_or_else(missing)?;
        let id: UploadId = upload_id
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ApiError::new(ErrorCode::UploadNotFound, "no upload has this id"))?;
        if !tokens.verify(&id, token) {
            return Err(ApiError::new(ErrorCode::InvalidToken, "this token is not valid for this upload"));
        }
        Ok(UploadAccess(id))
    }
}

impl FromRequest for CreatorAccess {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready((|| {
            let keys = &state(req)?.api_keys;
            let authorization =
                req.headers().get(header::AUTHORIZATION).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            if !keys.required() {
                return Ok(CreatorAccess { authorization });
            }
            let key = bearer(req.headers()).ok_or_else(missing)?;
            if !keys.allows(key) {
                return Err(ApiError::new(ErrorCode::InvalidToken, "this API key is not valid"));
            }
            Ok(CreatorAccess { authorization })
        })())
    }
}

impl FromRequest for ProcessorAccess {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready((|| {
            let keys = &state(req)?.processor_keys;
            let key = bearer(req.headers()).ok_or_else(missing)?;
            if !keys.allows(key) {
                return Err(ApiError::new(
                    ErrorCode::InvalidToken,
                    "this is not a processor key (auth.processor_keys)",
                ));
            }
            Ok(ProcessorAccess)
        })())
    }
}
