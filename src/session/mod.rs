//! The session store: where upload records and per-chunk receipts live, shared by every
//! instance that serves the upload. `SessionStore` is the contract; `embedded` keeps it
//! in a local redb file for a single instance. Every state change is one atomic step in
//! the store, so concurrent requests (on any instance) cannot interleave into a half state.

mod codec;
pub mod embedded;
pub mod redis;

#[cfg(any(test, feature = "test-support"))]
pub mod contract;

use async_trait::async_trait;
use chrono::Duration;

use crate::domain::{ChunkIndex, Claim, PartReceipt, Timestamp, UploadId, UploadRecord, UploadState};

pub use self::redis::RedisSessionStore;
pub use embedded::EmbeddedSessionStore;

/// Why a session-store call failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The store cannot be reached or refused to work; the call may succeed later.
    #[error("the session store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored record could not be read back.
    #[error("a stored session record is unreadable: {0}")]
    Corrupt(String),
    /// `insert` found a record with the same id.
    #[error("an upload with this id exists already")]
    AlreadyExists,
}

impl SessionError {
    /// Wraps a backend error as `Unavailable`.
    pub fn unavailable(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable(Box::new(err))
    }
}

/// What `record_part` did.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordOutcome {
    /// The receipt is stored (a re-sent chunk replaces its earlier receipt).
    Recorded {
        /// Distinct chunks stored now.
        received_chunks: u32,
        /// Bytes in those chunks.
        bytes_received: u64,
        /// Present when this call filled the last gap: the caller now holds the claim
        /// to assemble the object.
        claim: Option<Claim>,
    },
    /// The upload is not taking chunks in this state; nothing was stored.
    Refused(UploadState),
    /// No such upload, or it has expired.
    NotFound,
}

/// What `cancel` did.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// The upload is now `canceled` (remembered until its new expiry); the record as it
    /// was before, so the caller can clean its storage.
    Canceled(Box<UploadRecord>),
    /// The upload cannot be canceled in this state (`completed`, `canceled`, or
    /// `completing` under a live claim).
    Refused(UploadState),
    /// No such upload, or it has expired.
    NotFound,
}

/// How the holder of a claim ends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    /// The object is stored with this ETag.
    Completed {
        /// The object's ETag.
        etag: String,
    },
    /// Assembly failed for good.
    Failed {
        /// What went wrong, in words fit for the client.
        error: String,
    },
    /// Assembly failed for a passing reason: stay `completing`, let the next caller retry.
    Release,
    /// Some stored chunks turned out bad: forget their receipts and go back to
    /// `uploading`, so the client sends them again.
    Reopen {
        /// The chunks to send again.
        chunks: Vec<ChunkIndex>,
    },
}

/// The contract every session backend meets; `contract::run_all` checks it.
///
/// Times come from the caller (the service's clock), never from the backend, so that
/// every instance agrees and tests can move time. Stores keep them to the millisecond.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Stores a new record; `AlreadyExists` if its id is taken.
    async fn insert(&self, record: &UploadRecord) -> Result<(), SessionError>;

    /// The record, if it exists (expired or not: the caller judges expiry).
    async fn get(&self, id: &UploadId) -> Result<Option<UploadRecord>, SessionError>;

    /// The receipts of every stored chunk, in index order.
    async fn parts(&self, id: &UploadId) -> Result<Vec<(ChunkIndex, PartReceipt)>, SessionError>;

    /// Atomically: if the upload is `uploading` and not expired at `now`, keeps the
    /// receipt for `index`, counts the chunk if it is new, moves expiry to `now + ttl`,
    /// and, if this filled the last gap, takes the claim for `lease`.
    async fn record_part(
        &self,
        id: &UploadId,
        index: ChunkIndex,
        receipt: &PartReceipt,
        now: Timestamp,
        ttl: Duration,
        lease: Duration,
    ) -> Result<RecordOutcome, SessionError>;

    /// Takes the claim to assemble the object if every chunk is in and nobody holds a
    /// live claim; `None` otherwise.
    async fn claim(&self, id: &UploadId, now: Timestamp, lease: Duration) -> Result<Option<Claim>, SessionError>;

    /// Ends the claim with `fence`; `false` (and no change) if that claim is no longer
    /// current. Completing or failing drops the chunk receipts and moves expiry to
    /// `now + ttl`; reopening forgets the named receipts and moves expiry likewise.
    async fn finish(
        &self,
        id: &UploadId,
        fence: u64,
        outcome: &Finish,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<bool, SessionError>;

    /// Moves the expiry of a live (unexpired, not canceled) upload to `now + ttl`; the
    /// updated record, or `None` if there is none to touch.
    async fn touch(&self, id: &UploadId, now: Timestamp, ttl: Duration) -> Result<Option<UploadRecord>, SessionError>;

    /// Atomically marks the upload `canceled`, drops its receipts and keeps the record as
    /// a tombstone until `now + ttl`.
    async fn cancel(&self, id: &UploadId, now: Timestamp, ttl: Duration) -> Result<CancelOutcome, SessionError>;

    /// Up to `limit` ids whose expiry is at or before `now`, oldest first.
    async fn expired(&self, now: Timestamp, limit: usize) -> Result<Vec<UploadId>, SessionError>;

    /// Atomically deletes the upload and its receipts if it is still expired at `now`
    /// and nobody holds a live claim; the deleted record. Of several concurrent callers,
    /// exactly one gets it.
    async fn remove_expired(&self, id: &UploadId, now: Timestamp) -> Result<Option<UploadRecord>, SessionError>;

    /// Checks that the store answers.
    async fn ping(&self) -> Result<(), SessionError>;
}
