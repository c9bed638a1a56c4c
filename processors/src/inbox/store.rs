//! The port of the inbox processor: what it needs from a view store (load states,
//! write a batch of rows, states and checkpoints), and the two queries, derived
//! from stored rows by the pure functions of [`super::view`].
//!
//! Durability contract of [`InboxStore::write`], so the views are "effectively
//! once" (docs/DESIGN.md) on any store:
//! - every row is an upsert versioned by the [`Position`] of the event that
//!   produced it: the same event always writes the same row. A store that writes
//!   rows apart from states must never let an older version replace a newer one
//!   (Cassandra: `USING TIMESTAMP` from the position), so rewriting a suffix of
//!   the log after a crash gives the same rows. An atomic store needs no check:
//!   its rows never get ahead of its states, and the fold writes nothing for an
//!   event at or below a state's applied offset;
//! - a store that cannot write the batch atomically (Cassandra) makes every row
//!   durable first, then the states, then the checkpoints. A crash in between
//!   leaves rows *ahead* of the states, never behind: replaying from the stored
//!   states rewrites identical rows. A store that can (RocksDB: one `WriteBatch`)
//!   simply writes all of it at once.

use async_trait::async_trait;

use super::effects::{InboxRow, InboxUpdate, MessageRow, ParticipantRow, Position};
use super::state::ConversationState;
use super::view::{self, MessageView, NotAMember};
use crate::store::StoreError;

/// A row with the position of the event that wrote it (its version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// Position of the event that produced this version of the row.
    pub version: Position,
    /// The row.
    pub row: T,
}

/// Everything one batch of events changes, coalesced: at most one row per key
/// (the latest position wins), the new state of every conversation the batch
/// touched, and the next offset to apply per partition.
#[derive(Debug, Clone, Default)]
pub struct InboxBatch {
    /// Message rows, keyed by (`conversation_id`, `message_id`).
    pub messages: Vec<Versioned<MessageRow>>,
    /// Participant rows, keyed by (`conversation_id`, `user_id`).
    pub participants: Vec<Versioned<ParticipantRow>>,
    /// Inbox rows, keyed by (`user_id`, `row.conversation_id`).
    pub inbox: Vec<Versioned<InboxUpdate>>,
    /// Conversation states after the batch; versioned by their applied offset.
    pub states: Vec<ConversationState>,
    /// (partition, next offset to apply) of `courier.conversations.v1`.
    pub checkpoints: Vec<(u32, u64)>,
}

/// The rows the messages query derives its answer from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationRows {
    /// Every user who is or was a member, with spans and watermarks.
    pub participants: Vec<ParticipantRow>,
    /// Every message, in any order.
    pub messages: Vec<MessageRow>,
}

/// What the inbox processor and its queries need from a view store.
#[async_trait]
pub trait InboxStore: Send + Sync {
    /// Next offset to apply for a partition of `courier.conversations.v1`, as
    /// stored with the views; `None` when nothing of it was ever applied here.
    async fn checkpoint(&self, partition: u32) -> Result<Option<u64>, StoreError>;

    /// The stored states of these conversations, in the same order; `None` for a
    /// conversation never seen. Takes many so a remote store can read them
    /// concurrently.
    async fn load_states(
        &self,
        conversations: &[String],
    ) -> Result<Vec<Option<ConversationState>>, StoreError>;

    /// A partition's checkpoint and the stored states of these conversations,
    /// read so that the states cover at least what the checkpoint says: replaying
    /// the log from the checkpoint onto them gives the current states.
    ///
    /// Reading the checkpoint first and the states after it does that on a live
    /// store, where what is read later never goes back in time. A store read
    /// through separate snapshots (a read-only RocksDB open per call, beside the
    /// processor that writes it) must read both from one snapshot instead: a
    /// later open can see less than an earlier one while the writer recovers.
    async fn states_at_checkpoint(
        &self,
        partition: u32,
        conversations: &[String],
    ) -> Result<(Option<u64>, Vec<Option<ConversationState>>), StoreError> {
        let checkpoint = self.checkpoint(partition).await?;
        let states = self.load_states(conversations).await?;
        Ok((checkpoint, states))
    }

    /// Makes a batch durable, following the module's durability contract (rows,
    /// then states, then checkpoints, unless all at once).
    async fn write(&mut self, batch: &InboxBatch) -> Result<(), StoreError>;

    /// Every inbox row of a user, in any order.
    async fn inbox_rows(&self, user: &str) -> Result<Vec<InboxRow>, StoreError>;

    /// The participant and message rows of a conversation.
    async fn conversation_rows(&self, conversation: &str) -> Result<ConversationRows, StoreError>;
}

/// Why the messages query has no answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The user never belonged to the conversation.
    #[error(transparent)]
    NotAMember(#[from] NotAMember),
}

/// The inbox query: one row per conversation `user` is or was a member of, newest
/// activity first (ties by `conversation_id`).
pub async fn inbox<S: InboxStore + ?Sized>(
    store: &S,
    user: &str,
) -> Result<Vec<InboxRow>, StoreError> {
    let mut rows = store.inbox_rows(user).await?;
    view::sort_inbox(&mut rows);
    Ok(rows)
}

/// The messages query: the messages of `conversation` visible to `as_user`,
/// oldest first.
pub async fn messages<S: InboxStore + ?Sized>(
    store: &S,
    conversation: &str,
    as_user: &str,
) -> Result<Vec<MessageView>, QueryError> {
    let rows = store.conversation_rows(conversation).await?;
    Ok(view::visible_messages(
        conversation,
        as_user,
        &rows.participants,
        &rows.messages,
    )?)
}

pub mod conformance;
