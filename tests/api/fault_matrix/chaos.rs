//! The fault injector: while the clients upload, it picks a fault at random moments —
//! kill -9 of an instance while a part is in flight or while CompleteMultipartUpload is
//! held, a Redis kill -9 and restart, or a burst of S3 500 / 503 / resets / lost answers
//! / delays on some operations — and replaces what it killed after a moment.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::Rng;

use super::cluster::Cluster;
use super::tally::Tally;
use crate::support::s3_faults::{Fault, Op, Rule};

/// Injects faults until `until` passes or `done` says every client has finished.
pub async fn run(cluster: &mut Cluster, tally: &Tally, rng: &mut StdRng, until: Instant, done: impl Fn() -> bool) {
    while Instant::now() < until && !done() {
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..800))).await;
        match rng.random_range(0..9) {
            0 | 1 => kill_mid_part(cluster, tally, rng).await,
            2 | 3 => kill_mid_assembly(cluster, tally, rng).await,
            4 => {
                cluster.restart_redis(Duration::from_millis(rng.random_range(100..1000))).await;
                tally.add("redis-restart");
            }
            _ => s3_burst(cluster, rng).await,
        }
    }
}

/// Kills an instance while one of its chunks streams to S3 (the part is held).
async fn kill_mid_part(cluster: &mut Cluster, tally: &Tally, rng: &mut StdRng) {
    let instance = rng.random_range(0..3);
    let Some(held) = cluster.proxy.hold_next(Op::UploadPart, Some(instance), Duration::from_secs(2)).await else {
        return;
    };
    cluster.kill9(instance);
    held.release(rng.random_bool(0.5));
    tally.add("kill-mid-chunk");
    replace(cluster, instance, rng).await;
}

/// Kills the instance whose CompleteMultipartUpload is held; S3 then either finishes
/// the completion its caller never hears of, or never gets it.
async fn kill_mid_assembly(cluster: &mut Cluster, tally: &Tally, rng: &mut StdRng) {
    let Some(held) = cluster.proxy.hold_next(Op::Complete, None, Duration::from_secs(3)).await else { return };
    let instance = held.listener;
    cluster.kill9(instance);
    let forward = rng.random_bool(0.5);
    held.release(forward);
    tally.add("kill-mid-assembly");
    if forward {
        tally.add("kill-mid-assembly-s3-finished");
    }
    replace(cluster, instance, rng).await;
}

/// A pod replaced after a moment, on the same port.
async fn replace(cluster: &mut Cluster, instance: usize, rng: &mut StdRng) {
    tokio::time::sleep(Duration::from_millis(rng.random_range(200..1000))).await;
    cluster.restart(instance).await;
}

/// A burst of one kind of S3 fault on some operations, for a moment.
async fn s3_burst(cluster: &mut Cluster, rng: &mut StdRng) {
    let ops: Vec<Op> = match rng.random_range(0..4) {
        0 => Op::UPLOAD_PATH.to_vec(),
        1 => vec![Op::UploadPart],
        2 => vec![Op::Complete, Op::ListParts, Op::HeadObject],
        _ => vec![Op::Abort, Op::DeleteObject, Op::CreateMultipart],
    };
    let faults = [
        Fault::InternalError,
        Fault::SlowDown,
        Fault::Reset,
        Fault::ResetMidBody,
        Fault::AnswerLost,
        Fault::Delay(Duration::from_millis(rng.random_range(300..2000))),
    ];
    let fault = *faults.choose(rng).unwrap();
    let probability = rng.random_range(0.3..0.9);
    cluster.proxy.add_rule(Rule { ops, fault, probability, budget: rng.random_range(1..6) });
    tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
    cluster.proxy.clear();
}
