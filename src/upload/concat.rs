//! Concatenation (tus's `concatenation` extension): a client uploads the pieces of a file
//! as partial uploads, in parallel, then asks for a final upload made of them in order.
//!
//! A partial upload is an append upload like the others (`init_append` with `partial`),
//! but once finished its bytes are kept out of sight in the storage's staging area, never
//! at its key, for final uploads to be made of; it expires and is swept like any upload,
//! and the sweep removes them. A final upload names finished partials only; it is created
//! already holding the claim of its completion job, which joins the partials' bytes inside
//! the store (`ObjectStore::concatenate`) and records the outcome like any completion:
//! one job at a time, fenced, taken over by another instance if this one dies. Partials
//! stay usable after a final (tus lets a client use one again, and a client whose answer
//! to the final was lost asks again): each final's assembly moves their expiry on.

use super::hooks::HookRequest;
use super::{check_metadata, Caller, UploadError, UploadService};
use crate::domain::{AppendState, ChunkPlan, Concat, Crc64, Metadata, ObjectKey, UploadId, UploadRecord, UploadState};
use crate::storage::{Partial, StagedUpload, StorageError, StoredObject};

/// Most partial uploads one final upload may name.
pub const MAX_PARTIALS: usize = 1000;

/// What a client asks for when it makes a final upload.
#[derive(Debug, Clone)]
pub struct NewFinalUpload {
    /// The file's name.
    pub filename: String,
    /// Its content type.
    pub content_type: Option<String>,
    /// Its metadata (the partials' metadata is not carried over, as tus says).
    pub metadata: Metadata,
    /// The partial uploads it is made of, in order; one may appear more than once.
    pub partials: Vec<UploadId>,
    /// Who asks, and how (for the pre-create hook).
    pub caller: Caller,
}

impl UploadService {
    /// Makes a final upload of finished partial uploads and assembles it before answering.
    /// Refuses before anything is stored when a partial does not exist, is not a partial
    /// upload, or is not finished. The record answered is `completed`, `failed` (a
    /// partial's bytes went missing meanwhile), or `completing` (a passing storage failure:
    /// the server finishes it later, as any completion).
    #[tracing::instrument(name = "Make a final upload", skip_all, fields(upload_id, partials = new.partials.len()))]
    pub async fn init_final(&self, new: NewFinalUpload) -> Result<UploadRecord, UploadError> {
        self.check_name_and_type(&new.filename, new.content_type.as_deref())?;
        check_metadata(&new.metadata)?;
        if new.partials.is_empty() || new.partials.len() > MAX_PARTIALS {
            return Err(UploadError::InvalidRequest(format!(
                "a final upload names from 1 to {MAX_PARTIALS} partial uploads, not {}",
                new.partials.len()
            )));
        }
        let (mut length, mut crc64) = (0u64, Some(Crc64::EMPTY));
        for (i, id) in new.partials.iter().enumerate() {
            let (size, checksum) = self.finished_partial(id, i + 1).await?;
            length = length.saturating_add(size);
            crc64 = crc64.zip(checksum).map(|(before, this)| before.then(this, size));
        }
        self.check_length(length, 0)?;
        let hook = HookRequest {
            filename: &new.filename,
            size: Some(length),
            content_type: new.content_type.as_deref(),
            metadata: &new.metadata,
            caller: &new.caller,
        };
        let new = NewFinalUpload { metadata: self.approve(hook).await?.unwrap_or(new.metadata), ..new };

        let plan = ChunkPlan::new(0, None, &self.policy.chunks)?;
        let id = UploadId::new();
        tracing::Span::current().record("upload_id", tracing::field::display(id));
        let key = ObjectKey::new(&id, &new.filename);
        let now = self.clock.now();
        let mut record = self.new_record(id, key, &new.filename, new.content_type, new.metadata, plan, now);
        record.append = Some(AppendState { length: Some(length), offset: length, cursor: String::new(), crc64 });
        record.bytes_received = length;
        record.concat = Some(Concat::Final { partials: new.partials });
        if length == 0 {
            // Partials of no bytes make an empty object, stored at once.
            return self.open(record).await;
        }
        // Every byte is there from the start: the final is created holding the claim of its
        // completion, so no other caller can start it first.
        let claim = record.take_claim(now, self.policy.lease);
        let record = self.open(record).await?;
        self.complete(record, claim).await;
        self.sessions.get(&id).await?.ok_or(UploadError::NotFound)
    }

    /// The length and CRC-64/NVME (if known) of the partial upload `id`, at `position` in a
    /// final's list, if it is a finished partial. An assembly left pending is finished
    /// first (as status does).
    async fn finished_partial(&self, id: &UploadId, position: usize) -> Result<(u64, Option<Crc64>), UploadError> {
        let record = match self.status(id).await {
            Ok(status) => status.record,
            Err(UploadError::NotFound | UploadError::WrongState(UploadState::Canceled)) => {
                return Err(UploadError::PartialNotFound { position })
            }
            Err(err) => return Err(err),
        };
        if !record.is_partial() {
            return Err(UploadError::NotAPartialUpload { position });
        }
        match (record.state, record.size()) {
            (UploadState::Completed, Some(size)) => Ok((size, record.checksum)),
            (state, _) => Err(UploadError::PartialUnfinished { position, state }),
        }
    }

    /// The completion job's assembly of a final upload: the partials as they are now
    /// (each touched, so that none expires while its bytes are copied), then the store's
    /// concatenation. A partial gone meanwhile is the store's refusal: nothing is made.
    pub(super) async fn concatenate(
        &self,
        upload: &StagedUpload,
        partials: &[UploadId],
        size: u64,
    ) -> Result<Result<StoredObject, StorageError>, UploadError> {
        let mut sources: Vec<Partial> = Vec::with_capacity(partials.len());
        for id in partials {
            if let Some(known) = sources.iter().find(|p| p.upload.id == *id) {
                sources.push(known.clone());
                continue;
            }
            let touched = self.sessions.touch(id, self.clock.now(), self.policy.ttl).await?;
            match touched {
                Some(r) if r.is_partial() && r.state == UploadState::Completed => sources.push(Partial {
                    upload: StagedUpload::from(&r),
                    size: r.size().unwrap_or_default(),
                    etag: r.etag.clone().unwrap_or_default(),
                }),
                _ => return Ok(Err(StorageError::Refused(format!("partial upload {id} is gone")))),
            }
        }
        sources.retain(|p| p.size > 0);
        Ok(self.storage.concatenate(upload, &sources, size).await)
    }
}
