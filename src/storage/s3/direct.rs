//! Direct transfers on S3: presigned UploadPart and PutObject URLs (the SDK's own SigV4
//! presigning), ListParts for what a multipart upload holds, HeadObject for a whole object.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::presigning::{PresignedRequest, PresigningConfig};
use aws_sdk_s3::types::ChecksumMode;

use super::{errors, multipart_id, part_number, unquote, user_metadata, S3ObjectStore, MIN_PART_SIZE};
use crate::domain::{ChunkIndex, Crc64, ObjectKey};
use crate::storage::{DirectStore, ListedPart, ObjectAttributes, ObjectHead, PresignedPut, StagedUpload, StorageError};

fn config(expires_in: Duration) -> Result<PresigningConfig, StorageError> {
    PresigningConfig::expires_in(expires_in).map_err(|e| StorageError::Refused(format!("cannot presign: {e}")))
}

fn put(presigned: &PresignedRequest) -> PresignedPut {
    let headers = presigned.headers().map(|(name, value)| (name.to_owned(), value.to_owned())).collect();
    PresignedPut { url: presigned.uri().to_owned(), headers }
}

fn length(len: u64) -> Result<i64, StorageError> {
    i64::try_from(len).map_err(|_| StorageError::Refused(format!("{len} bytes is past what S3 can take")))
}

#[async_trait(?Send)]
impl DirectStore for S3ObjectStore {
    fn min_part_size(&self) -> u64 {
        MIN_PART_SIZE
    }

    #[tracing::instrument(name = "s3.presign_part", skip_all, fields(upload_id = %upload.id, chunk = %index))]
    async fn presign_part(
        &self,
        upload: &StagedUpload,
        index: ChunkIndex,
        len: u64,
        expires_in: Duration,
    ) -> Result<PresignedPut, StorageError> {
        let request = self.client.upload_part().bucket(&self.bucket).key(self.target_key(upload));
        let request = request.upload_id(multipart_id(upload)?).part_number(part_number(index)?);
        let presigned = request.content_length(length(len)?).presigned(config(expires_in)?).await;
        Ok(put(&presigned.map_err(errors::storage)?))
    }

    #[tracing::instrument(name = "s3.presign_object", skip_all, fields(upload_id = %upload.id))]
    async fn presign_object(
        &self,
        upload: &StagedUpload,
        len: u64,
        attributes: &ObjectAttributes,
        checksum: Option<Crc64>,
        expires_in: Duration,
    ) -> Result<PresignedPut, StorageError> {
        let request = self.client.put_object().bucket(&self.bucket).key(self.target_key(upload));
        let request = request.content_length(length(len)?).set_content_type(attributes.content_type.clone());
        // A signed checksum header: the client must send it, and a store that checks it
        // refuses other bytes.
        let request =
            request.set_metadata(user_metadata(attributes)).set_checksum_crc64_nvme(checksum.map(String::from));
        Ok(put(&request.presigned(config(expires_in)?).await.map_err(errors::storage)?))
    }

    #[tracing::instrument(name = "s3.list_direct_parts", skip_all, fields(upload_id = %upload.id))]
    async fn list_parts(&self, upload: &StagedUpload) -> Result<Vec<ListedPart>, StorageError> {
        let listed = self.list_parts(&self.target_key(upload), multipart_id(upload)?).await;
        let mut parts: Vec<ListedPart> = listed
            .map_err(errors::storage)?
            .into_iter()
            .filter_map(|(number, part)| {
                let index = ChunkIndex(u32::try_from(number.checked_sub(1)?).ok()?);
                let size = u64::try_from(part.size.unwrap_or_default()).unwrap_or_default();
                Some(ListedPart { index, size, etag: part.e_tag.as_deref().map(unquote).filter(|e| !e.is_empty()) })
            })
            .collect();
        parts.sort_by_key(|p| p.index);
        Ok(parts)
    }

    #[tracing::instrument(name = "s3.head_object", skip_all, fields(key = %key))]
    async fn head_object(&self, key: &ObjectKey) -> Result<Option<ObjectHead>, StorageError> {
        let request = self.client.head_object().bucket(&self.bucket).key(self.object_key(key));
        match errors::on_io(request.checksum_mode(ChecksumMode::Enabled).send()).await {
            Ok(out) => Ok(Some(ObjectHead {
                etag: out.e_tag.as_deref().map(unquote).unwrap_or_default(),
                size: out.content_length.and_then(|s| u64::try_from(s).ok()).unwrap_or_default(),
                // Only a checksum of the whole object's bytes: a composite one (of the
                // parts' checksums) is no CRC of the file.
                crc64: out
                    .checksum_crc64_nvme
                    .filter(|_| out.checksum_type.as_ref().is_none_or(|t| t.as_str() == "FULL_OBJECT"))
                    .and_then(|c| c.parse().ok()),
            })),
            Err(err) if errors::is_not_found(&err) => Ok(None),
            Err(err) => Err(errors::storage(err)),
        }
    }
}
