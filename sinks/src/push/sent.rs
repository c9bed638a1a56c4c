//! The ids of push jobs that are done (sent or dead-lettered), in RocksDB, with
//! expiry: `j/ID` → outcome and time; `t/TIME ID` → nothing, an index by time so
//! expiry reads only what expires.

use std::path::Path;

use courier_processors::push::{Done, SentStore};
use courier_processors::store::StoreError;
use rocksdb::{DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions};

const STORE: &str = "push-sent/rocksdb";

/// Sent job ids on local disk.
pub struct RocksSentStore {
    db: DB,
}

fn id_key(job_id: &str) -> Vec<u8> {
    let mut k = b"j/".to_vec();
    k.extend_from_slice(job_id.as_bytes());
    k
}

fn time_key(at_ms: i64, job_id: &str) -> Vec<u8> {
    let mut k = b"t/".to_vec();
    // Offset binary so negative times still sort before positive ones.
    k.extend_from_slice(&((at_ms as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(job_id.as_bytes());
    k
}

impl RocksSentStore {
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let mut o = Options::default();
        o.create_if_missing(true);
        let db = DB::open(&o, dir)
            .map_err(|e| StoreError::fatal(STORE, format!("opening {}: {e}", dir.display())))?;
        Ok(RocksSentStore { db })
    }
}

impl SentStore for RocksSentStore {
    fn get(&self, job_id: &str) -> Result<Option<Done>, StoreError> {
        let v = self
            .db
            .get(id_key(job_id))
            .map_err(|e| StoreError::retryable(STORE, e))?;
        v.map(|v| match v.first() {
            Some(b's') => Ok(Done::Sent),
            Some(b'd') => Ok(Done::DeadLettered),
            _ => Err(StoreError::fatal(
                STORE,
                format!("the entry of job {job_id} is corrupt"),
            )),
        })
        .transpose()
    }

    fn put(&self, job_id: &str, done: Done, now_ms: i64) -> Result<(), StoreError> {
        let mut v = vec![match done {
            Done::Sent => b's',
            Done::DeadLettered => b'd',
        }];
        v.extend_from_slice(&now_ms.to_be_bytes());
        let mut batch = WriteBatch::default();
        batch.put(id_key(job_id), v);
        batch.put(time_key(now_ms, job_id), []);
        // The WAL write is what makes "sent" survive a SIGKILL of the process.
        self.db
            .write_opt(batch, &WriteOptions::default())
            .map_err(|e| StoreError::retryable(STORE, e))
    }

    fn expire(&self, before_ms: i64) -> Result<u64, StoreError> {
        let end = time_key(before_ms, "");
        let mut batch = WriteBatch::default();
        let mut n = 0;
        for item in self
            .db
            .iterator(IteratorMode::From(b"t/", Direction::Forward))
        {
            let (k, _) = item.map_err(|e| StoreError::retryable(STORE, e))?;
            if !k.starts_with(b"t/") || k.as_ref() >= end.as_slice() {
                break;
            }
            let id = std::str::from_utf8(&k[10..])
                .map_err(|_| StoreError::fatal(STORE, "a time index key is corrupt"))?;
            batch.delete(id_key(id));
            batch.delete(&k);
            n += 1;
        }
        if n > 0 {
            self.db
                .write(batch)
                .map_err(|e| StoreError::retryable(STORE, e))?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_ids_survive_reopen_and_expire_by_time() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = RocksSentStore::open(dir.path()).unwrap();
            s.put("a", Done::Sent, 100).unwrap();
            s.put("b", Done::DeadLettered, 200).unwrap();
            s.put("c", Done::Sent, 300).unwrap();
        }
        let s = RocksSentStore::open(dir.path()).unwrap();
        assert_eq!(s.get("a").unwrap(), Some(Done::Sent));
        assert_eq!(s.get("b").unwrap(), Some(Done::DeadLettered));
        assert_eq!(s.get("z").unwrap(), None);
        assert_eq!(s.expire(201).unwrap(), 2);
        assert_eq!(s.get("a").unwrap(), None);
        assert_eq!(s.get("b").unwrap(), None);
        assert_eq!(s.get("c").unwrap(), Some(Done::Sent));
        assert_eq!(s.expire(201).unwrap(), 0);
    }
}
