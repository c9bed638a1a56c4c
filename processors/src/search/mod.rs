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
