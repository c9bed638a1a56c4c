//! Search: the fold of `courier.conversations.v1` into full-text index operations
//! (docs/DESIGN.md, "Search for u").
//!
//! The rules — membership as of the send, validity, duplicates, edits, deletes —
//! are the inbox fold's ([`crate::inbox::apply`]), reused rather than restated, so
//! the two views can never disagree about what happened. This module only maps an
//! applied [`Outcome`](crate::inbox::Outcome) to [`IndexOp`]s ([`index_ops`]): a
//! message with text becomes a document keyed by (conversation, message) carrying
//! the users who see it; an edit replaces it; a delete removes it; ciphertext and
//! media never become documents.
//!
//! The fold's per-conversation state lives in the index itself (the port,
//! [`SearchIndex`]), so one commit of a shard covers its documents, the states
//! and the shard's next offset: after a crash, documents, states and position
//! agree by construction.

pub mod conformance;
mod handler;
mod index;
mod ops;

pub use handler::SearchProcessor;
pub use index::{LatestStates, SearchBatch, SearchIndex, ShardWrite};
pub use ops::{IndexOp, SearchDoc, index_ops};

// The query side (`courier_sinks::search`) makes them; the type lives here,
// beside the fold it answers from, so the gateway can document it without
// linking a store.
/// One search result, in the exact JSON shape of `courier search --json` and
/// of the gateway's `GET /v1/search`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchHit {
    /// The message.
    pub message_id: String,
    /// Its conversation.
    pub conversation_id: String,
    /// Who sent it.
    pub sender_id: String,
    /// The current text.
    pub text: String,
    /// `at_ms` of its `message_sent`.
    pub sent_at_ms: i64,
    /// BM25 relevance within the message's shard (higher is better).
    pub score: f32,
    /// The best fragment of the text, matches wrapped in `<b>…</b>`, HTML-escaped.
    pub snippet: String,
}
