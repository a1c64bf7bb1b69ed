//! Direct transfers from the command line: the file's parts go to the URLs the server
//! signs (the bucket itself with S3), `parallel` at a time, each read from the file when
//! its turn comes; then the server is asked to confirm. A URL that expired is signed
//! again; a part the store lost is sent again after the confirmation names it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::stream::{self, TryStreamExt};
use serde_json::{json, Value};

use super::api::{Api, ClientError, PartPut};
use super::retry::{Attempts, RetryPolicy};
use super::state::UploadState;
use super::upload::{read_chunk, Progress};

/// Part URLs asked for at once.
const PAGE: u32 = 500;
/// Rounds of sending what the confirmation says is missing.
const ROUNDS: usize = 5;

/// One direct upload being sent.
pub(super) struct Direct<'a> {
    pub api: &'a Api,
    pub upload: &'a UploadState,
    pub path: &'a Path,
    pub size: u64,
    pub retry: RetryPolicy,
    /// The ETag of every part this run stored, by part number.
    pub etags: Mutex<BTreeMap<u32, String>>,
}

impl Direct<'_> {
    /// Sends the parts `status` lists as missing (all of them for a new upload), then
    /// confirms; answers the confirmed status.
    pub(super) async fn send(
        &self,
        status: Value,
        parallel: usize,
        progress: &dyn Progress,
    ) -> Result<Value, ClientError> {
        let mut missing = missing_parts(&status, self.upload.total_chunks);
        for _ in 0..ROUNDS {
            self.send_parts(&missing, parallel, progress).await?;
            let listed: Vec<Value> = self
                .etags
                .lock()
                .map(|e| e.iter().map(|(n, etag)| json!({"part_number": n, "etag": etag})).collect())
                .unwrap_or_default();
            match self.api.complete(&self.upload.upload_id, &self.upload.upload_token, &Value::from(listed)).await {
                Err(ClientError::Refused(p)) if p.code == "parts-missing" => {
                    let status = self.api.status(&self.upload.upload_id, &self.upload.upload_token).await?;
                    missing = missing_parts(&status, self.upload.total_chunks);
                }
                other => return other,
            }
        }
        Err(ClientError::Protocol("the store keeps losing parts; re-run to resume".into()))
    }

    /// Parts this run stored.
    pub(super) fn sent(&self) -> u32 {
        self.etags.lock().map(|e| u32::try_from(e.len()).unwrap_or(u32::MAX)).unwrap_or(0)
    }

    /// The bytes of the parts in `missing` (from 1), for the progress bar.
    pub(super) fn bytes_of(&self, missing: &[u32]) -> u64 {
        missing.iter().map(|n| self.range(*n).1).sum()
    }

    fn range(&self, part: u32) -> (u64, u64) {
        let offset = u64::from(part.saturating_sub(1)) * self.upload.chunk_size;
        (offset, self.upload.chunk_size.min(self.size.saturating_sub(offset)))
    }

    async fn send_parts(&self, missing: &[u32], parallel: usize, progress: &dyn Progress) -> Result<(), ClientError> {
        // A page of URLs from each run's first part; a part left without one (the missing
        // parts are sparse) is signed on its own when its turn comes.
        for page in missing.chunks(PAGE as usize) {
            let (first, last) = (page[0], page[page.len() - 1]);
            let urls = self.sign(first, (last - first + 1).min(PAGE)).await?;
            stream::iter(page.iter().map(|n| Ok::<_, ClientError>(*n)))
                .try_for_each_concurrent(parallel.max(1), |n| {
                    let url = urls.get(&n).cloned();
                    async move {
                        let len = self.put(n, url).await?;
                        progress.advance(len);
                        Ok(())
                    }
                })
                .await?;
        }
        Ok(())
    }

    /// Signed URLs for parts `start..start + count`, by part number.
    async fn sign(&self, start: u32, count: u32) -> Result<BTreeMap<u32, Value>, ClientError> {
        let page = self.api.parts(&self.upload.upload_id, &self.upload.upload_token, start, count).await?;
        let parts = page["parts"].as_array().cloned().unwrap_or_default();
        Ok(parts.into_iter().filter_map(|p| Some((u32::try_from(p["part_number"].as_u64()?).ok()?, p))).collect())
    }

    /// Sends part `n` to `url` (signing one if need be), retrying what may pass; its length.
    async fn put(&self, n: u32, url: Option<Value>) -> Result<u64, ClientError> {
        let (offset, len) = self.range(n);
        let path = self.path.to_path_buf();
        let (data, _) = tokio::task::spawn_blocking(move || read_chunk(&path, offset, len))
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))??;
        let mut url = url;
        let mut attempts = Attempts::new(self.retry);
        loop {
            let target = match url.take() {
                Some(target) => target,
                None => self
                    .sign(n, 1)
                    .await?
                    .remove(&n)
                    .ok_or_else(|| ClientError::Protocol(format!("no URL for part {n}")))?,
            };
            let reason = match self
                .api
                .put_part(target["url"].as_str().unwrap_or_default(), &target["headers"], data.clone())
                .await
            {
                Ok(etag) => {
                    if let Ok(mut etags) = self.etags.lock() {
                        etags.insert(n, etag);
                    }
                    return Ok(len);
                }
                Err(PartPut::Refused(problem)) => return Err(ClientError::Refused(problem)),
                // Signed again on the next turn, at once.
                Err(PartPut::Expired) if attempts.failures() == 0 => "the URL expired".to_owned(),
                Err(PartPut::Expired) => "the URL was refused".to_owned(),
                Err(PartPut::Retry(reason)) => {
                    url = Some(target);
                    reason
                }
            };
            match attempts.next_delay(None) {
                Some(delay) => tokio::time::sleep(delay.min(Duration::from_secs(30))).await,
                None => return Err(ClientError::GaveUp { attempts: attempts.failures(), last: reason }),
            }
        }
    }
}

/// The part numbers a status lists as missing; every part when it lists none (a new
/// upload's creation answer).
fn missing_parts(status: &Value, total: u32) -> Vec<u32> {
    match status["missing_parts"].as_array() {
        Some(list) => list.iter().filter_map(|n| u32::try_from(n.as_u64()?).ok()).collect(),
        None => (1..=total).collect(),
    }
}
