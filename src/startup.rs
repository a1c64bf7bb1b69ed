//! Wiring: build the stores and the service from `Settings`, bind the listener, serve the
//! route table (through [`crate::server`]), run the expiry sweeper beside it, and drain on SIGTERM or SIGINT.

use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::web;
use anyhow::Context;

use crate::auth::{load_or_create_secret, ApiKeys, TokenSigner};
use crate::config::{SessionBackend, Settings, StorageBackend};
use crate::domain::{Clock, SystemClock};
use crate::events::{EventLog, Publisher, Tail, Webhooks};
use crate::metrics::Metrics;
use crate::session::{EmbeddedSessionStore, RedisSessionStore, SessionStore};
use crate::storage::{FsObjectStore, ObjectStore, S3ObjectStore};
use crate::upload::{DirectPolicy, PreCreateHook, UploadPolicy, UploadService};

/// How often the publisher looks at an empty outbox.
const PUBLISH_INTERVAL: Duration = Duration::from_millis(100);
/// How often an idle webhook endpoint's queue is looked at.
const DELIVER_INTERVAL: Duration = Duration::from_millis(250);
/// How often the tail reads the event log for server-sent events, once one was asked for.
const TAIL_INTERVAL: Duration = Duration::from_millis(150);

/// What every request handler can reach.
pub struct AppState {
    /// The upload rules and stores.
    pub service: UploadService,
    /// Issues and checks upload tokens.
    pub tokens: TokenSigner,
    /// Keys that may create uploads.
    pub api_keys: ApiKeys,
    /// Keys of the app's processors.
    pub processor_keys: ApiKeys,
    /// `uploads.max_file_size`, as protocols advertise it (tus `Tus-Max-Size`).
    pub max_file_size: u64,
    /// The metrics.
    pub metrics: Metrics,
    /// The slots and idle timeout every upload body shares.
    pub bodies: crate::routes::BodyLimits,
    /// Follows the event log for server-sent event streams.
    pub tail: Tail,
    /// Set once a shutdown has begun: readiness fails so balancers stop sending work.
    pub draining: Arc<AtomicBool>,
}

/// A built application: bound, not yet serving.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    publisher: Publisher,
    webhooks: Option<Webhooks>,
    sweep_interval: Duration,
    drain_delay: Duration,
}

impl Application {
    /// Builds the application from `settings` with the system clock.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// Builds the application reading time from `clock` (tests move it to expire uploads).
    pub async fn build_with_clock(settings: &Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        settings.validate()?;
        let metrics = Metrics::new().context("Failed to register metrics")?;
        let Stores { sessions, events, log, secret } = open_sessions(settings, &metrics).await?;
        let storage = open_storage(settings).await?;
        if settings.storage.backend == StorageBackend::Fs {
            metrics.expose_staging_bytes().context("Failed to register metrics")?;
        }
        let u = &settings.uploads;
        let policy = UploadPolicy {
            chunks: u.chunk_policy(),
            ttl: secs(u.session_ttl_secs),
            lease: secs(u.completion_lease_secs),
            sweep_interval: secs(u.sweep_interval_secs),
            allowed_content_types: u.allowed_content_types.clone(),
            require_chunk_md5: u.require_chunk_md5,
            processing: settings.processing.enabled,
            direct: DirectPolicy::from(&settings.direct),
        };
        let e = &settings.events;
        let publisher = Publisher::new(events, Arc::clone(&log), metrics.clone(), e.stream_max_len);
        let webhooks = match e.webhooks.is_empty() {
            true => None,
            false => {
                let window = secs(e.webhook_retry_secs);
                let webhooks = Webhooks::new(&e.webhooks, window, Arc::clone(&log), metrics.clone())?;
                webhooks.open_queues().await;
                Some(webhooks)
            }
        };
        let tail = Tail::new(Arc::clone(&log), metrics.sse_connections.clone());
        let mut service = UploadService::new(sessions, storage, policy, clock, metrics.clone());
        if let Some(hook) = pre_create_hook(settings, &metrics)? {
            service = service.with_pre_create_hook(hook);
        }
        let state = web::Data::new(AppState {
            service,
            tokens: TokenSigner::new(&secret),
            api_keys: ApiKeys::new(&settings.auth.api_keys),
            processor_keys: ApiKeys::new(&settings.auth.processor_keys),
            max_file_size: u.max_file_size,
            bodies: crate::routes::BodyLimits::new(
                settings.server.max_bodies_in_flight,
                Duration::from_secs(settings.server.body_idle_timeout_secs),
                metrics.bodies_in_flight.clone(),
            ),
            tail,
            metrics,
            draining: Arc::new(AtomicBool::new(false)),
        });

        let listener = TcpListener::bind(&settings.server.listen)
            .with_context(|| format!("Failed to bind {}", settings.server.listen))?;
        let port = listener.local_addr()?.port();
        let server = crate::server::serve(listener, &settings.server, state.clone())?;
        tracing::info!(
            port,
            storage = ?settings.storage.backend,
            sessions = ?settings.sessions.backend,
            "ferry is listening"
        );
        Ok(Self {
            port,
            server,
            state,
            publisher,
            webhooks,
            sweep_interval: Duration::from_secs(u.sweep_interval_secs),
            drain_delay: Duration::from_secs(settings.server.drain_delay_secs),
        })
    }

    /// The port the server is bound to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle that stops the server (gracefully with `stop(true)`).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped by the handle or by SIGTERM / SIGINT, sweeping expired uploads
    /// meanwhile. On a signal, readiness turns 503 at once while ferry keeps serving for
    /// `server.drain_delay_secs`; then the listener closes, requests in flight get up to
    /// `server.shutdown_timeout_secs` to finish, and this returns. A second signal stops
    /// at once.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let draining = Arc::clone(&self.state.draining);
        let drain_delay = self.drain_delay;
        let on_signal = actix_web::rt::spawn(async move {
            shutdown_signal().await;
            draining.store(true, Ordering::SeqCst);
            tracing::info!(delay_secs = drain_delay.as_secs(), "shutdown signal received: draining");
            let drain = async {
                tokio::time::sleep(drain_delay).await;
                handle.stop(true).await;
            };
            tokio::select! {
                () = drain => {}
                () = shutdown_signal() => {
                    tracing::warn!("second shutdown signal: stopping without waiting");
                    handle.stop(false).await;
                }
            }
        });
        let sweeper = self.state.service.run_sweeper(self.sweep_interval);
        let publisher = self.publisher.run(PUBLISH_INTERVAL);
        let tail = self.state.tail.run(TAIL_INTERVAL);
        let webhooks = async {
            match &self.webhooks {
                Some(webhooks) => webhooks.run(DELIVER_INTERVAL).await,
                None => std::future::pending().await,
            }
        };
        let served = tokio::select! {
            served = self.server => served,
            () = sweeper => Ok(()),
            () = publisher => Ok(()),
            () = tail => Ok(()),
            () = webhooks => Ok(()),
        };
        on_signal.abort();
        served
    }
}

fn secs(s: u64) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000))
}

/// The stores the settings name, and the token secret.
struct Stores {
    /// Upload records, for the requests and the sweeper.
    sessions: Arc<dyn SessionStore>,
    /// The same records, for the event publisher's outbox: with Redis, a connection of
    /// its own (its round trips counted apart), so that background work never queues
    /// behind or in front of a request's.
    events: Arc<dyn SessionStore>,
    /// Where published events go, on the publisher's connection.
    log: Arc<dyn EventLog>,
    secret: Vec<u8>,
}

async fn open_sessions(settings: &Settings, metrics: &Metrics) -> anyhow::Result<Stores> {
    match settings.sessions.backend {
        SessionBackend::Embedded => {
            let dir = &settings.sessions.embedded.path;
            let store = EmbeddedSessionStore::open(dir)
                .with_context(|| format!("Failed to open the session store in {}", dir.display()))?;
            let secret = match &settings.auth.secret {
                Some(secret) => secret.as_bytes().to_vec(),
                None => secret_beside(dir)?,
            };
            let store = Arc::new(store);
            Ok(Stores { sessions: store.clone(), events: store.clone(), log: store, secret })
        }
        SessionBackend::Redis => {
            let redis = &settings.sessions.redis;
            let store = RedisSessionStore::with_settings(redis, metrics.redis_round_trips.clone())
                .context("Failed to set up the Redis session store (check sessions.redis.url and ca_file)")?;
            if let Err(err) = store.load_scripts().await {
                // Not fatal: ferry answers 503 until Redis is back, then carries on.
                tracing::warn!(error = %crate::error::chain(&err), "Redis does not answer yet");
            }
            let secret = settings.auth.secret.as_ref().context("auth.secret is required with Redis")?;
            let events = Arc::new(RedisSessionStore::with_settings(redis, metrics.redis_event_round_trips.clone())?);
            Ok(Stores {
                sessions: Arc::new(store),
                events: events.clone(),
                log: events,
                secret: secret.as_bytes().to_vec(),
            })
        }
    }
}

fn secret_beside(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let path = dir.join("auth-secret");
    load_or_create_secret(&path).with_context(|| format!("Failed to read or create {}", path.display()))
}

async fn open_storage(settings: &Settings) -> anyhow::Result<Arc<dyn ObjectStore>> {
    match settings.storage.backend {
        StorageBackend::Fs => {
            let root = &settings.storage.fs.root;
            let store = FsObjectStore::open(root)
                .with_context(|| format!("Failed to open the object folder {}", root.display()))?;
            Ok(Arc::new(store))
        }
        StorageBackend::S3 => {
            let store = S3ObjectStore::new(&settings.storage.s3).await.context("Failed to set up the S3 store")?;
            Ok(Arc::new(store))
        }
    }
}

/// The pre-create hook, when `hooks.pre_create` is set.
fn pre_create_hook(settings: &Settings, metrics: &Metrics) -> anyhow::Result<Option<PreCreateHook>> {
    let Some(url) = settings.hooks.pre_create_url().map_err(anyhow::Error::msg)? else { return Ok(None) };
    let timeout = Duration::from_secs(settings.hooks.timeout_secs);
    let hook = PreCreateHook::new(url, timeout, metrics.clone()).context("Failed to set up the pre-create hook")?;
    tracing::info!(timeout_secs = timeout.as_secs(), "uploads are created only with the pre-create hook's approval");
    Ok(Some(hook))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM; only Ctrl-C stops gracefully");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
