//! Prometheus metrics, kept in a registry of their own per application (so several
//! applications in one test process do not collide) and served at `/metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// Every metric ferry exports. Cloning shares the same counters.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Uploads opened (chunked or form).
    pub uploads_created: IntCounter,
    /// Uploads whose object was stored.
    pub uploads_completed: IntCounter,
    /// Uploads canceled by a client.
    pub uploads_canceled: IntCounter,
    /// Abandoned uploads: unfinished ones the sweeper expired after their TTL.
    pub uploads_expired: IntCounter,
    /// Uploads whose assembly failed for good.
    pub uploads_failed: IntCounter,
    /// Completion jobs the sweeper took over from a claimer that was gone.
    pub completions_adopted: IntCounter,
    /// Sweeper steps that failed for one upload (tried again later).
    pub sweep_failures: IntCounter,
    /// Chunks stored and recorded.
    pub chunks_received: IntCounter,
    /// Chunk and form bytes stored.
    pub bytes_received: IntCounter,
    /// Round trips to Redis (with the Redis session store) for requests and the sweeper.
    pub redis_round_trips: IntCounter,
    /// Round trips to Redis for publishing and delivering events.
    pub redis_event_round_trips: IntCounter,
    /// Upload bodies being read now (at most `server.max_bodies_in_flight`).
    pub bodies_in_flight: IntGauge,
    chunks_rejected: IntCounterVec,
    pre_create_hook_calls: IntCounterVec,
    request_duration: HistogramVec,
    events_published: IntCounterVec,
    webhook_deliveries: IntCounterVec,
    webhook_latency: HistogramVec,
    /// Server-sent event streams open now.
    pub sse_connections: IntGauge,
    upload_duration: Histogram,
    upload_size: Histogram,
    /// Uploads with recorded events the publisher has not yet published.
    pub outbox_uploads_pending: IntGauge,
    /// Bytes in the filesystem store's working files; registered only with that store
    /// ([`Metrics::expose_staging_bytes`]).
    pub staging_bytes: IntGauge,
}

/// `upload_duration_seconds` buckets: a second to a day.
const DURATION_BUCKETS: [f64; 14] =
    [1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0];

/// `upload_size_bytes` buckets: 1 KiB to 64 GiB, by powers of 4.
fn size_buckets() -> Vec<f64> {
    (0..14).map(|i| 1024.0 * 4f64.powi(i)).collect()
}

impl Metrics {
    /// A fresh set of metrics in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("ferry".into()), None)?;
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let chunks_rejected = IntCounterVec::new(
            Opts::new("chunks_rejected_total", "Chunk requests refused, by problem code"),
            &["reason"],
        )?;
        registry.register(Box::new(chunks_rejected.clone()))?;
        let pre_create_hook_calls = IntCounterVec::new(
            Opts::new("pre_create_hook_calls_total", "Calls to the pre-create hook, by outcome"),
            &["outcome"],
        )?;
        registry.register(Box::new(pre_create_hook_calls.clone()))?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "Time to answer HTTP requests")
                .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
            &["method", "route", "status"],
        )?;
        registry.register(Box::new(request_duration.clone()))?;
        let bodies_in_flight = IntGauge::new("bodies_in_flight", "Upload bodies being read now")?;
        registry.register(Box::new(bodies_in_flight.clone()))?;
        let events_published = IntCounterVec::new(
            Opts::new("events_published_total", "Events moved from the outbox into the event log, by type"),
            &["type"],
        )?;
        registry.register(Box::new(events_published.clone()))?;
        let webhook_deliveries = IntCounterVec::new(
            Opts::new(
                "webhook_deliveries_total",
                "Webhook tries by endpoint and outcome: delivered, failed (tried again later), given_up",
            ),
            &["sink", "outcome"],
        )?;
        registry.register(Box::new(webhook_deliveries.clone()))?;
        let webhook_latency = HistogramVec::new(
            HistogramOpts::new("webhook_delivery_seconds", "Time from an event to its delivery, by endpoint")
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0]),
            &["sink"],
        )?;
        registry.register(Box::new(webhook_latency.clone()))?;
        let sse_connections = IntGauge::new("sse_connections", "Server-sent event streams open now")?;
        registry.register(Box::new(sse_connections.clone()))?;
        let upload_duration = Histogram::with_opts(
            HistogramOpts::new("upload_duration_seconds", "Time from an upload's creation to its completion")
                .buckets(DURATION_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(upload_duration.clone()))?;
        let upload_size = Histogram::with_opts(
            HistogramOpts::new("upload_size_bytes", "Size of completed uploads").buckets(size_buckets()),
        )?;
        registry.register(Box::new(upload_size.clone()))?;
        let outbox_uploads_pending =
            IntGauge::new("outbox_uploads_pending", "Uploads with recorded events not yet published to the event log")?;
        registry.register(Box::new(outbox_uploads_pending.clone()))?;
        let staging_bytes = IntGauge::new(
            "staging_bytes",
            "Bytes in the filesystem store's working files: staged chunks and files being written",
        )?;
        Ok(Self {
            uploads_created: counter("uploads_created_total", "Uploads opened")?,
            uploads_completed: counter("uploads_completed_total", "Uploads whose object was stored")?,
            uploads_canceled: counter("uploads_canceled_total", "Uploads canceled by a client")?,
            uploads_expired: counter(
                "uploads_expired_total",
                "Abandoned uploads: unfinished ones expired after their TTL",
            )?,
            uploads_failed: counter("uploads_failed_total", "Uploads whose assembly failed for good")?,
            completions_adopted: counter(
                "completions_adopted_total",
                "Completion jobs the sweeper took over from a claimer that was gone",
            )?,
            sweep_failures: counter("sweep_failures_total", "Sweeper steps that failed for one upload")?,
            chunks_received: counter("chunks_received_total", "Chunks stored and recorded")?,
            bytes_received: counter("bytes_received_total", "Chunk and form bytes stored")?,
            redis_round_trips: counter("redis_round_trips_total", "Round trips to Redis for requests and the sweeper")?,
            redis_event_round_trips: counter(
                "redis_event_round_trips_total",
                "Round trips to Redis for publishing and delivering events",
            )?,
            bodies_in_flight,
            chunks_rejected,
            pre_create_hook_calls,
            request_duration,
            events_published,
            webhook_deliveries,
            webhook_latency,
            sse_connections,
            upload_duration,
            upload_size,
            outbox_uploads_pending,
            staging_bytes,
            registry,
        })
    }

    /// Adds `staging_bytes` to what `/metrics` serves: only the filesystem store stages
    /// bytes on ferry's own disk. Idempotent.
    pub fn expose_staging_bytes(&self) -> Result<(), prometheus::Error> {
        match self.registry.register(Box::new(self.staging_bytes.clone())) {
            Err(prometheus::Error::AlreadyReg) => Ok(()),
            other => other,
        }
    }

    /// Counts a completed upload of `size` bytes that took `seconds` from its creation.
    pub fn upload_completed(&self, seconds: f64, size: u64) {
        self.uploads_completed.inc();
        self.upload_duration.observe(seconds.max(0.0));
        self.upload_size.observe(size as f64);
    }

    /// Counts a refused chunk under its problem code.
    pub fn chunk_rejected(&self, reason: &str) {
        self.chunks_rejected.with_label_values(&[reason]).inc();
    }

    /// Counts an event published, by type.
    pub fn event_published(&self, kind: &str) {
        self.events_published.with_label_values(&[kind]).inc();
    }

    /// Counts a webhook delivery and how long after its event it came.
    pub fn webhook_delivered(&self, sink: &str, latency: Option<chrono::Duration>) {
        self.webhook_deliveries.with_label_values(&[sink, "delivered"]).inc();
        if let Some(latency) = latency.and_then(|l| l.to_std().ok()) {
            self.webhook_latency.with_label_values(&[sink]).observe(latency.as_secs_f64());
        }
    }

    /// Counts a webhook try that failed (tried again later).
    pub fn webhook_attempt_failed(&self, sink: &str) {
        self.webhook_deliveries.with_label_values(&[sink, "failed"]).inc();
    }

    /// Counts a webhook delivery given up at the end of its retry window.
    pub fn webhook_given_up(&self, sink: &str) {
        self.webhook_deliveries.with_label_values(&[sink, "given_up"]).inc();
    }

    /// Counts a call to the pre-create hook under its outcome: `approved`, `rejected` or
    /// `unavailable` (no answer, or none ferry could use).
    pub fn pre_create_hook_called(&self, outcome: &str) {
        self.pre_create_hook_calls.with_label_values(&[outcome]).inc();
    }

    /// Records how long a request took.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.request_duration.with_label_values(&[method, route, &status.to_string()]).observe(seconds);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_bytes_is_served_only_once_exposed() {
        let metrics = Metrics::new().unwrap();
        metrics.staging_bytes.set(7);
        assert!(!metrics.render().unwrap().contains("ferry_staging_bytes"));
        metrics.expose_staging_bytes().unwrap();
        metrics.expose_staging_bytes().unwrap();
        assert!(metrics.render().unwrap().contains("ferry_staging_bytes 7"));
    }
}
