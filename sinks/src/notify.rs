//! The notifier's fold state in RocksDB: one state per conversation and the next
//! offset per partition of `courier.conversations.v1`, written in one `WriteBatch`.

use std::path::Path;

use courier_processors::inbox::ConversationState;
use courier_processors::notify::NotifyStore;
use courier_processors::store::StoreError;
use rocksdb::{DB, Options, WriteBatch};

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

fn checkpoint_key(partition: u32) -> Vec<u8> {
    let mut k = b"cp/".to_vec();
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

impl RocksNotifyStore {
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let mut o = Options::default();
        o.create_if_missing(true);
        let db = DB::open(&o, dir)
            .map_err(|e| StoreError::fatal(STORE, format!("opening {}: {e}", dir.display())))?;
        Ok(RocksNotifyStore { db })
    }
}

impl NotifyStore for RocksNotifyStore {
    fn checkpoint(&self, partition: u32) -> Result<Option<u64>, StoreError> {
        let v = self
            .db
            .get(checkpoint_key(partition))
            .map_err(|e| StoreError::retryable(STORE, e))?;
        v.map(|v| {
            v.as_slice()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| {
                    StoreError::fatal(
                        STORE,
                        format!("checkpoint of partition {partition} is corrupt"),
                    )
                })
        })
        .transpose()
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
            batch.put(checkpoint_key(*p), next.to_be_bytes());
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
