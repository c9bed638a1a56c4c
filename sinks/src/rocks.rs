//! What the small RocksDB stores (presence table, notifier states) share: opening
//! a database that creates itself, and the per-partition checkpoint they write in
//! the same `WriteBatch` as their rows.

use std::path::Path;

use courier_processors::store::StoreError;
use rocksdb::{DB, Options};

/// Opens (creating) a database in `dir`; `store` names it in errors.
pub(crate) fn open(dir: &Path, store: &'static str) -> Result<DB, StoreError> {
    let mut o = Options::default();
    o.create_if_missing(true);
    DB::open(&o, dir)
        .map_err(|e| StoreError::fatal(store, format!("opening {}: {e}", dir.display())))
}

/// Key of a partition's checkpoint (the next offset to read).
pub(crate) fn checkpoint_key(partition: u32) -> Vec<u8> {
    let mut k = b"cp/".to_vec();
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

/// The checkpoint of `partition`, if one was written.
pub(crate) fn checkpoint(
    db: &DB,
    store: &'static str,
    partition: u32,
) -> Result<Option<u64>, StoreError> {
    let v = db
        .get(checkpoint_key(partition))
        .map_err(|e| StoreError::retryable(store, e))?;
    v.map(|v| {
        v.as_slice()
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| {
                StoreError::fatal(
                    store,
                    format!("checkpoint of partition {partition} is corrupt"),
                )
            })
    })
    .transpose()
}
