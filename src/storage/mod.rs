//! Object storage: where chunk bytes stream to and where finished objects live.
//! `ObjectStore` is the contract, shaped like an S3 multipart upload (create, put parts in
//! any order, complete or abort); `fs` keeps it on local disk. Bodies are streams, never
//! whole chunks: memory per request is a few buffers, whatever the chunk size.

mod direct;
pub mod fs;
pub mod s3;

#[cfg(any(test, feature = "test-support"))]
pub mod contract;

use std::io;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::LocalBoxStream;

use crate::domain::{ChunkIndex, Md5Digest, Metadata, ObjectKey, PartReceipt, UploadId, UploadRecord};

pub use direct::{DirectStore, ListedPart, ObjectHead, PresignedPut};
pub use fs::FsObjectStore;
pub use s3::S3ObjectStore;

/// A request body: bytes as they arrive from the client. Not `Send`, because the HTTP
/// server's payload is not; a backend that needs `Send` bridges it through a channel.
pub type ByteStream<'a> = LocalBoxStream<'a, Result<Bytes, io::Error>>;

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The bytes did not hash to the MD5 the client declared; nothing was kept.
    #[error("the body's MD5 is {actual}, not the declared {expected}")]
    ChecksumMismatch {
        /// What the client declared.
        expected: Md5Digest,
        /// What the bytes hash to.
        actual: Md5Digest,
    },
    /// The body ended before (or ran past) its declared length; nothing was kept.
    #[error("the body carried {received} bytes, not the declared {expected}")]
    IncompleteBody {
        /// The declared length.
        expected: u64,
        /// What arrived.
        received: u64,
    },
    /// Reading the client's body failed (the connection dropped); nothing was kept.
    #[error("the request body could not be read")]
    Body(#[source] io::Error),
    /// A body of unknown length grew past the limit; nothing was kept.
    #[error("the body is larger than {max} bytes")]
    TooLarge {
        /// The limit.
        max: u64,
    },
    /// The store needs the body's length up front and the request did not say it;
    /// nothing was read.
    #[error("the body's length must be known before its first byte")]
    LengthRequired,
    /// The storage failed for a passing reason; retrying may succeed.
    #[error("the object storage is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Some stored parts no longer hold the bytes of their receipts (a concurrent corrupt
    /// send overwrote them in a store that does not check `Content-MD5`), or are not there
    /// (a part file lost, a listing that does not show it yet); nothing was assembled, and
    /// these chunks must be sent again.
    #[error("stored parts {0:?} differ from their receipts or are missing")]
    PartsChanged(Vec<ChunkIndex>),
    /// The storage refused for good (missing part, size mismatch, access denied).
    #[error("the object storage refused the request: {0}")]
    Refused(String),
}

impl StorageError {
    /// Wraps a backend error as `Unavailable`.
    pub fn unavailable(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable(Box::new(err))
    }

    /// Whether the client caused it (a bad or broken body) rather than the storage.
    pub fn is_client_fault(&self) -> bool {
        matches!(
            self,
            Self::ChecksumMismatch { .. }
                | Self::IncompleteBody { .. }
                | Self::Body(_)
                | Self::TooLarge { .. }
                | Self::LengthRequired
        )
    }
}

/// An upload's place in storage, as the session record remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedUpload {
    /// ferry's upload id.
    pub id: UploadId,
    /// The key the object will have.
    pub key: ObjectKey,
    /// The storage's own multipart upload id, if it has one.
    pub storage_upload_id: Option<String>,
    /// Whether its bytes arrive by appends (tus, the IETF draft) rather than chunks.
    pub append: bool,
    /// How many consecutive chunks make one of the store's parts (see
    /// `ObjectStore::chunks_per_part`), as the record fixed it.
    pub part_chunks: u32,
    /// Whether it is a tus partial upload: `complete` keeps its bytes in the upload's
    /// staging area for final uploads (`concatenate`) instead of making an object at its
    /// key, and `abort` removes them with everything else staged.
    pub partial: bool,
}

impl StagedUpload {
    /// A chunked upload of `id` whose object goes to `key`, before the storage has given
    /// it anything of its own.
    pub fn new(id: UploadId, key: ObjectKey) -> Self {
        Self { id, key, storage_upload_id: None, append: false, part_chunks: 1, partial: false }
    }
}

impl From<&UploadRecord> for StagedUpload {
    fn from(record: &UploadRecord) -> Self {
        Self {
            id: record.id,
            key: record.key.clone(),
            storage_upload_id: record.storage_upload_id.clone(),
            append: record.append.is_some(),
            part_chunks: record.part_chunks,
            partial: record.is_partial(),
        }
    }
}

/// A finished partial upload (tus concatenation) whose kept bytes a final upload is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partial {
    /// Where its bytes are kept: a partial `StagedUpload` that `complete` finished.
    pub upload: StagedUpload,
    /// Its length in bytes.
    pub size: u64,
    /// The tag `complete` gave it.
    pub etag: String,
}

/// Where an append starts, as the session record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendAt {
    /// Bytes the upload holds (recorded): the append's first byte goes there.
    pub offset: u64,
    /// The storage's cursor as last recorded (empty at first).
    pub cursor: String,
    /// Parts recorded so far (S3): the next part's index.
    pub parts: u32,
    /// The upload's total length, if known: an append that reaches it is the last.
    pub length: Option<u64>,
    /// This request's body length, when the request says it (`Content-Length`). A store
    /// that must declare each write's length before its first byte (S3) needs it, and
    /// answers `LengthRequired` without it; the filesystem does not.
    pub len: Option<u64>,
}

/// What an append stored. Everything here is durable; the caller records it (or, to
/// keep nothing of the request, does not: the next append starts from the old state).
#[derive(Debug)]
pub struct AppendStored {
    /// The upload's new offset: every byte before it is stored for good.
    pub offset: u64,
    /// The cursor to record with it.
    pub cursor: String,
    /// Parts finished on the way, to record with the upload's receipts.
    pub parts: Vec<(ChunkIndex, PartReceipt)>,
    /// Why the body stopped early, when it did (a cut connection): the bytes before
    /// `offset` are kept all the same.
    pub broken: Option<StorageError>,
}

/// What a finished object carries besides its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectAttributes {
    /// Its content type, as the client declared it.
    pub content_type: Option<String>,
    /// The client's metadata; a store keeps what it can represent.
    pub metadata: Metadata,
}

impl From<&UploadRecord> for ObjectAttributes {
    fn from(record: &UploadRecord) -> Self {
        Self { content_type: record.content_type.clone(), metadata: record.metadata.clone() }
    }
}

/// A finished object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// Its ETag (for a multipart object: the MD5 of the part MD5s, `-` and the part count).
    pub etag: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The contract every storage backend meets; `contract::run_all` checks it.
#[async_trait(?Send)]
pub trait ObjectStore: Send + Sync + 'static {
    /// Prepares a multipart upload for `upload` (its key; a partial upload's staging
    /// area), whose object will carry `attributes`; the storage's own upload id, if it has one.
    async fn create_multipart(
        &self,
        upload: &StagedUpload,
        attributes: &ObjectAttributes,
    ) -> Result<Option<String>, StorageError>;

    /// How many consecutive chunks of `chunk_size` bytes this store joins into one of its
    /// parts: 1 (every chunk is a part, the default) unless its parts have a smallest
    /// size the chunks are under (S3). Fixed in an upload's record at creation.
    fn chunks_per_part(&self, chunk_size: u64) -> u32 {
        let _ = chunk_size;
        1
    }

    /// Joins the chunks of one group (`parts`: the receipts of every chunk in
    /// `UploadRecord::part_group`, in order) into the store's part ahead of completion,
    /// once they are all recorded. Only an optimisation: `complete` makes any part not
    /// sealed, or sealed from other receipts, itself. Idempotent; a store that keeps each
    /// chunk as a part has nothing to do.
    async fn seal(&self, upload: &StagedUpload, parts: &[(ChunkIndex, PartReceipt)]) -> Result<(), StorageError> {
        let _ = (upload, parts);
        Ok(())
    }

    /// Streams exactly `len` bytes of `body` into part `index`, hashing on the way. The
    /// part is kept only if the length and (when given) the MD5 match. Sends of one part
    /// never tear each other: `complete` assembles exactly the sends whose receipts it is
    /// given.
    async fn put_part(
        &self,
        upload: &StagedUpload,
        index: ChunkIndex,
        body: ByteStream<'_>,
        len: u64,
        expected_md5: Option<Md5Digest>,
    ) -> Result<PartReceipt, StorageError>;

    /// Drops the bytes of an earlier send of part `index` whose receipt was replaced by a
    /// later send. Idempotent; a store that overwrites a part in place has nothing to do.
    async fn drop_part(
        &self,
        upload: &StagedUpload,
        index: ChunkIndex,
        replaced: &PartReceipt,
    ) -> Result<(), StorageError>;

    /// Joins `parts` (every index, in order) into the object at the upload's key, which
    /// appears at once and whole; checks it holds `size` bytes; drops the staged parts.
    /// Never assembles bytes other than the receipts': where stored parts changed or are
    /// missing, it answers `PartsChanged` and assembles nothing. Completing again after a
    /// success returns the same object.
    ///
    /// A partial upload's bytes are joined the same way but kept in its staging area, out
    /// of sight: no object appears at its key, and `abort` removes them.
    async fn complete(
        &self,
        upload: &StagedUpload,
        parts: &[(ChunkIndex, PartReceipt)],
        size: u64,
    ) -> Result<StoredObject, StorageError>;

    /// Appends the bytes of `body` after the `at.offset` bytes the upload holds: all of
    /// them, at most `max`. Keeps every byte it can make durable even when the body
    /// breaks, and says how far it got. Stores nothing past `at.length`. Never disturbs
    /// what the recorded state `at` refers to, so an append that is not recorded (a
    /// checksum mismatch, a lost claim) leaves the upload as it was.
    async fn append(
        &self,
        upload: &StagedUpload,
        at: &AppendAt,
        body: ByteStream<'_>,
        max: u64,
    ) -> Result<AppendStored, StorageError>;

    /// Makes the object at `upload`'s key (a final upload, prepared by `create_multipart`)
    /// from the kept bytes of `partials`, in that order, inside the store: a server-side
    /// copy, not a pass of the bytes through ferry wherever the store allows. The object
    /// appears at once and whole, and is checked to hold `size` bytes; the partials stay as
    /// they were. A partial whose bytes are gone is a refusal, and no object is made.
    /// Concatenating again after a success returns the same object.
    async fn concatenate(
        &self,
        upload: &StagedUpload,
        partials: &[Partial],
        size: u64,
    ) -> Result<StoredObject, StorageError>;

    /// Drops every staged part of the upload. Idempotent; never touches a finished object.
    async fn abort(&self, upload: &StagedUpload) -> Result<(), StorageError>;

    /// Streams a body of unknown length (at most `max_len` bytes) into a whole object
    /// carrying `attributes`.
    async fn put_object(
        &self,
        key: &ObjectKey,
        body: ByteStream<'_>,
        max_len: u64,
        attributes: &ObjectAttributes,
    ) -> Result<StoredObject, StorageError>;

    /// Deletes a finished object. Idempotent.
    async fn delete_object(&self, key: &ObjectKey) -> Result<(), StorageError>;

    /// Checks that the storage answers.
    async fn check(&self) -> Result<(), StorageError>;

    /// Bytes the store holds on this machine's disk for work not yet finished (staged
    /// chunks, files being written), as measured lately; `None` for a store that keeps
    /// nothing here (S3).
    async fn staged_bytes(&self) -> Result<Option<u64>, StorageError> {
        Ok(None)
    }

    /// The store as clients can write to it directly, if they can (S3). `None`: direct
    /// transfers send their parts through ferry, to `put_part` (the filesystem).
    fn direct(&self) -> Option<&dyn DirectStore> {
        None
    }
}

/// The ETag S3 gives a multipart object: the MD5 of the parts' MD5s, then `-<count>`.
pub fn multipart_etag<'a>(part_md5s: impl IntoIterator<Item = &'a Md5Digest>) -> String {
    let mut hasher = crate::domain::Md5Hasher::new();
    let mut count = 0;
    for md5 in part_md5s {
        hasher.update(md5.as_bytes());
        count += 1;
    }
    format!("{}-{count}", hasher.finish().hex())
}
