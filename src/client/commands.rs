//! The client commands as a person runs them: progress on stderr, the result on stdout,
//! and an exit code that scripts can trust.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use serde_json::Value;

use super::{
    stage_of, upload_file, wait_for_stage, Api, ClientError, Progress, RetryPolicy, StageProgress, UploadOptions,
};

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

impl StageProgress for Bar {
    fn processing(&self, status: &str, progress: u64) {
        self.0.set_position(progress);
        self.0.set_message(status.to_owned());
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

/// How `ferry upload` reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct Output {
    /// Print the final status as one JSON line on stdout.
    pub json: bool,
    /// Wait for the app's processing to end, then print its result.
    pub wait: bool,
}

/// `ferry upload`: uploads `file`, prints the final status (one JSON line with `json`)
/// and returns the exit code; with `wait`, waits for the processing stage to end first.
/// Ctrl-C stops at once; re-running resumes.
pub async fn upload(file: &Path, opts: UploadOptions, output: Output) -> i32 {
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
            match output.wait {
                true => wait(&opts, report.status, &report.token, output.json).await,
                false => {
                    if output.json {
                        println!("{}", report.status);
                    }
                    0
                }
            }
        }
        Err(err) => fail(&err),
    }
}

/// Waits until the upload whose last status is `status` is done or failed, showing the
/// processing's progress; prints the result (the whole status with `json`). Exit code 1
/// when processing failed.
async fn wait(opts: &UploadOptions, status: Value, token: &str, json: bool) -> i32 {
    let api = match Api::new(&opts.server, opts.retry) {
        Ok(api) => api,
        Err(err) => return fail(&err),
    };
    let id = status["upload_id"].as_str().unwrap_or_default().to_owned();
    if stage_of(&status) == "processing" {
        eprintln!("ferry: waiting for the upload to be processed (Ctrl-C stops waiting; the upload is kept)");
    }
    let progress = stage_bar();
    let result = tokio::select! {
        result = wait_for_stage(&api, &id, token, status, &progress) => result,
        _ = tokio::signal::ctrl_c() => {
            progress.0.abandon();
            eprintln!("ferry: stopped waiting; `ferry status {id}` tells how processing goes");
            return EXIT_INTERRUPTED;
        }
    };
    progress.0.finish_and_clear();
    let status = match result {
        Ok(status) => status,
        Err(err) => return fail(&err),
    };
    let processing = &status["processing"];
    if json {
        println!("{status}");
    } else if !processing["result"].is_null() {
        println!("{}", processing["result"]);
    }
    match stage_of(&status) {
        "done" => {
            eprintln!("ferry: processed");
            0
        }
        _ => {
            let why = processing["error"].as_str().or(status["error"].as_str()).unwrap_or("no reason given");
            eprintln!("ferry: processing failed: {why}");
            1
        }
    }
}

/// A bar of the processing's percent done, on stderr when it is a terminal.
fn stage_bar() -> Bar {
    let bar = bar();
    bar.0.set_length(100);
    let style = ProgressStyle::with_template("processing {wide_bar} {pos}% {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.0.set_style(style);
    bar
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
