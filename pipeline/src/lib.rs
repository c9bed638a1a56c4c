//! courier's pipeline: the `EventLog` abstraction and its embedded and Kafka backends, the
//! processor runner, replay, configuration, metrics and shutdown plumbing.
//!
//! Architecture invariant: nothing here knows about a particular processor, view
//! store, the command line or HTTP; processors plug in through [`runner::Handler`].

pub mod alloc;
pub mod config;
pub mod conformance;
pub mod dead_letter;
pub mod embedded;
pub mod kafka;
pub mod log;
pub mod metrics;
pub mod producer;
pub mod replay;
pub mod runner;
pub mod shutdown;
pub mod testing;

pub use config::Config;
pub use embedded::EmbeddedLog;
pub use kafka::{KafkaLog, KafkaSettings};
pub use log::{
    Appended, ConsumedRecord, ConsumerEvent, EventLog, GroupConsumer, Headers, LogError, Position,
    Record, RecordHeaders, TopicPartition,
};
