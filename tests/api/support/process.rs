//! The real `ferry` binary as a child process, configured by environment variables only,
//! so a test can kill it with -9 or SIGTERM and start it again on the same port.

use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

use crate::helpers::{eventually, Upload, CHUNK, MAX_CHUNK, MAX_FILE, MIN_CHUNK};

/// A running `ferry serve`; killed when dropped.
pub struct FerryProcess {
    pub child: Child,
    pub address: String,
}

impl FerryProcess {
    /// The binary on `port` with the test chunk sizes, data under `dir`.
    pub async fn start(dir: &Path, port: u16) -> Self {
        Self::start_with(dir, port, Vec::<(&str, &str)>::new()).await
    }

    /// As `start`, with `extra_env` overriding or adding `FERRY__…` settings. Its log
    /// (stderr) goes to `<dir>/ferry-<port>.log`, appended across restarts.
    pub async fn start_with<K, V>(dir: &Path, port: u16, extra_env: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let log = OpenOptions::new().create(true).append(true).open(dir.join(format!("ferry-{port}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .arg("serve")
            .env("FERRY__SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("FERRY__SERVER__WORKERS", "2")
            .env("FERRY__STORAGE__FS__ROOT", dir.join("objects"))
            .env("FERRY__SESSIONS__EMBEDDED__PATH", dir.join("sessions"))
            .env("FERRY__UPLOADS__MIN_CHUNK_SIZE", MIN_CHUNK.to_string())
            .env("FERRY__UPLOADS__DEFAULT_CHUNK_SIZE", CHUNK.to_string())
            .env("FERRY__UPLOADS__MAX_CHUNK_SIZE", MAX_CHUNK.to_string())
            .env("FERRY__UPLOADS__MAX_FILE_SIZE", MAX_FILE.to_string())
            .env("RUST_LOG", "warn")
            .envs(extra_env)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the ferry binary starts");
        let address = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        eventually("the binary serves", || async {
            client.get(format!("{address}/healthz")).send().await.is_ok_and(|r| r.status().is_success())
        })
        .await;
        Self { child, address }
    }

    /// Opens an upload of `size` bytes on this process.
    pub async fn create(&self, client: &reqwest::Client, filename: &str, size: usize) -> Upload {
        let created: Value = client
            .post(format!("{}/v1/uploads", self.address))
            .json(&json!({"filename": filename, "size": size}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Upload::from_json(&created)
    }

    /// Sends signal `name` (`TERM`, `KILL`, …) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
    }

    /// SIGKILL, then reaps the process: no chance to flush, drain or say goodbye.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for FerryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
