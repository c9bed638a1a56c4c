//! The topic catalog as data, and Kafka's default key partitioner.
//!
//! Both backends place a keyed record on `murmur2(key) % partitions`, so a key lands
//! on the same partition embedded and on Kafka, and every event of a conversation
//! shares one ordered partition.

mod catalog;
mod partitioner;

pub use catalog::{Catalog, CatalogError, Cleanup, TopicSpec};
pub use partitioner::{murmur2, partition_for_key};

/// Logical name of the topic holding every conversation event.
pub const CONVERSATIONS: &str = "courier.conversations.v1";
/// Logical name of the compacted presence topic.
pub const PRESENCE: &str = "courier.presence.v1";
/// Logical name of the topic of push jobs made by the notifier.
pub const PUSH_JOBS: &str = "courier.push-jobs.v1";
/// Logical name of the topic of records no processor could apply.
pub const DEAD_LETTERS: &str = "courier.dead-letters.v1";
