//! courier's pipeline: the `EventLog` abstraction, the processor runner, replay,
//! configuration, metrics and shutdown plumbing, and, behind the features
//! `embedded` and `kafka`, the two log backends.
//!
//! Architecture invariant: nothing here knows about a particular processor, view
//! store, the command line or HTTP; processors plug in through [`runner::Handler`].
//! Without its features the crate links no backend (neither RocksDB nor
//! librdkafka): the processors depend on it that way, and CI checks it.

pub mod alloc;
pub mod config;
pub mod conformance;
pub mod dead_letter;
#[cfg(feature = "embedded")]
pub mod embedded;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod log;
pub mod metrics;
pub mod producer;
pub mod replay;
pub mod runner;
pub mod secret;
pub mod shutdown;
pub mod testing;

#[cfg(feature = "embedded")]
pub use embedded::EmbeddedLog;
#[cfg(feature = "kafka")]
pub use kafka::{KafkaLog, KafkaSettings};
pub use log::{
    Appended, ConsumedRecord, ConsumerEvent, EventLog, GroupConsumer, GroupDescription,
    GroupMember, Headers, LogError, Position, Record, RecordHeaders, TopicPartition,
};
