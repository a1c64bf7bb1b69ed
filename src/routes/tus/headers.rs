//! tus headers: their names, and parsing and formatting of their values (numbers,
//! `Upload-Metadata`'s base64 pairs, `Upload-Checksum`, `Upload-Expires` as an HTTP-date).

use std::time::{Duration, SystemTime};

use actix_web::http::header::{self, HeaderMap, HeaderName};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::domain::{DeclaredDigest, DigestAlgorithm, Metadata, Timestamp};
use crate::error::{ApiError, ErrorCode};

/// The protocol version every request but OPTIONS carries, and every response.
pub const TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
/// Versions served (OPTIONS, and a 412).
pub const TUS_VERSION: HeaderName = HeaderName::from_static("tus-version");
/// Largest upload accepted (OPTIONS).
pub const TUS_MAX_SIZE: HeaderName = HeaderName::from_static("tus-max-size");
/// Extensions served (OPTIONS).
pub const TUS_EXTENSION: HeaderName = HeaderName::from_static("tus-extension");
/// Digest algorithms of the checksum extension (OPTIONS).
pub const TUS_CHECKSUM_ALGORITHM: HeaderName = HeaderName::from_static("tus-checksum-algorithm");
/// Bytes stored so far.
pub const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
/// The upload's total length.
pub const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
/// `1`: the length is declared later.
pub const UPLOAD_DEFER_LENGTH: HeaderName = HeaderName::from_static("upload-defer-length");
/// Key and base64 value pairs.
pub const UPLOAD_METADATA: HeaderName = HeaderName::from_static("upload-metadata");
/// `<algorithm> <base64 digest>` of one request's bytes.
pub const UPLOAD_CHECKSUM: HeaderName = HeaderName::from_static("upload-checksum");
/// When an unfinished upload expires.
pub const UPLOAD_EXPIRES: HeaderName = HeaderName::from_static("upload-expires");
/// The concatenation extension: `partial`, or `final;<url> <url> …`.
pub const UPLOAD_CONCAT: HeaderName = HeaderName::from_static("upload-concat");
/// A method a client cannot send itself (tus-js-client's `overridePatchMethod`).
pub const METHOD_OVERRIDE: HeaderName = HeaderName::from_static("x-http-method-override");

/// The one version of tus served.
pub const VERSION: &str = "1.0.0";
/// The extensions served.
pub const EXTENSIONS: &str =
    "creation,creation-with-upload,creation-defer-length,termination,expiration,checksum,concatenation";
/// The body type of PATCH (and of creation-with-upload).
pub const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, detail)
}

fn text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, ApiError> {
    headers
        .get(name)
        .map(|v| v.to_str().map(str::trim).map_err(|_| invalid(format!("{name} must be visible ASCII"))))
        .transpose()
}

/// A header holding a non-negative integer, if present.
pub fn number(headers: &HeaderMap, name: &HeaderName) -> Result<Option<u64>, ApiError> {
    text(headers, name)?
        .map(|v| {
            // `u64::from_str` takes a leading `+`; tus says digits only.
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(format!("{name} must be a non-negative integer")));
            }
            v.parse().map_err(|_| invalid(format!("{name} is too large")))
        })
        .transpose()
}

/// Whether the request's `Content-Type` is `application/offset+octet-stream`.
pub fn is_offset_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(OFFSET_OCTET_STREAM))
}

/// Whether `Tus-Resumable` names the version served.
pub fn speaks_tus(headers: &HeaderMap) -> bool {
    headers.get(TUS_RESUMABLE).is_some_and(|v| v.as_bytes() == VERSION.as_bytes())
}

/// The total length a creation declares: `Upload-Length`, or `None` with
/// `Upload-Defer-Length: 1`. Exactly one of the two.
pub fn creation_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let length = number(headers, &UPLOAD_LENGTH)?;
    let deferred = match text(headers, &UPLOAD_DEFER_LENGTH)? {
        None => false,
        Some("1") => true,
        Some(_) => return Err(invalid("Upload-Defer-Length must be 1")),
    };
    match (length, deferred) {
        (Some(length), false) => Ok(Some(length)),
        (None, true) => Ok(None),
        (Some(_), true) => Err(invalid("send Upload-Length or Upload-Defer-Length, not both")),
        (None, false) => Err(invalid("send Upload-Length, or Upload-Defer-Length: 1 to declare it later")),
    }
}

/// What `Upload-Concat` asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum UploadConcat<'a> {
    /// `partial`: a partial upload.
    Partial,
    /// `final;<url> <url> …`: a final upload made of the partial uploads at these URLs
    /// (absolute, or paths), in order.
    Final(Vec<&'a str>),
}

/// `Upload-Concat`, if present: exactly `partial`, or `final;` and at least one URL
/// (separated by spaces, as tus says).
pub fn concat(headers: &HeaderMap) -> Result<Option<UploadConcat<'_>>, ApiError> {
    let Some(value) = text(headers, &UPLOAD_CONCAT)? else { return Ok(None) };
    if value == "partial" {
        return Ok(Some(UploadConcat::Partial));
    }
    let urls: Vec<&str> = value
        .strip_prefix("final;")
        .ok_or_else(|| invalid("Upload-Concat is `partial` or `final;<url> <url> …`"))?
        .split_ascii_whitespace()
        .collect();
    if urls.is_empty() {
        return Err(invalid("Upload-Concat: `final;` must name the partial uploads' URLs"));
    }
    Ok(Some(UploadConcat::Final(urls)))
}

/// `Upload-Checksum: <algorithm> <base64>`, if present. An algorithm not served or a
/// digest of the wrong size is a 400, as tus says.
pub fn checksum(headers: &HeaderMap) -> Result<Option<DeclaredDigest>, ApiError> {
    let Some(value) = text(headers, &UPLOAD_CHECKSUM)? else { return Ok(None) };
    let (name, encoded) = value.split_once(' ').ok_or_else(|| invalid("Upload-Checksum is `<algorithm> <base64>`"))?;
    let algorithm = DigestAlgorithm::parse(name).ok_or_else(|| {
        invalid(format!("checksum algorithm {name:?} is not supported; use one of {}", algorithms()))
            .with("supported", algorithms())
    })?;
    let bytes = STANDARD
        .decode(encoded.trim())
        .ok()
        .filter(|b| b.len() == algorithm.digest_len())
        .ok_or_else(|| invalid(format!("Upload-Checksum must carry the base64 of a {algorithm} digest")))?;
    Ok(Some(DeclaredDigest { algorithm, bytes }))
}

/// The algorithms served, as `Tus-Checksum-Algorithm` lists them.
pub fn algorithms() -> String {
    DigestAlgorithm::ALL.map(|a| a.as_str()).join(",")
}

/// What `Upload-Metadata` says, sorted into ferry's fields.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UploadMetadata {
    /// From `filename`, else `name`.
    pub filename: Option<String>,
    /// From `filetype`, else `type`, else `content_type`.
    pub content_type: Option<String>,
    /// Every other pair.
    pub metadata: Metadata,
}

/// Keys whose value names the file, first found wins.
const NAME_KEYS: [&str; 2] = ["filename", "name"];
/// Keys whose value is the content type, first found wins.
const TYPE_KEYS: [&str; 3] = ["filetype", "type", "content_type"];

/// Parses `Upload-Metadata`: comma-separated pairs of a key (no spaces or commas, unique)
/// and an optional base64 value that must decode to UTF-8.
pub fn metadata(headers: &HeaderMap) -> Result<UploadMetadata, ApiError> {
    let mut pairs = Metadata::new();
    if let Some(value) = text(headers, &UPLOAD_METADATA)? {
        for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, encoded) = pair.split_once(' ').unwrap_or((pair, ""));
            let decoded = STANDARD
                .decode(encoded.trim())
                .map_err(|_| invalid(format!("Upload-Metadata: the value of {key:?} is not base64")))?;
            let decoded = String::from_utf8(decoded)
                .map_err(|_| invalid(format!("Upload-Metadata: the value of {key:?} is not UTF-8 text")))?;
            if pairs.insert(key.to_owned(), decoded).is_some() {
                return Err(invalid(format!("Upload-Metadata: the key {key:?} appears twice")));
            }
        }
    }
    let mut take = |keys: &[&str]| keys.iter().find_map(|k| pairs.remove(*k).filter(|v| !v.is_empty()));
    let filename = take(&NAME_KEYS);
    let content_type = take(&TYPE_KEYS);
    Ok(UploadMetadata { filename, content_type, metadata: pairs })
}

/// `Upload-Metadata` for HEAD: `filename`, `filetype`, then every metadata pair.
pub fn format_metadata(filename: &str, content_type: Option<&str>, metadata: &Metadata) -> String {
    let named = [("filename", Some(filename)), ("filetype", content_type)];
    named
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .chain(metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map(|(k, v)| if v.is_empty() { k.to_owned() } else { format!("{k} {}", STANDARD.encode(v)) })
        .collect::<Vec<_>>()
        .join(",")
}

/// `Upload-Expires`: an HTTP-date (RFC 9110), as tus says.
pub fn http_date(t: &Timestamp) -> String {
    let secs = u64::try_from(t.timestamp()).unwrap_or(0);
    httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(HeaderName::from_static(name), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn metadata_sorts_name_and_type_from_the_other_pairs() {
        let h = headers(&[("upload-metadata", "name dmlkZW8ubXA0,type dmlkZW8vbXA0,user NDI=,flag")]);
        let m = metadata(&h).unwrap();
        assert_eq!(m.filename.as_deref(), Some("video.mp4"));
        assert_eq!(m.content_type.as_deref(), Some("video/mp4"));
        assert_eq!(m.metadata, Metadata::from([("user".into(), "42".into()), ("flag".into(), String::new())]));
        let echoed = format_metadata("video.mp4", Some("video/mp4"), &m.metadata);
        assert_eq!(echoed, "filename dmlkZW8ubXA0,filetype dmlkZW8vbXA0,flag,user NDI=");
    }

    #[test]
    fn filename_wins_over_name_which_stays_metadata() {
        let h = headers(&[("upload-metadata", "name YQ==,filename Yg==")]);
        let m = metadata(&h).unwrap();
        assert_eq!(m.filename.as_deref(), Some("b"));
        assert_eq!(m.metadata["name"], "a");
    }

    #[test]
    fn metadata_that_is_not_base64_utf8_or_unique_is_refused() {
        for bad in ["k !!!", "k /w==", "k YQ==,k Yg=="] {
            assert!(metadata(&headers(&[("upload-metadata", bad)])).is_err(), "{bad}");
        }
    }

    #[test]
    fn lengths_take_one_of_two_forms() {
        assert_eq!(creation_length(&headers(&[("upload-length", "10")])).unwrap(), Some(10));
        assert_eq!(creation_length(&headers(&[("upload-defer-length", "1")])).unwrap(), None);
        for bad in [&[][..], &[("upload-length", "-1")], &[("upload-length", "+1")], &[("upload-defer-length", "0")]] {
            assert!(creation_length(&headers(bad)).is_err(), "{bad:?}");
        }
        assert!(creation_length(&headers(&[("upload-length", "1"), ("upload-defer-length", "1")])).is_err());
    }

    #[test]
    fn checksums_name_a_served_algorithm_and_a_digest_of_its_size() {
        let sha1 = checksum(&headers(&[("upload-checksum", "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=")])).unwrap().unwrap();
        assert_eq!(sha1.algorithm, DigestAlgorithm::Sha1);
        assert_eq!(sha1.bytes.len(), 20);
        assert!(checksum(&headers(&[("upload-checksum", "sha512 AAAA")])).is_err());
        assert!(checksum(&headers(&[("upload-checksum", "md5 AAAA")])).is_err(), "too short");
        assert_eq!(algorithms(), "md5,sha1,sha256,crc32");
    }

    #[test]
    fn concat_is_partial_or_final_with_urls() {
        assert_eq!(concat(&headers(&[])).unwrap(), None);
        assert_eq!(concat(&headers(&[("upload-concat", "partial")])).unwrap(), Some(UploadConcat::Partial));
        let h = headers(&[("upload-concat", "final;https://h/files/a.x  /files/b.y")]);
        assert_eq!(concat(&h).unwrap(), Some(UploadConcat::Final(vec!["https://h/files/a.x", "/files/b.y"])));
        for bad in ["final;", "final; ", "final", "partial;x", "Partial", "final:/files/a.x"] {
            assert!(concat(&headers(&[("upload-concat", bad)])).is_err(), "{bad}");
        }
    }

    #[test]
    fn expiry_is_an_http_date() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z").unwrap().to_utc();
        assert_eq!(http_date(&t), "Sun, 22 Nov 2026 10:00:00 GMT");
    }
}
