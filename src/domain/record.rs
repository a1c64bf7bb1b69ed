//! The upload record: everything the session store keeps about one upload, and the
//! state machine it moves through.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ChunkIndex, ChunkPlan, Crc64, Md5Digest, ObjectKey, Processing, Timestamp, UploadId};

/// Client-supplied key/value pairs kept with an upload (at most 4 KiB as JSON).
pub type Metadata = BTreeMap<String, String>;

/// Where an upload stands.
///
/// `uploading -> completing -> completed | failed`, and `canceled` from any state but
/// `completed` (and `completing` while a live claim is assembling the object). An
/// `uploading` upload left idle past its expiry becomes `expired`: a tombstone the sweeper
/// holds while it cleans the stored bytes, never shown to clients (they get 404).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UploadState {
    /// Chunks are being received.
    Uploading,
    /// Every chunk is in; the object is being assembled (or waits for a retry).
    Completing,
    /// The object is stored at its key.
    Completed,
    /// Assembly failed for good; the stored chunks were removed.
    Failed,
    /// The client canceled; the stored chunks were removed.
    Canceled,
    /// Left idle past its expiry; the sweeper is removing its stored chunks.
    Expired,
}

impl UploadState {
    /// The state spelled as `as_str` gives it.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Uploading, Self::Completing, Self::Completed, Self::Failed, Self::Canceled, Self::Expired]
            .into_iter()
            .find(|state| state.as_str() == s)
    }

    /// The state as the API spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Uploading => "uploading",
            Self::Completing => "completing",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::Expired => "expired",
        }
    }

    /// Whether the upload will change no more: only the sweeper removes it, when it expires.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Canceled | Self::Expired)
    }
}

/// How an upload's bytes reach storage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transfer {
    /// Through ferry, which streams them on to storage (chunks, appends, forms).
    #[default]
    Relay,
    /// From the client to the store itself, part by part, on URLs ferry signs; ferry
    /// completes the upload when the client confirms it (`POST /v1/uploads/{id}/complete`).
    Direct,
}

impl Transfer {
    /// Whether it is `Relay` (records leave the field out then).
    pub fn is_relay(&self) -> bool {
        *self == Self::Relay
    }
}

/// What storage said about one stored chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartReceipt {
    /// MD5 of the chunk's bytes, computed while they streamed in. For a part a client
    /// sent straight to the store, its ETag read as an MD5 where it is one (S3's tag of a
    /// plain part), else all zeros: ferry never saw the bytes.
    pub md5: Md5Digest,
    /// The storage's tag for the part (the S3 ETag), needed to complete the object.
    pub etag: String,
    /// Length of the chunk in bytes.
    pub size: u64,
    /// CRC-64/NVME of the chunk's bytes, computed while they streamed in (absent from
    /// receipts written before ferry computed it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc64: Option<Crc64>,
}

/// The right to assemble an upload, held by one request at a time until `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// Increases with every claim; a holder whose fence is no longer current has lost it.
    pub fence: u64,
    /// When the claim lapses if its holder has not finished.
    pub until: Timestamp,
}

/// Where an append upload (tus, the IETF draft) stands: bytes arrive in order, at an
/// offset, in requests of any length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendState {
    /// The total length, once declared (`None`: deferred, tus `Upload-Defer-Length`).
    pub length: Option<u64>,
    /// Bytes stored and recorded: where the next append starts. Never goes backwards.
    pub offset: u64,
    /// What the storage needs to go on from `offset` (an unfinished tail kept in the
    /// bucket, say); opaque to everything but the storage backend. Empty at first.
    pub cursor: String,
    /// The CRC-64/NVME of the bytes before `offset`; `None` once unknown (an append cut
    /// where the bytes the store kept cannot be told apart from those it saw).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc64: Option<Crc64>,
}

impl AppendState {
    /// An append upload with nothing stored yet.
    pub fn new(length: Option<u64>) -> Self {
        Self { length, offset: 0, cursor: String::new(), crc64: Some(Crc64::EMPTY) }
    }
}

/// The part an upload plays in tus concatenation (`Upload-Concat`): parallel uploads of a
/// file's pieces, joined into one object inside the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "role")]
pub enum Concat {
    /// An append upload whose finished bytes are kept out of sight (in its staging area,
    /// never at its key) for final uploads to be made of, until it expires.
    Partial,
    /// An upload made of the bytes of finished partial uploads, in order, joined inside
    /// the store. It takes no appends.
    Final {
        /// The partial uploads, in order (one may appear more than once).
        partials: Vec<UploadId>,
    },
}

/// Everything known about one upload, apart from its per-chunk receipts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadRecord {
    /// The upload's id.
    pub id: UploadId,
    /// Where the finished object goes.
    pub key: ObjectKey,
    /// The file name as the client gave it.
    pub filename: String,
    /// The content type the client declared.
    pub content_type: Option<String>,
    /// The client's metadata.
    pub metadata: Metadata,
    /// How the file is cut into chunks.
    pub plan: ChunkPlan,
    /// Where the upload stands.
    pub state: UploadState,
    /// The storage's own id for the multipart upload, when it has one (S3).
    pub storage_upload_id: Option<String>,
    /// How many distinct chunks have been stored.
    pub received_chunks: u32,
    /// Bytes in those chunks.
    pub bytes_received: u64,
    /// The last fence handed out by a claim.
    pub fence: u64,
    /// The live or lapsed claim of whoever assembles the object.
    pub claim: Option<Claim>,
    /// The finished object's ETag.
    pub etag: Option<String>,
    /// Why the upload failed.
    pub error: Option<String>,
    /// When the upload was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// When it expires unless touched again.
    pub expires_at: Timestamp,
    /// For an append upload: its offset and length. `None` for a chunked upload. While
    /// it is `uploading`, a live `claim` is the one append in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append: Option<AppendState>,
    /// How many consecutive chunks the storage joins into one of its parts: 1 (each chunk
    /// is a part) unless the chunks are smaller than the store's parts (S3). Fixed at
    /// creation, so every instance groups the upload alike whatever its own settings.
    #[serde(default = "one_chunk", skip_serializing_if = "is_one_chunk")]
    pub part_chunks: u32,
    /// When its last progress event was recorded (one a second at most).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_at: Option<Timestamp>,
    /// For a tus concatenation: whether the upload is a partial or a final one. Fixed at
    /// creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concat: Option<Concat>,
    /// Present when the upload goes through the processing stage once completed
    /// (`processing.enabled` when it was created): where its processor stands, `queued`
    /// until one reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing: Option<Processing>,
    /// The CRC-64/NVME the client declared for the whole file at creation: an object
    /// whose bytes differ is not made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_checksum: Option<Crc64>,
    /// The CRC-64/NVME of the stored object, once completed (when ferry saw every byte,
    /// or the store reported it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<Crc64>,
    /// How the bytes travel; for a direct upload the plan's chunks are the store's parts
    /// (chunk `i` is part `i + 1`), and it completes only when the client confirms it.
    #[serde(default, skip_serializing_if = "Transfer::is_relay")]
    pub transfer: Transfer,
}

fn one_chunk() -> u32 {
    1
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde passes a reference
fn is_one_chunk(n: &u32) -> bool {
    *n == 1
}

impl UploadRecord {
    /// Whether it is a partial upload, whose bytes wait for a final upload.
    pub fn is_partial(&self) -> bool {
        self.concat == Some(Concat::Partial)
    }

    /// The partial uploads a final upload is made of; `None` for any other upload.
    pub fn partials(&self) -> Option<&[UploadId]> {
        match &self.concat {
            Some(Concat::Final { partials }) => Some(partials),
            _ => None,
        }
    }

    /// Whether the record's time is up at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at <= now
    }

    /// Whether someone holds a claim that has not lapsed at `now`.
    pub fn has_live_claim(&self, now: Timestamp) -> bool {
        self.claim.is_some_and(|c| c.until > now)
    }

    /// The file's total size, if known: the plan's, or an append upload's declared length.
    pub fn size(&self) -> Option<u64> {
        match &self.append {
            Some(append) => append.length,
            None => Some(self.plan.size()),
        }
    }

    /// The chunks the storage keeps in one part with chunk `index` (see `part_chunks`).
    pub fn part_group(&self, index: ChunkIndex) -> std::ops::Range<u32> {
        let n = self.part_chunks.max(1);
        let first = index.0 / n * n;
        first..first.saturating_add(n).min(self.plan.total_chunks())
    }

    /// Whether every byte has been stored: every chunk of the plan, or an append upload's
    /// declared length.
    pub fn has_all_chunks(&self) -> bool {
        match &self.append {
            Some(append) => append.length == Some(append.offset),
            None => self.received_chunks == self.plan.total_chunks(),
        }
    }

    /// Whether whoever asks at `now` may take the claim to assemble the object: every
    /// chunk is in and nobody holds a live claim. An upload left `completing` is claimable
    /// even past its expiry: its bytes are all there, and finishing it beats losing it.
    pub fn is_claimable(&self, now: Timestamp) -> bool {
        let state_allows = match self.state {
            UploadState::Completing => true,
            UploadState::Uploading => !self.is_expired(now),
            _ => false,
        };
        state_allows && self.has_all_chunks() && !self.has_live_claim(now)
    }

    /// Whether it is a direct upload still taking parts: only the client's confirmation
    /// completes it, never the part that fills the last gap nor a status call.
    pub fn awaits_confirmation(&self) -> bool {
        self.transfer == Transfer::Direct && self.state == UploadState::Uploading
    }

    /// Takes the claim: the state becomes `completing` under a new fence, and the upload
    /// does not expire before the claim lapses.
    pub fn take_claim(&mut self, now: Timestamp, lease: chrono::Duration) -> Claim {
        self.fence += 1;
        let claim = Claim { fence: self.fence, until: now + lease };
        self.state = UploadState::Completing;
        self.claim = Some(claim);
        self.updated_at = now;
        self.expires_at = self.expires_at.max(claim.until);
        claim
    }

    /// Whether `fence` names the live claim at `now` on an unexpired upload: what renewing
    /// and finishing need.
    pub fn holds_claim(&self, fence: u64, now: Timestamp) -> bool {
        self.state == UploadState::Completing
            && self.claim.is_some_and(|c| c.fence == fence && c.until > now)
            && !self.is_expired(now)
    }

    /// Whether `fence` names the live append in flight at `now` on an unexpired upload.
    pub fn holds_writer(&self, fence: u64, now: Timestamp) -> bool {
        self.state == UploadState::Uploading
            && self.append.is_some()
            && self.claim.is_some_and(|c| c.fence == fence && c.until > now)
            && !self.is_expired(now)
    }

    /// When the sweeper must look at the upload next: when its claim lapses while it is
    /// `completing`, else when it expires.
    pub fn due_at(&self) -> Timestamp {
        match (self.state, self.claim) {
            (UploadState::Completing, Some(claim)) => claim.until.min(self.expires_at),
            (UploadState::Completing, None) => self.updated_at.min(self.expires_at),
            _ => self.expires_at,
        }
    }
}
