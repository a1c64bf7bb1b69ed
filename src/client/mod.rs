//! The upload client behind `ferry upload`, `ferry status` and `ferry cancel`: chunks a
//! file, sends the chunks in parallel with their MD5, retries what may succeed later,
//! and resumes an interrupted upload from a state file.

mod api;
pub mod commands;
mod retry;
mod state;
mod upload;

pub use api::{Api, ClientError, Problem};
pub use retry::RetryPolicy;
pub use state::{StateStore, UploadState};
pub use upload::{upload_file, Progress, UploadOptions, UploadReport};
