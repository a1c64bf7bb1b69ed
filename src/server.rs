//! The HTTP listener: what actix-web's `HttpServer::listen` builds, rebuilt from its parts
//! (`actix_server` workers running an `actix_http::HttpService` around the `App`) so that
//! one thing can be added: an `Expect: 100-continue` hook. `HttpServer` always answers
//! `100 Continue` before any ferry code runs; here [`routes::continue_or_refuse`] sees a
//! chunk's head first, so a chunk that would be refused is refused before its body.
//!
//! Everything else matches `HttpServer` (actix-web 4.18): the worker count, the shutdown
//! timeout, no signal handling of its own, idle keep-alive connections closed when a
//! graceful stop begins, and its connection defaults (below). One part it uses is
//! `#[doc(hidden)]` in actix (the graceful-stop notice); `Cargo.lock` pins it, and the
//! drain and restart tests would notice it going. The app's `AppConfig` is the default
//! one: it only names a host for requests without `Host`, and ferry builds no URL from it.

use std::io;
use std::net::TcpListener;
use std::time::Duration;

use actix_http::{HttpService, KeepAlive, Request};
use actix_service::{fn_service, map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_web::dev::{AppConfig, Server};
use actix_web::middleware::{from_fn, Compress, Condition};
use actix_web::{web, App};

use crate::config::ServerSettings;
use crate::routes::{self, RouteOptions};
use crate::startup::AppState;

/// `HttpServer`'s defaults, kept as they were when ferry used it.
const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves the route table on `listener` with `settings.workers` workers (0: one per
/// CPU). The server stops only through its handle; `stop(true)` closes the listener, tells
/// idle connections to close, and gives requests in flight `settings.shutdown_timeout_secs`.
pub fn serve(listener: TcpListener, settings: &ServerSettings, state: web::Data<AppState>) -> io::Result<Server> {
    let addr = listener.local_addr()?;
    let options = RouteOptions { upload_page: settings.ui };
    let mut builder = Server::build().disable_signals().shutdown_timeout(settings.shutdown_timeout_secs);
    if settings.workers > 0 {
        builder = builder.workers(settings.workers);
    }
    let stopping = builder.graceful_shutdown_signal();
    // Server-sent event streams never finish by themselves: they end as the stop begins,
    // so that it need not wait out the shutdown timeout, and their clients reconnect to
    // another instance.
    let streams_end = builder.graceful_shutdown_signal();
    actix_web::rt::spawn(state.tail.close_when(async move { streams_end.notified().await }));
    let cors_origins = settings.cors_origins.clone();
    let builder = builder.listen(format!("ferry-{addr}"), listener, move || {
        let stopping = stopping.clone();
        let expect_state = state.clone();
        let cors_origins = cors_origins.clone();
        let app = App::new()
            .wrap(Compress::default())
            .wrap(from_fn(crate::telemetry::trace_requests))
            // Outermost, so every answer (errors and 404s too) carries the CORS headers.
            .wrap(Condition::new(!cors_origins.is_empty(), routes::cors(&cors_origins)))
            .app_data(state.clone())
            .configure(move |cfg| routes::configure(cfg, options))
            .into_factory()
            .map_err(|err| err.error_response());
        HttpService::build()
            .graceful_shutdown_signal(move || {
                let stopping = stopping.clone();
                async move { stopping.notified().await }
            })
            .keep_alive(KeepAlive::default())
            .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
            .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
            .h1_allow_half_closed(true)
            .local_addr(addr)
            .expect(fn_service(move |req: Request| routes::continue_or_refuse(expect_state.clone(), req)))
            .finish(map_config(app, |()| AppConfig::default()))
            .tcp()
    })?;
    Ok(builder.run())
}
