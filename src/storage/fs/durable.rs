//! Durable file operations of the filesystem store: a temporary file renamed into place
//! with its folder flushed (so a rename survives a crash), an append file cut to its
//! recorded length and flushed, whole-file MD5s, and files joined by the kernel.

use std::io;
use std::path::{Path, PathBuf};

use crate::domain::{Md5Digest, Md5Hasher};
use crate::storage::StorageError;

/// Whether `path` is a file of `size` bytes.
pub(super) async fn is_file_of_size(path: &Path, size: u64) -> bool {
    tokio::fs::metadata(path).await.is_ok_and(|m| m.is_file() && m.len() == size)
}

/// Appends every source file to `out`, flushes it to disk, and returns its length. On
/// Linux the kernel copies (`copy_file_range`): no byte passes through user space, and a
/// file system that shares extents (XFS, Btrfs) may clone them instead of copying.
pub(super) fn concatenate(sources: &[PathBuf], mut out: std::fs::File) -> io::Result<u64> {
    let mut written = 0;
    for source in sources {
        let mut part = std::fs::File::open(source)?;
        written += io::copy(&mut part, &mut out)?;
    }
    out.sync_all()?;
    Ok(written)
}

/// Renames `from` to `dest` (atomically replacing what is there), then flushes the folder
/// so the rename itself survives a crash.
pub(super) async fn rename_durably(from: &Path, dest: &Path) -> Result<(), StorageError> {
    tokio::fs::rename(from, dest).await.map_err(StorageError::unavailable)?;
    if let Some(folder) = dest.parent() {
        let folder = tokio::fs::File::open(folder).await.map_err(StorageError::unavailable)?;
        folder.sync_all().await.map_err(StorageError::unavailable)?;
    }
    Ok(())
}

/// Cuts an append upload's file to `size` bytes (bytes past it were never recorded: a cut
/// append's leftovers), flushes it to disk and answers its MD5.
pub(super) async fn seal(path: &Path, size: u64) -> Result<Md5Digest, StorageError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new().write(true).open(&path)?;
        file.set_len(size)?;
        file.sync_all()?;
        md5_of_file(&path)
    })
    .await
    .map_err(StorageError::unavailable)?
    .map_err(StorageError::unavailable)
}

/// The MD5 of a whole file, read once.
pub(super) fn md5_of_file(path: &Path) -> io::Result<Md5Digest> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Md5Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = io::Read::read(&mut file, &mut buffer)?;
        if n == 0 {
            return Ok(hasher.finish());
        }
        hasher.update(&buffer[..n]);
    }
}

/// A file being written; removed when dropped unless persisted into its place.
pub(super) struct TempFile {
    /// Where it is being written.
    pub(super) path: PathBuf,
    persisted: bool,
}

impl TempFile {
    pub(super) fn new(path: PathBuf) -> Self {
        Self { path, persisted: false }
    }

    /// Renames the file to `dest` (atomically replacing what is there), then flushes the
    /// folder so the rename itself survives a crash.
    pub(super) async fn persist(mut self, dest: &Path) -> Result<(), StorageError> {
        rename_durably(&self.path, dest).await?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
