//! Direct transfers: the client PUTs each part to the store itself on a signed URL, then
//! confirms. A file up to `direct.single_part_max` is one whole-object PUT; a larger one is
//! a multipart upload, its plan's chunks being the store's parts (chunk `i` is part
//! `i + 1`). A store that takes presigned writes (S3) signs its own URLs and is asked at
//! confirmation what it holds; on any other (the filesystem) the URLs are ferry's own, and
//! each part comes through ferry (`put_direct_part`), which records it as it does a chunk.
//! Either way the confirmation checks what the store holds against the plan and the
//! client's list, records it, and takes the one completion path (`complete.rs`).

use chrono::Duration;

use super::{NewUpload, UploadError, UploadService, UploadStatus};
use crate::domain::Crc64;
use crate::domain::{
    ChunkIndex, ChunkPlan, ChunkPolicy, Md5Digest, PartReceipt, Timestamp, Transfer, UploadId, UploadRecord,
    UploadState,
};
use crate::storage::{ByteStream, ObjectAttributes, PresignedPut, StagedUpload, StorageError, StoredObject};

/// The rules of direct transfers, from `direct.*`.
#[derive(Debug, Clone, Copy)]
pub struct DirectPolicy {
    /// Most part URLs in one answer.
    pub batch_size: u32,
    /// Largest file sent as one whole-object PUT.
    pub single_part_max: u64,
    /// How long a part URL stays valid.
    pub url_ttl: Duration,
}

impl From<&crate::config::DirectSettings> for DirectPolicy {
    fn from(d: &crate::config::DirectSettings) -> Self {
        let url_ttl = Duration::seconds(i64::try_from(d.url_ttl_secs).unwrap_or(i64::MAX / 1000));
        Self { batch_size: d.batch_size, single_part_max: d.single_part_max, url_ttl }
    }
}

/// Where a client PUTs one part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartTarget {
    /// The store's own presigned URL.
    Store(PresignedPut),
    /// ferry's own URL for the part, signed by the routes (which know ferry's address and
    /// secret) until `expires_at`.
    Ferry,
}

/// One part's URL, as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartUrl {
    /// The part's number, from 1.
    pub part_number: u32,
    /// Where it goes.
    pub target: PartTarget,
    /// When the URL stops working.
    pub expires_at: Timestamp,
}

/// A part as the client lists it at confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedByClient {
    /// The part's number, from 1.
    pub part_number: u32,
    /// The ETag the store answered its PUT with (quotes or not).
    pub etag: String,
}

impl UploadService {
    /// The direct rules in force.
    pub fn direct_policy(&self) -> DirectPolicy {
        self.policy.direct
    }

    /// The service's time (what ferry's own part URLs expire by).
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The plan of a new direct upload: one part up to `single_part_max`, else parts of
    /// the client's chunk size (or the default), within the chunk limits and never under
    /// the store's smallest part.
    pub(super) fn direct_plan(&self, new: &NewUpload) -> Result<ChunkPlan, UploadError> {
        let mut chunks: ChunkPolicy = self.policy.chunks;
        if let Some(direct) = self.storage.direct() {
            chunks.min_chunk_size = chunks.min_chunk_size.max(direct.min_part_size());
            chunks.max_chunk_size = chunks.max_chunk_size.max(chunks.min_chunk_size);
            chunks.default_chunk_size = chunks.default_chunk_size.clamp(chunks.min_chunk_size, chunks.max_chunk_size);
        }
        let plan = ChunkPlan::new(new.size, new.chunk_size, &chunks)?;
        if new.size <= self.policy.direct.single_part_max {
            return Ok(ChunkPlan::single(new.size));
        }
        Ok(plan)
    }

    /// Whether `record` is one whole-object PUT to the store (no multipart upload).
    pub(super) fn is_single_object(&self, record: &UploadRecord) -> bool {
        record.transfer == Transfer::Direct && self.storage.direct().is_some() && record.storage_upload_id.is_none()
    }

    /// Whether opening `record` makes a multipart upload in the store.
    pub(super) fn needs_multipart(&self, record: &UploadRecord) -> bool {
        let single = record.plan.total_chunks() == 1 && record.plan.size() <= self.policy.direct.single_part_max;
        !(record.transfer == Transfer::Direct && self.storage.direct().is_some() && single)
    }

    /// URLs for `count` parts from part `start` (at most `direct.batch_size`), freshly
    /// signed: the same call gives new URLs for expired ones.
    #[tracing::instrument(name = "Sign part URLs", skip_all, fields(upload_id = %id, start, count))]
    pub async fn part_urls(&self, id: &UploadId, start: u32, count: u32) -> Result<Vec<PartUrl>, UploadError> {
        let record = self.live(id).await?;
        self.sign_parts(&record, start, count).await
    }

    /// URLs for parts `start..start + count` of `record` (clipped to the plan and the batch size).
    pub async fn sign_parts(&self, record: &UploadRecord, start: u32, count: u32) -> Result<Vec<PartUrl>, UploadError> {
        if record.transfer != Transfer::Direct {
            return Err(UploadError::NotADirectUpload);
        }
        if !record.awaits_confirmation() {
            return Err(UploadError::WrongState(record.state));
        }
        let total = record.plan.total_chunks();
        if start == 0 || start > total {
            return Err(UploadError::InvalidRequest(format!("start must be a part number from 1 to {total}")));
        }
        let end = start.saturating_add(count.min(self.policy.direct.batch_size)).min(total + 1);
        let ttl = self.policy.direct.url_ttl;
        let expires_at = self.clock.now() + ttl;
        let expires_in = ttl.to_std().unwrap_or_default();
        let staged = StagedUpload::from(record);
        let mut urls = Vec::new();
        for part_number in start..end {
            let index = ChunkIndex(part_number - 1);
            let len = record.plan.chunk_len(index);
            let target = match self.storage.direct() {
                None => PartTarget::Ferry,
                Some(store) if self.is_single_object(record) => {
                    let attributes = ObjectAttributes::from(record);
                    let checksum = record.declared_checksum;
                    PartTarget::Store(store.presign_object(&staged, len, &attributes, checksum, expires_in).await?)
                }
                Some(store) => PartTarget::Store(store.presign_part(&staged, index, len, expires_in).await?),
            };
            urls.push(PartUrl { part_number, target, expires_at });
        }
        Ok(urls)
    }

    /// Stores part `part_number` of a direct upload that came to ferry's own URL (a store
    /// without presigned writes), exactly `len` bytes, as a chunk is stored: its CRC
    /// computed on the way, its receipt recorded. The store's tag for it.
    #[tracing::instrument(name = "Store a direct part", skip_all, fields(upload_id = %id, part = part_number, len))]
    pub async fn put_direct_part(
        &self,
        id: &UploadId,
        part_number: u32,
        len: u64,
        body: ByteStream<'_>,
    ) -> Result<String, UploadError> {
        let record = self.live(id).await?;
        if record.transfer != Transfer::Direct || self.storage.direct().is_some() {
            return Err(UploadError::NotADirectUpload);
        }
        if !record.awaits_confirmation() {
            return Err(UploadError::WrongState(record.state));
        }
        let total = record.plan.total_chunks();
        let index = part_number.checked_sub(1).and_then(|i| record.plan.index(i));
        let index = index.ok_or(UploadError::InvalidChunkIndex { total })?;
        let expected = record.plan.chunk_len(index);
        if len != expected {
            return Err(UploadError::ChunkSizeMismatch { index: index.0, expected, declared: len });
        }
        let accepted = self.keep_part(record, index, len, None, body).await?;
        Ok(accepted.etag)
    }

    /// The confirmation: checks what the store holds against the plan (every part, each
    /// of its planned size) and against the client's list (each listed part's ETag, where
    /// the store tells it), records it, and completes the upload through the one
    /// completion path. Confirming a completed upload again answers its status.
    #[tracing::instrument(name = "Confirm a direct upload", skip_all, fields(upload_id = %id))]
    pub async fn confirm(&self, id: &UploadId, listed: &[ListedByClient]) -> Result<UploadStatus, UploadError> {
        let record = self.live(id).await?;
        if record.transfer != Transfer::Direct {
            return Err(UploadError::NotADirectUpload);
        }
        match record.state {
            UploadState::Uploading => {}
            UploadState::Failed => return Err(UploadError::WrongState(UploadState::Failed)),
            _ => return self.report(record).await,
        }
        let total = record.plan.total_chunks();
        let mut held = self.held_parts(&record).await?;
        for part in listed {
            let slot = part.part_number.checked_sub(1).filter(|i| *i < total);
            let slot = slot.ok_or_else(|| {
                UploadError::InvalidRequest(format!("part_number {} is not a part from 1 to {total}", part.part_number))
            })?;
            let etag = part.etag.trim().trim_matches('"');
            match held.get_mut(slot as usize).and_then(Option::as_mut) {
                // A store that lists no ETags (s3s-fs) takes the client's at completion.
                Some(receipt) if receipt.etag.is_empty() => receipt.etag = etag.to_owned(),
                Some(receipt) if receipt.etag != etag => {
                    return Err(UploadError::PartMismatch { part_number: part.part_number })
                }
                _ => {}
            }
        }
        let missing = missing_parts(&record, &held);
        if !missing.is_empty() {
            return Err(UploadError::PartsMissing { parts: missing });
        }
        if self.storage.direct().is_some() {
            // What the store holds becomes the upload's receipts, as chunks' do.
            let now = self.clock.now();
            for (i, receipt) in held.iter().enumerate().filter_map(|(i, r)| Some((i, r.as_ref()?))) {
                let index = ChunkIndex(u32::try_from(i).unwrap_or(u32::MAX));
                let (ttl, lease) = (self.policy.ttl, self.policy.lease);
                self.sessions.record_part(id, index, receipt, now, ttl, lease, false).await?;
            }
        }
        if let Some(claim) = self.sessions.claim(id, self.clock.now(), self.policy.lease).await? {
            self.complete(record, claim).await;
        }
        let record = self.sessions.get(id).await?.ok_or(UploadError::NotFound)?;
        self.report(record).await
    }

    /// The parts `record`'s store holds, by index (`None`: not held): the store's listing
    /// (or the whole object's head) where clients write to it, else the recorded receipts.
    async fn held_parts(&self, record: &UploadRecord) -> Result<Vec<Option<PartReceipt>>, UploadError> {
        let mut held = vec![None; record.plan.total_chunks() as usize];
        let Some(store) = self.storage.direct() else {
            for (index, receipt) in self.sessions.parts(&record.id).await? {
                if let Some(slot) = held.get_mut(index.0 as usize) {
                    *slot = Some(receipt);
                }
            }
            return Ok(held);
        };
        let listed = if self.is_single_object(record) {
            let head = store.head_object(&record.key).await?;
            head.map(|h| vec![(ChunkIndex(0), h.size, Some(h.etag))]).unwrap_or_default()
        } else {
            let parts = store.list_parts(&StagedUpload::from(record)).await?;
            parts.into_iter().map(|p| (p.index, p.size, p.etag)).collect()
        };
        for (index, size, etag) in listed {
            if let Some(slot) = held.get_mut(index.0 as usize) {
                let etag = etag.unwrap_or_default();
                let md5 = Md5Digest::from_hex(&etag).unwrap_or(Md5Digest::from([0; 16]));
                *slot = Some(PartReceipt { md5, etag, size, crc64: None });
            }
        }
        Ok(held)
    }

    /// Assembles a direct upload whose parts went to the store itself: completes its
    /// multipart upload (or checks its whole object's size) and reads back the object's
    /// full-object CRC-64/NVME where the store reports one: the only checksum such an
    /// upload has, ferry never having seen its bytes.
    pub(super) async fn assemble_direct(
        &self,
        record: &UploadRecord,
        parts: &[(ChunkIndex, PartReceipt)],
        size: u64,
    ) -> (Result<StoredObject, StorageError>, Option<Crc64>) {
        let Some(store) = self.storage.direct() else {
            return (Err(StorageError::Refused("the store takes no direct writes".into())), None);
        };
        let made = match self.is_single_object(record) {
            true => match store.head_object(&record.key).await {
                Ok(Some(head)) if head.size == size => Ok(StoredObject { etag: head.etag, size }),
                Ok(Some(head)) => Err(StorageError::Refused(format!("the object has {} bytes, not {size}", head.size))),
                Ok(None) => Err(StorageError::Refused("the object is not there".into())),
                Err(err) => Err(err),
            },
            false => self.storage.complete(&StagedUpload::from(record), parts, size).await,
        };
        let Ok(object) = made else { return (made, None) };
        match store.head_object(&record.key).await {
            Ok(head) => (Ok(object), head.and_then(|h| h.crc64)),
            Err(err) => (Err(err), None),
        }
    }

    /// The part numbers of a direct upload still to send, as its store tells it.
    pub(super) async fn direct_missing(&self, record: &UploadRecord) -> Result<Vec<u32>, UploadError> {
        Ok(missing_parts(record, &self.held_parts(record).await?))
    }
}

/// The part numbers (from 1) of the plan that `held` lacks, or holds at another size.
fn missing_parts(record: &UploadRecord, held: &[Option<PartReceipt>]) -> Vec<u32> {
    record
        .plan
        .indices()
        .filter(|i| held.get(i.0 as usize).and_then(Option::as_ref).is_none_or(|r| r.size != record.plan.chunk_len(*i)))
        .map(|i| i.0 + 1)
        .collect()
}
