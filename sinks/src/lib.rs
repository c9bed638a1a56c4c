//! courier's sinks: adapters that implement the processors' storage ports for real
//! stores (RocksDB now; Cassandra, tantivy, HTTP push and Kafka as they arrive).
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
