//! The `ferry` command line: parse, load settings, run.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ferry::config::Settings;
use ferry::Application;

/// ferry: a resumable, chunked upload server.
///
/// Clients open an upload, send the file in chunks (in any order, in parallel, each
/// MD5-checked), ask what is missing after a network drop, and resume. With nothing
/// configured, ferry keeps sessions and files under ./ferry-data and listens on
/// 127.0.0.1:8080.
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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config),
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
