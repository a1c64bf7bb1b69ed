//! Peak memory of ferry: a fresh process per case, its high-water mark (VmHWM) read after
//! the upload. 16 chunks of 16 MiB in flight at once, then 100 MiB and 4 GiB uploads with
//! 8 MiB chunks, 4 in parallel, to see whether memory grows with the file.

use std::sync::Arc;
use std::time::Duration;

use crate::client::{self, Bucket, Plan, Pool, MIB};
use crate::procs::{free_bytes, Ferry, Memory, Redis, S3sFs, Tools};
use crate::report::{mib, Check, Table};

/// The ceiling on ferry's peak RSS with 16 chunks of 16 MiB in flight.
const PEAK_LIMIT_KIB: u64 = 64 * 1024;
/// "Flat": the 4 GiB upload's peak may exceed the 100 MiB one's by this share at most...
const FLAT_SHARE: f64 = 0.10;
/// ...or by this many KiB, whichever is larger (allocator noise on a small base).
const FLAT_SLACK_KIB: u64 = 4 * 1024;

struct Case {
    name: &'static str,
    plan: Plan,
    workers: usize,
}

struct Measured {
    baseline: Memory,
    after: Memory,
    most_in_flight: usize,
    mib_per_s: f64,
}

pub async fn run(tools: &Tools, s3: &S3sFs, redis: &Redis) -> Vec<Check> {
    let big = Pool::generate(8, 16 * MIB);
    let small = Pool::generate(8, 8 * MIB);
    let cases = [
        Case { name: "(a) 256 MiB, 16 x 16 MiB, all 16 in flight", plan: plan(256 * MIB, 16 * MIB), workers: 16 },
        Case { name: "(b) 100 MiB, 8 MiB chunks, 4 in flight", plan: plan(100 * MIB, 8 * MIB), workers: 4 },
        Case { name: "(c) 4 GiB, 8 MiB chunks, 4 in flight", plan: plan(4096 * MIB, 8 * MIB), workers: 4 },
    ];
    let mut table = Table::new(
        "Peak RSS of ferry (fresh process per case, MiB)",
        &["case", "chunks", "most in flight", "RSS at start", "peak RSS (VmHWM)", "RSS after", "MiB/s"],
    );
    let mut peaks = Vec::new();
    for case in &cases {
        let pool = if case.plan.chunk_size == 16 * MIB { &big } else { &small };
        let Some(m) = measure(tools, s3, redis, case, pool).await else {
            let skipped = ["-", "-", "skipped: not enough disk", "-", "-"].map(String::from);
            table.row([vec![case.name.into(), case.plan.chunks().to_string()], skipped.to_vec()].concat());
            peaks.push(None);
            continue;
        };
        eprintln!("rss {}: peak {} MiB", case.name, mib(m.after.peak_kib));
        table.row(vec![
            case.name.into(),
            case.plan.chunks().to_string(),
            m.most_in_flight.to_string(),
            mib(m.baseline.now_kib),
            mib(m.after.peak_kib),
            mib(m.after.now_kib),
            format!("{:.1}", m.mib_per_s),
        ]);
        peaks.push(Some(m.after.peak_kib));
    }
    table.print();

    let mut checks = Vec::new();
    if let Some(peak) = peaks[0] {
        let measured = format!("{} MiB", mib(peak));
        checks.push(Check::new("peak RSS <= 64 MiB, 16 x 16 MiB in flight", measured, peak <= PEAK_LIMIT_KIB));
    }
    if let (Some(small), Some(large)) = (peaks[1], peaks[2]) {
        let allowed = FLAT_SLACK_KIB.max((small as f64 * FLAT_SHARE) as u64);
        let measured = format!("{} -> {} MiB", mib(small), mib(large));
        let flat = large <= small + allowed;
        checks.push(Check::new("peak RSS flat from 100 MiB to 4 GiB (+10% / 4 MiB)", measured, flat));
    }
    checks
}

fn plan(size: u64, chunk_size: u64) -> Plan {
    Plan { size, chunk_size }
}

/// Runs one case on a fresh ferry; `None` when the disk cannot hold it.
async fn measure(tools: &Tools, s3: &S3sFs, redis: &Redis, case: &Case, pool: &Arc<Pool>) -> Option<Measured> {
    // s3s-fs holds the parts, then the assembled object beside them for a moment.
    let needed = 2 * case.plan.size + 1024 * MIB;
    let free = free_bytes(s3.data_dir());
    if free < needed {
        eprintln!("rss {}: skipped, {} MiB free where {} MiB are needed", case.name, free / MIB, needed / MIB);
        return None;
    }
    let server = Ferry::start(tools, s3, redis, &[]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = server.memory();
    let ferry = client::Ferry::new(client::http(), server.base_url());
    let uploaded = ferry.upload("rss.bin", case.plan, pool, case.workers).await;
    let after = server.memory();
    drop(server);
    Bucket::new(&s3.endpoint()).verify_and_delete(&uploaded.key, case.plan.size).await;
    Some(Measured {
        baseline,
        after,
        most_in_flight: uploaded.most_in_flight,
        mib_per_s: case.plan.mib() / uploaded.took.as_secs_f64(),
    })
}
