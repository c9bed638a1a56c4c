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

/// The layout this build writes: 2 since states are binary (`crate::states`).
/// A store without a marker (new, or written before markers, with JSON states)
/// is read as it is; a newer layout is refused.
const LAYOUT: u32 = 2;
const LAYOUT_KEY: &[u8] = b"L";

impl RocksNotifyStore {
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = rocks::open(dir, STORE)?;
        let marked = db
            .get(LAYOUT_KEY)
            .map_err(|e| StoreError::retryable(STORE, e))?;
        match marked.as_deref().map(<[u8; 4]>::try_from) {
            None => db
                .put(LAYOUT_KEY, LAYOUT.to_be_bytes())
                .map_err(|e| StoreError::retryable(STORE, e))?,
            Some(Ok(l)) if u32::from_be_bytes(l) <= LAYOUT => {}
            Some(Ok(l)) => {
                return Err(StoreError::fatal(
                    STORE,
                    format!(
                        "{} has layout {}; this build reads layouts up to {LAYOUT} (run a \
                         newer courier, or rebuild the view)",
                        dir.display(),
                        u32::from_be_bytes(l)
                    ),
                ));
            }
            Some(Err(_)) => {
                return Err(StoreError::fatal(STORE, "the layout marker is corrupt"));
            }
        }
        Ok(RocksNotifyStore { db })
    }
}

impl NotifyStore for RocksNotifyStore {
    fn checkpoint(&self, partition: u32) -> Result<Option<u64>, StoreError> {
        rocks::checkpoint(&self.db, STORE, partition)
    }

    fn load_states(&self, ids: &[String]) -> Result<Vec<Option<ConversationState>>, StoreError> {
        let keys: Vec<Vec<u8>> = ids.iter().map(|c| state_key(c)).collect();
        self.db
            .multi_get(&keys)
            .into_iter()
            .zip(ids)
            .map(|(v, c)| {
                let v = v.map_err(|e| StoreError::retryable(STORE, e))?;
                v.map(|v| states::decode(&v, STORE, c)).transpose()
            })
            .collect()
    }

    fn write(
        &mut self,
        states: &[ConversationState],
        checkpoints: &[(u32, u64)],
    ) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        for s in states {
            batch.put(state_key(s.conversation_id()), states::encoded(s));
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
    use super::*;

    #[test]
    fn states_and_checkpoints_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = RocksNotifyStore::open(dir.path()).unwrap();
            assert_eq!(s.checkpoint(2).unwrap(), None);
            s.write(&[ConversationState::new("c1")], &[(2, 9)]).unwrap();
        }
        let s = RocksNotifyStore::open(dir.path()).unwrap();
        assert_eq!(s.checkpoint(2).unwrap(), Some(9));
        let got = s.load_states(&["c1".into(), "c2".into()]).unwrap();
        assert_eq!(got[0].as_ref().unwrap().conversation_id(), "c1");
        assert!(got[1].is_none());
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
            s.db.put(LAYOUT_KEY, 3u32.to_be_bytes()).unwrap();
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
