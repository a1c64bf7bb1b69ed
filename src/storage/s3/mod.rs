//! The S3 object store: an upload is an S3 multipart upload in a bucket of AWS S3 or any
//! S3-compatible store; chunk `i` is part `i + 1`, streamed with its exact length.
//!
//! An object's key in the bucket is `<prefix>/<upload id>/<name>` (`storage.s3.prefix`
//! with its slashes trimmed, then one `/`), or `<upload id>/<name>` when the prefix is
//! empty. Calls without a streaming body (create, list, complete, abort, head) use the
//! SDK's standard retries and bounded timeouts; a chunk's upload is a one-shot stream that
//! ferry never retries: its failure answers `Unavailable` and the client sends it again.
//!
//! A chunk that fails its length or MD5 check never reaches the store whole (its last
//! piece is held back until the checks pass), so a corrupt re-send cannot replace a good
//! part even in a store that ignores `Content-MD5`. `complete` still compares the listed
//! parts with the receipts (sizes, and ETags where the store lists them) before it
//! assembles anything.
//!
//! Chunks under `storage.s3.part_size` are grouped into parts, each chunk kept as an
//! object under `<prefix>.ferry/<upload id>/` until its part is made; see `grouped`.
//!
//! Append uploads (tus, the IETF draft) fill parts of `storage.s3.part_size` in order and
//! keep an unfinished part as a tail object under `<prefix>.ferry/<upload id>/`; see
//! `append`. Completing or aborting such an upload deletes its tails.
//!
//! A tus partial upload's multipart upload targets `<prefix>.ferry/<upload id>/partial`
//! instead of its key, so completing it makes that staging object, which no listing of
//! the objects under the prefix's upload folders shows; aborting it deletes it with the
//! tails. A final upload is made of those objects by UploadPartCopy; see `concat`.
//!
//! Permissions needed on the bucket: `s3:PutObject` (which covers the multipart calls),
//! `s3:ListMultipartUploadParts`, `s3:AbortMultipartUpload`, `s3:GetObject` (HeadObject, an
//! append's tail, the source of UploadPartCopy), `s3:DeleteObject`, and `s3:ListBucket` (HeadBucket, listing an append
//! upload's tails, and 404 rather than 403 for a missing object).

mod append;
mod assemble;
mod body;
mod concat;
mod connect;
mod direct;
mod errors;
mod grouped;
mod staging;

use async_trait::async_trait;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::Builder as ConfigBuilder;
use aws_sdk_s3::primitives::ByteStream as SdkStream;
use aws_sdk_s3::types::CompletedPart;
use aws_sdk_s3::Client;
use bytes::Bytes;

use self::assemble::Listing;
use self::connect::{call_timeouts, CHECK_TIMEOUT};
use super::{
    AppendAt, AppendStored, ByteStream, ObjectAttributes, ObjectStore, Partial, StagedUpload, StorageError,
    StoredObject,
};
use crate::domain::{ChunkIndex, Md5Digest, ObjectKey, PartReceipt};

/// S3's smallest part but the last.
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's limit on parts per upload.
const MAX_PARTS: u64 = 10_000;
/// The name, in a partial upload's staging area, of the object its bytes are kept in.
const PARTIAL_OBJECT: &str = "partial";

/// An `ObjectStore` in an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3ObjectStore {
    /// Calls without a streaming body: standard retries, bounded timeouts.
    client: Client,
    /// Chunk uploads: no retry, no read timeout, stall protection instead.
    streams: Client,
    bucket: String,
    /// Empty, or the configured prefix ending in one `/`.
    prefix: String,
    /// `storage.s3.part_size`: the parts of appends and of form bodies.
    part_size: u64,
}

impl S3ObjectStore {
    /// Where `key` lives in the bucket.
    fn object_key(&self, key: &ObjectKey) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The key of an upload's multipart upload and of what completing it makes: the
    /// upload's key, or a partial upload's kept object in its staging area.
    fn target_key(&self, upload: &StagedUpload) -> String {
        if upload.partial {
            format!("{}{PARTIAL_OBJECT}", self.staging_prefix(upload))
        } else {
            self.object_key(&upload.key)
        }
    }

    async fn create(&self, key: &str, attributes: &ObjectAttributes) -> Result<String, StorageError> {
        let request = self.client.create_multipart_upload().bucket(&self.bucket).key(key);
        let request = request.set_content_type(attributes.content_type.clone()).set_metadata(user_metadata(attributes));
        let out = errors::on_io(request.send()).await;
        let upload_id = out.map_err(errors::storage)?.upload_id;
        upload_id.ok_or_else(|| StorageError::Refused("the store gave no multipart upload id".into()))
    }

    /// Uploads a buffered part (retryable: the SDK may send it again).
    async fn put_buffered_part(
        &self,
        key: &str,
        multipart: &str,
        number: i32,
        data: Bytes,
    ) -> Result<CompletedPart, StorageError> {
        let request = self.client.upload_part().bucket(&self.bucket).key(key).upload_id(multipart);
        let request = request.part_number(number).content_length(data.len() as i64);
        let request = request.content_md5(Md5Digest::of(&data).to_string()).body(SdkStream::from(data));
        let out = errors::on_io(request.send()).await;
        let etag = out.map_err(errors::storage)?.e_tag;
        Ok(CompletedPart::builder().part_number(number).set_e_tag(etag).build())
    }

    /// Streams the rest of a body of unknown length as parts, `first` being part 1.
    async fn put_in_parts(
        &self,
        key: &str,
        multipart: &str,
        first: Bytes,
        parts: &mut body::Parts<'_>,
    ) -> Result<StoredObject, StorageError> {
        let mut done = Vec::new();
        let mut data = first;
        loop {
            let number = i32::try_from(done.len() + 1).map_err(|_| StorageError::Refused("too many parts".into()))?;
            done.push(self.put_buffered_part(key, multipart, number, data).await?);
            if parts.finished() {
                break;
            }
            data = parts.next().await?;
            if data.is_empty() {
                break;
            }
        }
        let out = self.complete_request(key, multipart, done).await.map_err(errors::storage)?;
        Ok(StoredObject { etag: out.e_tag.as_deref().map(unquote).unwrap_or_default(), size: parts.seen() })
    }

    /// A body that fit in one part, as a plain object.
    async fn put_whole(
        &self,
        key: &str,
        data: Bytes,
        attributes: &ObjectAttributes,
    ) -> Result<StoredObject, StorageError> {
        let md5 = Md5Digest::of(&data);
        let size = data.len() as u64;
        let request = self.client.put_object().bucket(&self.bucket).key(key).content_length(data.len() as i64);
        let request = request.set_content_type(attributes.content_type.clone()).set_metadata(user_metadata(attributes));
        let out = errors::on_io(request.content_md5(md5.to_string()).body(SdkStream::from(data)).send()).await;
        let etag = out.map_err(errors::storage)?.e_tag.as_deref().map_or_else(|| md5.hex(), unquote);
        Ok(StoredObject { etag, size })
    }

    /// Checks the stored parts against `parts` and assembles them (see `ObjectStore::complete`).
    async fn assemble(
        &self,
        upload: &StagedUpload,
        parts: &[(ChunkIndex, PartReceipt)],
        size: u64,
    ) -> Result<StoredObject, StorageError> {
        let (multipart, key) = (multipart_id(upload)?, self.target_key(upload));
        match self.check_parts(&key, multipart, parts, size).await? {
            Listing::Intact => {}
            Listing::Changed(chunks) => return Err(StorageError::PartsChanged(chunks)),
            // An earlier call assembled it (its answer was lost), or parts are missing: a
            // store slow to list them, or lost. Either way, the client sends them again.
            Listing::Missing(chunks) => {
                return match self.completed_before(&key, size, String::new()).await {
                    Ok(object) => Ok(object),
                    Err(StorageError::Refused(_)) => Err(StorageError::PartsChanged(chunks)),
                    Err(err) => Err(err),
                }
            }
            Listing::Gone(reason) => return self.completed_before(&key, size, reason).await,
        }
        let completed = parts
            .iter()
            .map(|(index, receipt)| {
                let number = part_number(*index)?;
                Ok(CompletedPart::builder().part_number(number).e_tag(format!("\"{}\"", receipt.etag)).build())
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        if let Err(err) = self.complete_request(&key, multipart, completed).await {
            return match errors::code(&err) {
                // A part changed since the listing.
                Some("InvalidPart") => match self.check_parts(&key, multipart, parts, size).await? {
                    Listing::Changed(chunks) => Err(StorageError::PartsChanged(chunks)),
                    _ => Err(errors::storage(err)),
                },
                _ => match errors::storage(err) {
                    passing @ StorageError::Unavailable(_) => Err(passing),
                    // A refusal may answer the SDK's retry of a call that succeeded but
                    // whose answer was lost: S3 says NoSuchUpload, s3s-fs AccessDenied. The
                    // key is this upload's alone, so an object of the right size there is
                    // the one that call made.
                    refused => match self.head(&key).await? {
                        Some(object) if object.size == size => Ok(object),
                        _ => Err(refused),
                    },
                },
            };
        }
        match self.head(&key).await? {
            Some(object) if object.size == size => Ok(object),
            Some(object) => Err(StorageError::Refused(format!("the object has {} bytes, not {size}", object.size))),
            None => Err(StorageError::Refused("the assembled object is not there".into())),
        }
    }
}

/// The client's metadata as S3 user metadata (`x-amz-meta-*`), as far as S3 can carry it:
/// names that are HTTP tokens, values of printable ASCII, 2 KiB in all. The rest stays in
/// the session record only.
fn user_metadata(attributes: &ObjectAttributes) -> Option<std::collections::HashMap<String, String>> {
    const LIMIT: usize = 2048;
    let mut used = 0;
    let mut kept = std::collections::HashMap::new();
    for (name, value) in &attributes.metadata {
        let name_ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let value_ok = value.bytes().all(|b| (b' '..=b'~').contains(&b));
        if !(name_ok && value_ok) || used + name.len() + value.len() > LIMIT {
            tracing::debug!(name, "metadata entry not carried to S3");
            continue;
        }
        used += name.len() + value.len();
        kept.insert(name.to_ascii_lowercase(), value.clone());
    }
    (!kept.is_empty()).then_some(kept)
}

/// A streamed body's `Content-Length`: a part or object of `len` bytes, never empty.
fn content_length(len: u64) -> Result<i64, StorageError> {
    let length = i64::try_from(len).ok().filter(|l| *l > 0);
    length.ok_or_else(|| StorageError::Refused(format!("{len} bytes is no part")))
}

/// S3's part number of a chunk: one more than its index, at most 10,000.
fn part_number(index: ChunkIndex) -> Result<i32, StorageError> {
    let number = u64::from(index.0) + 1;
    let part = i32::try_from(number).ok().filter(|_| number <= MAX_PARTS);
    part.ok_or_else(|| StorageError::Refused(format!("chunk {index} is past S3's limit of {MAX_PARTS} parts")))
}

fn multipart_id(upload: &StagedUpload) -> Result<&str, StorageError> {
    let id = upload.storage_upload_id.as_deref();
    id.ok_or_else(|| StorageError::Refused("the upload has no S3 multipart upload id".into()))
}

/// An ETag without its quotes.
fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_owned()
}

#[async_trait(?Send)]
impl ObjectStore for S3ObjectStore {
    #[tracing::instrument(name = "s3.create_multipart", skip_all, fields(upload_id = %upload.id))]
    async fn create_multipart(
        &self,
        upload: &StagedUpload,
        attributes: &ObjectAttributes,
    ) -> Result<Option<String>, StorageError> {
        self.create(&self.target_key(upload), attributes).await.map(Some)
    }

    fn chunks_per_part(&self, chunk_size: u64) -> u32 {
        self.group_len(chunk_size)
    }

    #[tracing::instrument(name = "s3.seal", skip_all, fields(upload_id = %upload.id, chunks = parts.len()))]
    async fn seal(&self, upload: &StagedUpload, parts: &[(ChunkIndex, PartReceipt)]) -> Result<(), StorageError> {
        if upload.part_chunks > 1 {
            self.seal_once(upload, parts).await?;
        }
        Ok(())
    }

    #[tracing::instrument(name = "s3.append", skip_all, fields(upload_id = %upload.id, offset = at.offset, len = at.len))]
    async fn append(
        &self,
        upload: &StagedUpload,
        at: &AppendAt,
        body: ByteStream<'_>,
        max: u64,
    ) -> Result<AppendStored, StorageError> {
        self.append_bytes(upload, at, body, max).await
    }

    async fn drop_part(
        &self,
        upload: &StagedUpload,
        _: ChunkIndex,
        replaced: &PartReceipt,
    ) -> Result<(), StorageError> {
        if upload.part_chunks > 1 {
            return self.drop_chunk_object(upload, replaced).await;
        }
        // A part sent again replaced the earlier one in place.
        Ok(())
    }

    #[tracing::instrument(name = "s3.put_part", skip_all, fields(upload_id = %upload.id, chunk = %index, len = len))]
    async fn put_part(
        &self,
        upload: &StagedUpload,
        index: ChunkIndex,
        body: ByteStream<'_>,
        len: u64,
        expected_md5: Option<Md5Digest>,
    ) -> Result<PartReceipt, StorageError> {
        if upload.part_chunks > 1 {
            return self.put_chunk_object(upload, index, body, len, expected_md5).await;
        }
        let (multipart, number) = (multipart_id(upload)?, part_number(index)?);
        let request = self.streams.upload_part().bucket(&self.bucket).key(self.target_key(upload));
        let request = request.upload_id(multipart).part_number(number).content_length(content_length(len)?);
        // Real S3 checks it too, against corruption between here and there.
        let request = request.set_content_md5(expected_md5.map(|md5| md5.to_string()));
        let (md5, out) = body::stream(body, len, expected_md5, |stream| request.body(stream).send()).await?;
        let etag = out.e_tag.as_deref().map(unquote);
        let etag = etag.ok_or_else(|| StorageError::Refused("the store gave no ETag for the part".into()))?;
        Ok(PartReceipt { md5, etag, size: len, crc64: None })
    }

    #[tracing::instrument(name = "s3.complete", skip_all, fields(upload_id = %upload.id, parts = parts.len()))]
    async fn complete(
        &self,
        upload: &StagedUpload,
        parts: &[(ChunkIndex, PartReceipt)],
        size: u64,
    ) -> Result<StoredObject, StorageError> {
        if upload.partial && size == 0 {
            // Nothing to keep, and S3 makes no object of no parts.
            if let Some(multipart) = upload.storage_upload_id.as_deref() {
                self.abort_multipart(&self.target_key(upload), multipart).await?;
            }
            return Ok(StoredObject { etag: Md5Digest::of(b"").hex(), size: 0 });
        }
        if upload.part_chunks > 1 {
            return self.assemble_grouped(upload, parts, size, true).await;
        }
        let object = self.assemble(upload, parts, size).await?;
        if upload.append {
            // An append upload's tails (a partial upload's kept object stays); what a
            // failure leaves, the bucket's lifecycle rule for `.ferry/` (or the next
            // completion call) removes.
            let keep = upload.partial.then_some(PARTIAL_OBJECT);
            if let Err(err) = self.drop_staging(upload, keep).await {
                let error = crate::error::chain(&err);
                tracing::warn!(upload_id = %upload.id, %error, "could not delete an append upload's tails");
            }
        }
        Ok(object)
    }

    #[tracing::instrument(name = "s3.concatenate", skip_all, fields(upload_id = %upload.id, partials = partials.len()))]
    async fn concatenate(
        &self,
        upload: &StagedUpload,
        partials: &[Partial],
        size: u64,
    ) -> Result<StoredObject, StorageError> {
        self.concatenate_partials(upload, partials, size).await
    }

    #[tracing::instrument(name = "s3.abort", skip_all, fields(upload_id = %upload.id))]
    async fn abort(&self, upload: &StagedUpload) -> Result<(), StorageError> {
        if upload.append || upload.part_chunks > 1 {
            self.drop_staging(upload, None).await?;
        }
        match upload.storage_upload_id.as_deref() {
            Some(multipart) => self.abort_multipart(&self.target_key(upload), multipart).await,
            None => Ok(()),
        }
    }

    #[tracing::instrument(name = "s3.put_object", skip_all, fields(key = %key))]
    async fn put_object(
        &self,
        key: &ObjectKey,
        body: ByteStream<'_>,
        max_len: u64,
        attributes: &ObjectAttributes,
    ) -> Result<StoredObject, StorageError> {
        let key = self.object_key(key);
        // Parts grow past `part_size` only when the limit would need more than 10,000 of them.
        let part_size = usize::try_from(self.part_size.max(max_len.div_ceil(MAX_PARTS)))
            .map_err(|_| StorageError::Refused(format!("{max_len} bytes is past what S3 can take")))?;
        let mut parts = body::Parts::new(body, part_size, max_len);
        let first = parts.next().await?;
        if parts.finished() {
            return self.put_whole(&key, first, attributes).await;
        }
        let multipart = self.create(&key, attributes).await?;
        let result = self.put_in_parts(&key, &multipart, first, &mut parts).await;
        if result.is_err() {
            if let Err(err) = self.abort_multipart(&key, &multipart).await {
                let error = crate::error::chain(&err);
                tracing::warn!(%error, "could not abort a form upload's parts; the bucket's lifecycle rule must");
            }
        }
        result
    }

    #[tracing::instrument(name = "s3.delete_object", skip_all, fields(key = %key))]
    async fn delete_object(&self, key: &ObjectKey) -> Result<(), StorageError> {
        match errors::on_io(self.client.delete_object().bucket(&self.bucket).key(self.object_key(key)).send()).await {
            Err(err) if errors::code(&err) != Some("NoSuchKey") && !errors::is_not_found(&err) => {
                Err(errors::storage(err))
            }
            _ => Ok(()),
        }
    }

    async fn check(&self) -> Result<(), StorageError> {
        let quick = ConfigBuilder::default()
            .retry_config(RetryConfig::disabled())
            .timeout_config(call_timeouts(CHECK_TIMEOUT, CHECK_TIMEOUT));
        let request = self.client.head_bucket().bucket(&self.bucket).customize().config_override(quick);
        errors::on_io(request.send()).await.map(|_| ()).map_err(errors::storage)
    }

    fn direct(&self) -> Option<&dyn super::DirectStore> {
        Some(self)
    }
}

#[cfg(any(test, feature = "test-support"))]
#[async_trait(?Send)]
impl super::contract::Inspect for S3ObjectStore {
    async fn object(&self, key: &ObjectKey) -> Option<Vec<u8>> {
        let answer =
            errors::on_io(self.client.get_object().bucket(&self.bucket).key(self.object_key(key)).send()).await;
        match answer {
            Ok(out) => match out.body.collect().await {
                Ok(data) => Some(data.to_vec()),
                Err(err) => panic!("reading {key} failed: {err}"),
            },
            Err(err) if errors::code(&err) == Some("NoSuchKey") || errors::is_not_found(&err) => None,
            Err(err) => panic!("GetObject {key} failed: {}", aws_sdk_s3::error::DisplayErrorContext(&err)),
        }
    }

    async fn has_staged_parts(&self, upload: &StagedUpload) -> bool {
        if (upload.append || upload.part_chunks > 1) && self.has_staging(upload).await {
            return true;
        }
        let Some(multipart) = upload.storage_upload_id.as_deref() else { return false };
        match self.list_parts(&self.target_key(upload), multipart).await {
            Ok(parts) => !parts.is_empty(),
            Err(err) if errors::code(&err) == Some("NoSuchUpload") => false,
            Err(err) => panic!("ListParts failed: {}", aws_sdk_s3::error::DisplayErrorContext(&err)),
        }
    }
}
