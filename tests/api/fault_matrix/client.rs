//! The client of the matrix: one task per upload, behaving as a real client does. It
//! sends chunks in random order round-robin over the instances, retries on errors and
//! 503 (switching instance when one is dead), asks resume for `missing_chunks` after a
//! failure, and polls while the upload is `completing`. Some uploads also cut a body
//! mid-stream, race a corrupt copy of a chunk against the good one, or cancel midway.
//! Whenever an answer says `completed`, the object is read from S3 at once and must be
//! the file, byte for byte.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use super::cluster::{read_object, PART};
use super::tally::Tally;
use crate::helpers::{bytes, content_md5, Upload};

/// What every client task shares.
pub struct Shared {
    pub http: reqwest::Client,
    pub addresses: Vec<String>,
    /// A client of the S3 server itself, not through the proxy.
    pub s3: aws_sdk_s3::Client,
    pub prefix: String,
    pub tally: Tally,
    /// Set when the fault phase ends: clients leave their uploads where they are.
    pub stop: AtomicBool,
}

/// What one upload does besides sending its chunks.
#[derive(Debug, Clone)]
pub struct Spec {
    pub n: usize,
    pub size: usize,
    pub seed: u64,
    /// Cancel once this many chunks are accepted.
    pub cancel_after: Option<u32>,
    pub cut_body: bool,
    pub corrupt_race: bool,
    /// Walks away once the upload is `completing` or its last chunk got no answer, as a
    /// closed browser tab does: the server must finish it alone.
    pub walks_away: bool,
}

/// Where an upload ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `completed`, and its object was the file when checked.
    Completed,
    Canceled,
    /// The fault phase ended first; to be resumed.
    Unfinished,
    /// Not completed and not resumable to completion: why.
    Lost(String),
}

/// One upload and its client's state.
pub struct Job {
    pub spec: Spec,
    pub data: Vec<u8>,
    pub up: Option<Upload>,
    pub outcome: Outcome,
    rng: StdRng,
    next: usize,
    accepted: u32,
    cut_done: bool,
    race_done: bool,
    away: bool,
}

/// What a call answered, as the client sees it.
enum Answer {
    /// The instance could not be reached, or answered 5xx: try again elsewhere.
    Retry,
    Status(StatusCode, Value),
}

impl Job {
    pub fn new(spec: Spec) -> Self {
        let data = bytes(spec.seed, spec.size);
        let rng = StdRng::seed_from_u64(spec.seed);
        Self {
            spec,
            data,
            up: None,
            outcome: Outcome::Unfinished,
            rng,
            next: 0,
            accepted: 0,
            cut_done: false,
            race_done: false,
            away: false,
        }
    }

    pub fn label(&self) -> String {
        let id = self.up.as_ref().map_or("-", |u| u.id.as_str());
        format!("upload #{} ({id}, {} bytes)", self.spec.n, self.spec.size)
    }

    /// Drives the upload until it ends, or until `shared.stop` (when `obey_stop`) or
    /// `deadline` (then it is lost: it did not complete with every fault gone).
    pub async fn drive(&mut self, shared: &Shared, obey_stop: bool, deadline: Instant) {
        let mut missing: Option<Vec<u32>> = None;
        while self.outcome == Outcome::Unfinished {
            if obey_stop && (self.away || shared.stop.load(Ordering::SeqCst)) {
                return;
            }
            if Instant::now() > deadline {
                self.outcome = Outcome::Lost("did not complete once the faults stopped".into());
                return;
            }
            let Some(up) = self.up.clone() else {
                self.create(shared).await;
                continue;
            };
            let Some(mut chunks) = missing.take() else {
                let answer = self.call(shared, |http, a| http.post(format!("{a}/v1/uploads/{}/resume", up.id))).await;
                missing = self.on_status(shared, answer, obey_stop).await;
                continue;
            };
            chunks.shuffle(&mut self.rng);
            let last = chunks.last().copied();
            for index in chunks {
                if obey_stop && shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                if self.spec.cancel_after.is_some_and(|k| self.accepted >= k) && self.cancel(shared, &up).await {
                    return;
                }
                let (go_on, answered) = self.send_chunk(shared, &up, index).await;
                if !answered && Some(index) == last {
                    self.walk_away(shared, obey_stop);
                }
                if !go_on {
                    break;
                }
                if obey_stop {
                    tokio::time::sleep(Duration::from_millis(self.rng.random_range(0..250))).await;
                }
            }
        }
    }

    /// What status answers now (asked until an instance answers below 500).
    pub async fn status(&mut self, shared: &Shared) -> Option<(StatusCode, Value)> {
        let id = self.up.as_ref()?.id.clone();
        match self.call(shared, |http, a| http.get(format!("{a}/v1/uploads/{id}"))).await {
            Answer::Status(status, value) => Some((status, value)),
            Answer::Retry => None,
        }
    }

    /// Opens the upload (a lost answer leaves an orphan upload the sweeper expires).
    async fn create(&mut self, shared: &Shared) {
        let body = json!({"filename": format!("file-{}.bin", self.spec.n), "size": self.spec.size});
        match self.call(shared, |http, a| http.post(format!("{a}/v1/uploads")).json(&body)).await {
            Answer::Status(StatusCode::CREATED, value) => self.up = Some(Upload::from_json(&value)),
            Answer::Status(status, value) => self.outcome = Outcome::Lost(format!("create answered {status}: {value}")),
            Answer::Retry => {}
        }
    }

    /// Acts on a status or resume answer; the chunks to send when `uploading`.
    async fn on_status(&mut self, shared: &Shared, answer: Answer, obey_stop: bool) -> Option<Vec<u32>> {
        let Answer::Status(status, value) = answer else { return None };
        match (status, value["state"].as_str(), value["code"].as_str()) {
            (StatusCode::OK, Some("uploading"), _) => {
                Some(value["missing_chunks"].as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect())
            }
            (StatusCode::OK, Some("completed"), _) => {
                self.check_object(shared).await;
                None
            }
            (StatusCode::OK, Some("completing"), _) => {
                self.walk_away(shared, obey_stop);
                tokio::time::sleep(Duration::from_millis(300)).await;
                None
            }
            _ => {
                self.outcome = Outcome::Lost(format!("status answered {status}: {value}"));
                None
            }
        }
    }

    /// Leaves the upload to the server, if this client is one that walks away.
    fn walk_away(&mut self, shared: &Shared, obey_stop: bool) {
        if self.spec.walks_away && obey_stop && !self.away {
            self.away = true;
            shared.tally.add("walked-away");
        }
    }

    /// Sends chunk `index`, perhaps cut short first or raced by a corrupt copy; whether
    /// to go on with the next chunk, and whether an instance answered.
    async fn send_chunk(&mut self, shared: &Shared, up: &Upload, index: u32) -> (bool, bool) {
        let good = self.chunk(index).to_vec();
        if self.spec.cut_body && !self.cut_done {
            self.cut_done = self.cut_body(shared, up, index, &good).await;
        }
        let answer = if self.spec.corrupt_race && !self.race_done && good.len() > 1 {
            self.race_done = true;
            shared.tally.add("corrupt-race");
            let mut bad = good.clone();
            let at = self.rng.random_range(0..bad.len());
            bad[at] ^= 0x5a;
            let (good_at, bad_at) = (self.pick(shared), self.pick(shared));
            let (answer, refused) = tokio::join!(
                put(shared, &good_at, up, index, good.clone()),
                put_md5(shared, &bad_at, up, index, bad, &good)
            );
            if let Ok(r) = refused {
                if r.status() == StatusCode::OK {
                    shared.tally.violation(format!("{}: a corrupt copy of chunk {index} was accepted", self.label()));
                }
            }
            answer
        } else {
            let at = self.pick(shared);
            put(shared, &at, up, index, good).await
        };
        let Answer::Status(status, value) = self.read(shared, answer).await else { return (true, false) };
        match (status, value["state"].as_str(), value["code"].as_str()) {
            (StatusCode::OK, Some("completed"), _) => self.check_object(shared).await,
            (StatusCode::OK, Some("failed"), _) => self.outcome = Outcome::Lost(format!("chunk answer: {value}")),
            (StatusCode::OK, Some("uploading"), _) => {
                self.accepted += 1;
                return (true, true);
            }
            // Completing, or another send filled the last gap: resume tells what next.
            (StatusCode::OK, _, _) | (StatusCode::CONFLICT, _, Some("upload-completing" | "upload-completed")) => {}
            _ => self.outcome = Outcome::Lost(format!("chunk {index} answered {status}: {value}")),
        }
        (false, true)
    }

    /// Sends part of chunk `index` over raw TCP and hangs up; true once done. The chunk
    /// must not count: if resume listed it missing before, it still does after.
    async fn cut_body(&mut self, shared: &Shared, up: &Upload, index: u32, good: &[u8]) -> bool {
        let resume = |http: &reqwest::Client, a: &str| http.post(format!("{a}/v1/uploads/{}/resume", up.id));
        let Answer::Status(StatusCode::OK, before) = self.call(shared, resume).await else { return false };
        let was_missing = before["missing_chunks"].as_array().is_some_and(|m| m.contains(&json!(index)));
        let address = self.pick(shared);
        let sent = self.rng.random_range(1..good.len().max(2));
        let head = format!(
            "PUT /v1/uploads/{}/chunks/{index} HTTP/1.1\r\nHost: ferry\r\nAuthorization: Bearer {}\r\nContent-MD5: {}\r\nContent-Length: {}\r\n\r\n",
            up.id,
            up.token,
            content_md5(good),
            good.len()
        );
        if cut_short(&address, &head, &good[..sent.min(good.len() - 1)]).await.is_err() {
            return false;
        }
        shared.tally.add("cut-body");
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Answer::Status(StatusCode::OK, after) = self.call(shared, resume).await {
            let still = after["missing_chunks"].as_array().is_some_and(|m| m.contains(&json!(index)));
            if was_missing && after["state"] == "uploading" && !still {
                shared
                    .tally
                    .violation(format!("{}: a body cut after {sent} bytes recorded chunk {index}", self.label()));
            }
        }
        true
    }

    /// Cancels the upload; true when it is canceled (else it goes on as a normal upload).
    async fn cancel(&mut self, shared: &Shared, up: &Upload) -> bool {
        self.spec.cancel_after = None;
        for _ in 0..50 {
            let answer = self.call(shared, |http, a| http.delete(format!("{a}/v1/uploads/{}", up.id))).await;
            match answer {
                Answer::Status(StatusCode::NO_CONTENT, _) => {
                    shared.tally.add("cancel");
                    self.outcome = Outcome::Canceled;
                    return true;
                }
                Answer::Status(StatusCode::GONE, _) => {
                    shared.tally.add("cancel");
                    self.outcome = Outcome::Canceled;
                    return true;
                }
                // Every chunk got in after all (an answer was lost): complete it instead.
                Answer::Status(StatusCode::CONFLICT, _) => return false,
                Answer::Status(status, value) => {
                    self.outcome = Outcome::Lost(format!("cancel answered {status}: {value}"));
                    return true;
                }
                Answer::Retry => {}
            }
        }
        false
    }

    /// Reads the object from S3 (not through the proxy): it must be the file.
    async fn check_object(&mut self, shared: &Shared) {
        let key = &self.up.as_ref().unwrap().key;
        match read_object(&shared.s3, &shared.prefix, key).await {
            Some(object) if object == self.data => self.outcome = Outcome::Completed,
            Some(object) => {
                self.outcome =
                    Outcome::Lost(format!("completed, but the object has other bytes ({} bytes)", object.len()))
            }
            None => self.outcome = Outcome::Lost("completed, but there is no object".into()),
        }
    }

    /// One call to the next instance, retried on other instances until one answers
    /// below 500 (or 50 tries).
    async fn call<F>(&mut self, shared: &Shared, request: F) -> Answer
    where
        F: Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    {
        for _ in 0..50 {
            let address = self.pick(shared);
            let mut builder = request(&shared.http, &address);
            if let Some(up) = &self.up {
                builder = builder.bearer_auth(&up.token);
            }
            let sent = builder.send().await;
            if let Answer::Status(status, value) = self.read(shared, sent).await {
                return Answer::Status(status, value);
            }
        }
        Answer::Retry
    }

    /// An answer as the client sees it; a failure or 5xx is counted, and waited on as a
    /// real client backs off.
    async fn read(&mut self, shared: &Shared, sent: reqwest::Result<reqwest::Response>) -> Answer {
        match sent {
            Ok(r) if !r.status().is_server_error() => {
                let status = r.status();
                return Answer::Status(status, r.json().await.unwrap_or(Value::Null));
            }
            Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => shared.tally.add("answers-503"),
            Ok(_) => shared.tally.add("answers-500"),
            Err(_) => shared.tally.add("answers-none"),
        }
        tokio::time::sleep(Duration::from_millis(self.rng.random_range(50..250))).await;
        Answer::Retry
    }

    fn chunk(&self, index: u32) -> &[u8] {
        let start = index as usize * PART as usize;
        &self.data[start..(start + PART as usize).min(self.data.len())]
    }

    /// The next instance, round robin.
    fn pick(&mut self, shared: &Shared) -> String {
        self.next += 1;
        shared.addresses[self.next % shared.addresses.len()].clone()
    }
}

/// Sends `data` as chunk `index` with its own MD5.
async fn put(
    shared: &Shared,
    address: &str,
    up: &Upload,
    index: u32,
    data: Vec<u8>,
) -> reqwest::Result<reqwest::Response> {
    let md5 = content_md5(&data);
    send(shared, address, up, index, data, md5).await
}

/// Sends `data` as chunk `index` with the MD5 of `claimed`.
async fn put_md5(
    shared: &Shared,
    address: &str,
    up: &Upload,
    index: u32,
    data: Vec<u8>,
    claimed: &[u8],
) -> reqwest::Result<reqwest::Response> {
    send(shared, address, up, index, data, content_md5(claimed)).await
}

async fn send(
    shared: &Shared,
    address: &str,
    up: &Upload,
    index: u32,
    data: Vec<u8>,
    md5: String,
) -> reqwest::Result<reqwest::Response> {
    let url = format!("{address}/v1/uploads/{}/chunks/{index}", up.id);
    shared.http.put(url).bearer_auth(&up.token).header("Content-MD5", md5).body(data).send().await
}

/// Writes `head` and `partial` of a body over raw TCP, then hangs up. Unlike
/// `helpers::raw_request` it tolerates a dead instance: that is a fault of the run.
async fn cut_short(address: &str, head: &str, partial: &[u8]) -> std::io::Result<()> {
    let mut stream = tokio::net::TcpStream::connect(address.trim_start_matches("http://")).await?;
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(partial).await?;
    stream.shutdown().await
}
