//! courier's processors: deterministic folds of events into view models.
//!
//! Architecture invariant: a processor never does I/O. Each defines, as traits
//! (ports), what it needs from storage; `sinks` implements them for RocksDB,
//! Cassandra, tantivy and HTTP. Nothing here knows which log or store it runs on.

pub mod inbox;
pub mod metrics;
pub mod notify;
pub mod presence;
pub mod push;
pub mod search;
pub mod store;
