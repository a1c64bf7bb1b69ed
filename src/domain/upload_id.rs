//! `UploadId`: the random, unguessable name of one upload.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A random UUIDv4 naming one upload. Parsing accepts only the canonical hyphenated
/// lower-case form, so one upload has exactly one spelling (and one storage key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UploadId(Uuid);

impl UploadId {
    /// A fresh random id.
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }
}

impl Default for UploadId {
    fn default() -> Self {
        Self::new()
    }
}

/// The text was not a canonical upload id.
#[derive(Debug, thiserror::Error)]
#[error("not an upload id")]
pub struct InvalidUploadId;

impl FromStr for UploadId {
    type Err = InvalidUploadId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let uuid = Uuid::try_parse(s).map_err(|_| InvalidUploadId)?;
        let canonical = uuid.hyphenated().to_string();
        if canonical == s {
            Ok(Self(uuid))
        } else {
            Err(InvalidUploadId)
        }
    }
}

impl TryFrom<String> for UploadId {
    type Error = InvalidUploadId;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<UploadId> for String {
    fn from(id: UploadId) -> Self {
        id.to_string()
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_id_round_trips_through_its_text() {
        let id = UploadId::new();
        assert_eq!(id.to_string().parse::<UploadId>().ok(), Some(id));
    }

    #[test]
    fn non_canonical_spellings_are_refused() {
        let id = UploadId::new().to_string();
        assert!(id.to_uppercase().parse::<UploadId>().is_err());
        assert!(id.replace('-', "").parse::<UploadId>().is_err());
        assert!("../etc/passwd".parse::<UploadId>().is_err());
    }
}
