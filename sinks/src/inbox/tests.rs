//! The RocksDB inbox store: the port's conformance suite (it writes each batch
//! in one `WriteBatch`: the atomic half of the contract), and what only this
//! backend has — read-only opens beside a writer, layouts.

use async_trait::async_trait;
use courier_processors::inbox::store::InboxStore;
use courier_processors::inbox::store::conformance::{self, InboxStoreFactory};

use super::*;

struct RocksFactory;

#[async_trait]
impl InboxStoreFactory for RocksFactory {
    type Place = tempfile::TempDir;
    type Store = RocksInboxStore;
    async fn place(&self) -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }
    async fn open(&self, place: &tempfile::TempDir) -> RocksInboxStore {
        RocksInboxStore::open(place.path()).unwrap()
    }
}

courier_processors::inbox_store_conformance!(RocksFactory, writes = atomic);

/// A read-only open (what queries use) reads what a closed writer wrote.
#[tokio::test]
async fn a_read_only_open_reads_back_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = RocksInboxStore::open(dir.path()).unwrap();
        conformance::write_stream(&mut s, 4).await;
    }
    let r = RocksInboxStore::open_read_only(dir.path())
        .unwrap()
        .unwrap();
    conformance::reads_back(&r).await;
}

#[tokio::test]
async fn a_reader_sees_what_a_live_writer_wrote_before_it_opened() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        RocksInboxStore::open_read_only(dir.path())
            .unwrap()
            .is_none()
    );
    let mut w = RocksInboxStore::open(dir.path()).unwrap();
    conformance::write_stream(&mut w, 5).await;
    let r = RocksInboxStore::open_read_only(dir.path())
        .unwrap()
        .unwrap();
    conformance::reads_back(&r).await;
    assert_eq!(r.checkpoint(0).await.unwrap(), Some(11));
}

#[test]
fn another_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = RocksInboxStore::open(dir.path()).unwrap();
        s.db.put(crate::rocks::LAYOUT_KEY, 99u32.to_be_bytes())
            .unwrap();
    }
    let e = RocksInboxStore::open(dir.path()).err().unwrap().to_string();
    assert!(
        e.contains("has layout 99; this build reads layouts up to 2"),
        "{e}"
    );
}

/// A store an older build wrote (layout 1, JSON states) opens as it is: its
/// states read back, and it is marked layout 2 before any binary state lands.
#[tokio::test]
async fn a_store_of_layout_1_is_read_and_marked_2() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = RocksInboxStore::open(dir.path()).unwrap();
        s.db.put(crate::rocks::LAYOUT_KEY, 1u32.to_be_bytes())
            .unwrap();
        let json = serde_json::to_vec(&ConversationState::new("c1")).unwrap();
        s.db.put(keys::state("c1"), json).unwrap();
    }
    let s = RocksInboxStore::open(dir.path()).unwrap();
    let states = s.load_states(&["c1".to_string()]).await.unwrap();
    assert_eq!(states[0].as_ref().map(|s| s.conversation_id()), Some("c1"));
    assert_eq!(
        s.db.get(crate::rocks::LAYOUT_KEY).unwrap().unwrap(),
        2u32.to_be_bytes()
    );
}
