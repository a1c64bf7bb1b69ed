//! Waiting for the app's processing of an uploaded file (`ferry upload --wait`): polls the
//! status until the stage is `done` or `failed`.

use std::time::Duration;

use serde_json::Value;

use super::{Api, ClientError};

/// How often the status is read while waiting.
const POLL: Duration = Duration::from_secs(1);

/// Receives the processing stage as it moves: its status and percent done.
pub trait StageProgress: Send + Sync {
    /// The processor's status (`queued`, `running`) and progress, 0 to 100.
    fn processing(&self, status: &str, progress: u64);
}

/// Reads the status of the upload `id` until its stage is final (`done` or `failed`), and
/// answers that status. `status` is the status already known (the upload's last answer).
pub async fn wait_for_stage(
    api: &Api,
    id: &str,
    token: &str,
    mut status: Value,
    progress: &dyn StageProgress,
) -> Result<Value, ClientError> {
    loop {
        match stage_of(&status) {
            "done" | "failed" => return Ok(status),
            "processing" => {
                let processing = &status["processing"];
                progress.processing(
                    processing["status"].as_str().unwrap_or("queued"),
                    processing["progress"].as_u64().unwrap_or(0),
                );
            }
            "uploading" => {
                return Err(ClientError::Protocol("the upload is not completed: nothing to wait for".into()));
            }
            other => return Err(ClientError::Protocol(format!("unknown stage {other:?} in {status}"))),
        }
        tokio::time::sleep(POLL).await;
        status = api.status(id, token).await?;
    }
}

/// The upload's stage; a server without a processing stage says none, and a completed
/// upload is then done.
pub fn stage_of(status: &Value) -> &str {
    match status["stage"].as_str() {
        Some(stage) => stage,
        None if status["state"] == "completed" => "done",
        None => "uploading",
    }
}
