//! The `EventLog` abstraction: what every log backend (embedded RocksDB, Kafka) offers.
//!
//! The shape follows Kafka's model so both backends fit it without pretending: keyed
//! records land on partitions with monotonic offsets; consumer groups split
//! partitions and keep committed offsets; readers outside any group replay ranges.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

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

/// The largest record any backend accepts, in bytes of key, value and headers:
/// librdkafka's default `message.max.bytes` (1 MB), which leaves room for the
/// framing under the broker's default limit of 1 MiB per batch. The embedded log
/// holds to it too, so a file that one backend takes is taken by the other.
pub const MAX_RECORD_BYTES: usize = 1_000_000;

impl Record {
    /// Its size as [`MAX_RECORD_BYTES`] counts it.
    pub fn size(&self) -> usize {
        self.key.len()
            + self.value.len()
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }

    /// Refuses a record larger than [`MAX_RECORD_BYTES`].
    pub fn check_size(&self) -> Result<(), LogError> {
        let size = self.size();
        if size > MAX_RECORD_BYTES {
            return Err(LogError::TooLarge { size });
        }
        Ok(())
    }
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
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
///
/// Built for reading many records cheaply: the topic name is shared, and key, value
/// and headers are `Bytes` views that may share one buffer with the other records
/// of the same read (a record kept alive keeps that buffer alive). Copy out what
/// must outlive a batch for long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// Logical topic name (one allocation per topic, shared by its records).
    pub topic: Arc<str>,
    /// Partition it was read from.
    pub partition: u32,
    /// Its offset in that partition.
    pub offset: u64,
    /// Event time (ms) the producer gave it.
    pub timestamp_ms: i64,
    /// Partitioning key.
    pub key: Bytes,
    /// Encoded event.
    pub value: Bytes,
    /// Headers as appended, kept encoded until asked for.
    pub headers: RecordHeaders,
}

impl ConsumedRecord {
    /// The partition this record belongs to.
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(&*self.topic, self.partition)
    }

    /// The value of the first header with this name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.first(name)
    }
}

/// Appends the block form of `count` pairs to `out`; nothing for no pairs.
pub(crate) fn encode_block<'a>(
    out: &mut Vec<u8>,
    count: usize,
    pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) {
    if count == 0 {
        return;
    }
    put_varint(out, count as u64);
    for (name, v) in pairs {
        put_varint(out, name.len() as u64);
        out.extend_from_slice(name);
        put_varint(out, v.len() as u64);
        out.extend_from_slice(v);
    }
}

/// Headers of a read record in their encoded block form:
/// `varint count | (varint len | name | varint len | value)*` (the embedded log
/// stores exactly this block). Parsing into owned pairs would cost two allocations
/// per header per record; most readers look up one or two names, so this keeps the
/// bytes and walks them on demand. The block is validated when built.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RecordHeaders {
    /// Empty means no headers (count omitted).
    raw: Bytes,
}

impl RecordHeaders {
    /// Encodes owned pairs (for backends that do not store the block form).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Self {
        let pairs: Vec<_> = pairs.into_iter().collect();
        let mut out = Vec::new();
        encode_block(
            &mut out,
            pairs.len(),
            pairs.into_iter().map(|(n, v)| (n.as_bytes(), v)),
        );
        RecordHeaders {
            raw: Bytes::from(out),
        }
    }

    /// A block encoded by [`encode_block`] into a buffer the caller shares with
    /// other fields (one allocation per record instead of one per field). Its
    /// names are taken as the broker has them, unchecked: one that is not UTF-8
    /// (a foreign producer's) never matches a lookup by name and `iter` skips
    /// it, so nothing downstream sees it as text.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))] // read by the Kafka backend
    pub(crate) fn from_encoded(raw: Bytes) -> Self {
        RecordHeaders { raw }
    }

    /// Checks that `raw` is exactly one well-formed block with UTF-8 names.
    pub fn from_block(raw: Bytes) -> Result<Self, String> {
        let end = header_block_len(&raw, 0)?;
        if end != raw.len() {
            return Err("trailing bytes after the headers".into());
        }
        Ok(RecordHeaders { raw })
    }

    /// A block the caller has already validated (the embedded codec does, while
    /// unframing a record), so it is not walked twice.
    #[cfg_attr(not(any(feature = "embedded", feature = "kafka")), allow(dead_code))] // for the backends
    pub(crate) fn from_validated_block(raw: Bytes) -> Self {
        RecordHeaders { raw }
    }

    /// The encoded block (empty for no headers).
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// `(name, value)` pairs in order, names as bytes; names may repeat.
    fn iter_raw(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let buf: &[u8] = &self.raw;
        let mut pos = 0;
        let n = if buf.is_empty() {
            0
        } else {
            get_varint(buf, &mut pos).unwrap_or(0)
        };
        // The block was validated when built, so these reads cannot fail; stopping
        // early would only hide headers, never invent them.
        (0..n).map_while(move |_| {
            let name = get_slice(buf, &mut pos).ok()?;
            let v = get_slice(buf, &mut pos).ok()?;
            Some((name, v))
        })
    }

    /// `(name, value)` pairs in order; names may repeat.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.iter_raw()
            .filter_map(|(n, v)| Some((std::str::from_utf8(n).ok()?, v)))
    }

    /// The value of the first header with this name.
    pub fn first(&self, name: &str) -> Option<&[u8]> {
        // Compares bytes: a name that is not UTF-8 cannot equal `name`.
        self.iter_raw()
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// The value of the last header with this name (Kafka's `lastHeader`).
    pub fn last(&self, name: &str) -> Option<&[u8]> {
        self.iter_raw()
            .filter(|(n, _)| *n == name.as_bytes())
            .last()
            .map(|(_, v)| v)
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.iter_raw().count()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Owned pairs, as appended.
    pub fn to_vec(&self) -> Headers {
        self.iter()
            .map(|(n, v)| (n.to_owned(), v.to_vec()))
            .collect()
    }
}

impl fmt::Debug for RecordHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.iter()
                    .map(|(n, v)| (n, String::from_utf8_lossy(v).into_owned())),
            )
            .finish()
    }
}

impl From<&Headers> for RecordHeaders {
    fn from(h: &Headers) -> Self {
        RecordHeaders::from_pairs(h.iter().map(|(n, v)| (n.as_str(), v.as_slice())))
    }
}

/// Appends the header block of `headers` (the form [`RecordHeaders`] reads).
#[cfg_attr(not(any(feature = "embedded", feature = "kafka")), allow(dead_code))] // for the backends
pub(crate) fn encode_header_block(out: &mut Vec<u8>, headers: &Headers) {
    put_varint(out, headers.len() as u64);
    for (name, v) in headers {
        put_varint(out, name.len() as u64);
        out.extend_from_slice(name.as_bytes());
        put_varint(out, v.len() as u64);
        out.extend_from_slice(v);
    }
}

/// Validates the header block starting at `pos` and returns where it ends.
pub(crate) fn header_block_len(buf: &[u8], mut pos: usize) -> Result<usize, String> {
    if pos == buf.len() {
        return Ok(pos);
    }
    let n = get_varint(buf, &mut pos)?;
    for _ in 0..n {
        std::str::from_utf8(get_slice(buf, &mut pos)?).map_err(|_| "header name is not UTF-8")?;
        get_slice(buf, &mut pos)?;
    }
    Ok(pos)
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
pub(crate) fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    // Lengths and counts are almost always below 128: one byte, no loop.
    if let Some(&b) = buf.get(*pos)
        && b < 0x80
    {
        *pos += 1;
        return Ok(u64::from(b));
    }
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".into())
}

#[inline]
pub(crate) fn get_slice<'a>(buf: &'a [u8], pos: &mut usize) -> Result<&'a [u8], String> {
    let len = usize::try_from(get_varint(buf, pos)?).map_err(|_| "length overflows")?;
    let end = pos.checked_add(len).ok_or("length overflows")?;
    let s = buf.get(*pos..end).ok_or("truncated field")?;
    *pos = end;
    Ok(s)
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

/// A live member of a consumer group, as the log knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// Its id in the group: Kafka's member id; embedded, `PID-N` (the process
    /// holding the log and the member's number in it).
    pub member_id: String,
    /// The client's id (Kafka's `client.id`; embedded: `courier-group`).
    pub client_id: String,
    /// The host it runs on, as the coordinator saw it.
    pub host: String,
    /// The partitions it owns now (logical topics).
    pub assignment: Vec<TopicPartition>,
}

impl fmt::Display for GroupMember {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} on {})",
            self.member_id, self.client_id, self.host
        )
    }
}

/// A consumer group: its live members and its committed offsets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupDescription {
    /// Logical name.
    pub group: String,
    /// The coordinator's word for it: Kafka's (`Stable`, `Empty`,
    /// `PreparingRebalance`, …); embedded: `Stable` with members, `Empty`
    /// without, `Unknown` when the process holding the log publishes none.
    pub state: String,
    /// Its live members.
    pub members: Vec<GroupMember>,
    /// Next offset to read per partition, for the partitions it committed (of
    /// catalog topics), in order.
    pub committed: Vec<(TopicPartition, u64)>,
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
    /// A client the backend declared unusable (librdkafka's fatal errors):
    /// trying again cannot help; the process must start over.
    #[error("{op}: {detail}")]
    Fatal {
        /// What was being done.
        op: &'static str,
        /// The backend's own words.
        detail: String,
    },
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
    /// Moving a group's offsets while it has members: they would overwrite the
    /// new offsets with their next commit, or read on from where they are.
    #[error(
        "group {group} has {} live member(s): {}; stop them first (a group's offsets move only while it is empty)",
        members.len(),
        members.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    GroupNotEmpty {
        /// The group (logical).
        group: String,
        /// Its members.
        members: Vec<GroupMember>,
    },
    /// A record over [`MAX_RECORD_BYTES`]; nothing of its append was written.
    #[error(
        "a record of {size} bytes is over the log's limit of {MAX_RECORD_BYTES} bytes (key, value and headers)"
    )]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// An append failed part of the way: exactly these records (by their index in
    /// the append) were acknowledged, the others were not written. A backend
    /// whose appends are atomic never returns this.
    #[error("{cause} ({} of {total} record(s) were acknowledged before the failure)", acknowledged.len())]
    PartlyAppended {
        /// (index in the append, where it landed) of every acknowledged record.
        acknowledged: Vec<(usize, Appended)>,
        /// How many records the append had.
        total: usize,
        /// Why the rest failed.
        cause: Box<LogError>,
    },
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

    /// The consumer groups this log knows (with live members or committed
    /// offsets), logical names, sorted. A log that cannot list them says so.
    async fn groups(&self) -> Result<Vec<String>, LogError> {
        Err(LogError::backend(
            "list consumer groups",
            format!("the {} log cannot list its groups", self.backend()),
        ))
    }

    /// A group's live members (client id, host, assignment) and committed
    /// offsets. A group the log does not know is `Empty` with nothing committed.
    async fn describe_group(&self, group: &str) -> Result<GroupDescription, LogError> {
        Err(LogError::backend(
            "describe a consumer group",
            format!("the {} log cannot describe group {group}", self.backend()),
        ))
    }

    /// Sets a group's committed offsets (next offset to read) for these
    /// partitions, as if its members had committed them. Refused with
    /// [`LogError::GroupNotEmpty`] while the group has live members, checked
    /// where the log can do so atomically with the write (embedded: under the
    /// coordinator's lock; Kafka: the broker refuses a commit from outside the
    /// generation of a group with members).
    async fn reset_committed(
        &self,
        group: &str,
        offsets: &[(TopicPartition, u64)],
    ) -> Result<(), LogError> {
        let _ = offsets;
        Err(LogError::backend(
            "move committed offsets",
            format!(
                "the {} log cannot move the offsets of group {group}",
                self.backend()
            ),
        ))
    }
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
