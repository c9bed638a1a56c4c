//! The presence table in RocksDB: one row per user, and per-partition checkpoints
//! written in the same batch as the rows.

use std::path::Path;

use courier_processors::presence::{PresenceRow, PresenceStore, Status};
use courier_processors::store::StoreError;
use rocksdb::{DB, WriteBatch};

use crate::rocks;

const STORE: &str = "presence/rocksdb";

/// Presence rows on local disk.
pub struct RocksPresenceStore {
    db: DB,
}

fn row_key(user: &str) -> Vec<u8> {
    let mut k = b"u/".to_vec();
    k.extend_from_slice(user.as_bytes());
    k
}

impl RocksPresenceStore {
    /// Opens (creating) the table in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Ok(RocksPresenceStore {
            db: rocks::open(dir, STORE)?,
        })
    }

    /// Opens the table read-only, beside the processor that writes it (a
    /// read-only handle sees what was written before it was opened); `None`
    /// while nothing has created it yet.
    pub fn open_read_only(dir: &Path) -> Result<Option<Self>, StoreError> {
        if !dir.join("CURRENT").exists() {
            return Ok(None);
        }
        let db = DB::open_for_read_only(&rocksdb::Options::default(), dir, false)
            .map_err(|e| StoreError::retryable(STORE, format!("opening {}: {e}", dir.display())))?;
        Ok(Some(RocksPresenceStore { db }))
    }
}

impl PresenceStore for RocksPresenceStore {
    fn checkpoint(&self, partition: u32) -> Result<Option<u64>, StoreError> {
        rocks::checkpoint(&self.db, STORE, partition)
    }

    fn write(
        &mut self,
        rows: &[PresenceRow],
        checkpoints: &[(u32, u64)],
    ) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        for r in rows {
            let mut v = Vec::with_capacity(9);
            v.push(match r.status {
                Status::Online => 1,
                Status::Offline => 2,
            });
            v.extend_from_slice(&r.last_seen_ms.to_be_bytes());
            batch.put(row_key(&r.user_id), v);
        }
        // Checkpoints go in the same batch: rows and position land together or not at all.
        for (p, next) in checkpoints {
            batch.put(rocks::checkpoint_key(*p), next.to_be_bytes());
        }
        self.db
            .write(batch)
            .map_err(|e| StoreError::retryable(STORE, e))
    }

    fn get(&self, user_id: &str) -> Result<Option<PresenceRow>, StoreError> {
        let Some(v) = self
            .db
            .get(row_key(user_id))
            .map_err(|e| StoreError::retryable(STORE, e))?
        else {
            return Ok(None);
        };
        let status = match v.first() {
            Some(1) => Status::Online,
            Some(2) => Status::Offline,
            _ => {
                return Err(StoreError::fatal(
                    STORE,
                    format!("row of {user_id} is corrupt"),
                ));
            }
        };
        let last_seen_ms = v
            .get(1..9)
            .and_then(|b| b.try_into().ok())
            .map(i64::from_be_bytes)
            .ok_or_else(|| StoreError::fatal(STORE, format!("row of {user_id} is corrupt")))?;
        Ok(Some(PresenceRow {
            user_id: user_id.to_string(),
            status,
            last_seen_ms,
        }))
    }
}

#[cfg(test)]
mod tests {
    use courier_processors::presence::conformance::PresenceStoreFactory;

    use super::*;

    struct RocksFactory;

    impl PresenceStoreFactory for RocksFactory {
        type Place = tempfile::TempDir;
        type Store = RocksPresenceStore;
        fn place(&self) -> tempfile::TempDir {
            tempfile::tempdir().unwrap()
        }
        fn open(&self, place: &tempfile::TempDir) -> RocksPresenceStore {
            RocksPresenceStore::open(place.path()).unwrap()
        }
    }

    courier_processors::presence_store_conformance!(RocksFactory);

    /// The gateway's read: beside the writer, nothing before it exists.
    #[test]
    fn a_read_only_open_sees_what_the_writer_wrote_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("presence");
        assert!(
            RocksPresenceStore::open_read_only(&table)
                .unwrap()
                .is_none()
        );
        let mut writer = RocksPresenceStore::open(&table).unwrap();
        let row = PresenceRow {
            user_id: "u1".into(),
            status: Status::Online,
            last_seen_ms: 7,
        };
        writer.write(std::slice::from_ref(&row), &[(0, 1)]).unwrap();
        let reader = RocksPresenceStore::open_read_only(&table).unwrap().unwrap();
        assert_eq!(reader.get("u1").unwrap(), Some(row));
        assert_eq!(reader.get("u2").unwrap(), None);
    }
}
