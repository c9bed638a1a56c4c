//! The ids of push jobs that are done (sent or dead-lettered), in RocksDB, with
//! expiry: `j/ID` → outcome and time; `t/TIME ID` → nothing, an index by time so
//! expiry reads only what expires.
//!
//! A job's time is that of its newest record: a record older than the stored
//! one changes nothing, and a newer one moves the job's index entry (the port's
//! contract, `courier_processors::push::conformance`). An index entry that
//! outlived its record's time (left by builds before this rule) forgets nothing
//! newer: expiry goes by the time in `j/ID`.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;

use courier_processors::push::{Done, SentStore};
use courier_processors::store::StoreError;
use rocksdb::{DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions};

const STORE: &str = "push-sent/rocksdb";

/// Sent job ids on local disk.
pub struct RocksSentStore {
    db: DB,
    /// Held across the read and the write of `put` and `expire`: concurrent
    /// deliveries share the store, and two records of one job must not both
    /// read the same old one.
    writing: Mutex<()>,
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

/// The outcome and time of a job's entry.
fn entry(v: &[u8], job_id: &str) -> Result<(Done, i64), StoreError> {
    let corrupt = || StoreError::fatal(STORE, format!("the entry of job {job_id} is corrupt"));
    let done = match v.first() {
        Some(b's') => Done::Sent,
        Some(b'd') => Done::DeadLettered,
        _ => return Err(corrupt()),
    };
    let at_ms = v
        .get(1..9)
        .and_then(|b| b.try_into().ok())
        .map(i64::from_be_bytes)
        .ok_or_else(corrupt)?;
    Ok((done, at_ms))
}

impl RocksSentStore {
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let mut o = Options::default();
        o.create_if_missing(true);
        let db = DB::open(&o, dir)
            .map_err(|e| StoreError::fatal(STORE, format!("opening {}: {e}", dir.display())))?;
        Ok(RocksSentStore {
            db,
            writing: Mutex::new(()),
        })
    }

    /// The stored outcome and time of a job.
    fn stored(&self, job_id: &str) -> Result<Option<(Done, i64)>, StoreError> {
        self.db
            .get(id_key(job_id))
            .map_err(|e| StoreError::retryable(STORE, e))?
            .map(|v| entry(&v, job_id))
            .transpose()
    }
}

impl SentStore for RocksSentStore {
    fn get(&self, job_id: &str) -> Result<Option<Done>, StoreError> {
        Ok(self.stored(job_id)?.map(|(done, _)| done))
    }

    fn put(&self, job_id: &str, done: Done, now_ms: i64) -> Result<(), StoreError> {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let mut batch = WriteBatch::default();
        if let Some((_, stored_ms)) = self.stored(job_id)? {
            if stored_ms > now_ms {
                // An older record: the newer one stays, outcome and time.
                return Ok(());
            }
            // The replaced record's index entry goes with it.
            batch.delete(time_key(stored_ms, job_id));
        }
        let mut v = vec![match done {
            Done::Sent => b's',
            Done::DeadLettered => b'd',
        }];
        v.extend_from_slice(&now_ms.to_be_bytes());
        batch.put(id_key(job_id), v);
        batch.put(time_key(now_ms, job_id), []);
        // The WAL write is what makes "sent" survive a SIGKILL of the process.
        self.db
            .write_opt(batch, &WriteOptions::default())
            .map_err(|e| StoreError::retryable(STORE, e))
    }

    fn expire(&self, before_ms: i64) -> Result<u64, StoreError> {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let end = time_key(before_ms, "");
        let mut batch = WriteBatch::default();
        let mut forgotten = HashSet::new();
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
            batch.delete(&k);
            // The record itself only if its own time is before `before_ms`.
            if !forgotten.contains(id)
                && self.stored(id)?.is_some_and(|(_, at_ms)| at_ms < before_ms)
            {
                batch.delete(id_key(id));
                forgotten.insert(id.to_owned());
            }
        }
        if !batch.is_empty() {
            self.db
                .write(batch)
                .map_err(|e| StoreError::retryable(STORE, e))?;
        }
        Ok(forgotten.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use courier_processors::push::conformance::SentStoreFactory;

    use super::*;

    struct RocksFactory;

    impl SentStoreFactory for RocksFactory {
        type Place = tempfile::TempDir;
        type Store = RocksSentStore;
        fn place(&self) -> tempfile::TempDir {
            tempfile::tempdir().unwrap()
        }
        fn open(&self, place: &tempfile::TempDir) -> RocksSentStore {
            RocksSentStore::open(place.path()).unwrap()
        }
    }

    courier_processors::sent_store_conformance!(RocksFactory);

    /// A store written before records were versioned holds an index entry per
    /// record of a job: the one of an older record forgets nothing newer.
    #[test]
    fn index_entries_of_replaced_records_forget_nothing_newer() {
        let dir = tempfile::tempdir().unwrap();
        let s = RocksSentStore::open(dir.path()).unwrap();
        s.put("a", Done::Sent, 500).unwrap();
        s.db.put(time_key(100, "a"), []).unwrap();
        s.put("b", Done::Sent, 150).unwrap();
        s.db.put(time_key(120, "b"), []).unwrap();
        assert_eq!(s.expire(200).unwrap(), 1, "b, once");
        assert_eq!(s.get("a").unwrap(), Some(Done::Sent));
        assert_eq!(s.get("b").unwrap(), None);
        let index =
            s.db.prefix_iterator(b"t/")
                .take_while(|kv| kv.as_ref().is_ok_and(|(k, _)| k.starts_with(b"t/")))
                .count();
        assert_eq!(index, 1, "only a's entry at 500 is left");
        assert_eq!(s.expire(501).unwrap(), 1);
    }
}
