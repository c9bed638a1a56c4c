//! The inbox and history views in RocksDB (the embedded default; Cassandra is in
//! [`cassandra`]): the
//! [`InboxStore`] port, with each batch's rows, states and checkpoints in one
//! `WriteBatch`, and the generations that `courier rebuild inbox` switches between.
//!
//! The key layout is in `keys`. Reads are prefix scans: a user's inbox, a
//! conversation's messages (in log order) and its participants.

pub mod baseline;
pub mod cassandra;
pub mod cassandra_generations;
pub mod cql;
mod generations;
mod keys;

pub use cassandra::{CassandraInboxStore, CassandraSettings};
pub use cassandra_generations::CassandraGenerations;
pub use generations::Generations;

use std::path::Path;

use async_trait::async_trait;
use courier_processors::inbox::store::{ConversationRows, InboxBatch, InboxStore};
use courier_processors::inbox::{ConversationState, InboxRow};
use courier_processors::store::StoreError;
use rocksdb::{DB, Direction, IteratorMode, Options, WriteBatch};

use crate::states;

const STORE: &str = "inbox/rocksdb";

/// The inbox views of one generation on local disk.
///
/// Its methods block on local disk I/O inside `async fn`s: RocksDB calls are
/// short, and the runner drives one batch at a time, so there is nothing for a
/// blocking call to starve.
pub struct RocksInboxStore {
    db: DB,
}

impl RocksInboxStore {
    /// Opens (creating) the store in `dir` for the processor.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let mut o = Options::default();
        o.create_if_missing(true);
        let db = DB::open(&o, dir)
            .map_err(|e| StoreError::fatal(STORE, format!("opening {}: {e}", dir.display())))?;
        // A store of layout 1 (JSON states) is read as it is.
        crate::rocks::mark_layout(&db, STORE, dir, keys::LAYOUT)?;
        Ok(RocksInboxStore { db })
    }

    /// Opens the store in `dir` for queries, beside a processor that may be
    /// writing it (a read-only open takes no lock and sees every batch written
    /// before it opened). `None` when there is no store there yet.
    pub fn open_read_only(dir: &Path) -> Result<Option<Self>, StoreError> {
        if !dir.join("CURRENT").exists() {
            return Ok(None);
        }
        let db = DB::open_for_read_only(&Options::default(), dir, false)
            .map_err(|e| StoreError::fatal(STORE, format!("opening {}: {e}", dir.display())))?;
        crate::rocks::stored_layout(&db, STORE, dir, keys::LAYOUT)?;
        Ok(Some(RocksInboxStore { db }))
    }

    /// The rows under a prefix, in key order.
    fn rows<T: serde::de::DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<T>, StoreError> {
        let mut rows = Vec::new();
        for kv in self
            .db
            .iterator(IteratorMode::From(prefix, Direction::Forward))
        {
            let (k, v) = kv.map_err(|e| StoreError::retryable(STORE, e))?;
            if !k.starts_with(prefix) {
                break;
            }
            rows.push(keys::row(&k, &v)?);
        }
        Ok(rows)
    }
}

#[async_trait]
impl InboxStore for RocksInboxStore {
    async fn checkpoint(&self, partition: u32) -> Result<Option<u64>, StoreError> {
        self.db
            .get(keys::checkpoint(partition))
            .map_err(|e| StoreError::retryable(STORE, e))?
            .map(|v| keys::u64_value(&v, || format!("checkpoint of partition {partition}")))
            .transpose()
    }

    async fn load_states(
        &self,
        conversations: &[String],
    ) -> Result<Vec<Option<ConversationState>>, StoreError> {
        states::load_parts(&self.db, STORE, &keys::STATE_PARTS, conversations)
    }

    async fn write(&mut self, batch: &InboxBatch) -> Result<(), StoreError> {
        // Rows, states and checkpoints in one WriteBatch: after a crash either the
        // whole batch is there or none of it, so there is never a row ahead of its
        // state and the version of a row is only kept to make rewrites identical.
        let mut wb = WriteBatch::default();
        for m in &batch.messages {
            let r = &m.row;
            wb.put(
                keys::message(&r.conversation_id, r.position.offset),
                keys::versioned(m.version, r)?,
            );
        }
        for p in &batch.participants {
            let r = &p.row;
            wb.put(
                keys::participant(&r.conversation_id, &r.user_id),
                keys::versioned(p.version, r)?,
            );
        }
        for i in &batch.inbox {
            wb.put(
                keys::inbox(&i.row.user_id, &i.row.row.conversation_id),
                keys::versioned(i.version, &i.row.row)?,
            );
        }
        for s in &batch.states {
            states::put_parts(&mut wb, &keys::STATE_PARTS, s);
        }
        for (p, next) in &batch.checkpoints {
            wb.put(keys::checkpoint(*p), next.to_be_bytes());
        }
        self.db
            .write(wb)
            .map_err(|e| StoreError::retryable(STORE, e))
    }

    async fn inbox_rows(&self, user: &str) -> Result<Vec<InboxRow>, StoreError> {
        self.rows(&keys::inbox_of(user))
    }

    async fn conversation_rows(&self, conversation: &str) -> Result<ConversationRows, StoreError> {
        Ok(ConversationRows {
            participants: self.rows(&keys::participants_of(conversation))?,
            messages: self.rows(&keys::messages_of(conversation))?,
        })
    }
}

#[cfg(test)]
mod tests;
