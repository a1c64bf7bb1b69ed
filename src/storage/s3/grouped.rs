//! Small chunks: chunks under `storage.s3.part_size` (S3 refuses parts under 5 MiB but the
//! last) are grouped, `part_chunks` consecutive chunks to one part.
//!
//! Each send of a chunk is an object of its own, `<prefix>.ferry/<upload id>/chunk-<tag>`,
//! stored before it is acknowledged, so every instance can reach it; the tag (the chunk's
//! index and a random suffix) is the receipt's, so two sends never overwrite each other and
//! a receipt always names the bytes it was made from. Once a group's chunks are all
//! recorded, `seal` reads them back in order (S3 cannot copy several objects into one
//! part) and streams them into part `group + 1`, then leaves a marker object,
//! `part-<group>.<fingerprint>.<etag>`, saying what the part was made of (the fingerprint
//! is the MD5 of its chunks' MD5s) and the ETag it got, and deletes the chunks.
//!
//! Completion trusts a part only where a marker names the current receipts and the
//! listing agrees on its size and ETag (where the store lists one); any other part it
//! makes itself from the chunk objects. A chunk whose object is gone (its part was sealed
//! from other bytes, say) is asked for again (`PartsChanged`). What completion leaves
//! under `.ferry/` (markers, chunks not deleted yet) goes in the background; an abort
//! removes it all.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use aws_sdk_s3::types::CompletedPart;
use futures_util::{stream, StreamExt};
use tokio_util::io::ReaderStream;

use super::{body, content_length, errors, multipart_id, part_number, unquote, S3ObjectStore};
use crate::domain::{ChunkIndex, Md5Digest, Md5Hasher, PartReceipt};
use crate::storage::{ByteStream, StagedUpload, StorageError, StoredObject};

const CHUNK: &str = "chunk-";
const SEALED: &str = "part-";

/// What the sealing markers say: by group and fingerprint, the ETag of the part made.
type Seals = HashMap<(u32, String), String>;

impl S3ObjectStore {
    /// Chunks per part: enough chunks of `chunk_size` to fill `part_size`, or 1 when a
    /// chunk fills it alone.
    pub(super) fn group_len(&self, chunk_size: u64) -> u32 {
        if chunk_size == 0 || chunk_size >= self.part_size {
            return 1;
        }
        u32::try_from(self.part_size.div_ceil(chunk_size)).unwrap_or(u32::MAX)
    }

    /// Where one send of a chunk is kept: its receipt's tag names it.
    fn chunk_key(&self, upload: &StagedUpload, receipt: &PartReceipt) -> Result<String, StorageError> {
        let name = &receipt.etag;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(StorageError::Refused(format!("{name:?} is not a chunk tag of this store")));
        }
        Ok(format!("{}{CHUNK}{name}", self.staging_prefix(upload)))
    }

    /// Stores one send of a small chunk as an object of its own, under a name no other
    /// send shares, so sends never overwrite each other (see the module notes).
    pub(super) async fn put_chunk_object(
        &self,
        upload: &StagedUpload,
        index: ChunkIndex,
        body: ByteStream<'_>,
        len: u64,
        expected_md5: Option<Md5Digest>,
    ) -> Result<PartReceipt, StorageError> {
        let name = format!("{index}-{}", uuid::Uuid::new_v4().simple());
        let key = format!("{}{CHUNK}{name}", self.staging_prefix(upload));
        let request = self.streams.put_object().bucket(&self.bucket).key(key);
        let request = request.content_length(content_length(len)?);
        let request = request.set_content_md5(expected_md5.map(|md5| md5.to_string()));
        let (md5, _) = body::stream(body, len, expected_md5, |stream| request.body(stream).send()).await?;
        Ok(PartReceipt { md5, etag: name, size: len, crc64: None })
    }

    /// Deletes a chunk send whose receipt was replaced.
    pub(super) async fn drop_chunk_object(
        &self,
        upload: &StagedUpload,
        replaced: &PartReceipt,
    ) -> Result<(), StorageError> {
        let request = self.client.delete_object().bucket(&self.bucket).key(self.chunk_key(upload, replaced)?);
        match errors::on_io(request.send()).await {
            Err(err) if errors::code(&err) != Some("NoSuchKey") && !errors::is_not_found(&err) => {
                Err(errors::storage(err))
            }
            _ => Ok(()),
        }
    }

    /// Makes the part of one group from its chunk objects, leaves its marker and deletes
    /// the chunks (see the module notes); answers the part for completion.
    pub(super) async fn seal_group(
        &self,
        upload: &StagedUpload,
        group: &[(ChunkIndex, PartReceipt)],
    ) -> Result<CompletedPart, StorageError> {
        let (multipart, key) = (multipart_id(upload)?, self.object_key(&upload.key));
        let number = self.group_number(upload, group)?;
        let len: u64 = group.iter().map(|(_, r)| r.size).sum();
        let failed = Rc::new(RefCell::new(None));
        let chunks = self.read_chunks(upload, group, Rc::clone(&failed));
        let request = self.streams.upload_part().bucket(&self.bucket).key(key).upload_id(multipart);
        let request = request.part_number(number).content_length(content_length(len)?);
        let sent = body::stream(chunks, len, None, |stream| request.body(stream).send()).await;
        if let Some(err) = failed.borrow_mut().take() {
            return Err(err);
        }
        let (md5, out) = sent?;
        let etag = out.e_tag.as_deref().map_or_else(|| md5.hex(), unquote);
        let marker = format!("{}{SEALED}{}.{}.{etag}", self.staging_prefix(upload), number - 1, fingerprint(group));
        if !etag.contains('/') {
            let request = self.client.put_object().bucket(&self.bucket).key(marker).content_length(0);
            errors::on_io(request.send()).await.map_err(errors::storage)?;
            for (_, receipt) in group {
                self.delete_in_background(self.chunk_key(upload, receipt)?);
            }
        }
        Ok(CompletedPart::builder().part_number(number).e_tag(format!("\"{etag}\"")).build())
    }

    /// Seals a group unless it is sealed already from these very receipts (its chunks
    /// are gone then, but the part is there).
    pub(super) async fn seal_once(
        &self,
        upload: &StagedUpload,
        group: &[(ChunkIndex, PartReceipt)],
    ) -> Result<(), StorageError> {
        match self.seal_group(upload, group).await {
            Err(StorageError::PartsChanged(chunks)) => {
                let number = self.group_number(upload, group)?;
                let marker = format!("{}{SEALED}{}.{}.", self.staging_prefix(upload), number - 1, fingerprint(group));
                let request = self.client.list_objects_v2().bucket(&self.bucket).prefix(marker).max_keys(1);
                let page = errors::on_io(request.send()).await.map_err(errors::storage)?;
                if page.contents().is_empty() {
                    return Err(StorageError::PartsChanged(chunks));
                }
                Ok(())
            }
            other => other.map(drop),
        }
    }

    /// S3's part number of a group: the first chunk's group, plus one.
    fn group_number(&self, upload: &StagedUpload, group: &[(ChunkIndex, PartReceipt)]) -> Result<i32, StorageError> {
        let (first, _) = group.first().ok_or_else(|| StorageError::Refused("an empty group of chunks".into()))?;
        part_number(ChunkIndex(first.0 / upload.part_chunks.max(1)))
    }

    /// The chunk objects of `group`, in order, as one body. A chunk that is gone ends the
    /// body, and `failed` says why.
    fn read_chunks<'a>(
        &'a self,
        upload: &'a StagedUpload,
        group: &'a [(ChunkIndex, PartReceipt)],
        failed: Rc<RefCell<Option<StorageError>>>,
    ) -> ByteStream<'a> {
        let opened = stream::iter(group).then(move |(index, receipt)| {
            let failed = Rc::clone(&failed);
            async move {
                let opened = match self.chunk_key(upload, receipt) {
                    Ok(key) => match errors::on_io(self.client.get_object().bucket(&self.bucket).key(key).send()).await
                    {
                        Ok(out) => Ok(out.body),
                        Err(err) if errors::code(&err) == Some("NoSuchKey") || errors::is_not_found(&err) => {
                            Err(StorageError::PartsChanged(vec![*index]))
                        }
                        Err(err) => Err(errors::storage(err)),
                    },
                    Err(err) => Err(err),
                };
                match opened {
                    Ok(body) => ReaderStream::new(body.into_async_read()).boxed_local(),
                    Err(err) => {
                        *failed.borrow_mut() = Some(err);
                        stream::once(async { Err(std::io::Error::other("a chunk could not be read")) }).boxed_local()
                    }
                }
            }
        });
        opened.flatten().boxed_local()
    }

    /// The chunks of `group` whose objects are gone.
    async fn gone(
        &self,
        upload: &StagedUpload,
        group: &[(ChunkIndex, PartReceipt)],
    ) -> Result<Vec<ChunkIndex>, StorageError> {
        let mut gone = Vec::new();
        for (index, receipt) in group {
            let request = self.client.head_object().bucket(&self.bucket).key(self.chunk_key(upload, receipt)?);
            match errors::on_io(request.send()).await {
                Ok(_) => {}
                Err(err) if errors::is_not_found(&err) => gone.push(*index),
                Err(err) => return Err(errors::storage(err)),
            }
        }
        Ok(gone)
    }

    /// Every sealing marker of the upload.
    async fn seals(&self, upload: &StagedUpload) -> Result<Seals, StorageError> {
        let prefix = format!("{}{SEALED}", self.staging_prefix(upload));
        let mut seals = Seals::new();
        let mut token: Option<String> = None;
        loop {
            let request = self.client.list_objects_v2().bucket(&self.bucket).prefix(&prefix);
            let page = errors::on_io(request.set_continuation_token(token.clone()).send()).await;
            let page = page.map_err(errors::storage)?;
            for key in page.contents().iter().filter_map(|o| o.key()) {
                let mut fields = key[prefix.len()..].splitn(3, '.');
                if let (Some(group), Some(print), Some(etag)) = (fields.next(), fields.next(), fields.next()) {
                    if let Ok(group) = group.parse() {
                        seals.insert((group, print.to_owned()), etag.to_owned());
                    }
                }
            }
            match page.next_continuation_token.filter(|_| page.is_truncated == Some(true)) {
                Some(next) if token.as_ref() != Some(&next) => token = Some(next),
                _ => return Ok(seals),
            }
        }
    }

    /// Assembles an upload of grouped chunks (see the module notes and
    /// `ObjectStore::complete`). With `trust_seals` false every part is made again.
    pub(super) async fn assemble_grouped(
        &self,
        upload: &StagedUpload,
        parts: &[(ChunkIndex, PartReceipt)],
        size: u64,
        trust_seals: bool,
    ) -> Result<StoredObject, StorageError> {
        let (multipart, key) = (multipart_id(upload)?, self.object_key(&upload.key));
        let total: u64 = parts.iter().map(|(_, r)| r.size).sum();
        if total != size {
            return Err(StorageError::Refused(format!("the chunks hold {total} bytes, not {size}")));
        }
        let completed = match self.make_parts(upload, &key, multipart, parts, trust_seals).await {
            Ok(completed) => completed,
            // An earlier call may have assembled it (its answer lost, or its claimer
            // dead), and the clean-up deleted the chunks: the key is this upload's alone,
            // so an object of the right size there is the one that call made.
            Err(err) => {
                return match self.head(&key).await? {
                    Some(object) if object.size == size => Ok(object),
                    _ => Err(err),
                }
            }
        };
        if let Err(err) = self.complete_request(&key, multipart, completed).await {
            return match errors::code(&err) {
                // A sealed part changed since the listing: make every part again.
                Some("InvalidPart") if trust_seals => Box::pin(self.assemble_grouped(upload, parts, size, false)).await,
                _ => match errors::storage(err) {
                    passing @ StorageError::Unavailable(_) => Err(passing),
                    refused => self.completed_before(&key, size, refused.to_string()).await,
                },
            };
        }
        let object = self.head(&key).await?;
        let object = object.ok_or_else(|| StorageError::Refused("the assembled object is not there".into()))?;
        if object.size != size {
            return Err(StorageError::Refused(format!("the object has {} bytes, not {size}", object.size)));
        }
        let store = self.clone();
        let upload = upload.clone();
        crate::runtime::detach(async move {
            if let Err(err) = store.drop_staging(&upload, None).await {
                let error = crate::error::chain(&err);
                tracing::warn!(upload_id = %upload.id, %error, "could not delete an upload's chunk objects");
            }
        });
        Ok(object)
    }

    /// Every part of the upload, sealed before or made now.
    async fn make_parts(
        &self,
        upload: &StagedUpload,
        key: &str,
        multipart: &str,
        parts: &[(ChunkIndex, PartReceipt)],
        trust_seals: bool,
    ) -> Result<Vec<CompletedPart>, StorageError> {
        let listed = match self.list_parts(key, multipart).await {
            Ok(listed) => listed,
            Err(err) if errors::code(&err) == Some("NoSuchUpload") => {
                return Err(StorageError::Refused("the multipart upload is gone".into()))
            }
            Err(err) => return Err(errors::storage(err)),
        };
        let mut seals = if trust_seals { self.seals(upload).await? } else { Seals::new() };
        let per_part = upload.part_chunks.max(1);
        let mut completed = Vec::new();
        let mut changed = Vec::new();
        for group in parts.chunk_by(|(a, _), (b, _)| a.0 / per_part == b.0 / per_part) {
            let number = self.group_number(upload, group)?;
            let len: u64 = group.iter().map(|(_, r)| r.size).sum();
            let sealed = |seals: &Seals| {
                let etag = seals.get(&(u32::try_from(number - 1).ok()?, fingerprint(group)))?;
                let part = listed.get(&number)?;
                let size_ok = part.size.is_some_and(|s| u64::try_from(s).ok() == Some(len));
                let etag_ok = part.e_tag.as_deref().is_none_or(|e| unquote(e) == *etag);
                (size_ok && etag_ok)
                    .then(|| CompletedPart::builder().part_number(number).e_tag(format!("\"{etag}\"")).build())
            };
            if let Some(part) = sealed(&seals) {
                completed.push(part);
                continue;
            }
            match self.seal_group(upload, group).await {
                Ok(part) => completed.push(part),
                // A chunk request may have sealed it meanwhile, and deleted its chunks.
                Err(StorageError::PartsChanged(_)) => {
                    seals = if trust_seals { self.seals(upload).await? } else { seals };
                    match sealed(&seals) {
                        Some(part) => completed.push(part),
                        None => changed.extend(self.gone(upload, group).await?),
                    }
                }
                Err(err) => return Err(err),
            }
        }
        if !changed.is_empty() {
            return Err(StorageError::PartsChanged(changed));
        }
        Ok(completed)
    }
}

/// What a part is made of: the MD5 of its chunks' indices and MD5s, in order.
fn fingerprint(group: &[(ChunkIndex, PartReceipt)]) -> String {
    let mut hasher = Md5Hasher::new();
    for (index, receipt) in group {
        hasher.update(&index.0.to_be_bytes());
        hasher.update(receipt.md5.as_bytes());
    }
    hasher.finish().hex()
}
