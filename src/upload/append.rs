//! Append uploads (tus 1.0, the IETF resumable-upload draft): bytes arrive in order, at
//! an offset, in requests of any length, with the total length known at creation or
//! declared later. One append at a time per upload, on any instance: a writer's claim in
//! the session store, renewed while the bytes stream. A cut request keeps what was stored.
//! Reaching the length ends in the same completion job as chunked uploads.

use std::cell::RefCell;
use std::rc::Rc;

use futures_util::StreamExt;

use super::crc::CrcTap;
use super::{check_metadata, check_name, Caller, UploadError, UploadService};
use crate::domain::{
    AppendState, ChunkPlan, Concat, Crc64, DeclaredDigest, DigestHasher, Metadata, ObjectKey, Timestamp, UploadId,
    UploadRecord, UploadState,
};
use crate::session::{progress_due, AppendEnd, AppendProgress, AppendStart};
use crate::storage::{AppendAt, ByteStream, StagedUpload, StorageError};

/// The longest an append holds its claim past its last heartbeat (see `writer_lease`).
const WRITER_LEASE_SECS: i64 = 10;

/// What a client asks for when it opens an append upload.
#[derive(Debug, Clone)]
pub struct NewAppendUpload {
    /// The file's name.
    pub filename: String,
    /// Its total length, or `None` to declare it later.
    pub length: Option<u64>,
    /// Its content type.
    pub content_type: Option<String>,
    /// Its metadata.
    pub metadata: Metadata,
    /// Whether it is a tus partial upload: once finished, its bytes wait (out of sight)
    /// for final uploads to be made of them.
    pub partial: bool,
    /// Who asks, and how (for the pre-create hook).
    pub caller: Caller,
}

/// One append request.
pub struct AppendRequest<'a> {
    /// Where the client says the upload stands; must be the upload's offset.
    pub offset: u64,
    /// The total length, if this request declares it (an upload opened without one).
    pub length: Option<u64>,
    /// The body's length, when the request says it (checked against the length first).
    pub content_length: Option<u64>,
    /// A digest the client declared for this request's bytes: on a mismatch, nothing of
    /// the request is kept.
    pub digest: Option<DeclaredDigest>,
    /// The bytes.
    pub body: ByteStream<'a>,
}

/// Where an append upload stands after an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Bytes stored: where the next append starts.
    pub offset: u64,
    /// The total length, if known.
    pub length: Option<u64>,
    /// `uploading`, or `completed` (`completing`, `failed`) once the last byte is in.
    pub state: UploadState,
    /// When the upload expires unless another append comes (tus `Upload-Expires`).
    pub expires_at: Timestamp,
}

impl UploadService {
    /// Opens an append upload. An empty file (length 0) is stored at once, `completed`.
    #[tracing::instrument(name = "Open an append upload", skip_all, fields(upload_id, length = new.length))]
    pub async fn init_append(&self, new: NewAppendUpload) -> Result<UploadRecord, UploadError> {
        if new.partial {
            // The file's type is the final upload's to declare (tus-js-client sends none
            // with its partials), and checked there.
            check_name(&new.filename)?;
        } else {
            self.check_name_and_type(&new.filename, new.content_type.as_deref())?;
        }
        check_metadata(&new.metadata)?;
        if let Some(length) = new.length {
            self.check_length(length, 0)?;
        }
        let plan = ChunkPlan::new(0, None, &self.policy.chunks)?;
        let new = NewAppendUpload { metadata: self.approve(&new).await?.unwrap_or(new.metadata), ..new };
        let id = UploadId::new();
        tracing::Span::current().record("upload_id", tracing::field::display(id));
        let key = ObjectKey::new(&id, &new.filename);
        let mut record =
            self.new_record(id, key, &new.filename, new.content_type, new.metadata, plan, self.clock.now());
        record.append = Some(AppendState::new(new.length));
        record.concat = new.partial.then_some(Concat::Partial);
        self.open(record).await
    }

    /// Appends `request.body` at `request.offset`. Refuses before reading the body when
    /// the offset, the length or the upload's state is wrong, or another append holds the
    /// upload. Keeps what was stored when the body breaks (then answers `IncompleteBody`),
    /// and nothing of the request when its digest does not match. The append that stores
    /// the last byte waits for the completion job.
    #[tracing::instrument(name = "Append to an upload", skip_all, fields(upload_id = %id, offset = request.offset))]
    pub async fn append(&self, id: &UploadId, request: AppendRequest<'_>) -> Result<Appended, UploadError> {
        let record = self.live(id).await?;
        if record.partials().is_some() {
            return Err(UploadError::FinalUploadImmutable);
        }
        let append = record.append.as_ref().ok_or(UploadError::NotAnAppendUpload)?;
        if record.state != UploadState::Uploading {
            return Err(UploadError::WrongState(record.state));
        }
        let length = match (append.length, request.length) {
            (Some(known), Some(declared)) if known != declared => {
                return Err(UploadError::InvalidLength(format!("the upload's length is {known}, not {declared}")))
            }
            (known, declared) => known.or(declared),
        };
        if let Some(length) = request.length {
            self.check_length(length, append.offset.max(request.offset))?;
        }
        if request.offset != append.offset {
            return Err(UploadError::OffsetMismatch { expected: append.offset, provided: request.offset });
        }
        let room = length.unwrap_or(self.policy.chunks.max_file_size).saturating_sub(request.offset);
        if request.content_length.is_some_and(|len| len > room) {
            return Err(UploadError::LengthExceeded { length: length.unwrap_or(self.policy.chunks.max_file_size) });
        }

        let now = self.clock.now();
        let (claim, mut record) =
            match self.sessions.begin_append(id, request.offset, now, self.policy.ttl, self.writer_lease()).await? {
                AppendStart::Granted { claim, record } => (claim, *record),
                AppendStart::OffsetMismatch { expected } => {
                    return Err(UploadError::OffsetMismatch { expected, provided: request.offset })
                }
                AppendStart::Busy => return Err(UploadError::AppendBusy),
                AppendStart::Refused(state) => return Err(UploadError::WrongState(state)),
                AppendStart::NotFound => return Err(UploadError::NotFound),
            };
        let Some(state) = record.append.clone() else { return Err(UploadError::NotAnAppendUpload) };
        let at = AppendAt {
            offset: state.offset,
            cursor: state.cursor,
            parts: record.received_chunks,
            length,
            len: request.content_length,
        };

        // The body is hashed on its way to storage when the client declared a digest.
        let hasher = Rc::new(RefCell::new(request.digest.as_ref().map(|d| DigestHasher::new(d.algorithm))));
        let hashing = Rc::clone(&hasher);
        let crc = CrcTap::default();
        let body = crc.tap(
            request
                .body
                .inspect(move |piece| {
                    if let (Ok(piece), Some(h)) = (piece, hashing.borrow_mut().as_mut()) {
                        h.update(piece);
                    }
                })
                .boxed_local(),
        );
        let staged = StagedUpload::from(&record);
        let stored = tokio::select! {
            stored = self.storage.append(&staged, &at, body, room) => stored,
            () = self.heartbeat(&record, claim.fence, self.writer_lease()) => Err(StorageError::Refused("the append lost its claim".into())),
        };
        let stored = match stored {
            Ok(stored) => stored,
            Err(err) => {
                self.release_writer(id, claim.fence, &at, state.crc64).await;
                return Err(err.into());
            }
        };
        if let Some(declared) = &request.digest {
            let actual = hasher.borrow_mut().take().map(DigestHasher::finish).unwrap_or_default();
            if stored.broken.is_some() || actual != declared.bytes {
                // Nothing of this request is kept: the upload stays where it was.
                self.release_writer(id, claim.fence, &at, state.crc64).await;
                return Err(match stored.broken {
                    Some(_) => UploadError::IncompleteBody,
                    None => UploadError::DigestMismatch { algorithm: declared.algorithm },
                });
            }
        }
        self.metrics.bytes_received.inc_by(stored.offset.saturating_sub(at.offset));

        let now = self.clock.now();
        let appended = stored.offset.saturating_sub(at.offset);
        let crc64 = state.crc64.zip(crc.crc_of(appended)).map(|(before, this)| before.then(this, appended));
        let progress = AppendProgress {
            offset: stored.offset,
            cursor: stored.cursor,
            parts: stored.parts,
            length: request.length,
            crc64,
            report_progress: stored.offset > at.offset && progress_due(&record, now),
        };
        let end = self.sessions.end_append(id, claim.fence, &progress, now, self.policy.ttl, self.policy.lease).await?;
        let (offset, length, claim) = match end {
            AppendEnd::Recorded { offset, length, claim } => (offset, length, claim),
            AppendEnd::Lost => {
                return Err(match self.sessions.get(id).await? {
                    Some(now) if now.state != UploadState::Uploading => UploadError::WrongState(now.state),
                    _ => UploadError::AppendBusy,
                })
            }
        };
        if let Some(broken) = stored.broken {
            tracing::info!(upload_id = %id, offset, error = %crate::error::chain(&broken), "append cut short; kept what arrived");
            return Err(broken.into());
        }
        let state = match claim {
            Some(claim) => {
                record.append = Some(AppendState { length, offset, cursor: String::new(), crc64 });
                self.complete(record, claim).await
            }
            None => UploadState::Uploading,
        };
        Ok(Appended { offset, length, state, expires_at: now + self.policy.ttl })
    }

    /// How long an append's claim lasts without its heartbeat: short, so that when an
    /// instance dies mid-PATCH the client's next PATCH (on another instance) is taken
    /// within seconds rather than a whole completion lease.
    fn writer_lease(&self) -> chrono::Duration {
        self.policy.lease.min(chrono::Duration::seconds(WRITER_LEASE_SECS))
    }

    /// Ends a writer's claim without moving the offset, so the next append need not wait
    /// for it to lapse. Failures are logged: the claim lapses on its own.
    async fn release_writer(&self, id: &UploadId, fence: u64, at: &AppendAt, crc64: Option<Crc64>) {
        let unchanged = AppendProgress {
            offset: at.offset,
            cursor: at.cursor.clone(),
            parts: Vec::new(),
            length: None,
            crc64,
            report_progress: false,
        };
        let now = self.clock.now();
        if let Err(err) = self.sessions.end_append(id, fence, &unchanged, now, self.policy.ttl, self.policy.lease).await
        {
            tracing::warn!(upload_id = %id, error = %crate::error::chain(&err), "could not release an append's claim");
        }
    }

    /// Checks a declared total length: within `uploads.max_file_size`, and not below the
    /// bytes already stored.
    pub(super) fn check_length(&self, length: u64, stored: u64) -> Result<(), UploadError> {
        if length > self.policy.chunks.max_file_size {
            return Err(UploadError::FileTooLarge { max: self.policy.chunks.max_file_size });
        }
        if length < stored {
            return Err(UploadError::InvalidLength(format!("{stored} bytes are stored already, more than {length}")));
        }
        Ok(())
    }
}
