//! The `ferry` command line: parse, load settings, run.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ferry::client::{commands, RetryPolicy, StateStore, Transfer, UploadOptions};
use ferry::config::Settings;
use ferry::Application;

/// ferry: a resumable, chunked upload server, and its client.
///
/// Clients open an upload, send the file in chunks (in any order, in parallel, each
/// MD5-checked), ask what is missing after a network drop, and resume. With nothing
/// configured, `ferry serve` keeps sessions and files under ./ferry-data and listens on
/// 127.0.0.1:8080; `ferry upload FILE --server URL` sends a file to a ferry server.
#[derive(Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the upload server.
    ///
    /// Settings come from the built-in defaults, then the TOML file given with --config,
    /// then environment variables named FERRY__<SECTION>__<KEY>, for example
    /// FERRY__SERVER__LISTEN=0.0.0.0:8080 or FERRY__UPLOADS__SESSION_TTL_SECS=3600.
    /// See the README for every key.
    Serve {
        /// A TOML settings file (sections [server], [storage], [sessions], [uploads],
        /// [auth], [telemetry]).
        #[arg(long, short, value_name = "FILE", env = "FERRY_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Upload a file, with a progress bar; re-run the same command to resume.
    ///
    /// Chunks go in parallel, each with its MD5; connection errors, 5xx and checksum
    /// mismatches are retried with backoff, other refusals stop with the server's reason.
    /// An interrupted upload (Ctrl-C, a crash, a network drop) is remembered in the cache
    /// folder (or $FERRY_STATE_DIR) by the file's path, size and modification time, and
    /// the next run sends only the missing chunks. Exit codes: 0 done, 1 failed, 130
    /// interrupted. With --wait, it then waits for the app's processing of the file.
    Upload(UploadArgs),
    /// Print an upload's status as JSON.
    Status(UploadRef),
    /// Cancel an upload and remove what it stored.
    Cancel(UploadRef),
}

#[derive(Args)]
struct UploadArgs {
    /// The file to upload.
    file: PathBuf,
    /// The ferry server, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "FERRY_SERVER")]
    server: String,
    /// Chunk size in bytes; the server picks one when omitted.
    #[arg(long, value_name = "BYTES")]
    chunk_size: Option<u64>,
    /// Chunks in flight at once (memory use is at most this many chunks).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    parallel: u16,
    /// API key, when the server requires one to create uploads.
    #[arg(long, env = "FERRY_API_KEY")]
    api_key: Option<String>,
    /// Metadata kept with the upload, as key=value (repeatable).
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_pair)]
    metadata: Vec<(String, String)>,
    /// The file's content type.
    #[arg(long)]
    content_type: Option<String>,
    /// Give up when a request keeps failing for this long, in seconds.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    retry_for: u64,
    /// Print the final status as one JSON line on stdout.
    #[arg(long)]
    json: bool,
    /// Do not declare the file's CRC-64/NVME when opening the upload. By default the
    /// file is read once first to compute it, and the server makes no object whose bytes
    /// differ from it (the file changed while it was sent, say): the upload fails instead.
    #[arg(long)]
    no_checksum: bool,
    /// How the bytes travel: `relay` (in chunks through the server), `direct` (in parts
    /// straight to the store's signed URLs, the bucket itself with S3; the server checks
    /// and confirms), or `auto` (direct for files of 64 MiB or more). A server without
    /// direct transfers gets a relay upload.
    #[arg(long, value_enum, default_value_t = Transfer::Relay)]
    transfer: Transfer,
    /// Once uploaded, wait for the app's processing of the file (a server with
    /// processing.enabled) to be done or failed, showing its progress, and print its
    /// result as JSON on stdout (the whole status with --json). Exits 1 if processing
    /// failed. Without a processing stage, an uploaded file is done at once.
    #[arg(long)]
    wait: bool,
}

#[derive(Args)]
struct UploadRef {
    /// The upload's id.
    id: String,
    /// The ferry server, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "FERRY_SERVER")]
    server: String,
    /// The upload's token.
    #[arg(long, env = "FERRY_UPLOAD_TOKEN")]
    token: String,
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve { config } => serve(config),
        Command::Upload(args) => client(async move {
            let opts = UploadOptions {
                server: args.server,
                chunk_size: args.chunk_size,
                parallel: usize::from(args.parallel),
                api_key: args.api_key,
                metadata: args.metadata,
                content_type: args.content_type,
                retry: RetryPolicy { give_up_after: Duration::from_secs(args.retry_for), ..RetryPolicy::default() },
                state: StateStore::from_env(),
                checksum: !args.no_checksum,
                transfer: args.transfer,
            };
            commands::upload(&args.file, opts, commands::Output { json: args.json, wait: args.wait }).await
        }),
        Command::Status(r) => client(async move { commands::status(&r.server, &r.id, &r.token).await }),
        Command::Cancel(r) => client(async move { commands::cancel(&r.server, &r.id, &r.token).await }),
    }
}

fn serve(config: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = Settings::load(config.as_deref()).context("Failed to load settings")?;
    ferry::telemetry::init(&settings.telemetry);
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(&settings).await?;
        app.run_until_stopped().await.context("The server failed")
    })
}

/// Runs a client command and exits with its code.
fn client(command: impl std::future::Future<Output = i32>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    std::process::exit(runtime.block_on(command))
}
