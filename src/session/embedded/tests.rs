//! The embedded store: the shared contract, and what only a file on disk can show.

use super::*;
use crate::session::contract::new_record;

/// A store in a temporary folder that lives as long as it does.
struct Scratch {
    _dir: tempfile::TempDir,
    store: EmbeddedSessionStore,
}

impl std::ops::Deref for Scratch {
    type Target = EmbeddedSessionStore;
    fn deref(&self) -> &EmbeddedSessionStore {
        &self.store
    }
}

async fn scratch() -> Scratch {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedSessionStore::open(dir.path()).unwrap();
    Scratch { _dir: dir, store }
}

crate::session_store_contract!(scratch());

mod log {
    use super::scratch;

    crate::event_log_contract!(scratch());
}

#[tokio::test]
async fn records_survive_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let record = new_record(chrono::Utc::now());
    {
        let store = EmbeddedSessionStore::open(dir.path()).unwrap();
        store.insert(&record).await.unwrap();
    }
    let store = EmbeddedSessionStore::open(dir.path()).unwrap();
    assert_eq!(store.get(&record.id).await.unwrap(), Some(record));
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let _first = EmbeddedSessionStore::open(dir.path()).unwrap();
    assert!(EmbeddedSessionStore::open(dir.path()).is_err());
}
