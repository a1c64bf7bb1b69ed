//! Assembling an upload: the listing of stored parts checked against the receipts,
//! CompleteMultipartUpload, the finished object, and aborting.

use std::collections::HashMap;

use aws_sdk_s3::config::Builder as ConfigBuilder;
use aws_sdk_s3::operation::complete_multipart_upload::{CompleteMultipartUploadError, CompleteMultipartUploadOutput};
use aws_sdk_s3::operation::list_parts::ListPartsError;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Part};

use super::connect::{call_timeouts, COMPLETE_TIMEOUT};
use super::errors::{self, S3Error};
use super::{part_number, unquote, S3ObjectStore};
use crate::domain::{ChunkIndex, PartReceipt};
use crate::storage::{StorageError, StoredObject};

/// What the listing says of the parts to assemble.
pub(super) enum Listing {
    /// Every part is there and matches its receipt.
    Intact,
    /// These chunks' parts hold other bytes than their receipts.
    Changed(Vec<ChunkIndex>),
    /// These chunks' parts are not listed (assembled already, not listed yet, or lost).
    Missing(Vec<ChunkIndex>),
    /// The multipart upload is not there (assembled already, or aborted).
    Gone(String),
}

impl S3ObjectStore {
    /// Every stored part of a multipart upload, by part number.
    pub(super) async fn list_parts(
        &self,
        key: &str,
        multipart: &str,
    ) -> Result<HashMap<i32, Part>, S3Error<ListPartsError>> {
        let mut parts = HashMap::new();
        let mut marker: Option<String> = None;
        loop {
            let request = self.client.list_parts().bucket(&self.bucket).key(key).upload_id(multipart);
            let page = errors::on_io(request.set_part_number_marker(marker.clone()).send()).await?;
            for part in page.parts.unwrap_or_default() {
                if let Some(number) = part.part_number {
                    parts.insert(number, part);
                }
            }
            match page.next_part_number_marker.filter(|next| page.is_truncated == Some(true) && !next.is_empty()) {
                // A store that repeats its marker would never end.
                Some(next) if marker.as_ref() != Some(&next) => marker = Some(next),
                _ => return Ok(parts),
            }
        }
    }

    /// Whether the stored parts still hold the receipts' bytes, as far as the listing
    /// tells: same size and, where the store lists ETags (s3s-fs does not), same ETag.
    pub(super) async fn check_parts(
        &self,
        key: &str,
        multipart: &str,
        receipts: &[(ChunkIndex, PartReceipt)],
        size: u64,
    ) -> Result<Listing, StorageError> {
        let stored = match self.list_parts(key, multipart).await {
            Ok(stored) => stored,
            Err(err) if errors::code(&err) == Some("NoSuchUpload") => {
                return Ok(Listing::Gone("the multipart upload is gone".into()))
            }
            Err(err) => return Err(errors::storage(err)),
        };
        let mut changed = Vec::new();
        let mut missing = Vec::new();
        for (index, receipt) in receipts {
            let Some(part) = stored.get(&part_number(*index)?) else {
                missing.push(*index);
                continue;
            };
            let size_differs = part.size.is_some_and(|s| u64::try_from(s).ok() != Some(receipt.size));
            let etag_differs = part.e_tag.as_deref().is_some_and(|e| unquote(e) != receipt.etag);
            if size_differs || etag_differs {
                changed.push(*index);
            }
        }
        if !missing.is_empty() {
            return Ok(Listing::Missing(missing));
        }
        let total: u64 = receipts.iter().map(|(_, r)| r.size).sum();
        if changed.is_empty() && total != size {
            return Err(StorageError::Refused(format!("the parts hold {total} bytes, not {size}")));
        }
        Ok(if changed.is_empty() { Listing::Intact } else { Listing::Changed(changed) })
    }

    pub(super) async fn complete_request(
        &self,
        key: &str,
        multipart: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<CompleteMultipartUploadOutput, S3Error<CompleteMultipartUploadError>> {
        let upload = CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
        let request = self.client.complete_multipart_upload().bucket(&self.bucket).key(key).upload_id(multipart);
        let longer = ConfigBuilder::default().timeout_config(call_timeouts(COMPLETE_TIMEOUT, COMPLETE_TIMEOUT));
        errors::on_io(request.multipart_upload(upload).customize().config_override(longer).send()).await
    }

    /// The finished object at `key`, if there is one.
    pub(super) async fn head(&self, key: &str) -> Result<Option<StoredObject>, StorageError> {
        match errors::on_io(self.client.head_object().bucket(&self.bucket).key(key).send()).await {
            Ok(out) => {
                let size = out.content_length.and_then(|s| u64::try_from(s).ok()).unwrap_or_default();
                Ok(Some(StoredObject { etag: out.e_tag.as_deref().map(unquote).unwrap_or_default(), size }))
            }
            Err(err) if errors::is_not_found(&err) => Ok(None),
            Err(err) => Err(errors::storage(err)),
        }
    }

    /// The object an earlier `complete` made, whose answer was lost; else `reason` refuses.
    pub(super) async fn completed_before(
        &self,
        key: &str,
        size: u64,
        reason: String,
    ) -> Result<StoredObject, StorageError> {
        match self.head(key).await? {
            Some(object) if object.size == size => Ok(object),
            _ => Err(StorageError::Refused(reason)),
        }
    }

    pub(super) async fn abort_multipart(&self, key: &str, multipart: &str) -> Result<(), StorageError> {
        let request = self.client.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(multipart);
        let Err(err) = errors::on_io(request.send()).await else { return Ok(()) };
        match errors::code(&err) {
            Some("NoSuchUpload") => Ok(()),
            // s3s-fs answers so for an upload it no longer knows: gone, if no part is listed.
            Some("AccessDenied") => match self.list_parts(key, multipart).await {
                Ok(parts) if parts.is_empty() => Ok(()),
                Err(e) if errors::code(&e) == Some("NoSuchUpload") => Ok(()),
                _ => Err(errors::storage(err)),
            },
            _ => Err(errors::storage(err)),
        }
    }
}
