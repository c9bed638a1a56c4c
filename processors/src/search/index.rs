//! The port the search processor writes through: one shard per partition of
//! `courier.conversations.v1`, each holding documents, the fold's conversation
//! states and the shard's next offset, committed together.

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
    /// The conversations whose state the batch changed. The index writes their
    /// latest versions, read from [`LatestStates`], with the commit that covers
    /// this write: it never holds a version of its own, so the fold changes the
    /// processor's states in place (holding one per write made the fold copy a
    /// state whenever it changed it again before the commit, and a state holds
    /// every message of its conversation: a third of the processor's time at
    /// 1,000,000 messages).
    pub changed: Vec<String>,
    /// The offset to resume from once this write is durable.
    pub next_offset: u64,
    /// The log timestamp of the newest record of this partition in the batch:
    /// how far behind the log the processor is, which bounds how fresh a query
    /// can be anyway (an index may defer its commit the longer, the further
    /// behind).
    pub newest_record_ms: i64,
}

/// The processor's conversation states, as they are after the last write it
/// made: what an index commits for the conversations its writes changed.
pub trait LatestStates: Sync {
    /// The latest state of `conversation` (on `partition`); `None` if the
    /// processor does not have it, which for a changed conversation is a bug.
    fn latest(&self, partition: u32, conversation: &str) -> Option<&ConversationState>;
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

    /// Closes the shard of `partition` (revoked), committing its pending work
    /// first so that its next owner starts from everything handled.
    async fn close_shard(
        &mut self,
        partition: u32,
        latest: &dyn LatestStates,
    ) -> Result<(), StoreError>;

    /// The stored states of `conversations` (all on the open shard `partition`),
    /// in the same order; `None` for one never stored.
    async fn load_states(
        &mut self,
        partition: u32,
        conversations: &[String],
    ) -> Result<Vec<Option<ConversationState>>, StoreError>;

    /// Applies a batch, committing now or later (see the contract above);
    /// `latest` holds the batch's states too.
    async fn write(
        &mut self,
        batch: &SearchBatch,
        latest: &dyn LatestStates,
    ) -> Result<(), StoreError>;

    /// Commits every shard with pending work.
    async fn flush(&mut self, latest: &dyn LatestStates) -> Result<(), StoreError>;
}
