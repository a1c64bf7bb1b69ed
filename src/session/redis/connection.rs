//! How the Redis store reaches Redis: one server or a cluster, plain or TLS, over one
//! shared multiplexed connection. Every call is bounded in time and counted; a call that
//! meets a dead connection (Redis restarted, a node went away) reconnects and is sent once
//! more, so no call made after Redis is back fails.
//!
//! Every request sent here stays within one cluster slot: a pipeline holds the keys of one
//! upload, or one key of its own; requests for different slots are sent side by side
//! (`query_beside`), never pipelined together.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{join_all, BoxFuture, FutureExt};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, FromRedisValue, Pipeline, RedisError, RedisFuture, Script, Value};
use tokio::sync::Mutex;

use super::super::SessionError;
use crate::config::{RedisMode, RedisSettings};

/// No Redis call may take longer than this, reconnecting and the one retry included; a
/// hung server reads as unavailable.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// The Redis (one server or a cluster) the store talks to.
pub(super) struct Redis {
    inner: Arc<Inner>,
    round_trips: prometheus::IntCounter,
}

struct Inner {
    target: Target,
    /// The connection every call shares while it works, and how many have been made: a
    /// call that found generation `g` dead replaces it only if it is still `g`, so a
    /// hundred calls failing at once make one new connection, not a hundred.
    shared: Mutex<Shared>,
}

#[derive(Default)]
struct Shared {
    conn: Option<Conn>,
    generation: u64,
}

// One per store, made once: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Target {
    Standalone(Client),
    Cluster(ClusterClient),
}

/// A connection to one server, or to a whole cluster (which routes each request to the
/// node owning its slot, and follows the cluster as it changes).
#[derive(Clone)]
enum Conn {
    Standalone(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Standalone(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipe: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Standalone(conn) => conn.req_packed_commands(pipe, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipe, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Standalone(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

/// One request on the wire.
#[derive(Clone)]
enum Request {
    /// A pipeline within one slot: one round trip.
    Pipe(Pipeline),
    /// `SCRIPT LOAD` sent as a lone command, which a cluster connection sends to every
    /// primary (a pipeline would go to one node).
    Load(Script),
}

impl Request {
    fn send(&self, mut conn: Conn) -> BoxFuture<'static, Result<Value, RedisError>> {
        let request = self.clone();
        async move {
            match request {
                Self::Pipe(pipe) => pipe.query_async::<Value>(&mut conn).await,
                Self::Load(script) => script.load_async(&mut conn).await.map(|_sha| Value::Okay),
            }
        }
        .boxed()
    }
}

impl Redis {
    /// Redis as `settings` describe it, counting each round trip in `round_trips`. Reads
    /// the CA file now; connects lazily, on the first call.
    pub(super) fn new(settings: &RedisSettings, round_trips: prometheus::IntCounter) -> Result<Self, SessionError> {
        // redis-rs builds its TLS settings with the process-wide rustls provider, and this
        // build holds two (ring for reqwest, aws-lc for the AWS SDK), so none is implied:
        // name one. An error only says one is installed already.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let certificates = match &settings.ca_file {
            Some(path) => Some(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(std::fs::read(path).map_err(SessionError::unavailable)?),
            }),
            None => None,
        };
        let urls = settings.urls();
        let target = match settings.mode {
            RedisMode::Standalone => {
                let url = urls.first().copied().unwrap_or_default();
                let client = match certificates {
                    Some(certificates) => Client::build_with_tls(url, certificates),
                    None => Client::open(url),
                };
                Target::Standalone(client.map_err(SessionError::unavailable)?)
            }
            RedisMode::Cluster => {
                let mut builder =
                    ClusterClient::builder(urls).connection_timeout(CALL_TIMEOUT).response_timeout(CALL_TIMEOUT);
                if let Some(certificates) = certificates {
                    builder = builder.certs(certificates);
                }
                Target::Cluster(builder.build().map_err(SessionError::unavailable)?)
            }
        };
        let inner = Arc::new(Inner { target, shared: Mutex::default() });
        Ok(Self { inner, round_trips })
    }

    /// Sends `pipe` (commands of one slot) in one round trip and decodes its replies.
    pub(super) async fn query<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T, SessionError> {
        let mut replies = self.send(vec![Request::Pipe(pipe.clone())]).await?.into_iter();
        decode(replies.next())
    }

    /// Sends `pipe` and the pipelines `beside` it (each within a slot of its own) at once,
    /// so all cost one round trip of latency; decodes the replies of `pipe` once all have
    /// succeeded.
    pub(super) async fn query_beside<T: FromRedisValue>(
        &self,
        pipe: &Pipeline,
        beside: &[Pipeline],
    ) -> Result<T, SessionError> {
        let mut requests = vec![Request::Pipe(pipe.clone())];
        requests.extend(beside.iter().cloned().map(Request::Pipe));
        let mut replies = self.send(requests).await?.into_iter();
        decode(replies.next())
    }

    /// Loads `scripts` into the script cache of the server, or of every primary of the
    /// cluster, in one round trip.
    pub(super) async fn load_scripts(&self, scripts: &[&Script]) -> Result<(), SessionError> {
        let requests = match self.inner.target {
            Target::Standalone(_) => {
                let mut pipe = redis::pipe();
                for script in scripts {
                    pipe.load_script(script).ignore();
                }
                vec![Request::Pipe(pipe)]
            }
            Target::Cluster(_) => scripts.iter().map(|s| Request::Load((*s).clone())).collect(),
        };
        self.send(requests).await.map(drop)
    }

    /// Sends `requests` side by side on the shared connection, on the I/O runtime, within
    /// `CALL_TIMEOUT`; their replies in order, or the first failure.
    async fn send(&self, requests: Vec<Request>) -> Result<Vec<Value>, SessionError> {
        let (inner, round_trips) = (Arc::clone(&self.inner), self.round_trips.clone());
        let call = crate::runtime::spawn(async move {
            match tokio::time::timeout(CALL_TIMEOUT, inner.exchange(&requests, &round_trips)).await {
                Ok(replies) => replies,
                Err(elapsed) => {
                    // Hung: the next call starts on a new connection.
                    inner.shared.lock().await.conn = None;
                    Err(RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, elapsed)))
                }
            }
        });
        call.await.map_err(SessionError::unavailable)?.map_err(SessionError::unavailable)
    }
}

impl Inner {
    /// Sends every request; those that met a dead connection are sent once more on a new
    /// one.
    //
    // Why sending again is safe: a dead connection (refused, reset, closed, a broken pipe)
    // usually means the request never reached Redis, as when Redis restarted since the
    // connection was made. When it did reach Redis and only the reply was lost, the
    // request ran and now runs twice. Reads, PING, SCRIPT LOAD, ZADD and ZREM of one
    // member are idempotent. Each Lua script checks the state it changes before changing
    // it, so its repeat is harmless or refused: a chunk's receipt is stored again under its
    // index and counted once; `claim` and the claim `record` takes answer "not claimable"
    // (the claim taken by the lost call lapses after its lease, and the sweeper finishes
    // the upload); `finish` answers "fence not current"; `insert` answers "exists";
    // `cancel` answers "refused: canceled"; `remove` answers "missing"; `touch` sets the
    // same expiry. Nothing is counted, claimed or removed twice. The event stream's
    // commands are at least once by design: an `XADD` may add an event twice (it keeps its
    // id, by which receivers tell), the entries of a lost `XREADGROUP` reply wait as pending
    // until their retry delay, and `XACK` / `XCLAIM` of one entry repeat harmlessly. The
    // outbox scripts check the state they change too. A timeout is not retried:
    // a hung server may still be running the request, and the call is out of time anyway.
    async fn exchange(
        &self,
        requests: &[Request],
        round_trips: &prometheus::IntCounter,
    ) -> Result<Vec<Value>, RedisError> {
        round_trips.inc();
        let (conn, generation) = self.connection(None).await?;
        let mut replies = join_all(requests.iter().map(|r| r.send(conn.clone()))).await;
        if replies.iter().any(is_dead) {
            tracing::info!("the Redis connection is dead: reconnecting and sending again");
            round_trips.inc();
            let (conn, _) = self.connection(Some(generation)).await?;
            let again = join_all(requests.iter().zip(&replies).map(|(request, reply)| {
                let send = is_dead(reply).then(|| request.send(conn.clone()));
                async move {
                    match send {
                        Some(send) => Some(send.await),
                        None => None,
                    }
                }
            }))
            .await;
            for (reply, retried) in replies.iter_mut().zip(again) {
                if let Some(retried) = retried {
                    *reply = retried;
                }
            }
        }
        replies.into_iter().collect()
    }

    /// The shared connection, or a new one when there is none or when it is generation
    /// `dead`. Connecting holds the lock, so calls meanwhile wait for the new connection.
    async fn connection(&self, dead: Option<u64>) -> Result<(Conn, u64), RedisError> {
        let mut shared = self.shared.lock().await;
        if dead == Some(shared.generation) {
            shared.conn = None;
        }
        if let Some(conn) = &shared.conn {
            return Ok((conn.clone(), shared.generation));
        }
        let conn = self.target.connect().await?;
        shared.generation += 1;
        shared.conn = Some(conn.clone());
        Ok((conn, shared.generation))
    }
}

impl Target {
    async fn connect(&self) -> Result<Conn, RedisError> {
        match self {
            Self::Standalone(client) => {
                // The response bound is the call's own (`CALL_TIMEOUT`).
                let config =
                    AsyncConnectionConfig::new().set_connection_timeout(Some(CALL_TIMEOUT)).set_response_timeout(None);
                Ok(Conn::Standalone(client.get_multiplexed_async_connection_with_config(&config).await?))
            }
            Self::Cluster(client) => Ok(Conn::Cluster(client.get_async_connection().await?)),
        }
    }
}

/// Whether `reply` failed because the connection is dead rather than because Redis
/// answered with an error or did not answer in time.
fn is_dead(reply: &Result<Value, RedisError>) -> bool {
    reply
        .as_ref()
        .is_err_and(|e| (e.is_connection_dropped() || e.is_connection_refusal() || e.is_io_error()) && !e.is_timeout())
}

fn decode<T: FromRedisValue>(reply: Option<Value>) -> Result<T, SessionError> {
    let reply = reply.ok_or_else(|| SessionError::Corrupt("Redis sent no reply".into()))?;
    redis::from_redis_value(reply).map_err(|e| SessionError::unavailable(RedisError::from(e)))
}
