//! The notifier's fold state in RocksDB: one state per conversation and the next
//! offset per partition of `courier.conversations.v1`, written in one `WriteBatch`.

use std::path::Path;

use courier_processors::inbox::ConversationState;
use courier_processors::notify::NotifyStore;
use courier_processors::store::StoreError;
use rocksdb::{DB, WriteBatch};

use crate::{rocks, states};

const STORE: &str = "notify/rocksdb";

/// The notifier's states on local disk.
pub struct RocksNotifyStore {
    db: DB,
}

fn state_key(conversation: &str) -> Vec<u8> {
    let mut k = b"s/".to_vec();
    k.extend_from_slice(conversation.as_bytes());
    k
}

/// Chunk `chunk` of a conversation's state (the id's length first, so that no
/// conversation's chunk keys are a prefix of another's).
fn state_chunk_key(conversation: &str, chunk: u32) -> Vec<u8> {
    let mut k = b"c/".to_vec();
    k.extend_from_slice(&(conversation.len() as u32).to_be_bytes());
    k.extend_from_slice(conversation.as_bytes());
    k.extend_from_slice(&chunk.to_be_bytes());
    k
}

/// Where states are kept, in parts (`crate::states`).
const STATE_PARTS: states::PartKeys = states::PartKeys {
    head: state_key,
    chunk: state_chunk_key,
};

/// The layout this build writes: 2 since states are binary and in parts
/// (`crate::states`).
/// A store without a marker (new, or written before markers, with JSON states)
/// is read as it is; a newer layout is refused.
const LAYOUT: u32 = 2;

impl RocksNotifyStore {
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = rocks::open(dir, STORE)?;
        rocks::mark_layout(&db, STORE, dir, LAYOUT)?;
        Ok(RocksNotifyStore { db })
    }
}

impl NotifyStore for RocksNotifyStore {
    fn checkpoint(&self, partition: u32) -> Result<Option<u64>, StoreError> {
        rocks::checkpoint(&self.db, STORE, partition)
    }

    fn load_states(&self, ids: &[String]) -> Result<Vec<Option<ConversationState>>, StoreError> {
        states::load_parts(&self.db, STORE, &STATE_PARTS, ids)
    }

    fn write(
        &mut self,
        states: &[ConversationState],
        checkpoints: &[(u32, u64)],
    ) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        for s in states {
            states::put_parts(&mut batch, &STATE_PARTS, s);
        }
        // States and positions land together or not at all.
        for (p, next) in checkpoints {
            batch.put(rocks::checkpoint_key(*p), next.to_be_bytes());
        }
        self.db
            .write(batch)
            .map_err(|e| StoreError::retryable(STORE, e))
    }
}

#[cfg(test)]
mod tests {
    use courier_processors::notify::conformance::NotifyStoreFactory;

    use super::*;

    struct RocksFactory;

    impl NotifyStoreFactory for RocksFactory {
        type Place = tempfile::TempDir;
        type Store = RocksNotifyStore;
        fn place(&self) -> tempfile::TempDir {
            tempfile::tempdir().unwrap()
        }
        fn open(&self, place: &tempfile::TempDir) -> RocksNotifyStore {
            RocksNotifyStore::open(place.path()).unwrap()
        }
    }

    courier_processors::notify_store_conformance!(RocksFactory);

    /// A conversation of hundreds of messages, stored after every few, with an
    /// edit and a delete of messages in chunks written long before: only the
    /// changed chunks are rewritten (how this store splits states; that the
    /// state reads back as it is, is the conformance suite's).
    #[test]
    fn a_long_conversation_is_stored_in_chunks_and_reads_back_as_it_is() {
        use courier_processors::inbox::{Position, apply};
        use courier_schemas::json::parse_line;

        let dir = tempfile::tempdir().unwrap();
        let mut store = RocksNotifyStore::open(dir.path()).unwrap();
        let mut s = ConversationState::new("c1");
        let mut offset = 0;
        let mut fold = |s: &mut ConversationState, line: String| {
            let outcome = apply(s, &parse_line(&line).unwrap(), Position::new(0, offset));
            offset += 1;
            assert!(outcome.rejection().is_none(), "{line}");
        };
        fold(&mut s, r#"{"type":"conversation_created","event_id":"e0","conversation_id":"c1","kind":"group","creator_id":"u1","member_ids":["u1","u2"],"title":"","at_ms":1}"#.to_string());
        let stored_chunks = |store: &mut RocksNotifyStore, s: &mut ConversationState| {
            let next = s.applied_offset().map_or(0, |o| o + 1);
            store.write(std::slice::from_ref(s), &[(0, next)]).unwrap();
            s.mark_written();
            store
                .db
                .prefix_iterator(b"c/")
                .take_while(|kv| kv.as_ref().is_ok_and(|(k, _)| k.starts_with(b"c/")))
                .count()
        };
        for i in 0..600 {
            fold(
                &mut s,
                format!(
                    r#"{{"type":"message_sent","event_id":"m{i}","conversation_id":"c1","message_id":"m{i}","sender_id":"u{}","text":"x","at_ms":{}}}"#,
                    1 + i % 2,
                    10 + i
                ),
            );
            if i % 100 == 99 {
                stored_chunks(&mut store, &mut s);
            }
        }
        assert_eq!(
            stored_chunks(&mut store, &mut s),
            3,
            "600 messages: chunks 0, 1, 2"
        );
        fold(&mut s, r#"{"type":"message_edited","event_id":"x1","conversation_id":"c1","message_id":"m5","editor_id":"u2","text":"y","at_ms":700}"#.to_string());
        fold(&mut s, r#"{"type":"message_deleted","event_id":"x2","conversation_id":"c1","message_id":"m300","actor_id":"u1","at_ms":701}"#.to_string());
        let mut head = Vec::new();
        let changed: Vec<u32> = s
            .encode_parts(&mut head)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            changed,
            vec![0, 1, 2],
            "the edit's chunk and every later one"
        );
        stored_chunks(&mut store, &mut s);
        let mut head = Vec::new();
        assert!(
            s.encode_parts(&mut head).is_empty(),
            "nothing left to write"
        );

        let back = store
            .load_states(&["c1".into()])
            .unwrap()
            .remove(0)
            .unwrap();
        let (mut want, mut got) = (Vec::new(), Vec::new());
        s.encode_into(&mut want);
        back.encode_into(&mut got);
        assert_eq!(want, got);
        assert_eq!(back.message_count(), 600);
    }

    /// A store written before layout markers (JSON states) is read as it is;
    /// one of a newer layout is refused.
    #[test]
    fn json_states_of_older_builds_are_read_and_newer_layouts_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = rocks::open(dir.path(), STORE).unwrap();
            let json = serde_json::to_vec(&ConversationState::new("c1")).unwrap();
            db.put(state_key("c1"), json).unwrap();
        }
        {
            let s = RocksNotifyStore::open(dir.path()).unwrap();
            let got = s.load_states(&["c1".into()]).unwrap();
            assert_eq!(got[0].as_ref().unwrap().conversation_id(), "c1");
            s.db.put(rocks::LAYOUT_KEY, 3u32.to_be_bytes()).unwrap();
        }
        let e = RocksNotifyStore::open(dir.path())
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("has layout 3; this build reads layouts up to 2"),
            "{e}"
        );
    }
}
