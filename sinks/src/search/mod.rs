//! The search view in tantivy: one index (shard) per partition of
//! `courier.conversations.v1` under a generation directory (`ROOT/gN/pNN/`).
//!
//! Split like every sink: `documents` is pure (schema, operations → documents,
//! the commit payload), `writer` does the processor's I/O (the
//! [`SearchIndex`](courier_processors::search::SearchIndex) port), `query` answers
//! users ([`SearchShards::search`]). Generations are the inbox's
//! ([`crate::inbox::Generations`]).

pub mod baseline;
mod documents;
pub mod metrics;
mod query;
mod writer;

#[cfg(test)]
mod tests;

pub use documents::{Fields, LAYOUT, Payload};
pub use query::{MAX_QUERY_BYTES, MAX_QUERY_DEPTH, SearchError, SearchHit, SearchShards, merge};
pub use writer::{TantivySearchIndex, WRITER_MEMORY, committed_offsets, shard_dir};

/// The store name in errors.
const STORE: &str = "search/tantivy";
