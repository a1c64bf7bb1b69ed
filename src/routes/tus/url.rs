//! The upload URL is a capability: `/files/{upload_id}.{upload_token}`. Its last path
//! segment carries the upload's token (an HMAC of its id), so knowing the id or the object
//! key gives no access; a wrong or missing token reads as an upload that does not exist.

use actix_web::HttpRequest;

use crate::auth::TokenSigner;
use crate::domain::UploadId;
use crate::error::{ApiError, ErrorCode};

/// Where tus is served.
pub const MOUNT: &str = "/files";

/// The upload a URL segment opens, if its token is the upload's.
pub fn parse(segment: &str, tokens: &TokenSigner) -> Result<UploadId, ApiError> {
    let not_found = || ApiError::new(ErrorCode::UploadNotFound, "no upload has this URL");
    let (id, token) = segment.split_once('.').ok_or_else(not_found)?;
    let id: UploadId = id.parse().map_err(|_| not_found())?;
    if !tokens.verify(&id, token) {
        return Err(not_found());
    }
    Ok(id)
}

/// The upload a URL names as `Upload-Concat` lists them: absolute
/// (`https://host/files/{id}.{token}`) or a path. Only its last segment counts (a proxy in
/// front may have rewritten the path before it); the token there must be the upload's.
pub fn named(url: &str, tokens: &TokenSigner) -> Result<UploadId, ApiError> {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    parse(path.trim_end_matches('/').rsplit('/').next().unwrap_or_default(), tokens)
}

/// The absolute upload URL of `id`, on the scheme and host the request came in by (as
/// tusd answers; `Forwarded` / `X-Forwarded-*` from a proxy in front are honoured).
pub fn absolute(req: &HttpRequest, id: &UploadId, tokens: &TokenSigner) -> String {
    let info = req.connection_info();
    format!("{}://{}{MOUNT}/{id}.{}", info.scheme(), info.host(), tokens.issue(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_is_named_by_an_absolute_url_or_a_path() {
        let tokens = TokenSigner::new(b"0123456789abcdef0123456789abcdef");
        let id = UploadId::new();
        let segment = format!("{id}.{}", tokens.issue(&id));
        for url in [
            format!("https://upload.example.com/files/{segment}"),
            format!("http://127.0.0.1:8080/files/{segment}/"),
            format!("/files/{segment}"),
            format!("/behind/a/proxy/{segment}?x=1"),
            segment.clone(),
        ] {
            assert_eq!(named(&url, &tokens).unwrap(), id, "{url}");
        }
        let wrong = format!("/files/{id}.{}", tokens.issue(&UploadId::new()));
        assert_eq!(named(&wrong, &tokens).unwrap_err().code(), ErrorCode::UploadNotFound);
        assert_eq!(named(&format!("/files/{segment}/more"), &tokens).unwrap_err().code(), ErrorCode::UploadNotFound);
    }

    #[test]
    fn only_the_upload_token_opens_an_upload_url() {
        let tokens = TokenSigner::new(b"0123456789abcdef0123456789abcdef");
        let (id, other) = (UploadId::new(), UploadId::new());
        assert_eq!(parse(&format!("{id}.{}", tokens.issue(&id)), &tokens).unwrap(), id);
        for bad in [id.to_string(), format!("{id}."), format!("{id}.{}", tokens.issue(&other)), "x.y".into()] {
            assert_eq!(parse(&bad, &tokens).unwrap_err().code(), ErrorCode::UploadNotFound, "{bad}");
        }
    }
}
