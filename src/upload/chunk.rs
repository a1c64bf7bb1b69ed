//! Taking one chunk, and assembling the object once the last gap is filled.

use super::crc::CrcTap;
use super::{UploadError, UploadService};
use crate::domain::{ChunkIndex, Md5Digest, PartReceipt, Transfer, UploadId, UploadRecord, UploadState};
use crate::session::{progress_due, RecordOutcome};
use crate::storage::{ByteStream, StagedUpload};

/// A stored chunk, and where its upload stands now.
#[derive(Debug, Clone)]
pub struct ChunkAccepted {
    /// The chunk's index.
    pub index: ChunkIndex,
    /// The MD5 of its bytes.
    pub md5: Md5Digest,
    /// The store's tag for it.
    pub etag: String,
    /// Distinct chunks stored so far.
    pub received_chunks: u32,
    /// The upload's chunk count.
    pub total_chunks: u32,
    /// Bytes stored so far.
    pub bytes_received: u64,
    /// `uploading`, or `completing` / `completed` / `failed` after the last chunk.
    pub state: UploadState,
}

impl UploadService {
    /// Stores chunk `index` of `len` bytes from `body`, checked against `md5`. The length
    /// is checked against the plan before a byte is read. A bad or broken body records
    /// nothing. Filling the last gap starts the completion job and waits for it.
    #[tracing::instrument(name = "Store a chunk", skip_all, fields(upload_id = %id, chunk = index, len))]
    pub async fn put_chunk(
        &self,
        id: &UploadId,
        index: u32,
        len: u64,
        md5: Option<Md5Digest>,
        body: ByteStream<'_>,
    ) -> Result<ChunkAccepted, UploadError> {
        let result = self.store_chunk(id, index, len, md5, body).await;
        match &result {
            Ok(_) => self.metrics.chunks_received.inc(),
            Err(err) => self.metrics.chunk_rejected(crate::error::code_of(err).as_str()),
        }
        result
    }

    /// Whether chunk `index` of `len` bytes (with or without an MD5) would be taken now:
    /// the checks `put_chunk` makes before reading a byte, for a client that asks first
    /// (`Expect: 100-continue`). A refusal counts as a rejected chunk.
    #[tracing::instrument(name = "Admit a chunk", skip_all, fields(upload_id = %id, chunk = index, len))]
    pub async fn admit_chunk(&self, id: &UploadId, index: u32, len: u64, has_md5: bool) -> Result<(), UploadError> {
        let result = self.admit(id, index, len, has_md5).await.map(drop);
        if let Err(err) = &result {
            self.metrics.chunk_rejected(crate::error::code_of(err).as_str());
        }
        result
    }

    /// The pre-body rules, once for `admit_chunk` and `store_chunk`.
    async fn admit(
        &self,
        id: &UploadId,
        index: u32,
        len: u64,
        has_md5: bool,
    ) -> Result<(UploadRecord, ChunkIndex), UploadError> {
        let record = self.live(id).await?;
        if record.append.is_some() {
            return Err(UploadError::NotAChunkedUpload);
        }
        if record.transfer == Transfer::Direct {
            return Err(UploadError::DirectUpload);
        }
        if record.state != UploadState::Uploading {
            return Err(UploadError::WrongState(record.state));
        }
        let plan = record.plan;
        let index = plan.index(index).ok_or(UploadError::InvalidChunkIndex { total: plan.total_chunks() })?;
        if len > self.policy.chunks.max_chunk_size {
            return Err(UploadError::ChunkTooLarge { max: self.policy.chunks.max_chunk_size });
        }
        let expected = plan.chunk_len(index);
        if len != expected {
            return Err(UploadError::ChunkSizeMismatch { index: index.0, expected, declared: len });
        }
        if !has_md5 && self.policy.require_chunk_md5 {
            return Err(UploadError::MissingChecksum);
        }
        Ok((record, index))
    }

    async fn store_chunk(
        &self,
        id: &UploadId,
        index: u32,
        len: u64,
        md5: Option<Md5Digest>,
        body: ByteStream<'_>,
    ) -> Result<ChunkAccepted, UploadError> {
        let (record, index) = self.admit(id, index, len, md5.is_some()).await?;
        self.keep_part(record, index, len, md5, body).await
    }

    /// Stores and records part `index` of an admitted upload (a chunk, or a direct part
    /// that came through ferry), its CRC computed on the way; completes the upload when
    /// this filled its last gap (never a direct one: its confirmation does).
    pub(super) async fn keep_part(
        &self,
        record: UploadRecord,
        index: ChunkIndex,
        len: u64,
        md5: Option<Md5Digest>,
        body: ByteStream<'_>,
    ) -> Result<ChunkAccepted, UploadError> {
        let (id, plan) = (&record.id, record.plan);
        let staged = StagedUpload::from(&record);
        let crc = CrcTap::default();
        let receipt = match self.storage.put_part(&staged, index, crc.tap(body), len, md5).await {
            Ok(receipt) => PartReceipt { crc64: crc.crc_of(len), ..receipt },
            Err(err) if err.is_client_fault() => return Err(err.into()),
            // A cancel or an expiry on another instance may have pulled the storage away
            // mid-stream: report that rather than a storage fault.
            Err(err) => match self.sessions.get(id).await {
                Ok(Some(now)) if now.state != UploadState::Uploading => return Err(UploadError::WrongState(now.state)),
                Ok(None) => return Err(UploadError::NotFound),
                _ => return Err(err.into()),
            },
        };
        self.metrics.bytes_received.inc_by(len);

        let now = self.clock.now();
        let progress = progress_due(&record, now);
        let outcome =
            self.sessions.record_part(id, index, &receipt, now, self.policy.ttl, self.policy.lease, progress).await?;
        match outcome {
            RecordOutcome::Recorded { received_chunks, bytes_received, claim, replaced } => {
                let same_bytes = replaced.as_ref().is_some_and(|old| old.md5 == receipt.md5);
                if let Some(old) = replaced.filter(|old| *old != receipt) {
                    // A chunk sent again: the earlier send's bytes are no longer needed.
                    if let Err(err) = self.storage.drop_part(&staged, index, &old).await {
                        tracing::warn!(upload_id = %id, error = %crate::error::chain(&err), "could not drop a replaced chunk");
                    }
                }
                let state = match claim {
                    Some(claim) => self.complete(record, claim).await,
                    // The same bytes again leave a sealed part as it was.
                    None if !same_bytes => {
                        self.seal_part(&record, &staged, index).await;
                        UploadState::Uploading
                    }
                    None => UploadState::Uploading,
                };
                Ok(ChunkAccepted {
                    index,
                    md5: receipt.md5,
                    etag: receipt.etag,
                    received_chunks,
                    total_chunks: plan.total_chunks(),
                    bytes_received,
                    state,
                })
            }
            // Assembly is reading the stored chunks: leave them alone.
            RecordOutcome::Refused(UploadState::Completing) => Err(UploadError::WrongState(UploadState::Completing)),
            // Canceled, finished or expired while this chunk streamed: it must not linger.
            RecordOutcome::Refused(state) => {
                self.discard(&record, false).await;
                Err(UploadError::WrongState(state))
            }
            RecordOutcome::NotFound => {
                self.discard(&record, false).await;
                Err(UploadError::NotFound)
            }
        }
    }

    /// Joins the part chunk `index` belongs to ahead of completion, if its chunks are all
    /// in now (stores that group chunks into parts). A failure only leaves the work to
    /// completion, which makes every part not sealed from the current receipts.
    async fn seal_part(&self, record: &UploadRecord, staged: &StagedUpload, index: ChunkIndex) {
        if record.part_chunks < 2 {
            return;
        }
        let group = record.part_group(index);
        let sealed = match self.sessions.parts_in(&record.id, group.clone()).await {
            Ok(parts) if parts.len() == group.len() => {
                self.storage.seal(staged, &parts).await.map_err(UploadError::from)
            }
            Ok(_) => return,
            Err(err) => Err(err.into()),
        };
        if let Err(err) = sealed {
            tracing::warn!(upload_id = %record.id, error = %crate::error::chain(&err), "could not seal a part; completion will");
        }
    }
}
