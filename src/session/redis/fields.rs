//! How an upload record is laid out in a Redis hash: the fields that never change after
//! creation as one versioned JSON value (`meta`), and the ones the scripts update as
//! plain fields. Times are kept as Unix milliseconds.

use std::collections::HashMap;

use chrono::DateTime;
use serde::{Deserialize, Serialize};

use super::super::codec::{decode_meta, encode};
use super::super::SessionError;
use crate::domain::{
    AppendState, ChunkPlan, Claim, Concat, Crc64, Metadata, ObjectKey, Processing, Timestamp, Transfer, UploadId,
    UploadRecord, UploadState,
};

/// The fields of a record fixed at creation.
#[derive(Serialize, Deserialize)]
pub(crate) struct Meta {
    id: UploadId,
    key: ObjectKey,
    filename: String,
    content_type: Option<String>,
    metadata: Metadata,
    plan: ChunkPlan,
    storage_upload_id: Option<String>,
    created_at: Timestamp,
    /// Absent in records written before chunks were grouped: one chunk per part.
    #[serde(default = "one")]
    part_chunks: u32,
    /// Absent from records written before concatenation existed, and from the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    concat: Option<Concat>,
    /// The CRC-64/NVME the client declared, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    declared_checksum: Option<Crc64>,
    /// How the bytes travel; absent: relayed.
    #[serde(default, skip_serializing_if = "Transfer::is_relay")]
    transfer: Transfer,
}

fn one() -> u32 {
    1
}

pub(super) fn ms(t: Timestamp) -> i64 {
    t.timestamp_millis()
}

/// The hash fields of a new record, as field/value pairs.
pub(super) fn to_fields(r: &UploadRecord) -> Result<Vec<(&'static str, String)>, SessionError> {
    let meta = Meta {
        id: r.id,
        key: r.key.clone(),
        filename: r.filename.clone(),
        content_type: r.content_type.clone(),
        metadata: r.metadata.clone(),
        plan: r.plan,
        storage_upload_id: r.storage_upload_id.clone(),
        created_at: r.created_at,
        part_chunks: r.part_chunks,
        concat: r.concat.clone(),
        declared_checksum: r.declared_checksum,
        transfer: r.transfer,
    };
    let meta = String::from_utf8(encode(&meta)?).map_err(|e| SessionError::Corrupt(e.to_string()))?;
    let mut fields = vec![
        ("meta", meta),
        ("state", r.state.as_str().to_owned()),
        ("total", r.plan.total_chunks().to_string()),
        ("received", r.received_chunks.to_string()),
        ("bytes", r.bytes_received.to_string()),
        ("fence", r.fence.to_string()),
        ("claim_fence", r.claim.map_or(0, |c| c.fence).to_string()),
        ("claim_until", r.claim.map_or(0, |c| ms(c.until)).to_string()),
        ("updated", ms(r.updated_at).to_string()),
        ("expires", ms(r.expires_at).to_string()),
    ];
    if !r.transfer.is_relay() {
        // Read by the record script, which leaves a direct upload's claim to its confirmation.
        fields.push(("direct", "1".into()));
    }
    if let Some(at) = r.progress_at {
        fields.push(("progress_at", ms(at).to_string()));
    }
    if let Some(etag) = &r.etag {
        fields.push(("etag", etag.clone()));
    }
    if let Some(error) = &r.error {
        fields.push(("error", error.clone()));
    }
    if let Some(crc) = r.checksum {
        fields.push(("crc64", crc.to_string()));
    }
    if let Some(processing) = &r.processing {
        fields.push(("processing", processing_field(processing)?));
    }
    if let Some(append) = &r.append {
        fields.push(("append", "1".into()));
        fields.push(("offset", append.offset.to_string()));
        fields.push(("length", append.length.map(|l| l.to_string()).unwrap_or_default()));
        fields.push(("cursor", append.cursor.clone()));
        if let Some(crc) = append.crc64 {
            fields.push(("append_crc64", crc.to_string()));
        }
    }
    Ok(fields)
}

/// Reads a record back from its hash fields.
pub(super) fn from_fields(fields: &HashMap<String, String>) -> Result<UploadRecord, SessionError> {
    let corrupt = |what: &str| SessionError::Corrupt(format!("upload hash: bad or missing {what}"));
    let text = |name: &str| fields.get(name).ok_or_else(|| corrupt(name));
    let number = |name: &str| text(name)?.parse::<i64>().map_err(|_| corrupt(name));
    let time = |name: &str| DateTime::from_timestamp_millis(number(name)?).ok_or_else(|| corrupt(name));
    let count = |name: &str| u64::try_from(number(name)?).map_err(|_| corrupt(name));

    let meta: Meta = decode_meta(text("meta")?.as_bytes())?;
    let claim_fence = count("claim_fence")?;
    let claim =
        (claim_fence > 0).then(|| Ok::<_, SessionError>(Claim { fence: claim_fence, until: time("claim_until")? }));
    Ok(UploadRecord {
        id: meta.id,
        key: meta.key,
        filename: meta.filename,
        content_type: meta.content_type,
        metadata: meta.metadata,
        plan: meta.plan,
        state: UploadState::parse(text("state")?).ok_or_else(|| corrupt("state"))?,
        storage_upload_id: meta.storage_upload_id,
        received_chunks: u32::try_from(count("received")?).map_err(|_| corrupt("received"))?,
        bytes_received: count("bytes")?,
        fence: count("fence")?,
        claim: claim.transpose()?,
        etag: fields.get("etag").cloned(),
        error: fields.get("error").cloned(),
        created_at: meta.created_at,
        updated_at: time("updated")?,
        expires_at: time("expires")?,
        append: match fields.get("append").map(String::as_str) {
            Some("1") => Some(AppendState {
                length: match text("length")?.as_str() {
                    "" => None,
                    length => Some(length.parse().map_err(|_| corrupt("length"))?),
                },
                offset: count("offset")?,
                cursor: fields.get("cursor").cloned().unwrap_or_default(),
                crc64: fields
                    .get("append_crc64")
                    .map(|c| c.parse().map_err(|_| corrupt("append_crc64")))
                    .transpose()?,
            }),
            _ => None,
        },
        part_chunks: meta.part_chunks,
        progress_at: fields.get("progress_at").map(|_| time("progress_at")).transpose()?,
        concat: meta.concat,
        processing: fields.get("processing").map(|p| decode_meta(p.as_bytes())).transpose()?,
        declared_checksum: meta.declared_checksum,
        checksum: fields.get("crc64").map(|c| c.parse().map_err(|_| corrupt("crc64"))).transpose()?,
        transfer: meta.transfer,
    })
}

/// The `processing` field: the stage as JSON, which the processing script replaces only
/// if it still holds what the caller read.
pub(super) fn processing_field(processing: &Processing) -> Result<String, SessionError> {
    String::from_utf8(encode(processing)?).map_err(|e| SessionError::Corrupt(e.to_string()))
}

/// Pairs a flat `[field, value, field, value, …]` reply into a map.
pub(super) fn pairs(flat: &[String]) -> HashMap<String, String> {
    flat.chunks_exact(2).map(|kv| (kv[0].clone(), kv[1].clone())).collect()
}
