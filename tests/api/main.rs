//! The integration suite: the real application on port 0, driven over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;
mod support;

mod access;
mod checksum;
mod chunks;
mod cli;
mod cluster;
mod completion;
mod create;
mod direct;
mod events;
mod expiry;
mod fault_matrix;
mod form;
mod hooks;
mod hostile;
mod lifecycle;
mod limits;
mod operations;
mod processing;
mod property;
mod redis;
mod redis_cluster;
mod redis_tls;
mod restart;
mod s3;
mod s3_append;
mod sse;
mod tus;
mod tus_concat;
mod ui;
mod worker;
