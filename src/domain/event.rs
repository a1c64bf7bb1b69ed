//! Events: what ferry tells the app about an upload (webhooks, the Redis stream, SSE).
//! A state change records its event in the same atomic step as the change itself (the
//! session store's outbox), with the record as that step left it; delivery comes after.

use serde::{Deserialize, Serialize};

use super::{Timestamp, UploadId, UploadRecord};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// An upload was opened.
    #[serde(rename = "upload.created")]
    Created,
    /// Bytes arrived (at most one a second per upload).
    #[serde(rename = "upload.progress")]
    Progress,
    /// The object is stored whole.
    #[serde(rename = "upload.completed")]
    Completed,
    /// Assembling the object failed for good.
    #[serde(rename = "upload.failed")]
    Failed,
    /// The client canceled it.
    #[serde(rename = "upload.canceled")]
    Canceled,
    /// It was abandoned and its time ran out.
    #[serde(rename = "upload.expired")]
    Expired,
    /// A processor reported progress on it.
    #[serde(rename = "processing.updated")]
    ProcessingUpdated,
    /// A processor finished it.
    #[serde(rename = "processing.done")]
    ProcessingDone,
    /// A processor gave up on it.
    #[serde(rename = "processing.failed")]
    ProcessingFailed,
}

impl EventKind {
    /// Every kind, in the order of an upload's life.
    pub const ALL: [EventKind; 9] = [
        Self::Created,
        Self::Progress,
        Self::Completed,
        Self::Failed,
        Self::Canceled,
        Self::Expired,
        Self::ProcessingUpdated,
        Self::ProcessingDone,
        Self::ProcessingFailed,
    ];

    /// Its name on the wire (`upload.completed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "upload.created",
            Self::Progress => "upload.progress",
            Self::Completed => "upload.completed",
            Self::Failed => "upload.failed",
            Self::Canceled => "upload.canceled",
            Self::Expired => "upload.expired",
            Self::ProcessingUpdated => "processing.updated",
            Self::ProcessingDone => "processing.done",
            Self::ProcessingFailed => "processing.failed",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// An upload's events carry increasing numbers in the order they were recorded; an
/// event's id, unique across uploads, is `<upload id>-<number>`.
pub fn event_id(upload: &UploadId, number: u64) -> String {
    format!("{upload}-{number}")
}

/// An event as the outbox keeps it, before delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// Its number: larger than any earlier event's of the upload.
    pub number: u64,
    /// What happened.
    pub kind: EventKind,
    /// When.
    pub time: Timestamp,
    /// The upload as the change left it.
    pub record: UploadRecord,
}

impl RecordedEvent {
    /// Its id, unique across uploads.
    pub fn id(&self) -> String {
        event_id(&self.record.id, self.number)
    }
}
