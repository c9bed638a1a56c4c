//! The search view in tantivy: one index (shard) per partition of
//! `courier.conversations.v1` under a generation directory (`ROOT/gN/pNN/`).
//!
//! Split like every sink: `documents` is pure (schema, operations → documents,
//! the commit payload), `writer` does the processor's I/O (the
//! [`SearchIndex`](courier_processors::search::SearchIndex) port), `query` answers
//! users ([`SearchShards::search`]). The schema and the parsing of a user's
//! query are courier-search-query's (re-exported here), which links no RocksDB
//! so that it can be fuzzed. Generations are the inbox's
//! ([`crate::inbox::Generations`]).

pub mod baseline;
mod documents;
pub mod metrics;
mod query;
mod snapshots;
mod writer;

#[cfg(test)]
mod tests;

pub use courier_search_query::{MAX_QUERY_BYTES, MAX_QUERY_DEPTH, Queries, SearchError};
pub use documents::Documents;
pub use documents::{Fields, LAYOUT, Payload};
pub use query::{SearchHit, SearchShards, merge};
pub use snapshots::{Snapshot, SnapshotStore};
pub use writer::{TantivySearchIndex, WRITER_MEMORY, committed_offsets, shard_dir};

/// The store name in errors.
const STORE: &str = "search/tantivy";
