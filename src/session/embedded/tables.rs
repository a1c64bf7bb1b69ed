//! The embedded store's tables and the steps every write transaction shares: loading a
//! record, saving it with its due-index entry, dropping its receipts.

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};

use super::outbox::{COUNTERS, OUTBOX};
use crate::domain::{Timestamp, UploadRecord};
use crate::session::codec::{decode_record, encode};
use crate::session::SessionError;

pub(super) const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads_v1");
pub(super) const PARTS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("parts_v1");
/// (due time in ms, upload id): the sweeper's index of what to look at when. Kept exact:
/// every write of a record moves its entry to the record's `due_at`.
pub(super) const EXPIRY: TableDefinition<(i64, &str), ()> = TableDefinition::new("expiry_v1");

/// The tables, opened in one write transaction.
pub(super) struct Tables<'txn> {
    pub(super) uploads: Table<'txn, &'static str, &'static [u8]>,
    pub(super) parts: Table<'txn, (&'static str, u32), &'static [u8]>,
    pub(super) expiry: Table<'txn, (i64, &'static str), ()>,
    pub(super) outbox: Table<'txn, u64, &'static [u8]>,
    pub(super) counters: Table<'txn, &'static str, u64>,
}

impl<'txn> Tables<'txn> {
    pub(super) fn open(txn: &'txn WriteTransaction) -> Result<Self, SessionError> {
        Ok(Self {
            uploads: txn.open_table(UPLOADS).map_err(SessionError::unavailable)?,
            parts: txn.open_table(PARTS).map_err(SessionError::unavailable)?,
            expiry: txn.open_table(EXPIRY).map_err(SessionError::unavailable)?,
            outbox: txn.open_table(OUTBOX).map_err(SessionError::unavailable)?,
            counters: txn.open_table(COUNTERS).map_err(SessionError::unavailable)?,
        })
    }

    pub(super) fn load(&self, id: &str) -> Result<Option<UploadRecord>, SessionError> {
        match self.uploads.get(id).map_err(SessionError::unavailable)? {
            Some(bytes) => decode_record(bytes.value()).map(Some),
            None => Ok(None),
        }
    }

    /// Loads a record that exists and has not expired at `now`.
    pub(super) fn load_live(&self, id: &str, now: Timestamp) -> Result<Option<UploadRecord>, SessionError> {
        Ok(self.load(id)?.filter(|r| !r.is_expired(now)))
    }

    /// Writes `record`, moving its due-index entry from `old_due` to its `due_at`.
    pub(super) fn save(&mut self, record: &UploadRecord, old_due: Option<Timestamp>) -> Result<(), SessionError> {
        let id = record.id.to_string();
        if let Some(old) = old_due {
            self.expiry.remove((old.timestamp_millis(), id.as_str())).map_err(SessionError::unavailable)?;
        }
        self.expiry.insert((record.due_at().timestamp_millis(), id.as_str()), ()).map_err(SessionError::unavailable)?;
        self.uploads.insert(id.as_str(), encode(record)?.as_slice()).map_err(SessionError::unavailable)?;
        Ok(())
    }

    pub(super) fn drop_parts(&mut self, id: &str) -> Result<(), SessionError> {
        let keys: Vec<u32> = self
            .parts
            .range((id, 0)..=(id, u32::MAX))
            .map_err(SessionError::unavailable)?
            .map(|entry| entry.map(|(k, _)| k.value().1))
            .collect::<Result<_, _>>()
            .map_err(SessionError::unavailable)?;
        for index in keys {
            self.parts.remove((id, index)).map_err(SessionError::unavailable)?;
        }
        Ok(())
    }

    pub(super) fn remove(&mut self, record: &UploadRecord) -> Result<(), SessionError> {
        let id = record.id.to_string();
        self.drop_parts(&id)?;
        self.expiry.remove((record.due_at().timestamp_millis(), id.as_str())).map_err(SessionError::unavailable)?;
        self.uploads.remove(id.as_str()).map_err(SessionError::unavailable)?;
        Ok(())
    }
}
