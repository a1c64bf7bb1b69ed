//! ferry: a resumable, chunked upload server.
//!
//! A client opens an upload, sends the file in chunks (in any order, in parallel, to any
//! instance), each MD5-checked and streamed straight into storage; it asks what is missing
//! and resumes after a drop; the last chunk starts the completion job, which the server
//! owns. tus clients append at an offset instead, through the same engine, and may send
//! a file as partial uploads in parallel that the store joins into one object.
//!
//! Map of the crate, outside in:
//! - [`startup`] builds the [`Application`] from [`config::Settings`] and serves it;
//!   [`server`] is its HTTP listener (actix-web's, plus an `Expect: 100-continue` hook).
//! - [`routes`] are thin HTTP handlers (the native API, and protocol adapters such as
//!   `routes::tus` at `/files/`); [`error`] turns failures into problem+json;
//!   [`telemetry`] adds request ids, spans and logs; [`metrics`] counts; [`auth`] checks
//!   upload tokens and API keys.
//! - [`upload::UploadService`] owns the rules and is the only place that combines the two
//!   stores below it.
//! - [`session::SessionStore`] keeps upload records (embedded redb, or Redis shared by
//!   every instance), with an outbox of the events each change records;
//!   [`storage::ObjectStore`] keeps bytes (local files, or S3). Each trait has one shared
//!   contract suite that every backend passes.
//! - [`events`] takes events from the outbox to the [`events::EventLog`] (the Redis stream,
//!   or the embedded store's log) and on to webhooks and server-sent event streams.
//! - [`domain`] holds the validated value types: ids, chunk plan, digests, keys, records.
//! - [`client`] is the other side: the upload client behind `ferry upload`.

pub mod auth;
pub mod client;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod metrics;
pub mod routes;
pub mod runtime;
pub mod server;
pub mod session;
pub mod startup;
pub mod storage;
pub mod telemetry;
pub mod upload;

pub use startup::Application;
