//! Direct transfers: a store that clients write to themselves, on URLs it presigns, and
//! that tells afterwards what it holds (its parts' listing, the object's head). S3 is one;
//! the filesystem is not (its direct parts come through ferry's own signed URLs).

use std::time::Duration;

use async_trait::async_trait;

use super::{ObjectAttributes, StagedUpload, StorageError};
use crate::domain::{ChunkIndex, Crc64, ObjectKey};

/// A request a client makes to the store itself: `PUT` to `url` with exactly `headers`
/// (every header the signature covers but `Host`) and the part's bytes as its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedPut {
    /// The URL, signature included.
    pub url: String,
    /// The headers to send, as the signature expects them.
    pub headers: Vec<(String, String)>,
}

/// A part the store holds for a multipart upload, as its listing tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPart {
    /// The chunk it is (part `index + 1`).
    pub index: ChunkIndex,
    /// Its length in bytes.
    pub size: u64,
    /// Its ETag, unquoted, where the store lists them (s3s-fs does not).
    pub etag: Option<String>,
}

/// A finished object, as its head tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    /// Its ETag, unquoted.
    pub etag: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its full-object CRC-64/NVME, when the store keeps and reports one.
    pub crc64: Option<Crc64>,
}

/// A store clients write to directly.
#[async_trait(?Send)]
pub trait DirectStore {
    /// The smallest part but the last the store takes in a multipart upload.
    fn min_part_size(&self) -> u64;

    /// A URL for part `index` (exactly `len` bytes) of `upload`'s multipart upload, valid
    /// for `expires_in`.
    async fn presign_part(
        &self,
        upload: &StagedUpload,
        index: ChunkIndex,
        len: u64,
        expires_in: Duration,
    ) -> Result<PresignedPut, StorageError>;

    /// A URL that puts the whole object (exactly `len` bytes) at `upload`'s key, carrying
    /// `attributes`, valid for `expires_in`. With `checksum`, the store is asked to refuse
    /// bytes whose CRC-64/NVME differs, where it checks that.
    async fn presign_object(
        &self,
        upload: &StagedUpload,
        len: u64,
        attributes: &ObjectAttributes,
        checksum: Option<Crc64>,
        expires_in: Duration,
    ) -> Result<PresignedPut, StorageError>;

    /// Every part `upload`'s multipart upload holds, in part order (every page of the listing).
    async fn list_parts(&self, upload: &StagedUpload) -> Result<Vec<ListedPart>, StorageError>;

    /// The object at `key`, if there is one.
    async fn head_object(&self, key: &ObjectKey) -> Result<Option<ObjectHead>, StorageError>;
}
