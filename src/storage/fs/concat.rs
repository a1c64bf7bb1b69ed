//! tus concatenation on local files. A partial upload's `append.data` stays in its staging
//! folder once finished (cut to its length and flushed), where no listing of finished
//! objects sees it; `abort` removes it with the folder. A final upload's object is the
//! partials' files copied one after the other by the kernel into a temporary file, which
//! is renamed into place: it appears whole or not at all.

use std::io;

use super::durable::seal;
use super::FsObjectStore;
use crate::domain::Md5Digest;
use crate::storage::{multipart_etag, Partial, StagedUpload, StorageError, StoredObject};

impl FsObjectStore {
    /// Finishes a partial upload where its bytes are: its file is cut to `size`, flushed
    /// and hashed (the MD5 is its tag), and stays in the staging folder.
    pub(super) async fn complete_partial(
        &self,
        upload: &StagedUpload,
        size: u64,
    ) -> Result<StoredObject, StorageError> {
        let source = self.append_path(&upload.id);
        let held = match tokio::fs::metadata(&source).await {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StorageError::Refused("the partial upload's file is gone".into()))
            }
            Err(e) => return Err(StorageError::unavailable(e)),
        };
        if held < size {
            return Err(StorageError::Refused(format!("the partial upload's file holds {held} bytes, not {size}")));
        }
        Ok(StoredObject { etag: seal(&source, size).await?.hex(), size })
    }

    /// See `ObjectStore::concatenate`. The tag is the multipart ETag of the partials' MD5s
    /// (as S3 would give it), so that no byte is read again to hash the whole.
    pub(super) async fn concatenate_partials(
        &self,
        upload: &StagedUpload,
        partials: &[Partial],
        size: u64,
    ) -> Result<StoredObject, StorageError> {
        // A partial of no bytes has nothing stored.
        let partials: Vec<&Partial> = partials.iter().filter(|p| p.size > 0).collect();
        let md5s = partials
            .iter()
            .map(|p| Md5Digest::from_hex(&p.etag))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| StorageError::Refused("a partial upload's tag is not an MD5 of this store".into()))?;
        let etag = multipart_etag(&md5s);
        let path = self.object_path(&upload.key);
        let mut sources = Vec::with_capacity(partials.len());
        for partial in &partials {
            let source = self.append_path(&partial.upload.id);
            match tokio::fs::metadata(&source).await {
                Ok(meta) if meta.len() == partial.size => sources.push(source),
                Ok(meta) => {
                    let held = meta.len();
                    let id = partial.upload.id;
                    return Err(StorageError::Refused(format!(
                        "partial upload {id} holds {held} bytes, not {}",
                        partial.size
                    )));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(StorageError::Refused(format!(
                        "the bytes of partial upload {} are gone",
                        partial.upload.id
                    )))
                }
                Err(e) => return Err(StorageError::unavailable(e)),
            }
        }
        self.join_into(sources, &path, size).await?;
        Ok(StoredObject { etag, size })
    }
}
