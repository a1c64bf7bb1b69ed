//! A real `redis-server` of the test's own, on a free port, with an append-only file so a
//! test can kill it (even with -9) and start it again with its data; plain, or TLS only
//! with a certificate from a private CA.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tls::Certificates;

/// A running (or stopped) Redis with its data folder.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    /// Set for a server that speaks TLS only.
    tls: Option<Certificates>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a fresh Redis; fails the test with advice when `redis-server` is missing.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Starts a fresh Redis that speaks TLS only, with a certificate for `127.0.0.1` and
    /// `localhost` signed by a CA of its own (`ca_file`); clients show no certificate.
    pub fn start_tls() -> Self {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Self {
        let port = super::s3::free_port();
        let dir = tempfile::tempdir().unwrap();
        let tls = tls.then(|| Certificates::make(dir.path()));
        let mut server = Self { port, dir, tls, child: None };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:<port>`, or `rediss://…` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The CA that signed a TLS server's certificate.
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.tls.as_ref().expect("a TLS server").ca.clone()
    }

    /// Starts the server (again) on the same port and data folder.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "redis is already running");
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        match &self.tls {
            None => command.args(["--port", &port]),
            Some(tls) => command
                .args(["--port", "0", "--tls-port", &port, "--tls-auth-clients", "no"])
                .arg("--tls-cert-file")
                .arg(&tls.cert)
                .arg("--tls-key-file")
                .arg(&tls.key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca),
        };
        let child = command
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs it: apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server with SIGKILL: no shutdown, no last save.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the server answers PING.
    pub fn answers(&self) -> bool {
        if self.tls.is_some() {
            return self.cli(&["PING"]).trim() == "PONG";
        }
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
    }

    /// Runs one command through `redis-cli` and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut command = Command::new("redis-cli");
        if let Some(tls) = &self.tls {
            command.arg("--tls").arg("--cacert").arg(&tls.ca);
        }
        let out = command.args(["-p", &self.port.to_string()]).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
