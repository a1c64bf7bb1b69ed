//! The `events` section: where ferry sends its events besides the Redis stream.

use serde::Deserialize;

use crate::domain::EventKind;

/// Events: webhooks, and the Redis stream's length.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventSettings {
    /// Endpoints that get every event (or those of their `types`) as a signed `POST`.
    pub webhooks: Vec<WebhookSettings>,
    /// How long ferry keeps trying to deliver an event to an endpoint that fails, in
    /// seconds after the event (one day).
    pub webhook_retry_secs: u64,
    /// With Redis sessions, the stream `<key_prefix>:v1:events` is trimmed near this many
    /// events; the embedded store keeps as many in its own log.
    pub stream_max_len: u64,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self { webhooks: Vec::new(), webhook_retry_secs: 86_400, stream_max_len: 100_000 }
    }
}

/// One webhook endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Where events are posted (`http://` or `https://`).
    pub url: String,
    /// The signing secret, `whsec_<base64>` as Standard Webhooks writes it: the HMAC key is
    /// the decoded part.
    pub secret: String,
    /// Event types it gets (`upload.completed`, …); empty: all.
    #[serde(default)]
    pub types: Vec<String>,
}

impl EventSettings {
    /// Why these settings cannot work, if they cannot.
    pub(super) fn problem(&self) -> Option<String> {
        if self.webhook_retry_secs == 0 || self.stream_max_len == 0 {
            return Some("events.webhook_retry_secs and events.stream_max_len must be positive".into());
        }
        for hook in &self.webhooks {
            if !(hook.url.starts_with("http://") || hook.url.starts_with("https://")) {
                return Some(format!("events.webhooks: {:?} is not an http:// or https:// URL", hook.url));
            }
            if standardwebhooks::Webhook::new(&hook.secret).is_err() || !hook.secret.starts_with("whsec_") {
                return Some(format!("events.webhooks: the secret of {} must be whsec_<base64>", hook.url));
            }
            if let Some(kind) = hook.types.iter().find(|t| EventKind::parse(t).is_none()) {
                return Some(format!("events.webhooks: {kind:?} is not an event type"));
            }
        }
        None
    }
}
