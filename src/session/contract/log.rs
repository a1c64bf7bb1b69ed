//! The shared contract suite of `EventLog`: every store that keeps published events runs
//! these cases through `event_log_contract!`, each on a store of its own. Retry delays are
//! real time on a shared store (Redis measures them), so the cases wait for them.

// Test support: a failed expectation is the case failing.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::Duration as StdDuration;

use crate::domain::{Clock, SystemClock, UploadId};
use crate::events::{retry_delay, Delivery, Event, EventLog};

fn event(n: u32) -> Event {
    Event {
        id: format!("contract-{n}"),
        kind: "upload.progress".into(),
        upload_id: UploadId::new(),
        time: crate::domain::rfc3339(&SystemClock.now()),
        data: serde_json::json!({"n": n}),
    }
}

fn ids(deliveries: &[Delivery]) -> Vec<(String, u32)> {
    deliveries.iter().map(|d| (d.event.id.clone(), d.attempt)).collect()
}

async fn due(log: &dyn EventLog, sink: &str, consumer: &str) -> Vec<Delivery> {
    log.due(sink, consumer, SystemClock.now(), 100).await.expect("due")
}

/// Waits out the retry delay after `tries` tries.
async fn wait_retry(tries: u32) {
    let delay = retry_delay(tries).to_std().unwrap();
    tokio::time::sleep(delay + StdDuration::from_millis(150)).await;
}

/// Appended events read back in order after any position; the head moves past them.
pub async fn appended_events_read_back_after_a_position(log: &dyn EventLog) {
    let start = log.head().await.expect("head");
    let events = [event(1), event(2), event(3)];
    log.append(&events, 1000).await.expect("append");
    let read = log.read_after(&start, 10).await.expect("read");
    assert_eq!(read.iter().map(|l| &l.event).collect::<Vec<_>>(), events.iter().collect::<Vec<_>>());
    let rest = log.read_after(&read[1].position, 10).await.expect("read");
    assert_eq!(rest.iter().map(|l| l.event.id.as_str()).collect::<Vec<_>>(), ["contract-3"]);
    assert_eq!(log.head().await.expect("head"), read[2].position);
    assert!(log.read_after(&read[2].position, 10).await.expect("read").is_empty());
    assert_eq!(log.read_after(&start, 2).await.expect("read").len(), 2);
}

/// Positions sort by `order` as the log does, and a string that is no position has none.
pub async fn positions_order_like_the_log(log: &dyn EventLog) {
    let start = log.head().await.expect("head");
    log.append(&[event(1), event(2)], 1000).await.expect("append");
    log.append(&[event(3)], 1000).await.expect("append");
    let read = log.read_after(&start, 10).await.expect("read");
    let mut orders = vec![log.order(&start).expect("the head has an order")];
    orders.extend(read.iter().map(|l| log.order(&l.position).expect("a position has an order")));
    assert_eq!(orders.len(), 4);
    assert!(orders.windows(2).all(|w| w[0] < w[1]), "{orders:?} ascend");
    for garbage in ["", "next", "-", "1-", "x-1", "18446744073709551616"] {
        assert_eq!(log.order(garbage), None, "{garbage:?}");
    }
}

/// A sink gets the events appended after it first looked, once each, then again after
/// its retry delay until settled.
pub async fn a_sink_gets_new_events_and_retries_until_settled(log: &dyn EventLog) {
    log.append(&[event(1)], 1000).await.expect("append");
    assert!(due(log, "sink-a", "one").await.is_empty(), "a new sink gets no history");
    log.append(&[event(2), event(3)], 1000).await.expect("append");
    let first = due(log, "sink-a", "one").await;
    assert_eq!(ids(&first), [("contract-2".into(), 1), ("contract-3".into(), 1)]);
    assert!(due(log, "sink-a", "one").await.is_empty(), "handed out, not due again yet");
    assert!(due(log, "sink-b", "one").await.is_empty(), "another sink has a queue of its own");
    log.settle("sink-a", &first[0].position).await.expect("settle");
    wait_retry(1).await;
    let again = due(log, "sink-a", "one").await;
    assert_eq!(ids(&again), [("contract-3".into(), 2)]);
    log.settle("sink-a", &again[0].position).await.expect("settle");
    log.settle("sink-a", &again[0].position).await.expect("settle twice");
    wait_retry(2).await;
    assert!(due(log, "sink-a", "one").await.is_empty());
}

/// A delivery handed to a consumer that never settles it (its instance died) goes to
/// another once the retry delay has passed.
pub async fn a_dead_consumers_deliveries_go_to_another(log: &dyn EventLog) {
    assert!(due(log, "sink", "dead").await.is_empty());
    log.append(&[event(7)], 1000).await.expect("append");
    assert_eq!(ids(&due(log, "sink", "dead").await), [("contract-7".into(), 1)]);
    assert!(due(log, "sink", "alive").await.is_empty());
    wait_retry(1).await;
    let taken = due(log, "sink", "alive").await;
    assert_eq!(ids(&taken), [("contract-7".into(), 2)]);
    log.settle("sink", &taken[0].position).await.expect("settle");
}

/// Expands into one `#[tokio::test]` per contract case. `$log` is an async expression
/// giving something that derefs to an `EventLog`; it is evaluated once per case.
#[macro_export]
macro_rules! event_log_contract {
    ($log:expr) => {
        $crate::event_log_contract!(@cases $log;
            appended_events_read_back_after_a_position,
            positions_order_like_the_log,
            a_sink_gets_new_events_and_retries_until_settled,
            a_dead_consumers_deliveries_go_to_another,
        );
    };
    (@cases $log:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let log = $log.await;
                $crate::session::contract::log::$case(&*log).await;
            }
        )*
    };
}
