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

/// The contract every [`InboxStore`] must meet, as functions each implementation's
/// tests call (RocksDB now, Cassandra later), so they are held to the same
/// answers: the in-memory [`super::ViewModel`] fed by the same fold.
pub mod conformance {
    use courier_schemas::json::parse_line;

    use super::super::effects::Position;
    use super::super::fold::{apply, route};
    use super::super::state::ConversationState;
    use super::super::view::ViewModel;
    use super::{InboxBatch, InboxStore, Versioned, inbox, messages};
    use std::collections::BTreeMap;

    /// Every event type, membership churn, a rule break, on two partitions.
    const STREAM: &[(u32, &str)] = &[
        (
            0,
            r#"{"type":"conversation_created","event_id":"e1","conversation_id":"c1","kind":"group","creator_id":"u1","member_ids":["u1","u2","u3"],"title":"t","at_ms":10}"#,
        ),
        (
            1,
            r#"{"type":"conversation_created","event_id":"e2","conversation_id":"c10","kind":"direct","creator_id":"u1","member_ids":["u1","u2"],"title":"","at_ms":11}"#,
        ),
        (
            0,
            r#"{"type":"message_sent","event_id":"e3","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"hello","at_ms":12}"#,
        ),
        (
            1,
            r#"{"type":"message_sent","event_id":"e4","conversation_id":"c10","message_id":"m1","sender_id":"u2","ciphertext":"AAEC","at_ms":13}"#,
        ),
        (
            0,
            r#"{"type":"receipt","event_id":"e5","conversation_id":"c1","message_id":"m1","user_id":"u2","status":"read","at_ms":14}"#,
        ),
        (
            0,
            r#"{"type":"members_removed","event_id":"e6","conversation_id":"c1","actor_id":"u1","user_ids":["u3"],"at_ms":15}"#,
        ),
        (
            0,
            r#"{"type":"message_sent","event_id":"e7","conversation_id":"c1","message_id":"m2","sender_id":"u3","text":"not a member","at_ms":16}"#,
        ),
        (
            0,
            r#"{"type":"message_sent","event_id":"e8","conversation_id":"c1","message_id":"m3","sender_id":"u2","text":"bye","at_ms":17}"#,
        ),
        (
            0,
            r#"{"type":"members_added","event_id":"e9","conversation_id":"c1","actor_id":"u2","user_ids":["u3","u4"],"at_ms":18}"#,
        ),
        (
            0,
            r#"{"type":"message_edited","event_id":"e10","conversation_id":"c1","message_id":"m3","editor_id":"u2","text":"welcome back","at_ms":19}"#,
        ),
        (
            0,
            r#"{"type":"message_sent","event_id":"e11","conversation_id":"c1","message_id":"m4","sender_id":"u4","text":"hi","at_ms":20}"#,
        ),
        (
            0,
            r#"{"type":"message_deleted","event_id":"e12","conversation_id":"c1","message_id":"m1","actor_id":"u1","at_ms":21}"#,
        ),
        (
            0,
            r#"{"type":"receipt","event_id":"e13","conversation_id":"c1","message_id":"m4","user_id":"u3","status":"delivered","at_ms":22}"#,
        ),
    ];

    /// Folds [`STREAM`] into batches of `per_batch` events the way the handler
    /// does (coalesced rows, changed states, checkpoints), and the reference view.
    fn batches(per_batch: usize) -> (Vec<InboxBatch>, ViewModel) {
        let mut states: BTreeMap<String, ConversationState> = BTreeMap::new();
        let mut next: BTreeMap<u32, u64> = BTreeMap::new();
        let mut view = ViewModel::new();
        let mut out = Vec::new();
        for chunk in STREAM.chunks(per_batch) {
            let mut batch = InboxBatch::default();
            let mut touched = Vec::new();
            for (partition, line) in chunk {
                let event = parse_line(line).expect("a valid line");
                let offset = *next.entry(*partition).or_insert(0);
                next.insert(*partition, offset + 1);
                let c = route(&event).expect("a conversation event").to_owned();
                let state = states
                    .entry(c.clone())
                    .or_insert_with(|| ConversationState::new(c.clone()));
                let outcome = apply(state, &event, Position::new(*partition, offset));
                view.apply(&outcome);
                let version = outcome.position;
                // Later rows of the same key replace earlier ones, as in the handler.
                for row in outcome.effects.messages {
                    batch.messages.retain(|m| {
                        (&m.row.conversation_id, &m.row.message_id)
                            != (&row.conversation_id, &row.message_id)
                    });
                    batch.messages.push(Versioned { version, row });
                }
                for row in outcome.effects.participants {
                    batch.participants.retain(|p| {
                        (&p.row.conversation_id, &p.row.user_id)
                            != (&row.conversation_id, &row.user_id)
                    });
                    batch.participants.push(Versioned { version, row });
                }
                for row in outcome.effects.inbox {
                    batch.inbox.retain(|i| {
                        (&i.row.user_id, &i.row.row.conversation_id)
                            != (&row.user_id, &row.row.conversation_id)
                    });
                    batch.inbox.push(Versioned { version, row });
                }
                if !touched.contains(&c) {
                    touched.push(c);
                }
            }
            batch.states = touched.iter().map(|c| states[c].clone()).collect();
            batch.checkpoints = next.iter().map(|(p, n)| (*p, *n)).collect();
            out.push(batch);
        }
        (out, view)
    }

    /// A store nothing was written to knows nothing.
    pub async fn empty<S: InboxStore>(store: &S) {
        assert_eq!(store.checkpoint(0).await.unwrap(), None);
        let states = store.load_states(&["c1".to_owned()]).await.unwrap();
        assert!(states[0].is_none());
        assert!(inbox(store, "u1").await.unwrap().is_empty());
        let e = messages(store, "c1", "u1").await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "u1 is not and never was a member of conversation c1"
        );
    }

    /// Writes the stream's batches.
    pub async fn write_stream<S: InboxStore>(store: &mut S, per_batch: usize) {
        for b in batches(per_batch).0 {
            store.write(&b).await.unwrap();
        }
    }

    /// What [`write_stream`] wrote reads back as the reference view answers, with
    /// its states and checkpoints; `c1` is not confused with `c10`.
    pub async fn reads_back<S: InboxStore>(store: &S) {
        let (_, view) = batches(1);
        for u in ["u1", "u2", "u3", "u4", "u5"] {
            assert_eq!(
                inbox(store, u).await.unwrap(),
                view.inbox(u),
                "inbox of {u}"
            );
            for c in ["c1", "c10", "c2"] {
                let got = messages(store, c, u).await.map_err(|e| e.to_string());
                let want = view.messages(c, u).map_err(|e| e.to_string());
                assert_eq!(got, want, "messages of {c} as {u}");
            }
        }
        assert_eq!(store.checkpoint(0).await.unwrap(), Some(11));
        assert_eq!(store.checkpoint(1).await.unwrap(), Some(2));
        assert_eq!(store.checkpoint(2).await.unwrap(), None);
        let ids = ["c10".to_owned(), "nope".to_owned(), "c1".to_owned()];
        let states = store.load_states(&ids).await.unwrap();
        assert!(states[1].is_none());
        let c1 = states[2].as_ref().expect("c1 has a state");
        assert_eq!(
            (c1.conversation_id(), c1.applied_offset()),
            ("c1", Some(10))
        );
        assert_eq!(c1.members(), ["u1", "u2", "u3", "u4"]);
        assert_eq!(c1.message_count(), 3);
        let c10 = states[0].as_ref().expect("c10 has a state");
        assert_eq!(c10.applied_offset(), Some(1));
    }
}
