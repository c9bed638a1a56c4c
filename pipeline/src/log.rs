//! The `EventLog` abstraction: what every log backend (embedded RocksDB, Kafka) offers.
//!
//! The shape follows Kafka's model so both backends fit it without pretending: keyed
//! records land on partitions with monotonic offsets; consumer groups split
//! partitions and keep committed offsets; readers outside any group replay ranges.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

/// Record headers, in order. Names repeat in Kafka; we keep the same freedom.
pub type Headers = Vec<(String, Vec<u8>)>;

/// A record to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Partitioning key (murmur2 over these bytes picks the partition).
    pub key: Vec<u8>,
    /// The encoded event.
    pub value: Vec<u8>,
    /// Schema, version and trace-context headers.
    pub headers: Headers,
    /// Event time in ms since the epoch; seek-by-timestamp uses it, as Kafka's
    /// `CreateTime` does.
    pub timestamp_ms: i64,
}

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Appended {
    /// Partition the key mapped to.
    pub partition: u32,
    /// Offset assigned within that partition.
    pub offset: u64,
}

/// One partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// Logical topic name.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
}

impl TopicPartition {
    /// Shorthand constructor.
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.topic, self.partition)
    }
}

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// Logical topic name.
    pub topic: String,
    /// Partition it was read from.
    pub partition: u32,
    /// Its offset in that partition.
    pub offset: u64,
    /// Event time (ms) the producer gave it.
    pub timestamp_ms: i64,
    /// Partitioning key.
    pub key: Vec<u8>,
    /// Encoded event.
    pub value: Vec<u8>,
    /// Headers as appended.
    pub headers: Headers,
}

impl ConsumedRecord {
    /// The partition this record belongs to.
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(self.topic.clone(), self.partition)
    }

    /// The value of the first header with this name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// A position in a partition, as users name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The first record still in the log.
    Earliest,
    /// The end: only records appended from now on.
    Latest,
    /// An exact offset.
    Offset(u64),
    /// The first record whose timestamp is at or after this time (ms).
    Timestamp(i64),
}

/// What a group consumer's poll returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerEvent {
    /// These partitions are now ours. Reading starts at the group's committed offset
    /// (or the earliest record) unless the caller seeks before the next poll.
    Assigned(Vec<TopicPartition>),
    /// These partitions are no longer ours; commits for them are refused from now on.
    Revoked(Vec<TopicPartition>),
    /// Records from owned partitions, in offset order per partition. Empty when the
    /// poll timed out with nothing new.
    Records(Vec<ConsumedRecord>),
}

/// Errors of a log backend.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The topic is not in the catalog.
    #[error("unknown topic `{0}` (see `courier topics list`)")]
    UnknownTopic(String),
    /// A partition outside the topic.
    #[error("topic `{topic}` has {partitions} partitions; there is no partition {partition}")]
    UnknownPartition {
        /// Topic name.
        topic: String,
        /// Partition asked for.
        partition: u32,
        /// How many it has.
        partitions: u32,
    },
    /// A commit or seek for a partition this consumer does not own (any more).
    #[error("partition {0} is not assigned to this consumer (it was revoked or never owned)")]
    NotOwned(TopicPartition),
    /// Storage or broker failure; the message says which operation.
    #[error("{op}: {detail}")]
    Backend {
        /// What was being done.
        op: &'static str,
        /// The backend's own words.
        detail: String,
    },
    /// A stored record that does not decode: the log is corrupted or from the future.
    #[error("corrupt record at {tp} offset {offset}: {detail}")]
    Corrupt {
        /// Where.
        tp: TopicPartition,
        /// Which offset.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// The consumer was closed.
    #[error("consumer is closed")]
    Closed,
}

impl LogError {
    /// Wraps a backend error with what was being done.
    pub fn backend(op: &'static str, e: impl fmt::Display) -> Self {
        LogError::Backend {
            op,
            detail: e.to_string(),
        }
    }
}

/// The log: append keyed records, read ranges, and run consumer groups.
///
/// Implementations are shared (`Arc<dyn EventLog>`) between producers, consumers and
/// replays in one process.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// "embedded" or "kafka", for logs and `topics list`.
    fn backend(&self) -> &'static str;

    /// Number of partitions of a topic.
    fn partitions(&self, topic: &str) -> Result<u32, LogError>;

    /// Appends records to a topic, each on the partition its key maps to, and
    /// returns where each landed, in input order. When this returns `Ok` every
    /// record is durable as the backend defines it (embedded: in RocksDB's WAL, so
    /// it survives the process being killed; Kafka: acknowledged by all in-sync
    /// replicas). On `Err` the embedded backend has written none of the batch.
    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Appended>, LogError>;

    /// `(low, high)` watermarks: the first offset still stored and the offset the
    /// next appended record will get.
    async fn watermarks(&self, topic: &str, partition: u32) -> Result<(u64, u64), LogError>;

    /// Resolves a position to an offset (the high watermark when a timestamp is
    /// later than every record).
    async fn resolve(
        &self,
        topic: &str,
        partition: u32,
        position: Position,
    ) -> Result<u64, LogError>;

    /// Reads up to `max` records from one partition starting at `from`, outside any
    /// consumer group (replays never move a group). Waits up to `timeout` when there
    /// is nothing at `from` yet; returns an empty vector then.
    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<ConsumedRecord>, LogError>;

    /// The group's committed offsets (next offset to read) for every partition of a
    /// topic; `None` where the group never committed.
    async fn committed(&self, group: &str, topic: &str) -> Result<Vec<Option<u64>>, LogError>;

    /// Joins a consumer group subscribed to these topics.
    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn GroupConsumer>, LogError>;
}

/// A member of a consumer group.
///
/// Rebalances are reported by `poll` and happen only inside it, so a caller that
/// processes and commits a batch before polling again never has work in flight for
/// a partition it is losing.
#[async_trait]
pub trait GroupConsumer: Send {
    /// Waits up to `timeout` for a rebalance or for up to `max` records.
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<ConsumerEvent, LogError>;

    /// Partitions currently owned.
    fn assignment(&self) -> Vec<TopicPartition>;

    /// Next offset this consumer will read from an owned partition.
    fn position(&self, tp: &TopicPartition) -> Option<u64>;

    /// Moves the read position of an owned partition.
    async fn seek(&mut self, tp: &TopicPartition, offset: u64) -> Result<(), LogError>;

    /// Commits next-offsets-to-read for owned partitions; refuses partitions not
    /// owned (a revoked partition's new owner may already be ahead).
    async fn commit(&mut self, offsets: &[(TopicPartition, u64)]) -> Result<(), LogError>;

    /// Records between this consumer's position and the end, per owned partition,
    /// from what the consumer already knows (no round trip).
    fn lag(&self) -> Vec<(TopicPartition, u64)>;

    /// Leaves the group cleanly; its partitions go to the remaining members.
    async fn close(self: Box<Self>) -> Result<(), LogError>;
}
