//! The relay benchmark: ferry in S3 + Redis mode against the plainest relay there is
//! (nginx passing presigned UploadPart PUTs to the same s3s-fs), ferry's peak memory, and
//! its Redis round trips per chunk, and what events add per chunk. Every server runs on a free loopback port in a
//! temporary folder and is stopped at the end, panic or not.
//!
//! ```text
//! cargo bench --bench relay                 # everything
//! cargo bench --bench relay -- throughput   # or rss, redis, events, all (several may be given)
//! ```
//!
//! Needs redis-server, redis-cli, s3s-fs and (for throughput) nginx; see BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod client;
mod events;
mod procs;
mod report;
mod round_trips;
mod rss;
mod throughput;

use std::process::Command;

use procs::{Redis, S3sFs, Tools};

const SCENARIOS: [&str; 4] = ["throughput", "rss", "redis", "events"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it,
    // and a test run must not start a benchmark that takes minutes.
    if !args.iter().any(|a| a == "--bench") {
        println!("relay: a benchmark; run it with `cargo bench --bench relay [-- throughput|rss|redis|events|all]`");
        return;
    }
    let mut picked: Vec<&str> = args.iter().filter(|a| !a.starts_with('-')).map(String::as_str).collect();
    if picked.is_empty() || picked.contains(&"all") {
        picked = SCENARIOS.to_vec();
    }
    if let Some(unknown) = picked.iter().find(|p| !SCENARIOS.contains(p)) {
        panic!("unknown scenario {unknown:?}: pick from throughput, rss, redis, events, all");
    }

    let tools = Tools::locate(picked.contains(&"throughput"));
    print_machine(&tools);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a Tokio runtime");
    runtime.block_on(async {
        let s3 = S3sFs::start(&tools).await;
        let redis = Redis::start(&tools).await;
        let mut checks = Vec::new();
        for scenario in SCENARIOS.into_iter().filter(|s| picked.contains(s)) {
            eprintln!("relay: running {scenario}");
            checks.extend(match scenario {
                "throughput" => throughput::run(&tools, &s3, &redis).await,
                "rss" => rss::run(&tools, &s3, &redis).await,
                "events" => events::run(&tools, &s3).await,
                _ => round_trips::run(&tools, &s3).await,
            });
        }
        report::print_checks(&checks);
    });
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at the end: {}", load.trim());
}

/// The machine and the versions of everything involved, and how busy it is.
fn print_machine(tools: &Tools) {
    let first_line = |program: &std::path::Path, arg: &str| -> String {
        let out = Command::new(program).arg(arg).output().map(|o| {
            let text = if o.stdout.is_empty() { o.stderr } else { o.stdout };
            String::from_utf8_lossy(&text).lines().next().unwrap_or_default().trim().to_owned()
        });
        out.unwrap_or_else(|e| format!("({e})"))
    };
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let memory = read("/proc/meminfo")
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .nth(1)
        .map_or(0, |kib| kib.parse::<u64>().unwrap_or(0) / 1024 / 1024);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("## Machine\n");
    println!("- cores: {cores}, memory: {memory} GiB, kernel: {}", read("/proc/sys/kernel/osrelease").trim());
    println!("- load average at start: {}", read("/proc/loadavg").trim());
    println!("- {}", first_line(&tools.redis_server, "--version"));
    println!("- {}", first_line(&tools.s3s_fs, "--version"));
    if !tools.nginx.as_os_str().is_empty() {
        println!("- {}", first_line(&tools.nginx, "-v"));
    }
    let git = |args: &[&str]| {
        let out = Command::new("git").args(args).output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        out.unwrap_or_default()
    };
    let dirty = if git(&["status", "--porcelain", "--", "src"]).is_empty() {
        ""
    } else {
        " (with uncommitted changes in src/)"
    };
    println!("- ferry: {} built from {}{dirty}", tools.ferry.display(), git(&["rev-parse", "--short", "HEAD"]));
    println!("- MD5 on one core (md-5 crate, as ferry hashes): {:.0} MiB/s", client::md5_rate());
}
