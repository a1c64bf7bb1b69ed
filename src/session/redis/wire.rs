//! How the Redis store spells the scripts' arguments (times in milliseconds, flags as
//! `0`/`1`) and reads their tagged replies.

use chrono::Duration;

use crate::domain::{Claim, Timestamp, UploadState};
use crate::session::SessionError;

/// How long past its expiry Redis itself drops a record the sweepers never reached.
pub(super) const SAFETY_MARGIN_MS: i64 = 7 * 24 * 3600 * 1000;

pub(super) fn is_noscript(err: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    err.downcast_ref::<redis::RedisError>()
        .is_some_and(|e| e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript))
}

pub(super) fn millis(d: Duration) -> String {
    d.num_milliseconds().to_string()
}

pub(super) fn flag(on: bool) -> String {
    if on { "1" } else { "0" }.into()
}

pub(super) fn margin() -> String {
    SAFETY_MARGIN_MS.to_string()
}

/// Splits a tagged script reply: its tag and the rest.
pub(super) fn tagged(reply: &[String]) -> (&str, &[String]) {
    match reply.split_first() {
        Some((tag, rest)) => (tag.as_str(), rest),
        None => ("", &[]),
    }
}

/// The claim a script answered as `fence, claim_until` at `at` (fence 0: none).
pub(super) fn claim_at(rest: &[String], at: usize) -> Result<Option<Claim>, SessionError> {
    Ok(match number::<u64>(rest.get(at))? {
        0 => None,
        fence => Some(Claim { fence, until: time(number(rest.get(at + 1))?)? }),
    })
}

pub(super) fn state_of(rest: &[String]) -> Result<UploadState, SessionError> {
    rest.first()
        .and_then(|s| UploadState::parse(s))
        .ok_or_else(|| SessionError::Corrupt("a script answered an unknown state".into()))
}

pub(super) fn number<T: std::str::FromStr>(value: Option<&String>) -> Result<T, SessionError> {
    value.and_then(|v| v.parse().ok()).ok_or_else(|| SessionError::Corrupt("a script answered a bad number".into()))
}

pub(super) fn time(millis: i64) -> Result<Timestamp, SessionError> {
    chrono::DateTime::from_timestamp_millis(millis).ok_or_else(|| SessionError::Corrupt("bad time".into()))
}
