//! How many bytes the filesystem store's working files hold: everything under
//! `<root>/.ferry/` (chunks and append files of unfinished uploads, finished tus partial
//! uploads kept for concatenation, files being written). Measured by walking those folders
//! when asked rather than by tracking every write, so the figure cannot drift from the
//! disk; at most once a second whoever asks (a scrape is unauthenticated), one walk at a
//! time, off the async threads.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::FsObjectStore;
use crate::storage::StorageError;

/// How long a walk's figure is answered again before the next walk.
const FRESH: Duration = Duration::from_secs(1);

/// The last walk: when it ended and what it found.
#[derive(Debug, Default)]
pub(super) struct LastWalk(tokio::sync::Mutex<Option<(Instant, u64)>>);

impl FsObjectStore {
    /// Bytes in the files under `<root>/.ferry/`, at most `FRESH` old.
    pub(super) async fn working_bytes(&self) -> Result<u64, StorageError> {
        // Held across the walk: callers meanwhile wait for its figure instead of walking too.
        let mut last = self.usage.0.lock().await;
        if let Some((at, bytes)) = *last {
            if at.elapsed() < FRESH {
                return Ok(bytes);
            }
        }
        let dirs = [self.staging_root(), self.tmp_dir()];
        let bytes = tokio::task::spawn_blocking(move || dirs.iter().map(|d| bytes_under(d)).sum::<io::Result<u64>>())
            .await
            .map_err(StorageError::unavailable)?
            .map_err(StorageError::unavailable)?;
        *last = Some((Instant::now(), bytes));
        Ok(bytes)
    }
}

/// The lengths of the regular files under `dir`, at any depth; symbolic links are not
/// followed. Entries removed during the walk (a chunk renamed into place, an upload's
/// folder dropped) are skipped: the walk is no snapshot, but never fails for them.
fn bytes_under(dir: &Path) -> io::Result<u64> {
    let gone = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
    let mut total = 0;
    let mut folders: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = match std::fs::read_dir(&folder) {
            Err(e) if gone(&e) => continue,
            other => other?,
        };
        for entry in entries {
            let entry = match entry {
                Err(e) if gone(&e) => continue,
                other => other?,
            };
            let kind = match entry.file_type() {
                Err(e) if gone(&e) => continue,
                other => other?,
            };
            if kind.is_dir() {
                folders.push(entry.path());
            } else if kind.is_file() {
                match entry.metadata() {
                    Err(e) if gone(&e) => {}
                    other => total += other?.len(),
                }
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_at_any_depth_are_counted_and_folders_are_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("top"), [0u8; 10]).unwrap();
        std::fs::write(dir.path().join("a/b/deep"), [0u8; 32]).unwrap();
        assert_eq!(bytes_under(dir.path()).unwrap(), 42);
        assert_eq!(bytes_under(&dir.path().join("missing")).unwrap(), 0);
    }
}
