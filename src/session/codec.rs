//! How records are written into a store: JSON tagged with a format version, so a later
//! release can still read what this one wrote.

use serde::{Deserialize, Serialize};

use super::SessionError;
use crate::domain::{PartReceipt, UploadRecord};

#[derive(Serialize, Deserialize)]
#[serde(tag = "v")]
enum Stored<T> {
    #[serde(rename = "1")]
    V1(T),
}

/// Encodes a record or receipt for storage.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, SessionError> {
    serde_json::to_vec(&Stored::V1(value)).map_err(|e| SessionError::Corrupt(e.to_string()))
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, SessionError> {
    match serde_json::from_slice::<Stored<T>>(bytes) {
        Ok(Stored::V1(value)) => Ok(value),
        Err(e) => Err(SessionError::Corrupt(e.to_string())),
    }
}

/// Decodes a stored upload record.
pub(crate) fn decode_record(bytes: &[u8]) -> Result<UploadRecord, SessionError> {
    decode(bytes)
}

/// Decodes the fixed fields of a record kept in Redis.
pub(crate) fn decode_meta<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, SessionError> {
    decode(bytes)
}

/// Decodes a stored chunk receipt.
pub(crate) fn decode_receipt(bytes: &[u8]) -> Result<PartReceipt, SessionError> {
    decode(bytes)
}
