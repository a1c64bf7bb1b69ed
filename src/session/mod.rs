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

use crate::domain::{
    ChunkIndex, Claim, Crc64, PartReceipt, ProcessingRefusal, ProcessingReport, RecordedEvent, Timestamp, UploadId,
    UploadRecord, UploadState,
};

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
        /// The receipt this one replaced (a chunk sent again): its stored bytes may go.
        replaced: Option<PartReceipt>,
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
        /// The object's CRC-64/NVME, when known.
        checksum: Option<Crc64>,
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

/// What `begin_append` did.
#[derive(Debug, Clone, PartialEq)]
pub enum AppendStart {
    /// The caller may append from the record's offset, under this claim, until it ends it
    /// with `end_append` (or the claim lapses). The record as it is now.
    Granted {
        /// The writer's claim.
        claim: Claim,
        /// The record, its `append` telling the offset and the storage's cursor.
        record: Box<UploadRecord>,
    },
    /// The upload's offset is not the one the caller named.
    OffsetMismatch {
        /// The upload's offset.
        expected: u64,
    },
    /// Another append holds the upload.
    Busy,
    /// Not an append upload taking bytes (`uploading`) in this state, or not an append upload.
    Refused(UploadState),
    /// No such upload, or it has expired.
    NotFound,
}

/// What an append stored, for `end_append` to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendProgress {
    /// The new offset (at least the old one).
    pub offset: u64,
    /// The storage's new cursor.
    pub cursor: String,
    /// Parts the storage finished on the way (S3), to keep with the upload's receipts.
    pub parts: Vec<(ChunkIndex, PartReceipt)>,
    /// The total length, if this append declares it (a deferred length).
    pub length: Option<u64>,
    /// The CRC-64/NVME of the bytes before `offset`, if known.
    pub crc64: Option<Crc64>,
    /// Whether a progress event is due, as the writer's record says ([`progress_due`]):
    /// one is recorded then, unless one was since.
    pub report_progress: bool,
}

/// What `end_append` did.
#[derive(Debug, Clone, PartialEq)]
pub enum AppendEnd {
    /// Recorded; the writer's claim is over. When the offset reached the length, the
    /// caller holds the completion claim.
    Recorded {
        /// The upload's offset now.
        offset: u64,
        /// Its length, if known.
        length: Option<u64>,
        /// The claim to complete the upload, when this append stored its last byte.
        claim: Option<Claim>,
    },
    /// The writer's claim was no longer live (it lapsed, or the upload was canceled or
    /// expired): nothing was recorded.
    Lost,
}

/// What `process` did.
#[derive(Debug, Clone, PartialEq)]
pub enum ProcessOutcome {
    /// The stage moved; the record as the change left it.
    Updated(Box<UploadRecord>),
    /// The report does not fit where the upload stands; nothing changed.
    Refused(ProcessingRefusal),
    /// No such upload, or it has expired.
    NotFound,
}

/// What `retire` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Retired {
    /// The upload is final and expired (an idle `uploading` one has just become an
    /// `expired` tombstone under a new fence): the caller cleans its storage, then removes it.
    Retired(Box<UploadRecord>),
    /// Not due yet, or under a live claim: look again at this time.
    NotDue(Timestamp),
    /// Left `completing` by a claimer that is gone: the caller should claim it and finish
    /// the job, never delete it.
    Unfinished,
    /// No such record.
    NotFound,
}

/// The contract every session backend meets; `contract.rs` checks it.
///
/// Times come from the caller (the service's clock), never from the backend, so that
/// every instance agrees and tests can move time. Stores keep them to the millisecond.
///
/// The due index (`due`, `reschedule`) holds, for every upload, a time at or before the
/// one when the sweeper must look at it ([`UploadRecord::due_at`]): when it expires, or when
/// its claim lapses while it is `completing`. A store may keep an earlier time than that
/// (the sweeper then looks, finds nothing to do and reschedules), never a later one.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Stores a new record; `AlreadyExists` if its id is taken.
    async fn insert(&self, record: &UploadRecord) -> Result<(), SessionError>;

    /// The record, if it exists (expired or not: the caller judges expiry).
    async fn get(&self, id: &UploadId) -> Result<Option<UploadRecord>, SessionError>;

    /// The receipts of every stored chunk, in index order.
    async fn parts(&self, id: &UploadId) -> Result<Vec<(ChunkIndex, PartReceipt)>, SessionError>;

    /// The receipts of the stored chunks among `chunks`, in index order: one storage part's
    /// worth, without reading the others.
    async fn parts_in(
        &self,
        id: &UploadId,
        chunks: std::ops::Range<u32>,
    ) -> Result<Vec<(ChunkIndex, PartReceipt)>, SessionError>;

    /// Atomically: if the upload is `uploading` and not expired at `now`, keeps the
    /// receipt for `index` (answering the one it replaced), counts the chunk if it is new,
    /// moves expiry to `now + ttl`, and, if this filled the last gap, takes the claim for
    /// `lease`. Records a progress event if `progress` (the caller's read of the record
    /// says one is due at `now`, [`progress_due`]) and none was recorded since.
    #[allow(clippy::too_many_arguments)]
    async fn record_part(
        &self,
        id: &UploadId,
        index: ChunkIndex,
        receipt: &PartReceipt,
        now: Timestamp,
        ttl: Duration,
        lease: Duration,
        progress: bool,
    ) -> Result<RecordOutcome, SessionError>;

    /// Takes the claim to assemble the object if the record is claimable at `now`
    /// ([`UploadRecord::is_claimable`]), under a new fence, until `now + lease`; the
    /// upload does not expire before then. `None` otherwise.
    async fn claim(&self, id: &UploadId, now: Timestamp, lease: Duration) -> Result<Option<Claim>, SessionError>;

    /// Extends the live claim with `fence` to `now + lease` (and the expiry with it): the
    /// heartbeat of a running completion, or of an append in flight. `false` if that
    /// claim lapsed or was taken over.
    async fn renew(&self, id: &UploadId, fence: u64, now: Timestamp, lease: Duration) -> Result<bool, SessionError>;

    /// Ends the claim with `fence`; `false` (and no change) unless that claim is live at
    /// `now` on an unexpired record ([`UploadRecord::holds_claim`]). Completing or failing
    /// drops the chunk receipts and moves expiry to `now + ttl`; reopening forgets the
    /// named receipts and moves expiry likewise; releasing leaves the upload `completing`
    /// with no claim, due at once.
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

    /// Takes the right to append to an append upload that is `uploading`, unexpired, at
    /// `offset`, and not held by a live append: a claim until `now + lease` under a new
    /// fence (a lapsed writer's claim is taken over). Moves expiry to `now + ttl` and
    /// keeps it at least as long as the claim.
    async fn begin_append(
        &self,
        id: &UploadId,
        offset: u64,
        now: Timestamp,
        ttl: Duration,
        lease: Duration,
    ) -> Result<AppendStart, SessionError>;

    /// Records what the append holding the claim `fence` stored ([`UploadRecord::holds_writer`]
    /// at `now`): the new offset and cursor, its finished parts, a declared length; ends
    /// the writer's claim; moves expiry to `now + ttl`. If the offset reached the length,
    /// takes the completion claim for `lease` in the same step, as `record_part` does.
    async fn end_append(
        &self,
        id: &UploadId,
        fence: u64,
        progress: &AppendProgress,
        now: Timestamp,
        ttl: Duration,
        lease: Duration,
    ) -> Result<AppendEnd, SessionError>;

    /// Atomically marks the upload `canceled`, drops its receipts and keeps the record as
    /// a tombstone until `now + ttl`.
    async fn cancel(&self, id: &UploadId, now: Timestamp, ttl: Duration) -> Result<CancelOutcome, SessionError>;

    /// Up to `limit` entries of the due index at or before `now`, earliest first: each
    /// upload id with the time it is indexed at.
    async fn due(&self, now: Timestamp, limit: usize) -> Result<Vec<(UploadId, Timestamp)>, SessionError>;

    /// Moves the upload's due-index entry from `from` to `to` (the sweeper looks again
    /// then), or drops it when `to` is `None` (an entry whose record is gone). An entry
    /// at `from` that is gone already is no error.
    async fn reschedule(&self, id: &UploadId, from: Timestamp, to: Option<Timestamp>) -> Result<(), SessionError>;

    /// The sweeper's first step for an upload it found due: atomically, an upload that
    /// is final and expired at `now` is answered as is; an `uploading` one expired at `now`
    /// becomes `expired` under a new fence (so no late claimer can finish it) with its
    /// receipts dropped; one left `completing` with no live claim is `Unfinished`.
    async fn retire(&self, id: &UploadId, now: Timestamp) -> Result<Retired, SessionError>;

    /// The sweeper's last step: atomically deletes the record, its receipts and its index
    /// entry if it is final and expired at `now`; the deleted record. Of several
    /// concurrent callers, exactly one gets it.
    async fn remove_expired(&self, id: &UploadId, now: Timestamp) -> Result<Option<UploadRecord>, SessionError>;

    /// Atomically applies a processor's `report` to the upload at `now`
    /// ([`UploadRecord::process`], which keeps it at least `ttl` longer) and records the
    /// event of the change.
    async fn process(
        &self,
        id: &UploadId,
        report: &ProcessingReport,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<ProcessOutcome, SessionError>;

    /// Up to `limit` batches of recorded events not yet published, each upload's events
    /// in one batch, in the order they were recorded. On a shared store a batch is held
    /// for `lease` by this caller and goes to another only once that lapses, so every
    /// event is published at least once even when its publisher dies.
    async fn outbox(&self, now: Timestamp, lease: Duration, limit: usize) -> Result<Vec<PendingEvents>, SessionError>;

    /// Forgets the events of a published batch; events recorded since stay. Idempotent.
    async fn published(&self, batch: &PendingEvents, now: Timestamp) -> Result<(), SessionError>;

    /// The outbox's backlog: how many uploads have recorded events not yet published
    /// (an upload counts once, however many events it has waiting). One cheap query. A
    /// store may count an upload whose change only might have recorded an event until its
    /// next `outbox` read finds nothing there.
    async fn outbox_backlog(&self) -> Result<u64, SessionError>;

    /// Checks that the store answers.
    async fn ping(&self) -> Result<(), SessionError>;
}

/// Recorded events of one upload waiting to be published, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEvents {
    /// The events.
    pub events: Vec<RecordedEvent>,
    /// What `published` needs to forget them; opaque to all but the store.
    pub receipt: String,
}

/// Whether a progress event may be recorded for `record` at `now`: one a second at most.
pub fn progress_due(record: &UploadRecord, now: Timestamp) -> bool {
    record.progress_at.is_none_or(|at| now - at >= Duration::seconds(1))
}
