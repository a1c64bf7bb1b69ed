//! The one client both relays are driven by: pre-generated chunk bodies, a fixed number of
//! workers taking chunk indices from a shared queue, and the two ways to send a chunk
//! (to ferry, or as a presigned UploadPart through nginx).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use bytes::Bytes;
use md5::{Digest, Md5};
use rand::RngCore;
use serde::Deserialize;

use crate::procs::{ACCESS_KEY, BUCKET, REGION, SECRET_KEY};

pub const MIB: u64 = 1024 * 1024;

/// A chunk's bytes and their `Content-MD5`.
#[derive(Clone)]
pub struct Body {
    pub data: Bytes,
    pub md5: String,
}

impl Body {
    fn of(data: Bytes) -> Self {
        let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&data));
        Self { data, md5 }
    }
}

/// Random buffers made before anything is timed; chunk `i` is cut from buffer `i % count`.
pub struct Pool {
    buffers: Vec<Body>,
}

impl Pool {
    pub fn generate(count: usize, size: u64) -> Arc<Self> {
        let size = usize::try_from(size).expect("a buffer size that fits in memory");
        let buffers = (0..count)
            .map(|_| {
                let mut data = vec![0u8; size];
                rand::rng().fill_bytes(&mut data);
                Body::of(Bytes::from(data))
            })
            .collect();
        Arc::new(Self { buffers })
    }

    /// The body of chunk `index`, `len` bytes long: a full buffer with its precomputed MD5,
    /// or (for a short last chunk) the start of one, hashed here.
    pub fn body(&self, index: u64, len: u64) -> Body {
        let buffer = &self.buffers[usize::try_from(index).expect("an index") % self.buffers.len()];
        if len == buffer.data.len() as u64 {
            buffer.clone()
        } else {
            Body::of(buffer.data.slice(..usize::try_from(len).expect("a chunk length")))
        }
    }
}

/// How fast this machine hashes MD5 on one core with the md-5 crate ferry uses, in MiB/s.
pub fn md5_rate() -> f64 {
    let data = vec![0x5au8; 64 * 1024 * 1024];
    let start = Instant::now();
    let digest = Md5::digest(&data);
    std::hint::black_box(digest);
    64.0 / start.elapsed().as_secs_f64()
}

/// How a file is cut: every chunk `chunk_size` bytes but a shorter last one.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub size: u64,
    pub chunk_size: u64,
}

impl Plan {
    pub fn chunks(&self) -> u64 {
        self.size.div_ceil(self.chunk_size)
    }

    pub fn chunk_len(&self, index: u64) -> u64 {
        self.chunk_size.min(self.size - index * self.chunk_size)
    }

    pub fn mib(&self) -> f64 {
        self.size as f64 / MIB as f64
    }
}

/// Runs `job` once for each of `jobs`, on `workers` tasks that take the next job from a
/// shared queue as soon as they are free. Answers the results, in no particular order.
pub async fn run_workers<T, F, Fut>(jobs: Vec<u64>, workers: usize, job: F) -> Vec<T>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let jobs = Arc::new(jobs);
    let next = Arc::new(AtomicUsize::new(0));
    let job = Arc::new(job);
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (jobs, next, job) = (Arc::clone(&jobs), Arc::clone(&next), Arc::clone(&job));
            tokio::spawn(async move {
                let mut done = Vec::new();
                while let Some(&index) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    done.push(job(index).await);
                }
                done
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.extend(task.await.expect("a chunk worker panicked"));
    }
    results
}

/// The HTTP client of every benchmark: HTTP/1.1 keep-alive, no timeouts but a last bound.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(1800))
        .pool_max_idle_per_host(64)
        .build()
        .expect("an HTTP client")
}

/// Waits until ferry answers `/healthz`.
pub async fn wait_healthy(base: &str) {
    let http = http();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match http.get(format!("{base}/healthz")).send().await {
            Ok(r) if r.status().is_success() => return,
            _ => assert!(Instant::now() < deadline, "ferry at {base} did not answer /healthz"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An open ferry upload.
#[derive(Debug, Clone, Deserialize)]
pub struct Opened {
    pub upload_id: String,
    pub upload_token: String,
    pub key: String,
}

/// Ferry's answer to a chunk.
#[derive(Debug, Deserialize)]
pub struct ChunkReply {
    pub index: u32,
    pub state: String,
}

/// A chunk sent: ferry's answer, and when the request started and ended.
#[derive(Debug)]
pub struct Sent {
    pub reply: ChunkReply,
    pub start: Instant,
    pub end: Instant,
}

/// The most requests of `sent` that were in flight at the same moment.
pub fn most_in_flight(sent: &[Sent]) -> usize {
    let mut events: Vec<(Instant, i32)> = sent.iter().flat_map(|s| [(s.start, 1), (s.end, -1)]).collect();
    // At equal instants, ends first: a request that ends as another starts never overlapped it.
    events.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in events {
        now += step;
        most = most.max(now);
    }
    usize::try_from(most).unwrap_or(0)
}

/// A whole upload through ferry.
pub struct Uploaded {
    /// The object's key in the bucket.
    pub key: String,
    /// From the first chunk sent to the completed answer.
    pub took: Duration,
    /// From the last answer of the other chunks to the completed answer: the end of the last
    /// chunk, then the assembly (ListParts, CompleteMultipartUpload, HeadObject, Redis).
    pub tail: Duration,
    /// The most chunk requests in flight at once.
    pub most_in_flight: usize,
}

/// A client of one ferry instance.
#[derive(Clone)]
pub struct Ferry {
    http: reqwest::Client,
    base: String,
}

impl Ferry {
    pub fn new(http: reqwest::Client, base: String) -> Self {
        Self { http, base }
    }

    /// Opens an upload of `plan`.
    pub async fn open(&self, filename: &str, plan: Plan) -> Opened {
        let body = serde_json::json!({ "filename": filename, "size": plan.size, "chunk_size": plan.chunk_size });
        let answer = self.http.post(format!("{}/v1/uploads", self.base)).json(&body).send().await.expect("POST");
        let status = answer.status();
        assert_eq!(status.as_u16(), 201, "opening an upload failed: {}", answer.text().await.unwrap_or_default());
        answer.json().await.expect("the upload's JSON")
    }

    /// Sends the chunks `indices` of `upload` with `workers` in parallel.
    pub async fn put_chunks(
        &self,
        upload: &Opened,
        plan: Plan,
        pool: &Arc<Pool>,
        indices: Vec<u64>,
        workers: usize,
    ) -> Vec<Sent> {
        let (http, pool) = (self.http.clone(), Arc::clone(pool));
        let url = format!("{}/v1/uploads/{}/chunks", self.base, upload.upload_id);
        let auth = format!("Bearer {}", upload.upload_token);
        run_workers(indices, workers, move |index| {
            let body = pool.body(index, plan.chunk_len(index));
            let request = http
                .put(format!("{url}/{index}"))
                .header("authorization", &auth)
                .header("content-md5", body.md5)
                .body(body.data);
            async move {
                let start = Instant::now();
                let answer = request.send().await.expect("a chunk PUT to ferry");
                let status = answer.status();
                assert!(status.is_success(), "chunk {index}: {status} {}", answer.text().await.unwrap_or_default());
                let reply = answer.json::<ChunkReply>().await.expect("the chunk's JSON");
                assert_eq!(u64::from(reply.index), index, "ferry answered for another chunk");
                Sent { reply, start, end: Instant::now() }
            }
        })
        .await
    }

    /// Opens an upload of `plan` and sends all of it.
    pub async fn upload(&self, filename: &str, plan: Plan, pool: &Arc<Pool>, workers: usize) -> Uploaded {
        let upload = self.open(filename, plan).await;
        self.send_all(&upload, plan, pool, workers).await
    }

    /// Sends every chunk of `upload`. Panics unless exactly one answer says `completed`.
    pub async fn send_all(&self, upload: &Opened, plan: Plan, pool: &Arc<Pool>, workers: usize) -> Uploaded {
        let start = Instant::now();
        let sent = self.put_chunks(upload, plan, pool, (0..plan.chunks()).collect(), workers).await;
        let took = start.elapsed();
        let completed = sent.iter().filter(|s| s.reply.state == "completed").count();
        assert_eq!(completed, 1, "exactly one chunk answer should say completed: {sent:?}");
        let others_done = sent.iter().filter(|s| s.reply.state != "completed").map(|s| s.end).max();
        let tail = others_done.map_or(took, |done| took.saturating_sub(done - start));
        Uploaded { key: upload.key.clone(), took, tail, most_in_flight: most_in_flight(&sent) }
    }

    /// The value of the counter or gauge `name` at `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.http.get(format!("{}/metrics", self.base)).send().await.expect("GET /metrics");
        let text = text.text().await.expect("the metrics text");
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
    }
}

/// An SDK client of the S3 endpoint `endpoint`, configured like ferry's (no CRC trailers).
fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "ferry-bench"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// The benchmark's bucket, reached straight at s3s-fs.
pub struct Bucket {
    client: aws_sdk_s3::Client,
}

impl Bucket {
    pub fn new(endpoint: &str) -> Self {
        Self { client: s3_client(endpoint) }
    }

    /// Makes the bucket, trying again while s3s-fs settles.
    pub async fn create(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.client.create_bucket().bucket(BUCKET).send().await {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => {
                    panic!("could not make the bucket: {}", aws_sdk_s3::error::DisplayErrorContext(&e))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The size of the object `key` (HeadObject).
    pub async fn size_of(&self, key: &str) -> u64 {
        let head = self.client.head_object().bucket(BUCKET).key(key).send().await;
        let head = head.unwrap_or_else(|e| panic!("HeadObject {key}: {}", aws_sdk_s3::error::DisplayErrorContext(&e)));
        u64::try_from(head.content_length().unwrap_or(-1)).expect("a content length")
    }

    /// Checks that `key` holds `size` bytes, then deletes it.
    pub async fn verify_and_delete(&self, key: &str, size: u64) {
        assert_eq!(self.size_of(key).await, size, "the object {key} has the wrong size");
        let deleted = self.client.delete_object().bucket(BUCKET).key(key).send().await;
        deleted.unwrap_or_else(|e| panic!("DeleteObject {key}: {}", aws_sdk_s3::error::DisplayErrorContext(&e)));
    }
}

/// The baseline relay: presigned UploadPart PUTs through nginx, created and completed with
/// the SDK straight at s3s-fs.
pub struct Presigned {
    http: reqwest::Client,
    direct: aws_sdk_s3::Client,
    /// Signs for nginx's address, the Host the client sends and nginx passes on.
    signer: aws_sdk_s3::Client,
}

impl Presigned {
    pub fn new(http: reqwest::Client, s3_endpoint: &str, nginx_endpoint: &str) -> Self {
        Self { http, direct: s3_client(s3_endpoint), signer: s3_client(nginx_endpoint) }
    }

    /// CreateMultipartUpload and a presigned URL for each part of `plan` (untimed).
    pub async fn prepare(&self, key: &str, plan: Plan, pool: &Arc<Pool>) -> Prepared {
        let created = self.direct.create_multipart_upload().bucket(BUCKET).key(key).send().await;
        let created = created.unwrap_or_else(|e| panic!("{}", aws_sdk_s3::error::DisplayErrorContext(&e)));
        let upload_id = created.upload_id().expect("a multipart upload id").to_owned();
        let mut parts = Vec::new();
        for index in 0..plan.chunks() {
            let body = pool.body(index, plan.chunk_len(index));
            let part = self.signer.upload_part().bucket(BUCKET).key(key).upload_id(&upload_id);
            let part = part.part_number(part_number(index)).content_md5(&body.md5);
            let presigned = part
                .presigned(PresigningConfig::expires_in(Duration::from_secs(3600)).expect("a presigning config"))
                .await
                .expect("a presigned UploadPart");
            let headers: Vec<(String, String)> = presigned
                .headers()
                .filter(|(name, _)| !name.eq_ignore_ascii_case("host"))
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect();
            parts.push(PresignedPart { uri: presigned.uri().to_owned(), headers, body });
        }
        Prepared { key: key.to_owned(), upload_id, parts: Arc::new(parts) }
    }

    /// Sends every part through nginx with `workers` in parallel, then completes the upload;
    /// answers the time from the first part to CompleteMultipartUpload's answer, and the
    /// time CompleteMultipartUpload took.
    pub async fn send_all(&self, prepared: &Prepared, workers: usize) -> (Duration, Duration) {
        let start = Instant::now();
        let (http, parts) = (self.http.clone(), Arc::clone(&prepared.parts));
        let etags = run_workers((0..parts.len() as u64).collect(), workers, move |index| {
            let part = &parts[usize::try_from(index).expect("an index")];
            let mut request = http.put(&part.uri).body(part.body.data.clone());
            for (name, value) in &part.headers {
                request = request.header(name, value);
            }
            async move {
                let answer = request.send().await.expect("a presigned PUT through nginx");
                let status = answer.status();
                let etag = answer.headers().get("etag").map(|v| v.to_str().expect("an ASCII ETag").to_owned());
                assert!(status.is_success(), "part {index}: {status} {}", answer.text().await.unwrap_or_default());
                (index, etag.expect("an ETag"))
            }
        })
        .await;
        let mut parts: Vec<CompletedPart> = etags
            .into_iter()
            .map(|(index, etag)| CompletedPart::builder().part_number(part_number(index)).e_tag(etag).build())
            .collect();
        parts.sort_by_key(|p| p.part_number());
        let completing = Instant::now();
        let done = CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
        let request = self.direct.complete_multipart_upload().bucket(BUCKET).key(&prepared.key);
        let completed = request.upload_id(&prepared.upload_id).multipart_upload(done).send().await;
        completed.unwrap_or_else(|e| panic!("CompleteMultipartUpload: {}", aws_sdk_s3::error::DisplayErrorContext(&e)));
        (start.elapsed(), completing.elapsed())
    }
}

/// A multipart upload made, with a presigned request for each part.
pub struct Prepared {
    pub key: String,
    upload_id: String,
    parts: Arc<Vec<PresignedPart>>,
}

struct PresignedPart {
    uri: String,
    headers: Vec<(String, String)>,
    body: Body,
}

fn part_number(index: u64) -> i32 {
    i32::try_from(index + 1).expect("a part number")
}
