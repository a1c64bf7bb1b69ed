//! Real servers the tests start for themselves, and proxies that break them on purpose.

pub mod faults;
pub mod process;
pub mod redis;
pub mod redis_cluster;
pub mod s3;
pub mod s3_faults;
pub mod sse;
pub mod tls;
pub mod webhook;
