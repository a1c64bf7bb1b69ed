//! The JSON bodies the API answers with, built from service results.

use serde::Serialize;

use crate::domain::{rfc3339, Concat, Metadata, Processing, Transfer, UploadRecord, UploadState};
use crate::upload::{ChunkAccepted, PartUrl, UploadStatus};

/// The answer to creating an upload.
#[derive(Serialize)]
pub struct Created<'a> {
    upload_id: String,
    upload_token: String,
    key: &'a str,
    state: &'static str,
    size: u64,
    chunk_size: u64,
    total_chunks: u32,
    expires_at: String,
    /// Direct transfers only: the part plan and the first page of part URLs.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    direct: Option<DirectPlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parts: Option<Vec<PartView>>,
}

/// A direct upload's plan, as creation and status show it: `"transfer": "direct"`, its
/// part size and part count.
#[derive(Serialize)]
struct DirectPlan {
    transfer: &'static str,
    part_size: u64,
    total_parts: u32,
}

impl DirectPlan {
    /// The plan of `record`, if it is a direct upload.
    fn of(record: &UploadRecord) -> Option<Self> {
        (record.transfer == Transfer::Direct).then(|| Self {
            transfer: "direct",
            part_size: record.plan.chunk_size(),
            total_parts: record.plan.total_chunks(),
        })
    }
}

/// One part URL: `PUT` the part's bytes to `url` with exactly `headers`.
#[derive(Serialize)]
pub struct PartView {
    part_number: u32,
    url: String,
    method: &'static str,
    headers: std::collections::BTreeMap<String, String>,
    expires_at: String,
}

impl PartView {
    pub fn new(part: &PartUrl, url: String, headers: Vec<(String, String)>) -> Self {
        Self {
            part_number: part.part_number,
            url,
            method: "PUT",
            headers: headers.into_iter().collect(),
            expires_at: rfc3339(&part.expires_at),
        }
    }
}

impl<'a> Created<'a> {
    /// Adds a direct upload's plan and first page of part URLs.
    pub fn with_parts(mut self, record: &UploadRecord, parts: Vec<PartView>) -> Self {
        self.direct = DirectPlan::of(record);
        self.parts = Some(parts);
        self
    }

    pub fn new(record: &'a UploadRecord, upload_token: String) -> Self {
        Self {
            upload_id: record.id.to_string(),
            upload_token,
            key: record.key.as_str(),
            state: record.state.as_str(),
            size: record.plan.size(),
            chunk_size: record.plan.chunk_size(),
            total_chunks: record.plan.total_chunks(),
            expires_at: rfc3339(&record.expires_at),
            direct: None,
            parts: None,
        }
    }
}

/// The answer to status and resume. For an append upload (tus), `size` is its length
/// (`null` while deferred) and `offset` / `length` say where it stands; the chunk fields
/// describe the storage's parts, not anything the client sends.
#[derive(Serialize)]
pub struct Status<'a> {
    upload_id: String,
    state: &'static str,
    /// Where the upload stands for the user: `uploading`, `processing`, `done`, `failed`.
    stage: &'static str,
    /// The processing stage, once the upload is completed (with `processing.enabled`).
    #[serde(skip_serializing_if = "Option::is_none")]
    processing: Option<&'a Processing>,
    filename: &'a str,
    content_type: Option<&'a str>,
    size: Option<u64>,
    /// Append uploads only: bytes stored, where the next append starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    /// Append uploads only: the declared length, `null` while deferred.
    #[serde(skip_serializing_if = "Option::is_none")]
    length: Option<Option<u64>>,
    /// tus concatenation only: `partial` (its bytes wait for a final upload and are at no
    /// key) or `final` (made of partial uploads).
    #[serde(skip_serializing_if = "Option::is_none")]
    concat: Option<&'static str>,
    chunk_size: u64,
    total_chunks: u32,
    received_chunks: u32,
    bytes_received: u64,
    missing_chunks: &'a [u32],
    /// Direct transfers only: the part plan, and while it takes parts, the numbers of
    /// those the store does not hold.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    direct: Option<DirectPlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    missing_parts: Option<&'a [u32]>,
    key: &'a str,
    metadata: &'a Metadata,
    #[serde(skip_serializing_if = "Option::is_none")]
    etag: Option<&'a str>,
    /// Once completed: the whole object's checksums, when ferry knows them.
    #[serde(skip_serializing_if = "Option::is_none")]
    checksum: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    created_at: String,
    updated_at: String,
    expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    upload_token: Option<String>,
}

impl<'a> Status<'a> {
    pub fn new(status: &'a UploadStatus) -> Self {
        let r = &status.record;
        Self {
            upload_id: r.id.to_string(),
            state: r.state.as_str(),
            stage: r.stage(),
            processing: r.processing.as_ref().filter(|_| r.state == UploadState::Completed),
            filename: &r.filename,
            content_type: r.content_type.as_deref(),
            size: r.size(),
            offset: r.append.as_ref().map(|a| a.offset),
            length: r.append.as_ref().map(|a| a.length),
            concat: r.concat.as_ref().map(|c| match c {
                Concat::Partial => "partial",
                Concat::Final { .. } => "final",
            }),
            chunk_size: r.plan.chunk_size(),
            total_chunks: r.plan.total_chunks(),
            received_chunks: r.received_chunks,
            bytes_received: r.bytes_received,
            missing_chunks: &status.missing_chunks,
            direct: DirectPlan::of(r),
            missing_parts: status.missing_parts.as_deref(),
            key: r.key.as_str(),
            metadata: &r.metadata,
            etag: r.etag.as_deref(),
            checksum: r
                .checksum
                .filter(|_| r.state == UploadState::Completed)
                .map(|crc| serde_json::json!({ "crc64nvme": crc.to_string() })),
            error: r.error.as_deref(),
            created_at: rfc3339(&r.created_at),
            updated_at: rfc3339(&r.updated_at),
            expires_at: rfc3339(&r.expires_at),
            upload_token: None,
        }
    }

    /// Adds the upload token (for uploads created by this very request).
    pub fn with_token(mut self, token: String) -> Self {
        self.upload_token = Some(token);
        self
    }
}

/// The answer to a stored chunk.
#[derive(Serialize)]
pub struct Chunk {
    index: u32,
    md5: String,
    received_chunks: u32,
    total_chunks: u32,
    bytes_received: u64,
    state: &'static str,
}

impl From<&ChunkAccepted> for Chunk {
    fn from(c: &ChunkAccepted) -> Self {
        Self {
            index: c.index.0,
            md5: c.md5.to_string(),
            received_chunks: c.received_chunks,
            total_chunks: c.total_chunks,
            bytes_received: c.bytes_received,
            state: c.state.as_str(),
        }
    }
}
