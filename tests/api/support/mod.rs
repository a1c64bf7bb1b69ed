//! Real servers the tests start for themselves.

pub mod faults;
pub mod redis;
pub mod s3;
