//! `UploadError`: everything the upload service can refuse or fail with.

use super::HookError;
use crate::domain::{ChunkPlanError, DigestAlgorithm, Md5Digest, ProcessingRefusal, UploadState};
use crate::session::SessionError;
use crate::storage::StorageError;

/// Why an upload operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// No such upload, or it has expired.
    #[error("no upload with this id exists (it may have expired)")]
    NotFound,
    /// A processor's report does not fit where the upload stands.
    #[error(transparent)]
    InvalidTransition(#[from] ProcessingRefusal),
    /// The upload is in a state that does not allow the operation.
    #[error("the upload is {}", .0.as_str())]
    WrongState(UploadState),
    /// The request body or a field of it is invalid.
    #[error("{0}")]
    InvalidRequest(String),
    /// The file or chunk sizes cannot be planned.
    #[error(transparent)]
    Plan(#[from] ChunkPlanError),
    /// The content type is not among `uploads.allowed_content_types`.
    #[error("content type {0:?} is not accepted here")]
    UnsupportedContentType(String),
    /// The chunk index is not in `[0, total)`.
    #[error("chunk index must be below {total}")]
    InvalidChunkIndex {
        /// The upload's chunk count.
        total: u32,
    },
    /// The declared chunk length is over `uploads.max_chunk_size`.
    #[error("a chunk may not exceed {max} bytes")]
    ChunkTooLarge {
        /// The limit.
        max: u64,
    },
    /// The declared chunk length is not what the plan says for this index.
    #[error("chunk {index} must be exactly {expected} bytes, not {declared}")]
    ChunkSizeMismatch {
        /// The chunk's index.
        index: u32,
        /// What the plan says.
        expected: u64,
        /// What the request declared.
        declared: u64,
    },
    /// `Content-MD5` is required and absent.
    #[error("Content-MD5 is required")]
    MissingChecksum,
    /// The body does not hash to the declared MD5.
    #[error("the chunk's MD5 is {actual}, but Content-MD5 says {expected}")]
    ChecksumMismatch {
        /// The declared digest.
        expected: Md5Digest,
        /// The digest of the bytes received.
        actual: Md5Digest,
    },
    /// The body ended before its declared length, or the connection dropped.
    #[error("the request body ended before its declared length")]
    IncompleteBody,
    /// A single-request upload is over `uploads.max_file_size`.
    #[error("the file is larger than the {max} bytes allowed")]
    FileTooLarge {
        /// The limit.
        max: u64,
    },
    /// A chunk for an append upload (which takes appends, not chunks).
    #[error("this upload takes appends at an offset, not numbered chunks")]
    NotAChunkedUpload,
    /// An append for a chunked upload.
    #[error("this upload takes numbered chunks, not appends")]
    NotAnAppendUpload,
    /// The append's offset is not the upload's.
    #[error("the upload's offset is {expected}, not {provided}")]
    OffsetMismatch {
        /// The upload's offset.
        expected: u64,
        /// The offset the request named.
        provided: u64,
    },
    /// The append would go past the upload's length.
    #[error("the upload's length is {length} bytes; this append goes past it")]
    LengthExceeded {
        /// The length (or the largest file allowed, when none is declared yet).
        length: u64,
    },
    /// A declared length contradicts the upload's.
    #[error("{0}")]
    InvalidLength(String),
    /// Another append holds the upload.
    #[error("another append to this upload is in progress")]
    AppendBusy,
    /// The append's bytes do not match the digest the client declared.
    #[error("the bytes do not match the declared {algorithm} digest; nothing of them was kept")]
    DigestMismatch {
        /// The declared digest's algorithm.
        algorithm: DigestAlgorithm,
    },
    /// A final upload names a partial upload that does not exist (unknown, expired or
    /// canceled); its position in the final's list, counting from 1.
    #[error("partial upload {position} of the final does not exist (it may have expired)")]
    PartialNotFound {
        /// Where the final names it, from 1.
        position: usize,
    },
    /// A final upload names an upload that was not created as a partial upload.
    #[error("upload {position} of the final was not created as a partial upload")]
    NotAPartialUpload {
        /// Where the final names it, from 1.
        position: usize,
    },
    /// A final upload names a partial upload that has not received all its bytes (or
    /// failed): a final is made of finished partials only.
    #[error("partial upload {position} of the final is {}, not completed", .state.as_str())]
    PartialUnfinished {
        /// Where the final names it, from 1.
        position: usize,
        /// Where that partial stands.
        state: UploadState,
    },
    /// An append to a final upload, which is made of its partial uploads.
    #[error("a final upload is made of its partial uploads and takes no appends")]
    FinalUploadImmutable,
    /// The storage needs the append's body length up front (`Content-Length`).
    #[error("this append needs a Content-Length")]
    LengthRequired,
    /// A direct-transfer call on an upload whose bytes go through ferry, or a chunk for a
    /// direct upload.
    #[error("this upload is not a direct transfer")]
    NotADirectUpload,
    /// A relay call (a chunk) on a direct upload.
    #[error("this upload is a direct transfer: its parts go to their URLs")]
    DirectUpload,
    /// The confirmation found parts the store does not hold (or holds at another size
    /// than the plan's); their numbers, from 1.
    #[error("the store holds no part (of the planned size) numbered {parts:?}")]
    PartsMissing {
        /// Part numbers to send (again).
        parts: Vec<u32>,
    },
    /// The store holds a part other than the one the client listed.
    #[error("part {part_number} in the store is not the one listed (its ETag differs)")]
    PartMismatch {
        /// The part's number, from 1.
        part_number: u32,
    },
    /// The pre-create hook refused the upload; the hook's message, made safe to show.
    #[error("{0}")]
    RejectedByHook(String),
    /// The pre-create hook gave no usable answer.
    #[error(transparent)]
    HookUnavailable(#[from] HookError),
    /// The session store failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The object storage failed.
    #[error(transparent)]
    Storage(StorageError),
}

impl From<StorageError> for UploadError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::ChecksumMismatch { expected, actual } => Self::ChecksumMismatch { expected, actual },
            StorageError::IncompleteBody { .. } | StorageError::Body(_) => Self::IncompleteBody,
            StorageError::TooLarge { max } => Self::FileTooLarge { max },
            StorageError::LengthRequired => Self::LengthRequired,
            other => Self::Storage(other),
        }
    }
}
