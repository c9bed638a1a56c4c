//! The query side of courier's search, apart from any store: the shard schema
//! ([`Fields`]) and a user's query, bounded, checked and parsed into a tantivy
//! query ([`Queries::parse`]).
//!
//! A crate of its own so that the fuzz workspace can link it: courier-sinks,
//! which reads and writes the shards, links RocksDB, whose C++ a fuzz build would
//! instrument and recompile. No I/O here.

mod exclusions;
mod parse;
mod schema;

pub use parse::{MAX_QUERY_BYTES, MAX_QUERY_DEPTH, Queries, SearchError};
pub use schema::Fields;
