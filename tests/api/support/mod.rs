//! Real servers the tests start for themselves.

pub mod redis;
pub mod s3;
