//! Where an interrupted upload is remembered: one small JSON file per (file, server),
//! keyed by the file's path, size and modification time, in the user's cache folder.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a re-run needs to resume an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadState {
    /// The upload's id.
    pub upload_id: String,
    /// Its token.
    pub upload_token: String,
    /// The chunk size the server planned.
    pub chunk_size: u64,
    /// The number of chunks.
    pub total_chunks: u32,
}

/// The folder of state files.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    /// `$FERRY_STATE_DIR`, else `$XDG_CACHE_HOME/ferry/uploads`, else
    /// `~/.cache/ferry/uploads`.
    pub fn from_env() -> Self {
        let dir = std::env::var_os("FERRY_STATE_DIR").map(PathBuf::from).unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
                .unwrap_or_else(std::env::temp_dir);
            cache.join("ferry").join("uploads")
        });
        Self { dir }
    }

    /// A store in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The state file of `file` (as it is now) uploaded to `server`.
    pub fn path_for(&self, file: &Path, server: &str) -> io::Result<PathBuf> {
        let canonical = std::fs::canonicalize(file)?;
        let meta = std::fs::metadata(&canonical)?;
        let modified = meta.modified()?.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let mut hasher = Sha256::new();
        hasher.update(canonical.as_os_str().as_encoded_bytes());
        hasher.update(format!("\0{}\0{modified}\0{}", meta.len(), server.trim_end_matches('/')));
        let name: String = hasher.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect();
        Ok(self.dir.join(format!("{name}.json")))
    }

    /// The remembered upload at `path`, if any (an unreadable file counts as none).
    pub fn load(&self, path: &Path) -> Option<UploadState> {
        let text = std::fs::read_to_string(path).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Remembers `state` at `path` (written whole, then renamed into place). The file holds
    /// an upload token: only its owner may read it (0600, in a 0700 folder ferry makes).
    pub fn save(&self, path: &Path, state: &UploadState) -> io::Result<()> {
        use std::io::Write;
        let mut folder = std::fs::DirBuilder::new();
        folder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut folder, 0o700);
        folder.create(&self.dir)?;
        let temp = path.with_extension(format!("tmp-{}", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = (|| {
            let mut file = options.open(&temp)?;
            file.write_all(&serde_json::to_vec(state)?)?;
            std::fs::rename(&temp, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written
    }

    /// Forgets the upload at `path`.
    pub fn forget(&self, path: &Path) {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_kept_per_file_version_and_server() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path().join("state"));
        let file = dir.path().join("video.bin");
        std::fs::write(&file, b"abc").unwrap();
        let path = store.path_for(&file, "http://a").unwrap();
        assert_ne!(path, store.path_for(&file, "http://b").unwrap());
        assert_eq!(path, store.path_for(&file, "http://a/").unwrap());
        let state = UploadState { upload_id: "id".into(), upload_token: "t".into(), chunk_size: 5, total_chunks: 1 };
        store.save(&path, &state).unwrap();
        assert_eq!(store.load(&path), Some(state));
        std::fs::write(&file, b"abcd").unwrap();
        assert_ne!(store.path_for(&file, "http://a").unwrap(), path, "a changed file is a new upload");
        store.forget(&path);
        assert_eq!(store.load(&path), None);
    }

    #[cfg(unix)]
    #[test]
    fn a_state_file_holding_a_token_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path().join("cache").join("uploads"));
        let file = dir.path().join("video.bin");
        std::fs::write(&file, b"abc").unwrap();
        let path = store.path_for(&file, "http://a").unwrap();
        let state = UploadState { upload_id: "id".into(), upload_token: "t".into(), chunk_size: 5, total_chunks: 1 };
        store.save(&path, &state).unwrap();
        store.save(&path, &state).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1, "no temporary file is left");
    }
}
