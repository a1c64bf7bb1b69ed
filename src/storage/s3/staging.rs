//! An upload's staging objects under `<prefix>.ferry/<upload id>/`: the tails of append
//! uploads and the small chunks of grouped ones, with their sealing markers. The bucket's
//! lifecycle rule for `.ferry/` is the backstop for whatever a crash leaves there.

use futures_util::StreamExt;

use super::{errors, S3ObjectStore};
use crate::storage::{StagedUpload, StorageError};

/// Staging objects deleted at once by `drop_staging`.
const DELETES_AT_ONCE: usize = 16;

impl S3ObjectStore {
    /// Where an upload's staging objects (tails, small chunks, sealing markers) live.
    pub(super) fn staging_prefix(&self, upload: &StagedUpload) -> String {
        format!("{}.ferry/{}/", self.prefix, upload.id)
    }

    /// Deletes a staging object without waiting; a failure only leaves it for the sweep
    /// at completion or abort.
    pub(super) fn delete_in_background(&self, key: String) {
        let request = self.client.delete_object().bucket(&self.bucket).key(key.clone());
        crate::runtime::detach(async move {
            if let Err(err) = request.send().await {
                let error = aws_sdk_s3::error::DisplayErrorContext(&err).to_string();
                tracing::debug!(key, error, "could not delete a staging object; completion or abort will");
            }
        });
    }

    /// Deletes every staging object of an upload (tails, small chunks, sealing markers) but
    /// the one named `keep` (a partial upload's kept bytes): completion and abort.
    pub(super) async fn drop_staging(&self, upload: &StagedUpload, keep: Option<&str>) -> Result<(), StorageError> {
        let prefix = self.staging_prefix(upload);
        let kept = keep.map(|name| format!("{prefix}{name}"));
        loop {
            let request = self.client.list_objects_v2().bucket(&self.bucket).prefix(&prefix);
            let page = errors::on_io(request.send()).await.map_err(errors::storage)?;
            let keys: Vec<String> = page
                .contents
                .unwrap_or_default()
                .into_iter()
                .filter_map(|o| o.key)
                .filter(|key| Some(key) != kept.as_ref())
                .collect();
            if keys.is_empty() {
                return Ok(());
            }
            // Object by object, a few at once: DeleteObjects needs Content-MD5 or a
            // checksum, which some S3-compatible stores handle badly.
            let deletes = keys.into_iter().map(|key| {
                let request = self.client.delete_object().bucket(&self.bucket).key(key);
                async move {
                    match errors::on_io(request.send()).await {
                        Err(err) if errors::code(&err) != Some("NoSuchKey") && !errors::is_not_found(&err) => {
                            Err(errors::storage(err))
                        }
                        _ => Ok(()),
                    }
                }
            });
            let mut deletes = futures_util::stream::iter(deletes).buffer_unordered(DELETES_AT_ONCE);
            while let Some(deleted) = deletes.next().await {
                deleted?;
            }
        }
    }

    /// Whether an upload still has staging objects (tests).
    #[cfg(any(test, feature = "test-support"))]
    pub(super) async fn has_staging(&self, upload: &StagedUpload) -> bool {
        let request = self.client.list_objects_v2().bucket(&self.bucket).prefix(self.staging_prefix(upload));
        errors::on_io(request.send()).await.map_or(true, |page| !page.contents().is_empty())
    }
}
