//! The port the search processor writes through: one shard per partition of
//! `courier.conversations.v1`, each holding documents, the fold's conversation
//! states and the shard's next offset, committed together.

use std::sync::Arc;

use async_trait::async_trait;

use super::ops::IndexOp;
use crate::inbox::ConversationState;
use crate::store::StoreError;

/// What one batch changes in one shard.
#[derive(Debug, Clone)]
pub struct ShardWrite {
    /// The partition (and so the shard).
    pub partition: u32,
    /// Document operations, in log order.
    pub ops: Vec<IndexOp>,
    /// The conversation states the batch changed, as they are after it. Shared
    /// with the processor's cache rather than copied: an index that defers its
    /// commit holds them until then, and the fold copies a state only if it
    /// changes it again before that (`Arc::make_mut`).
    pub states: Vec<Arc<ConversationState>>,
    /// The offset to resume from once this write is durable.
    pub next_offset: u64,
    /// The log timestamp of the newest record of this partition in the batch:
    /// how far behind the log the processor is, which bounds how fresh a query
    /// can be anyway (an index may defer its commit the longer, the further
    /// behind).
    pub newest_record_ms: i64,
}

/// One batch, per shard.
#[derive(Debug, Clone, Default)]
pub struct SearchBatch {
    /// Each shard the batch touched, at most once.
    pub shards: Vec<ShardWrite>,
}

/// A full-text index split in shards by partition.
///
/// Contract: each shard commits atomically — after a crash a shard holds, for
/// some prefix of the writes it was given, all of their documents, states and
/// last `next_offset`, and nothing of the rest. `write` may defer the commit
/// (an index commits by interval, because a commit costs far more than a
/// document); `flush` and `close_shard` commit what is pending. Shards are
/// independent: a failed write may have committed some shards and not others,
/// which is harmless because each carries its own offset. A failed write that
/// lost deferred work the processor was told was written is *fatal*: only a
/// restart, which seeks to the shards' commits, redoes it.
#[async_trait]
pub trait SearchIndex: Send {
    /// Opens (creating) the shard of `partition` for writing; returns the offset
    /// its last commit says to resume from, `None` for a shard that was never
    /// committed.
    async fn open_shard(&mut self, partition: u32) -> Result<Option<u64>, StoreError>;

    /// Closes the shard of `partition` (revoked); uncommitted work is dropped.
    async fn close_shard(&mut self, partition: u32) -> Result<(), StoreError>;

    /// The stored states of `conversations` (all on the open shard `partition`),
    /// in the same order; `None` for one never stored.
    async fn load_states(
        &mut self,
        partition: u32,
        conversations: &[String],
    ) -> Result<Vec<Option<ConversationState>>, StoreError>;

    /// Applies a batch, committing now or later (see the contract above).
    async fn write(&mut self, batch: &SearchBatch) -> Result<(), StoreError>;

    /// Commits every shard with pending work.
    async fn flush(&mut self) -> Result<(), StoreError>;
}
