//! The client commands as a person runs them: progress on stderr, the result on stdout,
//! and an exit code that scripts can trust.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{upload_file, Api, ClientError, Progress, RetryPolicy, UploadOptions};

/// Exit code of a run stopped by Ctrl-C (128 + SIGINT).
pub const EXIT_INTERRUPTED: i32 = 130;

/// A progress bar on stderr when it is a terminal; otherwise nothing until the end.
struct Bar(ProgressBar);

impl Progress for Bar {
    fn start(&self, total: u64, done: u64) {
        self.0.set_length(total);
        self.0.set_position(done);
        self.0.reset_eta();
    }

    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}

fn bar() -> Bar {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let style =
        ProgressStyle::with_template("{wide_bar} {bytes}/{total_bytes} {percent}% {binary_bytes_per_sec} ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    Bar(bar)
}

/// `ferry upload`: uploads `file`, prints the final status (one JSON line with `json`)
/// and returns the exit code. Ctrl-C stops at once; re-running resumes.
pub async fn upload(file: &Path, opts: UploadOptions, json: bool) -> i32 {
    let progress = bar();
    let started = Instant::now();
    let result = tokio::select! {
        result = upload_file(file, &opts, &progress) => result,
        _ = tokio::signal::ctrl_c() => {
            progress.0.abandon();
            eprintln!("ferry: interrupted; run the same command again to resume");
            return EXIT_INTERRUPTED;
        }
    };
    progress.0.finish_and_clear();
    match result {
        Ok(report) => {
            let seconds = started.elapsed().as_secs_f64();
            let size = report.status["size"].as_u64().unwrap_or(0);
            eprintln!(
                "ferry: uploaded {} ({size} bytes) in {seconds:.1} s, {:.1} MiB/s; {} of {} chunks sent by this run{}",
                report.status["key"].as_str().unwrap_or("?"),
                size as f64 / 1_048_576.0 / seconds.max(0.001),
                report.chunks_sent,
                report.total_chunks,
                if report.resumed { " (resumed)" } else { "" },
            );
            if json {
                println!("{}", report.status);
            }
            0
        }
        Err(err) => fail(&err),
    }
}

/// `ferry status`: prints the upload's status.
pub async fn status(server: &str, id: &str, token: &str) -> i32 {
    match Api::new(server, RetryPolicy::default()) {
        Ok(api) => match api.status(id, token).await {
            Ok(status) => {
                println!("{status}");
                0
            }
            Err(err) => fail(&err),
        },
        Err(err) => fail(&err),
    }
}

/// `ferry cancel`: cancels the upload.
pub async fn cancel(server: &str, id: &str, token: &str) -> i32 {
    match Api::new(server, RetryPolicy::default()) {
        Ok(api) => match api.cancel(id, token).await {
            Ok(()) => {
                eprintln!("ferry: upload {id} canceled");
                0
            }
            Err(err) => fail(&err),
        },
        Err(err) => fail(&err),
    }
}

fn fail(err: &ClientError) -> i32 {
    eprintln!("ferry: {err}");
    1
}
