//! What the RocksDB stores share: opening a database that creates itself, the
//! layout marker, and the per-partition checkpoint the small stores (presence
//! table, notifier states) write in the same `WriteBatch` as their rows.

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

/// Key of a store's layout marker: its layout, u32 big-endian.
pub(crate) const LAYOUT_KEY: &[u8] = b"L";

/// The layout `db` is marked with (`None`: unmarked, a new store or one from
/// before markers), refusing a layout newer than `layout`, the newest this
/// build reads.
pub(crate) fn stored_layout(
    db: &DB,
    store: &'static str,
    dir: &Path,
    layout: u32,
) -> Result<Option<u32>, StoreError> {
    let Some(v) = db
        .get(LAYOUT_KEY)
        .map_err(|e| StoreError::retryable(store, e))?
    else {
        return Ok(None);
    };
    let stored = <[u8; 4]>::try_from(v.as_slice())
        .map(u32::from_be_bytes)
        .map_err(|_| StoreError::fatal(store, "the layout marker is corrupt"))?;
    if stored > layout {
        return Err(StoreError::fatal(
            store,
            format!(
                "{} has layout {stored}; this build reads layouts up to {layout} (run a newer \
                 courier, or rebuild the view)",
                dir.display()
            ),
        ));
    }
    Ok(Some(stored))
}

/// Marks `db` with `layout` unless it is already, after checking it can be read
/// ([`stored_layout`]): a store opened for writing may from now on hold what an
/// older layout's build cannot read, and that build must refuse it rather than
/// call it corrupt.
pub(crate) fn mark_layout(
    db: &DB,
    store: &'static str,
    dir: &Path,
    layout: u32,
) -> Result<(), StoreError> {
    if stored_layout(db, store, dir, layout)? != Some(layout) {
        db.put(LAYOUT_KEY, layout.to_be_bytes())
            .map_err(|e| StoreError::retryable(store, e))?;
    }
    Ok(())
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
