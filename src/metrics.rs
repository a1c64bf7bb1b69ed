//! Prometheus metrics, kept in a registry of their own per application (so several
//! applications in one test process do not collide) and served at `/metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
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
    /// Unfinished uploads removed by the sweeper.
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
    /// Round trips to Redis (with the Redis session store).
    pub redis_round_trips: IntCounter,
    /// Upload bodies being read now (at most `server.max_bodies_in_flight`).
    pub bodies_in_flight: IntGauge,
    chunks_rejected: IntCounterVec,
    pre_create_hook_calls: IntCounterVec,
    request_duration: HistogramVec,
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
        Ok(Self {
            uploads_created: counter("uploads_created_total", "Uploads opened")?,
            uploads_completed: counter("uploads_completed_total", "Uploads whose object was stored")?,
            uploads_canceled: counter("uploads_canceled_total", "Uploads canceled by a client")?,
            uploads_expired: counter("uploads_expired_total", "Unfinished uploads removed after their TTL")?,
            uploads_failed: counter("uploads_failed_total", "Uploads whose assembly failed for good")?,
            completions_adopted: counter(
                "completions_adopted_total",
                "Completion jobs the sweeper took over from a claimer that was gone",
            )?,
            sweep_failures: counter("sweep_failures_total", "Sweeper steps that failed for one upload")?,
            chunks_received: counter("chunks_received_total", "Chunks stored and recorded")?,
            bytes_received: counter("bytes_received_total", "Chunk and form bytes stored")?,
            redis_round_trips: counter("redis_round_trips_total", "Round trips to Redis")?,
            bodies_in_flight,
            chunks_rejected,
            pre_create_hook_calls,
            request_duration,
            registry,
        })
    }

    /// Counts a refused chunk under its problem code.
    pub fn chunk_rejected(&self, reason: &str) {
        self.chunks_rejected.with_label_values(&[reason]).inc();
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
