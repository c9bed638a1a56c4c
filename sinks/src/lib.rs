//! courier's sinks: adapters that implement the processors' ports for real stores
//! and services (RocksDB, Cassandra, tantivy, the push provider over HTTP), and the
//! config sections that say how to reach them.
//!
//! Architecture invariant: sinks hold no domain rules; they store and load what the
//! processors hand them, atomically where the port says so.

pub mod config;
pub mod inbox;
pub mod notify;
pub mod presence;
pub mod push;
mod rocks;
pub mod search;
mod states;
pub mod testing;
pub mod tls;
