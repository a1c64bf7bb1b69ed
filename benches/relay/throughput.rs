//! Relay throughput: 512 MiB as 64 chunks of 8 MiB, 4 in parallel, through ferry and
//! through nginx (presigned UploadPart PUTs) to the same s3s-fs, in interleaved rounds.
//! Beside the rate, the CPU time each process spent in the timed part: on a small machine
//! the relay's CPU is CPU the store and the client do not get.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::client::{self, Bucket, Plan, Pool, Presigned, MIB};
use crate::procs::{cpu_seconds, machine_cpu_seconds, own_cpu_seconds, Ferry, Nginx, Redis, S3sFs, Tools};
use crate::report::{median, Check, Table};

const CHUNK: u64 = 8 * MIB;
const CHUNKS: u64 = 64;
const WORKERS: usize = 4;
const ROUNDS: usize = 3;
/// ferry must reach this share of nginx's throughput.
const TARGET_RATIO: f64 = 0.9;

/// One timed upload.
struct Round {
    mib_per_s: f64,
    /// Seconds from the first chunk to the last answer but the completing one.
    parts_secs: f64,
    /// Seconds after that until the upload is complete.
    tail_secs: f64,
    /// CPU seconds of the relay (ferry, or nginx's master and workers).
    relay_cpu: f64,
    /// CPU seconds of s3s-fs.
    store_cpu: f64,
    /// CPU seconds of this process, the client.
    client_cpu: f64,
    /// CPU seconds of the whole machine (the above, the kernel, and whatever else runs).
    machine_cpu: f64,
    /// Seconds the round took, for the machine's share of busy cores.
    wall: f64,
}

/// One figure of a round.
type Pick = fn(&Round) -> f64;

/// The processes whose CPU time a round accounts.
struct Pids {
    relay: u32,
    store: u32,
}

pub async fn run(tools: &Tools, s3: &S3sFs, redis: &Redis) -> Vec<Check> {
    let pool = Pool::generate(8, CHUNK);
    let ferry_server = Ferry::start(tools, s3, redis, &[]).await;
    let nginx = Nginx::start(tools, s3.port).await;
    let http = client::http();
    let ferry = client::Ferry::new(http.clone(), ferry_server.base_url());
    let presigned = Presigned::new(http, &s3.endpoint(), &nginx.endpoint());
    let bucket = Bucket::new(&s3.endpoint());
    let plan = Plan { size: CHUNK * CHUNKS, chunk_size: CHUNK };
    let via_ferry = Pids { relay: ferry_server.pid(), store: s3.pid() };
    let via_nginx = Pids { relay: nginx.pid(), store: s3.pid() };

    // One small untimed upload each: connections opened, code paths warm.
    let warm_up = Plan { size: 8 * CHUNK, chunk_size: CHUNK };
    through_ferry(&ferry, &bucket, &pool, warm_up, &via_ferry).await;
    through_nginx(&presigned, &bucket, &pool, warm_up, "nginx/warm-up.bin", &via_nginx).await;

    let (mut ferry_rounds, mut nginx_rounds) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let r = through_ferry(&ferry, &bucket, &pool, plan, &via_ferry).await;
        eprintln!("throughput round {round}: ferry {:.1} MiB/s", r.mib_per_s);
        ferry_rounds.push(r);
        let key = format!("nginx/round-{round}.bin");
        let r = through_nginx(&presigned, &bucket, &pool, plan, &key, &via_nginx).await;
        eprintln!("throughput round {round}: nginx {:.1} MiB/s", r.mib_per_s);
        nginx_rounds.push(r);
    }
    print(&ferry_rounds, &nginx_rounds);

    let rate = |rounds: &[Round]| median(&rounds.iter().map(|r| r.mib_per_s).collect::<Vec<_>>());
    let (f, n) = (rate(&ferry_rounds), rate(&nginx_rounds));
    let ratio = f / n;
    vec![Check::new(
        "relay throughput: ferry >= 0.9 x nginx (medians of 3 interleaved rounds)",
        format!("{ratio:.2} x ({f:.1} vs {n:.1} MiB/s)"),
        ratio >= TARGET_RATIO,
    )]
}

fn print(ferry: &[Round], nginx: &[Round]) {
    let mut rates = Table::new(
        "Relay throughput: 512 MiB = 64 x 8 MiB chunks, 4 in parallel, to s3s-fs (MiB/s)",
        &["round", "ferry", "nginx + presigned", "ferry / nginx"],
    );
    for (round, (f, n)) in ferry.iter().zip(nginx).enumerate() {
        let (f, n) = (f.mib_per_s, n.mib_per_s);
        rates.row(vec![(round + 1).to_string(), format!("{f:.1}"), format!("{n:.1}"), format!("{:.2}", f / n)]);
    }
    let medians = |pick: Pick| {
        let m = |rounds: &[Round]| median(&rounds.iter().map(pick).collect::<Vec<_>>());
        (m(ferry), m(nginx))
    };
    let (f, n) = medians(|r| r.mib_per_s);
    rates.row(vec!["median".into(), format!("{f:.1}"), format!("{n:.1}"), format!("{:.2}", f / n)]);
    rates.print();

    let mut cpu = Table::new(
        "Where the time and the CPU go (medians of the rounds; 512 MiB each)",
        &["seconds", "through ferry", "through nginx"],
    );
    let rows: [(&str, Pick); 7] = [
        ("wall: first chunk to the last answer but the completing one", |r| r.parts_secs),
        ("wall: then until complete (ferry: last chunk's end + assembly; nginx: Complete)", |r| r.tail_secs),
        ("CPU: the relay (ferry / nginx master + 2 workers)", |r| r.relay_cpu),
        ("CPU: s3s-fs", |r| r.store_cpu),
        ("CPU: the client (this benchmark)", |r| r.client_cpu),
        ("CPU: the whole machine (kernel and any other process included)", |r| r.machine_cpu),
        ("cores busy on average (whole machine / wall)", |r| r.machine_cpu / r.wall),
    ];
    for (name, pick) in rows {
        let (f, n) = medians(pick);
        cpu.row(vec![name.into(), format!("{f:.2}"), format!("{n:.2}")]);
    }
    cpu.print();
}

/// Times `upload` (which answers its own timed span and the tail of it spent completing)
/// and accounts the CPU spent meanwhile.
async fn measured(plan: Plan, pids: &Pids, upload: impl Future<Output = (Duration, Duration)>) -> Round {
    let machine = machine_cpu_seconds();
    let before = (cpu_seconds(pids.relay), cpu_seconds(pids.store), own_cpu_seconds());
    let (took, tail) = upload.await;
    Round {
        mib_per_s: plan.mib() / took.as_secs_f64(),
        parts_secs: (took - tail).as_secs_f64(),
        tail_secs: tail.as_secs_f64(),
        relay_cpu: cpu_seconds(pids.relay) - before.0,
        store_cpu: cpu_seconds(pids.store) - before.1,
        client_cpu: own_cpu_seconds() - before.2,
        machine_cpu: machine_cpu_seconds() - machine,
        wall: took.as_secs_f64(),
    }
}

/// One upload through ferry, timed from the first chunk to the completed answer.
async fn through_ferry(ferry: &client::Ferry, bucket: &Bucket, pool: &Arc<Pool>, plan: Plan, pids: &Pids) -> Round {
    let upload = ferry.open("round.bin", plan).await;
    let round = measured(plan, pids, async {
        let sent = ferry.send_all(&upload, plan, pool, WORKERS).await;
        (sent.took, sent.tail)
    })
    .await;
    bucket.verify_and_delete(&upload.key, plan.size).await;
    round
}

/// One upload through nginx, timed from the first part to CompleteMultipartUpload's answer.
async fn through_nginx(
    presigned: &Presigned,
    bucket: &Bucket,
    pool: &Arc<Pool>,
    plan: Plan,
    key: &str,
    pids: &Pids,
) -> Round {
    let prepared = presigned.prepare(key, plan, pool).await;
    let round = measured(plan, pids, presigned.send_all(&prepared, WORKERS)).await;
    bucket.verify_and_delete(key, plan.size).await;
    round
}
