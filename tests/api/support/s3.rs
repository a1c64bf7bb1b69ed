//! Real S3-protocol servers for the tests, each on a free port with a bucket ready:
//! s3s-fs (Rust, files on disk; checks neither `Content-MD5` on parts nor ETags on
//! completion) and moto (Python, in memory; checks ETags). Missing binaries fail the tests
//! with the command that installs them.

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use ferry::config::S3Settings;
use ferry::storage::S3ObjectStore;

/// The credentials every test server accepts (s3s-fs is told them; moto takes any).
pub const ACCESS_KEY: &str = "ferry-test-access-key";
/// The secret of `ACCESS_KEY`.
pub const SECRET_KEY: &str = "ferry-test-secret-key";
/// The bucket made at start.
pub const BUCKET: &str = "ferry-test";
/// The prefix every store of the tests writes under.
pub const PREFIX: &str = "ferry-tests";
const REGION: &str = "us-east-1";
const STARTUP: Duration = Duration::from_secs(60);

/// Runs the server (`$2…`) and stops it when this shell's standard input closes, which
/// happens when the test process drops the harness or dies in any way; then removes the
/// server's folder (`$1`). A background list reads from /dev/null unless redirected,
/// hence fd 3.
pub const WRAPPER: &str = r#"root=$1; shift
exec 3<&0
"$@" </dev/null &
server=$!
{ read -r _ <&3; kill "$server" 2>/dev/null; } &
wait "$server"
rm -rf "$root""#;

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `s3s-fs` from crates.io.
    S3sFs,
    /// `moto_server` from PyPI.
    Moto,
}

impl Kind {
    fn binary(self) -> &'static str {
        match self {
            Kind::S3sFs => "s3s-fs",
            Kind::Moto => "moto_server",
        }
    }

    fn install(self) -> &'static str {
        match self {
            Kind::S3sFs => "cargo install s3s-fs --version 0.14.1 --features binary --locked",
            // moto 5.2 writes S3 answers with `<…Response>` roots, which the AWS SDK for
            // Rust refuses (it checks the root element); 5.1 writes S3's own.
            Kind::Moto => "python3 -m pip install 'moto[server]==5.1.22'",
        }
    }

    /// Whether ListParts tells each part's ETag (s3s-fs tells only sizes).
    pub fn lists_part_etags(self) -> bool {
        self == Kind::Moto
    }

    /// The binary: `$FERRY_TEST_S3S_FS` / `$FERRY_TEST_MOTO_SERVER`, else the first on
    /// `PATH`, in `~/.cargo/bin` or in `~/.local/bin`.
    fn locate(self) -> PathBuf {
        let var = match self {
            Kind::S3sFs => "FERRY_TEST_S3S_FS",
            Kind::Moto => "FERRY_TEST_MOTO_SERVER",
        };
        if let Some(path) = std::env::var_os(var) {
            return PathBuf::from(path);
        }
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([home.join(".cargo/bin"), home.join(".local/bin")])
            .map(|dir| dir.join(self.binary()))
            .find(|candidate| candidate.is_file())
            .unwrap_or_else(|| {
                panic!(
                    "the S3 tests need `{}`, which is not installed: run `{}` (or point {var} at it)",
                    self.binary(),
                    self.install()
                )
            })
    }
}

/// A running server with a bucket; stopped when dropped (or when the tests end).
pub struct S3Server {
    kind: Kind,
    port: u16,
    lifeline: Option<ChildStdin>,
    shell: Child,
    _dir: tempfile::TempDir,
}

impl S3Server {
    /// A server of `kind` shared by every test of this binary.
    pub fn shared(kind: Kind) -> &'static S3Server {
        static S3S_FS: OnceLock<S3Server> = OnceLock::new();
        static MOTO: OnceLock<S3Server> = OnceLock::new();
        let cell = match kind {
            Kind::S3sFs => &S3S_FS,
            Kind::Moto => &MOTO,
        };
        cell.get_or_init(|| S3Server::start(kind))
    }

    /// Starts a server of `kind` on a free port and makes the bucket.
    pub fn start(kind: Kind) -> S3Server {
        let binary = kind.locate();
        let dir = tempfile::tempdir().expect("a temporary folder");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("the data folder");
        let port = free_port();
        let port_arg = port.to_string();
        let args: Vec<&str> = match kind {
            Kind::S3sFs => vec![
                "--host",
                "127.0.0.1",
                "--port",
                &port_arg,
                "--access-key",
                ACCESS_KEY,
                "--secret-key",
                SECRET_KEY,
                data.to_str().expect("a UTF-8 path"),
            ],
            Kind::Moto => vec!["-H", "127.0.0.1", "-p", &port_arg],
        };
        let log = dir.path().join("server.log");
        let output = File::create(&log).expect("the log file");
        let errors = output.try_clone().expect("the log file");
        let mut shell = Command::new("sh")
            .arg("-c")
            .arg(WRAPPER)
            .arg("ferry-s3-server")
            .arg(dir.path())
            .arg(&binary)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(output)
            .stderr(errors)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", binary.display()));
        let lifeline = shell.stdin.take();
        let mut server = S3Server { kind, port, lifeline, shell, _dir: dir };
        server.wait_until_up(&log);
        server.make_bucket(&log);
        server
    }

    /// Settings of a store on this server's bucket, under `PREFIX`.
    pub fn settings(&self) -> S3Settings {
        S3Settings {
            bucket: Some(BUCKET.into()),
            endpoint: Some(self.endpoint()),
            region: REGION.into(),
            prefix: PREFIX.into(),
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(SECRET_KEY.into()),
            // The smallest S3 allows, as the contract suite's parts: fewer MiB per case.
            part_size: ferry::storage::contract::PART as u64,
        }
    }

    /// A store on this server (a fresh one per test: each test runs its own runtime, and
    /// a client's pooled connections belong to the runtime that opened them).
    pub async fn store(&self) -> Box<S3ObjectStore> {
        Box::new(S3ObjectStore::new(&self.settings()).await.expect("an S3 store"))
    }

    /// A plain SDK client of this server, to look at the bucket behind ferry's back.
    pub fn client(&self) -> aws_sdk_s3::Client {
        client(self.port)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The folder s3s-fs keeps its files in: multipart uploads in progress show there as
    /// `.upload-<id>.json` and `.upload_id-<id>.part-<n>` (s3s-fs has no
    /// ListMultipartUploads).
    pub fn data_dir(&self) -> PathBuf {
        self._dir.path().join("data")
    }

    fn wait_until_up(&mut self, log: &Path) {
        let deadline = Instant::now() + STARTUP;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = self.shell.try_wait() {
                panic!("{:?} exited ({status}) at start:\n{}", self.kind, read_log(log));
            }
            assert!(Instant::now() < deadline, "{:?} did not listen within {STARTUP:?}:\n{}", self.kind, read_log(log));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Makes the bucket with the SDK, on a thread of its own: the caller may be inside a
    /// test's runtime, where no other runtime may block.
    fn make_bucket(&self, log: &Path) {
        let (kind, port) = (self.kind, self.port);
        let made = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(async move {
                let deadline = Instant::now() + STARTUP;
                loop {
                    match client(port).create_bucket().bucket(BUCKET).send().await {
                        Ok(_) if kind == Kind::Moto => return probe_moto(port).await,
                        Ok(_) => return Ok(()),
                        Err(e) if Instant::now() > deadline => {
                            return Err(format!("{kind:?}: {}", aws_sdk_s3::error::DisplayErrorContext(&e)))
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            })
        });
        if let Err(e) = made.join().expect("the bucket thread") {
            panic!("could not make the bucket: {e}\n{}", read_log(log));
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        // Closing the shell's input stops the server; the shell then exits.
        drop(self.lifeline.take());
        let _ = self.shell.wait();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

/// Settings of a store at `port` of the local host, where nothing may listen.
pub fn settings_at(port: u16) -> S3Settings {
    S3Settings {
        bucket: Some(BUCKET.into()),
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: REGION.into(),
        prefix: String::new(),
        access_key_id: Some(ACCESS_KEY.into()),
        secret_access_key: Some(SECRET_KEY.into()),
        ..S3Settings::default()
    }
}

fn client(port: u16) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "ferry-tests"))
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Fails unless this moto answers multipart calls in S3's own form.
async fn probe_moto(port: u16) -> Result<(), String> {
    let client = client(port);
    let probe = async {
        let created = client.create_multipart_upload().bucket(BUCKET).key("probe").send().await?;
        let id = created.upload_id().unwrap_or_default();
        client.list_parts().bucket(BUCKET).key("probe").upload_id(id).send().await?;
        client.abort_multipart_upload().bucket(BUCKET).key("probe").upload_id(id).send().await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    probe.await.map_err(|e| {
        format!(
            "this moto answers multipart calls in a form the AWS SDK refuses (moto 5.2 does): run `{}`. {e:?}",
            Kind::Moto.install()
        )
    })
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
