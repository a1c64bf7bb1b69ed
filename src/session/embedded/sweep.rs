//! The embedded store's side of the sweeper: retiring an expired upload to a tombstone,
//! and removing a tombstone whose time is up.

use crate::domain::{EventKind, Timestamp, UploadRecord, UploadState};
use crate::session::{Retired, SessionError};

use super::tables::Tables;

impl Tables<'_> {
    /// See `SessionStore::retire`.
    pub(super) fn retire(&mut self, id: &str, now: Timestamp) -> Result<Retired, SessionError> {
        let Some(mut record) = self.load(id)? else {
            return Ok(Retired::NotFound);
        };
        if record.has_live_claim(now) {
            return Ok(Retired::NotDue(record.due_at()));
        }
        if record.state == UploadState::Completing {
            return Ok(Retired::Unfinished);
        }
        if !record.is_expired(now) {
            return Ok(Retired::NotDue(record.due_at()));
        }
        if record.state == UploadState::Uploading {
            let old_due = record.due_at();
            let before = record.clone();
            record.state = UploadState::Expired;
            record.fence += 1;
            record.claim = None;
            record.updated_at = now;
            self.drop_parts(id)?;
            self.emit(&mut record, EventKind::Expired, now)?;
            self.save(&record, Some(old_due))?;
            return Ok(Retired::Retired(Box::new(before)));
        }
        Ok(Retired::Retired(Box::new(record)))
    }

    /// See `SessionStore::remove_expired`.
    pub(super) fn remove_expired(&mut self, id: &str, now: Timestamp) -> Result<Option<UploadRecord>, SessionError> {
        let Some(record) = self.load(id)? else {
            return Ok(None);
        };
        if !record.is_expired(now) || !record.state.is_final() {
            return Ok(None);
        }
        self.remove(&record)?;
        Ok(Some(record))
    }
}
