//! The cluster under test: three real `ferry` binaries on one Redis (AOF) and one S3
//! bucket reached through the fault proxy, one proxy listener per instance. Instances can
//! be killed with -9 and replaced on the same port; Redis can be killed and restarted.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::process::FerryProcess;
use crate::support::redis::RedisServer;
use crate::support::s3::{free_port, Kind, S3Server, ACCESS_KEY, BUCKET, SECRET_KEY};
use crate::support::s3_faults::S3FaultProxy;

const MIB: u64 = 1024 * 1024;
/// S3 needs parts of at least 5 MiB but the last.
pub const PART: u64 = 5 * MIB;
/// A lapsed claim is finished by a sweeper within the lease and one sweep interval.
pub const LEASE_SECS: u64 = 3;
pub const SWEEP_SECS: u64 = 1;
const SECRET: &str = "a-secret-every-instance-shares";

/// Three instances, their Redis, and the S3 server behind the proxy.
pub struct Cluster {
    pub redis: RedisServer,
    pub s3: &'static S3Server,
    pub proxy: S3FaultProxy,
    /// Every object of this run lives under this prefix of the bucket.
    pub prefix: String,
    pub ports: Vec<u16>,
    instances: Vec<Option<FerryProcess>>,
    settings: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts Redis, the proxy (seeded with `seed`) and three instances.
    pub async fn start(seed: u64) -> Self {
        Self::start_with(seed, &[]).await
    }

    /// As `start`, with `FERRY__…` settings of the test's own.
    pub async fn start_with(seed: u64, settings: &[(&str, &str)]) -> Self {
        let redis = tokio::task::block_in_place(RedisServer::start);
        let s3 = tokio::task::block_in_place(|| S3Server::shared(Kind::S3sFs));
        let proxy = S3FaultProxy::start(&s3.endpoint(), 3, seed).await;
        let ports = (0..3).map(|_| free_port()).collect();
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let prefix = format!("fault-matrix/{seed}-{}", &unique[..8]);
        let dir = tempfile::Builder::new().prefix("ferry-fault-matrix-").tempdir().unwrap();
        let settings = settings.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let instances = vec![None, None, None];
        let mut cluster = Self { redis, s3, proxy, prefix, ports, instances, settings, dir };
        for i in 0..3 {
            cluster.restart(i).await;
        }
        cluster
    }

    /// `http://127.0.0.1:<port>` of instance `i`, whether it runs or not.
    pub fn address(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }

    pub fn addresses(&self) -> Vec<String> {
        (0..3).map(|i| self.address(i)).collect()
    }

    /// Where the instances' logs are (kept when a run fails), with the proxy's journal of
    /// the S3 requests it faulted or held beside them (`s3-faults.log`).
    pub fn keep_logs(self) -> PathBuf {
        let listeners = self.ports.iter().enumerate().map(|(i, port)| format!("# listener={i}: ferry-{port}.log\n"));
        let mut journal: String = listeners.collect();
        for line in self.proxy.journal() {
            journal.push_str(&line);
            journal.push('\n');
        }
        let _ = std::fs::write(self.dir.path().join("s3-faults.log"), journal);
        self.dir.keep()
    }

    /// Kills instance `i` with SIGKILL.
    pub fn kill9(&mut self, i: usize) {
        if let Some(process) = self.instances[i].take() {
            process.kill9();
        }
    }

    /// Starts instance `i` (again) on its port: a replaced pod.
    pub async fn restart(&mut self, i: usize) {
        assert!(self.instances[i].is_none(), "instance {i} is running");
        let env = self.env(i);
        self.instances[i] = Some(FerryProcess::start_with(self.dir.path(), self.ports[i], env).await);
    }

    /// Starts every instance that is down.
    pub async fn revive_all(&mut self) {
        for i in 0..3 {
            if self.instances[i].is_none() {
                self.restart(i).await;
            }
        }
    }

    /// Kills Redis with -9, waits `down`, and starts it again on its data (AOF).
    pub async fn restart_redis(&mut self, down: Duration) {
        tokio::task::block_in_place(|| self.redis.kill());
        tokio::time::sleep(down).await;
        tokio::task::block_in_place(|| self.redis.restart());
    }

    /// The state Redis holds for upload `id`, read behind ferry's back (no API call, so
    /// nothing is finished on the way); `None` without a record.
    pub fn stored_state(&self, id: &str) -> Option<String> {
        let state = self.redis.cli(&["HGET", &format!("ferry:v1:{{{id}}}:upload"), "state"]);
        Some(state.trim().to_owned()).filter(|s| !s.is_empty())
    }

    /// The S3 multipart upload id ferry recorded for upload `id`.
    pub fn multipart_id(&self, id: &str) -> Option<String> {
        let meta = self.redis.cli(&["HGET", &format!("ferry:v1:{{{id}}}:upload"), "meta"]);
        let meta: serde_json::Value = serde_json::from_str(meta.trim()).ok()?;
        meta["storage_upload_id"].as_str().map(str::to_owned)
    }

    /// Files s3s-fs still keeps for multipart upload `multipart` (its record and parts).
    pub fn multipart_leftovers(&self, multipart: &str) -> Vec<String> {
        let record = format!(".upload-{multipart}.json");
        let parts = format!(".upload_id-{multipart}.");
        std::fs::read_dir(self.s3.data_dir())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| *name == record || name.starts_with(&parts))
            .collect()
    }

    /// Whether s3s-fs still holds multipart upload `multipart` open (its record is there).
    /// Without the record the upload is gone for the S3 API (UploadPart, Complete and
    /// AbortMultipartUpload answer AccessDenied): a part file left is an orphan no S3 call
    /// removes (only s3s-fs's ListParts, which reads the files unchecked, still lists it).
    pub fn multipart_open(&self, multipart: &str) -> bool {
        self.s3.data_dir().join(format!(".upload-{multipart}.json")).exists()
    }

    /// The object at `key` of the API, read from s3s-fs directly (not through the proxy).
    pub async fn object(&self, key: &str) -> Option<Vec<u8>> {
        read_object(&self.s3.client(), &self.prefix, key).await
    }

    fn env(&self, i: usize) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("SESSIONS__BACKEND", "redis".to_owned()),
            ("SESSIONS__REDIS__URL", self.redis.url()),
            ("AUTH__SECRET", SECRET.to_owned()),
            ("STORAGE__BACKEND", "s3".to_owned()),
            ("STORAGE__S3__BUCKET", BUCKET.to_owned()),
            ("STORAGE__S3__ENDPOINT", self.proxy.addresses[i].clone()),
            ("STORAGE__S3__REGION", "us-east-1".to_owned()),
            ("STORAGE__S3__PREFIX", self.prefix.clone()),
            ("STORAGE__S3__ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("STORAGE__S3__SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
            ("UPLOADS__MIN_CHUNK_SIZE", PART.to_string()),
            ("UPLOADS__DEFAULT_CHUNK_SIZE", PART.to_string()),
            ("UPLOADS__MAX_CHUNK_SIZE", (8 * MIB).to_string()),
            ("UPLOADS__MAX_FILE_SIZE", (1024 * MIB).to_string()),
            ("UPLOADS__SWEEP_INTERVAL_SECS", SWEEP_SECS.to_string()),
            ("UPLOADS__COMPLETION_LEASE_SECS", LEASE_SECS.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (format!("FERRY__{k}"), v))
        .collect();
        // FAULT_RUST_LOG widens the instances' logs for a replay (say
        // `warn,ferry=debug,aws_smithy_runtime=debug` to see the SDK's retries).
        let filter = std::env::var("FAULT_RUST_LOG").unwrap_or_else(|_| "warn,ferry=info".into());
        env.push(("RUST_LOG".into(), filter));
        env.extend(self.settings.iter().cloned());
        env
    }
}

/// The object at `key` under `prefix`, read with `s3`; `None` when there is none.
pub async fn read_object(s3: &aws_sdk_s3::Client, prefix: &str, key: &str) -> Option<Vec<u8>> {
    let answer = s3.get_object().bucket(BUCKET).key(format!("{prefix}/{key}")).send().await;
    match answer {
        Ok(out) => Some(out.body.collect().await.expect("the object's bytes").to_vec()),
        Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => None,
        Err(err) => panic!("GetObject {key}: {}", aws_sdk_s3::error::DisplayErrorContext(&err)),
    }
}
