//! The notifier's fold state in RocksDB: one state per conversation and the next
//! offset per partition of `courier.conversations.v1`, written in one `WriteBatch`.

use std::path::Path;

use courier_processors::inbox::ConversationState;
use courier_processors::notify::NotifyStore;
use courier_processors::store::StoreError;
use rocksdb::{DB, WriteBatch};

use crate::rocks;

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

impl RocksNotifyStore {
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Ok(RocksNotifyStore {
            db: rocks::open(dir, STORE)?,
        })
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
                v.map(|v| {
                    serde_json::from_slice(&v).map_err(|e| {
                        StoreError::fatal(
                            STORE,
                            format!("state of conversation {c} is corrupt: {e}"),
                        )
                    })
                })
                .transpose()
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
            let v = serde_json::to_vec(s)
                .map_err(|e| StoreError::fatal(STORE, format!("encoding a state: {e}")))?;
            batch.put(state_key(s.conversation_id()), v);
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
}
