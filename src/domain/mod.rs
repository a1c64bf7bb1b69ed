//! Validated value types of the upload domain: identifiers, the chunk plan, digests,
//! object keys, the upload record and the clock. Nothing here does I/O.

mod checksum;
mod chunk_plan;
mod clock;
mod crc64;
mod digest;
mod event;
mod object_key;
mod processing;
mod record;
mod upload_id;

pub use checksum::{Md5Digest, Md5Hasher};
pub use chunk_plan::{ChunkIndex, ChunkPlan, ChunkPlanError, ChunkPolicy};
pub use clock::{rfc3339, Clock, ManualClock, SystemClock, Timestamp};
pub use crc64::{Crc64, Crc64Hasher};
pub use digest::{DeclaredDigest, DigestAlgorithm, DigestHasher};
pub use event::{event_id, EventKind, RecordedEvent};
pub use object_key::ObjectKey;
pub use processing::{
    Processing, ProcessingRefusal, ProcessingReport, ProcessingStatus, MAX_ERROR_BYTES, MAX_RESULT_BYTES,
};
pub use record::{AppendState, Claim, Concat, Metadata, PartReceipt, Transfer, UploadRecord, UploadState};
pub use upload_id::UploadId;
