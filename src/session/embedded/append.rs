//! The embedded store's side of append uploads (tus, the IETF draft): taking the right
//! to append at an offset, and recording what an append stored.

use chrono::Duration;

use super::tables::Tables;
use crate::domain::{Claim, EventKind, Timestamp, UploadState};
use crate::session::codec::encode;
use crate::session::{progress_due, AppendEnd, AppendProgress, AppendStart, SessionError};

impl Tables<'_> {
    /// See `SessionStore::begin_append`.
    pub(super) fn begin_append(
        &mut self,
        id: &str,
        offset: u64,
        now: Timestamp,
        ttl: Duration,
        lease: Duration,
    ) -> Result<AppendStart, SessionError> {
        let Some(mut record) = self.load_live(id, now)? else {
            return Ok(AppendStart::NotFound);
        };
        let Some(expected) = record.append.as_ref().map(|a| a.offset) else {
            return Ok(AppendStart::Refused(record.state));
        };
        if record.state != UploadState::Uploading {
            return Ok(AppendStart::Refused(record.state));
        }
        if record.has_live_claim(now) {
            return Ok(AppendStart::Busy);
        }
        if expected != offset {
            return Ok(AppendStart::OffsetMismatch { expected });
        }
        let old_due = record.due_at();
        record.fence += 1;
        let claim = Claim { fence: record.fence, until: now + lease };
        record.claim = Some(claim);
        record.updated_at = now;
        record.expires_at = (now + ttl).max(claim.until);
        self.save(&record, Some(old_due))?;
        Ok(AppendStart::Granted { claim, record: Box::new(record) })
    }

    /// See `SessionStore::end_append`.
    pub(super) fn end_append(
        &mut self,
        id: &str,
        fence: u64,
        progress: AppendProgress,
        now: Timestamp,
        ttl: Duration,
        lease: Duration,
    ) -> Result<AppendEnd, SessionError> {
        let Some(mut record) = self.load(id)? else {
            return Ok(AppendEnd::Lost);
        };
        if !record.holds_writer(fence, now) {
            return Ok(AppendEnd::Lost);
        }
        let old_due = record.due_at();
        for (index, receipt) in &progress.parts {
            let previous = self.parts.insert((id, index.0), encode(receipt)?.as_slice());
            if previous.map_err(SessionError::unavailable)?.is_none() {
                record.received_chunks += 1;
            }
        }
        let Some(append) = record.append.as_mut() else { return Ok(AppendEnd::Lost) };
        if progress.offset >= append.offset {
            append.crc64 = progress.crc64;
        }
        append.offset = append.offset.max(progress.offset);
        append.cursor = progress.cursor;
        append.length = progress.length.or(append.length);
        let (offset, length) = (append.offset, append.length);
        record.bytes_received = offset;
        record.claim = None;
        record.updated_at = now;
        record.expires_at = now + ttl;
        let claim = record.is_claimable(now).then(|| record.take_claim(now, lease));
        if progress.report_progress && progress_due(&record, now) {
            self.emit(&mut record, EventKind::Progress, now)?;
        }
        self.save(&record, Some(old_due))?;
        Ok(AppendEnd::Recorded { offset, length, claim })
    }
}
