//! `/files/`: where the resumable-upload protocols live (tusd's path). A request's headers
//! say which protocol it speaks; it is detected once and handed to that protocol's adapter.

use actix_web::http::header::HeaderName;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

use crate::error::{ApiError, ErrorCode};

/// The header that marks the IETF draft "Resumable Uploads for HTTP".
const DRAFT_INTEROP_VERSION: HeaderName = HeaderName::from_static("upload-draft-interop-version");

/// The protocol a request at `/files/` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// tus 1.0 (`Tus-Resumable`); also what a request naming neither gets (discovery, or a
    /// 412 that lists the tus version).
    Tus,
    /// The IETF draft (`Upload-Draft-Interop-Version`), not served yet.
    IetfDraft,
}

impl Protocol {
    /// The protocol `req` speaks.
    pub fn detect(req: &HttpRequest) -> Self {
        if req.headers().contains_key(DRAFT_INTEROP_VERSION) {
            Self::IetfDraft
        } else {
            Self::Tus
        }
    }
}

/// Serves any request at `/files/` or `/files/{upload}`.
pub async fn serve(req: HttpRequest, payload: web::Payload) -> HttpResponse {
    match Protocol::detect(&req) {
        Protocol::Tus => super::tus::serve(req, payload.into_inner()).await,
        Protocol::IetfDraft => ApiError::new(
            ErrorCode::UnsupportedVersion,
            "the IETF resumable-upload draft is not served yet; tus 1.0 is (Tus-Resumable: 1.0.0)",
        )
        .error_response(),
    }
}
