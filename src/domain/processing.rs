//! The processing stage: what the app does with a completed upload (thumbnails,
//! transcoding…), reported by its processors. `queued -> running -> … -> done | failed`,
//! and `queued -> done | failed`; `done` and `failed` are final.

use serde::{Deserialize, Serialize};

use super::{EventKind, Timestamp, UploadRecord, UploadState};

/// Largest `result` a processor may report, as JSON bytes.
pub const MAX_RESULT_BYTES: usize = 16 * 1024;
/// Longest `error` a processor may report, in bytes.
pub const MAX_ERROR_BYTES: usize = 4096;

/// Where a processor stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessingStatus {
    /// Completed, waiting for a processor.
    Queued,
    /// A processor is on it.
    Running,
    /// Processed; `result` says what came of it.
    Done,
    /// The processor gave up; `error` says why.
    Failed,
}

impl ProcessingStatus {
    /// The status as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    /// Whether it will change no more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Failed)
    }
}

/// The processing stage of an upload, as status shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Processing {
    /// Where the processor stands.
    pub status: ProcessingStatus,
    /// Percent done, 0 to 100.
    pub progress: u8,
    /// What the processor made of the upload (a JSON object), once `done`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Map<String, serde_json::Value>>,
    /// Why the processor gave up, once `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Processing {
    /// The stage of an upload no processor has reported on yet.
    pub fn queued() -> Self {
        Self { status: ProcessingStatus::Queued, progress: 0, result: None, error: None }
    }
}

/// What a processor reports.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase", deny_unknown_fields)]
pub enum ProcessingReport {
    /// Working on it, this far.
    Running {
        /// Percent done, 0 to 100.
        #[serde(default)]
        progress: u8,
    },
    /// Finished, with what came of it.
    Done {
        /// A JSON object of at most [`MAX_RESULT_BYTES`].
        #[serde(default)]
        result: Option<serde_json::Map<String, serde_json::Value>>,
    },
    /// Gave up.
    Failed {
        /// Why, in words fit for the user (at most [`MAX_ERROR_BYTES`]).
        error: String,
    },
}

impl ProcessingReport {
    /// The status it moves the stage to.
    pub fn status(&self) -> ProcessingStatus {
        match self {
            Self::Running { .. } => ProcessingStatus::Running,
            Self::Done { .. } => ProcessingStatus::Done,
            Self::Failed { .. } => ProcessingStatus::Failed,
        }
    }

    /// Whether its values are within bounds; why not, in words for the processor.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Self::Running { progress } if *progress > 100 => Err("progress must be between 0 and 100".into()),
            Self::Done { result: Some(result) } => {
                let bytes = serde_json::to_vec(result).map(|v| v.len()).unwrap_or(usize::MAX);
                match bytes > MAX_RESULT_BYTES {
                    true => Err(format!("result must be at most {MAX_RESULT_BYTES} bytes as JSON, not {bytes}")),
                    false => Ok(()),
                }
            }
            Self::Failed { error } if error.len() > MAX_ERROR_BYTES => {
                Err(format!("error must be at most {MAX_ERROR_BYTES} bytes"))
            }
            _ => Ok(()),
        }
    }
}

/// Why a processor's report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessingRefusal {
    /// The upload is not completed: there is nothing to process (yet).
    #[error("the upload is {}; processing starts once it is completed", .0.as_str())]
    NotCompleted(UploadState),
    /// The upload was created without a processing stage (`processing.enabled` was off).
    #[error("this upload has no processing stage (processing.enabled was off when it was created)")]
    NoStage,
    /// The stage cannot move from where it is to where the report says.
    #[error("processing cannot go from {} to {}", .from.as_str(), .to.as_str())]
    Transition {
        /// Where it stands.
        from: ProcessingStatus,
        /// Where the report would take it.
        to: ProcessingStatus,
    },
}

impl UploadRecord {
    /// Applies a processor's `report` at `now`: the stage moves, the record is updated,
    /// and the upload is remembered at least `ttl` longer (a slow processor keeps it). The
    /// event the change records.
    pub fn process(
        &mut self,
        report: &ProcessingReport,
        now: Timestamp,
        ttl: chrono::Duration,
    ) -> Result<EventKind, ProcessingRefusal> {
        if self.state != UploadState::Completed {
            return Err(ProcessingRefusal::NotCompleted(self.state));
        }
        let stage = self.processing.as_mut().ok_or(ProcessingRefusal::NoStage)?;
        if stage.status.is_final() {
            return Err(ProcessingRefusal::Transition { from: stage.status, to: report.status() });
        }
        let kind = match report {
            ProcessingReport::Running { progress } => {
                stage.progress = *progress;
                EventKind::ProcessingUpdated
            }
            ProcessingReport::Done { result } => {
                stage.progress = 100;
                stage.result = result.clone();
                EventKind::ProcessingDone
            }
            ProcessingReport::Failed { error } => {
                stage.error = Some(error.clone());
                EventKind::ProcessingFailed
            }
        };
        stage.status = report.status();
        self.updated_at = now;
        self.expires_at = self.expires_at.max(now + ttl);
        Ok(kind)
    }

    /// Where the upload stands for the user: `uploading`, `processing`, `done` or `failed`
    /// (a canceled upload counts as failed: it will not be done).
    pub fn stage(&self) -> &'static str {
        match self.state {
            UploadState::Uploading | UploadState::Completing => "uploading",
            UploadState::Failed | UploadState::Canceled | UploadState::Expired => "failed",
            UploadState::Completed => match self.processing.as_ref().map(|p| p.status) {
                None | Some(ProcessingStatus::Done) => "done",
                Some(ProcessingStatus::Queued | ProcessingStatus::Running) => "processing",
                Some(ProcessingStatus::Failed) => "failed",
            },
        }
    }
}
