//! Uploading one file: open or resume the upload, send the missing chunks in parallel
//! (memory stays within `parallel` chunks), and wait for the object to be assembled.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, TryStreamExt};
use serde_json::Value;

use super::api::{create_body, Api, ClientError};
use super::direct::Direct;
use super::retry::{Attempts, RetryPolicy};
use super::state::{StateStore, UploadState};
use crate::domain::{Crc64, Crc64Hasher, Md5Digest};

/// How to upload.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// The server, e.g. `http://127.0.0.1:8080`.
    pub server: String,
    /// The chunk size to ask for; the server picks one when `None`.
    pub chunk_size: Option<u64>,
    /// Chunks in flight at once.
    pub parallel: usize,
    /// The API key for creating uploads, when the server requires one.
    pub api_key: Option<String>,
    /// Metadata kept with the upload.
    pub metadata: Vec<(String, String)>,
    /// The file's content type.
    pub content_type: Option<String>,
    /// When to retry and when to give up.
    pub retry: RetryPolicy,
    /// Where interrupted uploads are remembered.
    pub state: StateStore,
    /// Whether to declare the file's CRC-64/NVME when opening the upload, so that the
    /// server makes no object of bytes that differ (one extra read of the file, first).
    pub checksum: bool,
    /// Whether the bytes go through ferry or straight to the store.
    pub transfer: Transfer,
}

/// How the file's bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Transfer {
    /// Chunks through ferry (the chunk API): ferry checks each chunk's MD5.
    #[default]
    Relay,
    /// Parts straight to the store's signed URLs (S3's own with S3); ferry checks and
    /// confirms. A server without direct transfers gets a relay upload.
    Direct,
    /// Direct for files of 64 MiB or more, relay for smaller ones.
    Auto,
}

/// From this size, `auto` sends the file straight to the store.
pub const AUTO_DIRECT_MIN: u64 = 64 * 1024 * 1024;

impl Transfer {
    /// Whether to ask for a direct transfer of a file of `size` bytes.
    pub fn wants_direct(self, size: u64) -> bool {
        match self {
            Self::Relay => false,
            Self::Direct => true,
            Self::Auto => size >= AUTO_DIRECT_MIN,
        }
    }
}

/// How an upload went.
#[derive(Debug, Clone)]
pub struct UploadReport {
    /// The final status body.
    pub status: Value,
    /// The upload's token, to ask for its status later.
    pub token: String,
    /// Whether an earlier, interrupted run was resumed.
    pub resumed: bool,
    /// Chunks this run sent successfully.
    pub chunks_sent: u32,
    /// Chunks in the upload.
    pub total_chunks: u32,
}

/// Receives progress: the size and what was already there, then each stored chunk.
pub trait Progress: Send + Sync {
    /// The upload is `total` bytes, of which `done` are already stored.
    fn start(&self, total: u64, done: u64);
    /// `bytes` more are stored.
    fn advance(&self, bytes: u64);
}

/// Uploads the file at `path`, resuming an interrupted run of the same file if any.
pub async fn upload_file(
    path: &Path,
    opts: &UploadOptions,
    progress: &dyn Progress,
) -> Result<UploadReport, ClientError> {
    let size = std::fs::metadata(path)?.len();
    let api = Api::new(&opts.server, opts.retry)?;
    let state_path = opts.state.path_for(path, &opts.server)?;
    let (upload, mut status, resumed) = match resume(&api, &opts.state, &state_path).await? {
        Some((upload, status)) => (upload, status, true),
        None => {
            let (upload, status) = create(&api, path, size, opts).await?;
            opts.state.save(&state_path, &upload)?;
            (upload, status, false)
        }
    };
    if status["transfer"] == "direct" {
        return send_direct(&api, &upload, path, size, status, opts, progress, resumed, &state_path).await;
    }
    let sender = Sender { api: &api, upload: &upload, path: path.to_path_buf(), size, sent: AtomicU32::new(0) };
    progress.start(size, size - sender.missing_bytes(&missing(&status)));
    // A store that finds a stored chunk damaged asks for it again: a few rounds suffice.
    for _ in 0..5 {
        if state_of(&status) != "uploading" {
            break;
        }
        sender.send_all(missing(&status), opts.parallel.max(1), progress).await?;
        status = wait_while_completing(&api, &upload, opts.retry).await?;
    }
    finish(status, &upload, resumed, sender.sent.load(Ordering::Relaxed), opts, &state_path)
}

/// The report of an upload whose last status is `status`, `sent` of its chunks (or parts)
/// sent by this run; a finished upload's state file goes.
fn finish(
    status: Value,
    upload: &UploadState,
    resumed: bool,
    sent: u32,
    opts: &UploadOptions,
    state_path: &Path,
) -> Result<UploadReport, ClientError> {
    match state_of(&status) {
        "completed" => {
            opts.state.forget(state_path);
            Ok(UploadReport {
                status,
                token: upload.upload_token.clone(),
                resumed,
                chunks_sent: sent,
                total_chunks: upload.total_chunks,
            })
        }
        "failed" => {
            opts.state.forget(state_path);
            Err(ClientError::Protocol(format!(
                "the upload failed: {}",
                status["error"].as_str().unwrap_or("no reason given")
            )))
        }
        other => Err(ClientError::Protocol(format!("the upload is still {other}; re-run to resume it"))),
    }
}

/// Sends a direct upload's missing parts to the store and confirms it.
#[allow(clippy::too_many_arguments)]
async fn send_direct(
    api: &Api,
    upload: &UploadState,
    path: &Path,
    size: u64,
    status: Value,
    opts: &UploadOptions,
    progress: &dyn Progress,
    resumed: bool,
    state_path: &Path,
) -> Result<UploadReport, ClientError> {
    let direct = Direct { api, upload, path, size, retry: opts.retry, etags: Default::default() };
    if state_of(&status) == "uploading" {
        let missing: Vec<u32> = match status["missing_parts"].as_array() {
            Some(list) => list.iter().filter_map(|n| u32::try_from(n.as_u64()?).ok()).collect(),
            None => (1..=upload.total_chunks).collect(),
        };
        progress.start(size, size - direct.bytes_of(&missing));
    }
    let status = match state_of(&status) {
        "uploading" => direct.send(status, opts.parallel, progress).await?,
        _ => status,
    };
    finish(status, upload, resumed, direct.sent(), opts, state_path)
}

/// The remembered upload and its status, when there is one the server still knows.
async fn resume(api: &Api, store: &StateStore, state_path: &Path) -> Result<Option<(UploadState, Value)>, ClientError> {
    let Some(saved) = store.load(state_path) else { return Ok(None) };
    match api.resume(&saved.upload_id, &saved.upload_token).await {
        Ok(status) => Ok(Some((saved, status))),
        // Expired, canceled, or from a server with another secret: start over.
        Err(ClientError::Refused(p)) if matches!(p.status, 403 | 404 | 410) => {
            store.forget(state_path);
            Ok(None)
        }
        Err(err) => Err(err),
    }
}

async fn create(api: &Api, path: &Path, size: u64, opts: &UploadOptions) -> Result<(UploadState, Value), ClientError> {
    let filename = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
    let mut body = create_body(&filename, size, opts.chunk_size, opts.content_type.as_deref(), &opts.metadata);
    if opts.transfer.wants_direct(size) {
        body["transfer"] = serde_json::json!("direct");
    }
    if opts.checksum {
        let path = path.to_path_buf();
        let crc = tokio::task::spawn_blocking(move || file_crc64(&path))
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))??;
        body["checksum"] = serde_json::json!({ "crc64nvme": crc.to_string() });
    }
    let created = api.create(&body, opts.api_key.as_deref()).await?;
    let field =
        |name: &str| created.get(name).cloned().ok_or_else(|| ClientError::Protocol(format!("no {name} in {created}")));
    let upload = UploadState {
        upload_id: field("upload_id")?.as_str().unwrap_or_default().to_owned(),
        upload_token: field("upload_token")?.as_str().unwrap_or_default().to_owned(),
        chunk_size: field("chunk_size")?.as_u64().unwrap_or_default(),
        total_chunks: u32::try_from(field("total_chunks")?.as_u64().unwrap_or_default()).unwrap_or(u32::MAX),
    };
    if upload.upload_id.is_empty() || upload.chunk_size == 0 && size > 0 {
        return Err(ClientError::Protocol(format!("bad creation answer: {created}")));
    }
    let mut status = created;
    status["missing_chunks"] = (0..upload.total_chunks).collect();
    Ok((upload, status))
}

fn state_of(status: &Value) -> &str {
    status["state"].as_str().unwrap_or("unknown")
}

fn missing(status: &Value) -> Vec<u32> {
    status["missing_chunks"]
        .as_array()
        .map(|list| list.iter().filter_map(|i| i.as_u64().and_then(|i| u32::try_from(i).ok())).collect())
        .unwrap_or_default()
}

/// Polls while another request assembles the object (or an assembly waits for a retry).
async fn wait_while_completing(api: &Api, upload: &UploadState, retry: RetryPolicy) -> Result<Value, ClientError> {
    let mut attempts = Attempts::new(retry);
    loop {
        let status = api.resume(&upload.upload_id, &upload.upload_token).await?;
        if state_of(&status) != "completing" {
            return Ok(status);
        }
        match attempts.next_delay(Some(Duration::from_millis(500))) {
            Some(delay) => tokio::time::sleep(delay).await,
            None => return Ok(status),
        }
    }
}

/// Sends chunks of one upload.
struct Sender<'a> {
    api: &'a Api,
    upload: &'a UploadState,
    path: PathBuf,
    size: u64,
    sent: AtomicU32,
}

impl Sender<'_> {
    fn chunk_range(&self, index: u32) -> (u64, u64) {
        let offset = u64::from(index) * self.upload.chunk_size;
        (offset, self.upload.chunk_size.min(self.size.saturating_sub(offset)))
    }

    fn missing_bytes(&self, missing: &[u32]) -> u64 {
        missing.iter().map(|i| self.chunk_range(*i).1).sum()
    }

    /// Sends `indices`, `parallel` at a time; stops at the first chunk refused for good.
    async fn send_all(&self, indices: Vec<u32>, parallel: usize, progress: &dyn Progress) -> Result<(), ClientError> {
        stream::iter(indices.into_iter().map(Ok))
            .try_for_each_concurrent(parallel, |index| async move {
                let (offset, len) = self.chunk_range(index);
                let path = self.path.clone();
                let (data, md5) = tokio::task::spawn_blocking(move || read_chunk(&path, offset, len))
                    .await
                    .map_err(|e| ClientError::Protocol(e.to_string()))??;
                match self.api.put_chunk(&self.upload.upload_id, &self.upload.upload_token, index, data, &md5).await {
                    Ok(_) => {
                        self.sent.fetch_add(1, Ordering::Relaxed);
                        progress.advance(len);
                        Ok(())
                    }
                    // Finished or being finished (by this run's other chunk, or a previous run).
                    Err(err) if matches!(err.code(), Some("upload-completed" | "upload-completing")) => Ok(()),
                    Err(err) => Err(err),
                }
            })
            .await
    }
}

/// The CRC-64/NVME of the whole file, read once in 1 MiB pieces.
fn file_crc64(path: &Path) -> Result<Crc64, ClientError> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Crc64Hasher::default();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buffer)? {
            0 => return Ok(hasher.value()),
            n => hasher.update(&buffer[..n]),
        }
    }
}

/// Reads `len` bytes at `offset` and hashes them.
pub(super) fn read_chunk(path: &Path, offset: u64, len: u64) -> Result<(Bytes, String), ClientError> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut data = vec![0u8; usize::try_from(len).map_err(|_| ClientError::Protocol("chunk too large".into()))?];
    file.read_exact(&mut data)?;
    let md5 = Md5Digest::of(&data).to_string();
    Ok((Bytes::from(data), md5))
}
