//! Webhooks: every endpoint in `events.webhooks` gets each event (or each of its `types`)
//! as a JSON `POST`, signed as the Standard Webhooks spec says (`webhook-id`, the event id;
//! `webhook-timestamp`; `webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>`),
//! signed afresh on every try. A delivery is settled on a 2xx; anything else (or no answer
//! within `TIMEOUT`) is tried again after [`super::retry_delay`], by this instance or any
//! other, until `events.webhook_retry_secs` after the event. Each endpoint has a queue of
//! its own (`EventLog::due`) and a task of its own: a slow or dead endpoint delays only
//! its own deliveries, never an upload. Retries run on the real clock, as receivers'
//! timestamp checks do.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use standardwebhooks::Webhook;

use super::{happened_at, Delivery, Event, EventLog};
use crate::config::WebhookSettings;
use crate::metrics::Metrics;
use crate::session::SessionError;

/// The longest an endpoint may take to answer one delivery.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries read from a queue at once, and tried at once.
const BATCH: usize = 32;
const IN_FLIGHT: usize = 8;

/// One endpoint.
struct Sink {
    /// Its queue's name: `webhook-` and a digest of its URL, so a restart, or another
    /// instance with the same settings, finds the same queue.
    name: String,
    url: String,
    signer: Webhook,
    /// Event types it wants; empty: all.
    types: Vec<String>,
}

impl Sink {
    fn wants(&self, event: &Event) -> bool {
        self.types.is_empty() || self.types.contains(&event.kind)
    }
}

/// Delivers events to the configured endpoints.
#[derive(Clone)]
pub struct Webhooks {
    sinks: Arc<Vec<Sink>>,
    log: Arc<dyn EventLog>,
    client: reqwest::Client,
    metrics: Metrics,
    /// This instance, as the queues know it.
    consumer: String,
    window: chrono::Duration,
}

impl Webhooks {
    /// Deliveries to `endpoints` from `log`, tried for `window` after each event.
    pub fn new(
        endpoints: &[WebhookSettings],
        window: chrono::Duration,
        log: Arc<dyn EventLog>,
        metrics: Metrics,
    ) -> anyhow::Result<Self> {
        let sinks = endpoints
            .iter()
            .map(|e| {
                let signer = Webhook::new(&e.secret).map_err(|err| {
                    anyhow::anyhow!("events.webhooks: the secret of {} is not whsec_<base64>: {err}", e.url)
                })?;
                let digest = Sha256::digest(e.url.as_bytes());
                let name = format!("webhook-{}", &format!("{digest:x}")[..16]);
                Ok(Sink { name, url: e.url.clone(), signer, types: e.types.clone() })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let client = reqwest::Client::builder().timeout(TIMEOUT).redirect(reqwest::redirect::Policy::none()).build()?;
        let consumer = uuid::Uuid::new_v4().simple().to_string();
        Ok(Self { sinks: Arc::new(sinks), log, client, metrics, consumer, window })
    }

    /// Opens every endpoint's queue, so that events from now on reach it even if its loop
    /// has not looked yet. A store that does not answer now is not fatal: the loops open
    /// the queues when it is back.
    pub async fn open_queues(&self) {
        for sink in self.sinks.iter() {
            if let Err(err) = self.log.open(&sink.name).await {
                tracing::warn!(url = sink.url, error = %crate::error::chain(&err), "could not open a webhook queue yet");
            }
        }
    }

    /// Delivers for ever, each endpoint in a loop of its own that looks at its queue every
    /// `interval` when it had nothing to do.
    pub async fn run(&self, interval: Duration) {
        let loops = (0..self.sinks.len()).map(|i| self.run_sink(i, interval));
        futures_util::future::join_all(loops).await;
    }

    async fn run_sink(&self, sink: usize, interval: Duration) {
        let sink = &self.sinks[sink];
        loop {
            match self.deliver_due(sink).await {
                Ok(0) => tokio::time::sleep(interval).await,
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(url = sink.url, error = %crate::error::chain(&err), "reading a webhook queue failed");
                    tokio::time::sleep(interval).await;
                }
            }
        }
    }

    /// Tries every delivery due now for `sink`; how many there were.
    async fn deliver_due(&self, sink: &Sink) -> Result<usize, SessionError> {
        let due = self.log.due(&sink.name, &self.consumer, Utc::now(), BATCH).await?;
        let count = due.len();
        let mut tries = futures_util::stream::iter(due).map(|d| self.try_delivery(sink, d)).buffer_unordered(IN_FLIGHT);
        while let Some(result) = tries.next().await {
            result?;
        }
        Ok(count)
    }

    async fn try_delivery(&self, sink: &Sink, delivery: Delivery) -> Result<(), SessionError> {
        let event = &delivery.event;
        if !sink.wants(event) {
            return self.log.settle(&sink.name, &delivery.position).await;
        }
        match self.post(sink, event).await {
            Ok(()) => {
                let latency = happened_at(event).map(|at| Utc::now() - at);
                self.metrics.webhook_delivered(&sink.name, latency);
                self.log.settle(&sink.name, &delivery.position).await
            }
            Err(reason) => {
                self.metrics.webhook_attempt_failed(&sink.name);
                let give_up = happened_at(event).is_none_or(|at| at + self.window <= Utc::now());
                if give_up {
                    tracing::error!(
                        url = sink.url,
                        event = event.id,
                        attempt = delivery.attempt,
                        reason,
                        "webhook delivery given up"
                    );
                    self.metrics.webhook_given_up(&sink.name);
                    return self.log.settle(&sink.name, &delivery.position).await;
                }
                tracing::info!(
                    url = sink.url,
                    event = event.id,
                    attempt = delivery.attempt,
                    reason,
                    "webhook delivery failed; will retry"
                );
                Ok(())
            }
        }
    }

    /// One signed `POST`; why it failed, if it did.
    async fn post(&self, sink: &Sink, event: &Event) -> Result<(), String> {
        let body = serde_json::to_vec(event).map_err(|e| e.to_string())?;
        let timestamp = Utc::now().timestamp();
        let signature = sink.signer.sign(&event.id, timestamp, &body).map_err(|e| e.to_string())?;
        let request = self
            .client
            .post(&sink.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(standardwebhooks::HEADER_WEBHOOK_ID, &event.id)
            .header(standardwebhooks::HEADER_WEBHOOK_TIMESTAMP, timestamp.to_string())
            .header(standardwebhooks::HEADER_WEBHOOK_SIGNATURE, signature)
            .body(body);
        match request.send().await {
            Ok(answer) if answer.status().is_success() => Ok(()),
            Ok(answer) => Err(format!("the endpoint answered {}", answer.status())),
            Err(err) => Err(crate::error::chain(&err).to_string()),
        }
    }
}
