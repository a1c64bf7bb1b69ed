//! Real servers the tests start for themselves.

pub mod faults;
pub mod redis;
pub mod redis_cluster;
pub mod s3;
pub mod tls;
