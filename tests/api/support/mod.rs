//! Real servers the tests start for themselves.

pub mod redis;
