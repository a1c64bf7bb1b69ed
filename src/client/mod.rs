//! The upload client behind `ferry upload`, `ferry status` and `ferry cancel`: chunks a
//! file, sends the chunks in parallel with their MD5, retries what may succeed later,
//! resumes an interrupted upload from a state file, and waits for the app's processing.

mod api;
pub mod commands;
mod direct;
mod retry;
mod state;
mod upload;
mod wait;

pub use api::{Api, ClientError, Problem};
pub use retry::RetryPolicy;
pub use state::{StateStore, UploadState};
pub use upload::{upload_file, Progress, Transfer, UploadOptions, UploadReport, AUTO_DIRECT_MIN};
pub use wait::{stage_of, wait_for_stage, StageProgress};
