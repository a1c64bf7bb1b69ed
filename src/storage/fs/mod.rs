//! The filesystem object store. Layout under the root:
//!
//! ```text
//! <root>/<upload id>/<name>               finished objects (the upload's key)
//! <root>/.ferry/staging/<upload id>/     stored chunks of unfinished uploads, a file per send,
//!                                         or one `append.data` for an append upload (kept
//!                                         there once finished for a tus partial upload)
//! <root>/.ferry/tmp/                      files being written; swept at start-up
//! ```
//!
//! Every write goes to a temporary file, is flushed to disk, and is renamed into place,
//! and the folder is flushed after the rename: a reader never sees a torn chunk or a half
//! object, a failed write leaves nothing, and what was acknowledged survives a power cut.
//! A chunk sent again replaces the earlier send's file once its receipt is replaced.

mod concat;
mod durable;
mod usage;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use self::durable::{concatenate, is_file_of_size, md5_of_file, rename_durably, seal, TempFile};
use super::{
    multipart_etag, AppendAt, AppendStored, ByteStream, ObjectAttributes, ObjectStore, Partial, StagedUpload,
    StorageError, StoredObject,
};
use crate::domain::{ChunkIndex, Md5Digest, Md5Hasher, ObjectKey, PartReceipt, UploadId};

/// An `ObjectStore` on a local directory.
#[derive(Debug, Clone)]
pub struct FsObjectStore {
    root: Arc<PathBuf>,
    usage: Arc<usage::LastWalk>,
}

impl FsObjectStore {
    /// Opens the store at `root`, creating its folders and removing temporary files left
    /// by a process that died mid-write.
    pub fn open(root: &Path) -> io::Result<Self> {
        let store = Self { root: Arc::new(root.to_path_buf()), usage: Arc::default() };
        std::fs::create_dir_all(store.staging_root())?;
        let tmp = store.tmp_dir();
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        Ok(store)
    }

    /// The path of a finished object.
    pub fn object_path(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(key.as_str())
    }

    /// The folder holding an unfinished upload's chunks.
    pub fn staging_dir(&self, id: &UploadId) -> PathBuf {
        self.staging_root().join(id.to_string())
    }

    fn staging_root(&self) -> PathBuf {
        self.root.join(".ferry").join("staging")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join(".ferry").join("tmp")
    }

    /// Where a stored part lives; its tag names the file, so that every send of a chunk
    /// has a file of its own and assembly reads exactly the sends that were recorded.
    fn part_path(&self, id: &UploadId, etag: &str) -> Result<PathBuf, StorageError> {
        if etag.is_empty() || !etag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(StorageError::Refused(format!("{etag:?} is not a part tag of this store")));
        }
        Ok(self.staging_dir(id).join(format!("{etag}.part")))
    }

    /// The file an append upload's bytes go to, in order.
    fn append_path(&self, id: &UploadId) -> PathBuf {
        self.staging_dir(id).join("append.data")
    }

    /// An append upload's file becomes the object: it is checked to hold `size` bytes,
    /// hashed for its ETag, flushed and renamed into place.
    async fn complete_append(&self, upload: &StagedUpload, size: u64) -> Result<StoredObject, StorageError> {
        let source = self.append_path(&upload.id);
        let path = self.object_path(&upload.key);
        let held = match tokio::fs::metadata(&source).await {
            Ok(meta) => meta.len(),
            // An earlier call finished the job (its answer was lost).
            Err(e) if e.kind() == io::ErrorKind::NotFound && is_file_of_size(&path, size).await => {
                let etag =
                    tokio::task::spawn_blocking(move || md5_of_file(&path)).await.map_err(StorageError::unavailable)?;
                return Ok(StoredObject { etag: etag.map_err(StorageError::unavailable)?.hex(), size });
            }
            Err(e) => return Err(StorageError::unavailable(e)),
        };
        if held < size {
            return Err(StorageError::Refused(format!("the upload's file holds {held} bytes, not {size}")));
        }
        let md5 = seal(&source, size).await?;
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(StorageError::unavailable)?;
        }
        rename_durably(&source, &path).await?;
        self.abort(upload).await?;
        Ok(StoredObject { etag: md5.hex(), size })
    }

    /// Joins the files `sources` (the kernel copies) into a temporary file, checks that it
    /// holds `size` bytes, and renames it to `path`: the object appears whole or not at all.
    async fn join_into(&self, sources: Vec<PathBuf>, path: &Path, size: u64) -> Result<(), StorageError> {
        let (temp, file) = self.create_temp().await?;
        let file = file.into_std().await;
        let written = tokio::task::spawn_blocking(move || concatenate(&sources, file))
            .await
            .map_err(StorageError::unavailable)?
            .map_err(StorageError::unavailable)?;
        if written != size {
            return Err(StorageError::Refused(format!("the joined object has {written} bytes, not {size}")));
        }
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(StorageError::unavailable)?;
        }
        temp.persist(path).await
    }

    /// A new temporary file, remaking the temporary folder if someone removed it.
    async fn create_temp(&self) -> Result<(TempFile, tokio::fs::File), StorageError> {
        let temp = TempFile::new(self.tmp_dir().join(format!("{}.tmp", uuid::Uuid::new_v4())));
        let file = match tokio::fs::File::create(&temp.path).await {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tokio::fs::create_dir_all(self.tmp_dir()).await.map_err(StorageError::unavailable)?;
                tokio::fs::File::create(&temp.path).await
            }
            other => other,
        };
        Ok((temp, file.map_err(StorageError::unavailable)?))
    }

    /// Streams `body` into a new temporary file, hashing it, and refusing it past `max`.
    async fn write_temp(&self, mut body: ByteStream<'_>, max: u64) -> Result<(TempFile, Md5Hasher), StorageError> {
        let (temp, mut file) = self.create_temp().await?;
        let mut hasher = Md5Hasher::new();
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(StorageError::Body)?;
            hasher.update(&piece);
            if hasher.len() > max {
                return Err(StorageError::TooLarge { max });
            }
            file.write_all(&piece).await.map_err(StorageError::unavailable)?;
        }
        file.flush().await.map_err(StorageError::unavailable)?;
        file.sync_data().await.map_err(StorageError::unavailable)?;
        Ok((temp, hasher))
    }
}

#[async_trait(?Send)]
impl ObjectStore for FsObjectStore {
    async fn create_multipart(
        &self,
        _upload: &StagedUpload,
        _attributes: &ObjectAttributes,
    ) -> Result<Option<String>, StorageError> {
        // The staging folder appears with the first chunk: nothing to prepare. A file has
        // no place for a content type or metadata; the session record keeps them.
        Ok(None)
    }

    async fn drop_part(
        &self,
        upload: &StagedUpload,
        _index: ChunkIndex,
        replaced: &PartReceipt,
    ) -> Result<(), StorageError> {
        match tokio::fs::remove_file(self.part_path(&upload.id, &replaced.etag)?).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StorageError::unavailable(e)),
            _ => Ok(()),
        }
    }

    #[tracing::instrument(name = "fs.put_part", skip_all, fields(upload_id = %upload.id, chunk = %index, len))]
    async fn put_part(
        &self,
        upload: &StagedUpload,
        index: ChunkIndex,
        body: ByteStream<'_>,
        len: u64,
        expected_md5: Option<Md5Digest>,
    ) -> Result<PartReceipt, StorageError> {
        let (temp, hasher) = match self.write_temp(body, len).await {
            Err(StorageError::TooLarge { .. }) => {
                return Err(StorageError::IncompleteBody { expected: len, received: len + 1 })
            }
            other => other?,
        };
        if hasher.len() != len {
            return Err(StorageError::IncompleteBody { expected: len, received: hasher.len() });
        }
        let md5 = hasher.finish();
        if let Some(expected) = expected_md5.filter(|e| *e != md5) {
            return Err(StorageError::ChecksumMismatch { expected, actual: md5 });
        }
        let etag = format!("{index}-{}", uuid::Uuid::new_v4().simple());
        tokio::fs::create_dir_all(self.staging_dir(&upload.id)).await.map_err(StorageError::unavailable)?;
        temp.persist(&self.part_path(&upload.id, &etag)?).await?;
        Ok(PartReceipt { md5, etag, size: len, crc64: None })
    }

    #[tracing::instrument(name = "fs.append", skip_all, fields(upload_id = %upload.id, offset = at.offset))]
    async fn append(
        &self,
        upload: &StagedUpload,
        at: &AppendAt,
        mut body: ByteStream<'_>,
        max: u64,
    ) -> Result<AppendStored, StorageError> {
        tokio::fs::create_dir_all(self.staging_dir(&upload.id)).await.map_err(StorageError::unavailable)?;
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.append_path(&upload.id))
            .await
            .map_err(StorageError::unavailable)?;
        // Bytes past the recorded offset belong to an append that was not recorded.
        file.set_len(at.offset).await.map_err(StorageError::unavailable)?;
        file.seek(io::SeekFrom::Start(at.offset)).await.map_err(StorageError::unavailable)?;
        let mut written = 0u64;
        let mut broken = None;
        while let Some(piece) = body.next().await {
            let piece = match piece {
                Ok(piece) => piece,
                Err(e) => {
                    broken = Some(StorageError::Body(e));
                    break;
                }
            };
            if written + piece.len() as u64 > max {
                return Err(StorageError::TooLarge { max });
            }
            file.write_all(&piece).await.map_err(StorageError::unavailable)?;
            written += piece.len() as u64;
        }
        if let Some(len) = at.len.filter(|len| broken.is_none() && written != *len) {
            // A body that did not carry the length it declared is kept like a cut one.
            broken = Some(StorageError::IncompleteBody { expected: len, received: written });
        }
        // What arrived is kept, cut short or not: flushed before it is recorded.
        file.flush().await.map_err(StorageError::unavailable)?;
        file.sync_data().await.map_err(StorageError::unavailable)?;
        Ok(AppendStored { offset: at.offset + written, cursor: String::new(), parts: Vec::new(), broken })
    }

    #[tracing::instrument(name = "fs.complete", skip_all, fields(upload_id = %upload.id, parts = parts.len()))]
    async fn complete(
        &self,
        upload: &StagedUpload,
        parts: &[(ChunkIndex, PartReceipt)],
        size: u64,
    ) -> Result<StoredObject, StorageError> {
        if upload.partial {
            return self.complete_partial(upload, size).await;
        }
        if upload.append {
            return self.complete_append(upload, size).await;
        }
        let etag = multipart_etag(parts.iter().map(|(_, p)| &p.md5));
        let path = self.object_path(&upload.key);
        let sources = parts.iter().map(|(_, p)| self.part_path(&upload.id, &p.etag)).collect::<Result<Vec<_>, _>>()?;
        let mut missing = Vec::new();
        for ((index, _), source) in parts.iter().zip(&sources) {
            if !tokio::fs::try_exists(source).await.map_err(StorageError::unavailable)? {
                missing.push(*index);
            }
        }
        if !missing.is_empty() {
            // An earlier call finished the job (its answer was lost): the parts are gone
            // and the object is in place. Otherwise those chunks must come again.
            if missing.len() == parts.len() && is_file_of_size(&path, size).await {
                return Ok(StoredObject { etag, size });
            }
            return Err(StorageError::PartsChanged(missing));
        }
        // A part that vanishes from here on is an error that passes: the next try finds it missing.
        self.join_into(sources, &path, size).await?;
        self.abort(upload).await?;
        Ok(StoredObject { etag, size })
    }

    #[tracing::instrument(name = "fs.concatenate", skip_all, fields(upload_id = %upload.id, partials = partials.len()))]
    async fn concatenate(
        &self,
        upload: &StagedUpload,
        partials: &[Partial],
        size: u64,
    ) -> Result<StoredObject, StorageError> {
        self.concatenate_partials(upload, partials, size).await
    }

    #[tracing::instrument(name = "fs.abort", skip_all, fields(upload_id = %upload.id))]
    async fn abort(&self, upload: &StagedUpload) -> Result<(), StorageError> {
        match tokio::fs::remove_dir_all(self.staging_dir(&upload.id)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StorageError::unavailable(e)),
            _ => Ok(()),
        }
    }

    #[tracing::instrument(name = "fs.put_object", skip_all, fields(key = %key))]
    async fn put_object(
        &self,
        key: &ObjectKey,
        body: ByteStream<'_>,
        max_len: u64,
        _attributes: &ObjectAttributes,
    ) -> Result<StoredObject, StorageError> {
        let (temp, hasher) = self.write_temp(body, max_len).await?;
        let size = hasher.len();
        let path = self.object_path(key);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(StorageError::unavailable)?;
        }
        temp.persist(&path).await?;
        Ok(StoredObject { etag: hasher.finish().hex(), size })
    }

    async fn delete_object(&self, key: &ObjectKey) -> Result<(), StorageError> {
        let path = self.object_path(key);
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(StorageError::unavailable(e)),
            _ => {}
        }
        // The upload's folder holds only this object; leave no empty folder behind.
        if let Some(parent) = path.parent() {
            let _ = tokio::fs::remove_dir(parent).await;
        }
        Ok(())
    }

    async fn check(&self) -> Result<(), StorageError> {
        for dir in [self.root.as_path(), &self.staging_root(), &self.tmp_dir()] {
            let meta = tokio::fs::metadata(dir).await.map_err(StorageError::unavailable)?;
            if !meta.is_dir() {
                let err = io::Error::new(io::ErrorKind::NotADirectory, format!("{} is not a folder", dir.display()));
                return Err(StorageError::unavailable(err));
            }
        }
        Ok(())
    }

    async fn staged_bytes(&self) -> Result<Option<u64>, StorageError> {
        self.working_bytes().await.map(Some)
    }
}

#[cfg(any(test, feature = "test-support"))]
#[async_trait(?Send)]
impl super::contract::Inspect for FsObjectStore {
    async fn object(&self, key: &ObjectKey) -> Option<Vec<u8>> {
        tokio::fs::read(self.object_path(key)).await.ok()
    }

    async fn has_staged_parts(&self, upload: &StagedUpload) -> bool {
        tokio::fs::try_exists(self.staging_dir(&upload.id)).await.unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store in a temporary folder that lives as long as it does.
    struct Scratch {
        _dir: tempfile::TempDir,
        store: FsObjectStore,
    }

    impl std::ops::Deref for Scratch {
        type Target = FsObjectStore;
        fn deref(&self) -> &FsObjectStore {
            &self.store
        }
    }

    async fn scratch() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let store = FsObjectStore::open(dir.path()).unwrap();
        Scratch { _dir: dir, store }
    }

    crate::object_store_contract!(scratch());

    #[actix_web::test]
    async fn appends_need_no_cursor_parts_or_length() {
        use crate::storage::contract::{body, bytes};
        let store = scratch().await;
        let id = UploadId::new();
        let up = StagedUpload { append: true, ..StagedUpload::new(id, ObjectKey::new(&id, "a.bin")) };
        let data = bytes(50, 1000);
        let at = AppendAt { offset: 0, cursor: String::new(), parts: 0, length: Some(1000), len: None };
        let stored = store.append(&up, &at, body(&data[..600]), 1000).await.unwrap();
        assert_eq!((stored.offset, stored.cursor.as_str(), stored.parts.len()), (600, "", 0));
        let at = AppendAt { offset: 600, len: Some(400), ..at };
        let stored = store.append(&up, &at, body(&data[600..]), 400).await.unwrap();
        assert_eq!((stored.offset, stored.cursor.as_str(), stored.parts.len()), (1000, "", 0));
        store.complete(&up, &[], 1000).await.unwrap();
        assert_eq!(std::fs::read(store.object_path(&up.key)).unwrap(), data);
    }

    #[actix_web::test]
    async fn temporary_files_left_by_a_crash_are_swept_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsObjectStore::open(dir.path()).unwrap();
        let leftover = store.tmp_dir().join("dead.tmp");
        std::fs::write(&leftover, b"torn").unwrap();
        FsObjectStore::open(dir.path()).unwrap();
        assert!(!leftover.exists());
    }
}
