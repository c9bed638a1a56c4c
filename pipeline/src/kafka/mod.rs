//! The Kafka backend of [`EventLog`] (rdkafka / librdkafka), for the distributed mode.
//!
//! - `append` uses one idempotent producer (`acks=all`, lz4, a short linger) and sets
//!   the partition of every record itself with [`partition_for_key`] (Kafka's Java
//!   murmur2; librdkafka's own default partitioner is a different hash).
//! - Group-less reads (`read`) go through [`reader`]: cached assign-only consumers
//!   that never join a group nor commit.
//! - Consumer groups are [`consumer::KafkaConsumer`]s: manual commits,
//!   cooperative-sticky rebalancing, rebalance callbacks bridged into `poll`.
//! - Topic creation and drift checks are in [`admin`]; listing and describing
//!   groups, and moving an empty group's offsets, in [`groups`].
//!
//! Every name the API takes or returns is LOGICAL (`courier.conversations.v1`, group
//! `courier.inbox`); the namespace (`{ns}.`) is added underneath, so several test
//! runs or environments share one cluster without seeing each other.
//!
//! The catalog's topics are created on first use (or checked, if they exist): a log
//! whose topics exist with a different partition count refuses to work, because
//! murmur2 would place keys elsewhere than every other client does.

mod admin;
mod consumer;
mod groups;
pub mod perf;
mod reader;
pub mod stats;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use courier_topics::{Catalog, TopicSpec, partition_for_key};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

pub use admin::{Drift, TopicAction, TopicReport};

use crate::log::{
    Appended, ConsumedRecord, EventLog, GroupConsumer, GroupDescription, LogError, Position,
    Record, RecordHeaders, TopicPartition,
};
use crate::metrics;
use bytes::Bytes;

pub use crate::config::DEFAULT_BROKERS;

/// Time allowed to metadata, watermark, offset and admin requests.
const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach Kafka and how to name things on it. `Debug` masks every
/// property whose name says password.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Prefix of every topic and consumer group (`{ns}.courier.conversations.v1`);
    /// empty for none.
    pub namespace: String,
    /// Replication factor of the topics courier creates.
    pub replication_factor: i32,
    /// Extra librdkafka properties for every client, applied after courier's own
    /// defaults (so they can override them), e.g. `security.protocol`.
    pub properties: BTreeMap<String, String>,
    /// `group.instance.id` of this process's group members: static membership,
    /// so a member restarted within the session timeout takes its partitions
    /// back without a rebalance. One per process (ids are per group, and Kafka
    /// fences a second member with the same id); `None`: dynamic members.
    pub instance_id: Option<String>,
    /// `statistics.interval.ms` of the producer and the group members, whose
    /// reports become the `courier_kafka_*` gauges ([`stats`]); 0: none.
    pub statistics_interval_ms: u64,
}

impl fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let shown = if k.contains("password") {
                    "********"
                } else {
                    v.as_str()
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaSettings")
            .field("brokers", &self.brokers)
            .field("namespace", &self.namespace)
            .field("replication_factor", &self.replication_factor)
            .field("properties", &properties)
            .field("instance_id", &self.instance_id)
            .field("statistics_interval_ms", &self.statistics_interval_ms)
            .finish()
    }
}

impl KafkaSettings {
    /// Settings for these brokers, no namespace, replication factor 1.
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaSettings {
            brokers: brokers.into(),
            namespace: String::new(),
            replication_factor: 1,
            properties: BTreeMap::new(),
            instance_id: None,
            statistics_interval_ms: crate::config::DEFAULT_STATISTICS_INTERVAL_MS,
        }
    }

    /// The same settings in another namespace.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }
}

/// Logical ⇄ Kafka names under a namespace.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    prefix: String,
    /// Kafka topic → logical name, shared by every record read from that topic.
    logical: HashMap<String, Arc<str>>,
}

impl Names {
    fn new(namespace: &str, catalog: &Catalog) -> Self {
        let prefix = if namespace.is_empty() {
            String::new()
        } else {
            format!("{namespace}.")
        };
        let logical = catalog
            .topics()
            .iter()
            .map(|t| (format!("{prefix}{}", t.name), Arc::from(t.name.as_str())))
            .collect();
        Names { prefix, logical }
    }

    /// The Kafka topic of a logical topic.
    pub(crate) fn topic(&self, logical: &str) -> String {
        format!("{}{logical}", self.prefix)
    }

    /// The Kafka consumer group of a logical group.
    pub(crate) fn group(&self, logical: &str) -> String {
        format!("{}{logical}", self.prefix)
    }

    /// The logical name of a Kafka consumer group of this namespace; `None` for
    /// one of another namespace. Without a namespace, only groups named
    /// `courier.…` (every group courier makes) count as this one's: the others
    /// may be another namespace's (`{ns}.courier.…`) or not courier's at all.
    pub(crate) fn logical_group<'a>(&self, kafka_group: &'a str) -> Option<&'a str> {
        if self.prefix.is_empty() {
            return kafka_group.starts_with("courier.").then_some(kafka_group);
        }
        kafka_group
            .strip_prefix(&self.prefix)
            .filter(|g| !g.is_empty())
    }

    /// The logical name of a Kafka topic of this namespace's catalog.
    pub(crate) fn logical(&self, kafka_topic: &str) -> Option<&str> {
        self.logical.get(kafka_topic).map(|s| &**s)
    }

    /// As [`Names::logical`], as the shared name records carry.
    pub(crate) fn logical_shared(&self, kafka_topic: &str) -> Option<Arc<str>> {
        self.logical.get(kafka_topic).cloned()
    }
}

/// The last Kafka topic a reader or consumer mapped to its logical name:
/// consecutive records are nearly always of one topic, and hashing the name for
/// every record was ~6% of a consumer's CPU (release profile). Names come as
/// bytes: only a new name is checked as UTF-8 (rust-rdkafka's `topic()` checks
/// it for every message).
#[derive(Default)]
pub(crate) struct TopicMemo(Option<(Box<[u8]>, Arc<str>)>);

impl TopicMemo {
    fn logical(&mut self, names: &Names, kafka_topic: &[u8]) -> Option<Arc<str>> {
        if let Some((kafka, logical)) = &self.0
            && **kafka == *kafka_topic
        {
            return Some(logical.clone());
        }
        let logical = names.logical_shared(std::str::from_utf8(kafka_topic).ok()?)?;
        self.0 = Some((kafka_topic.into(), logical.clone()));
        Some(logical)
    }
}

/// The Kafka topic name of a fetched message, as bytes.
fn topic_name<'a>(m: &'a BorrowedMessage<'_>) -> &'a [u8] {
    use rdkafka::bindings as rd;
    // SAFETY: a fetched message holds a reference on its topic handle, whose
    // name is a NUL-terminated string that lives as long as the handle.
    unsafe {
        let rkt = (*m.ptr()).rkt;
        if rkt.is_null() {
            return &[];
        }
        let name = rd::rd_kafka_topic_name(rkt);
        if name.is_null() {
            return &[];
        }
        std::ffi::CStr::from_ptr(name).to_bytes()
    }
}

/// Forwards librdkafka's logs and global errors to `tracing`, and the
/// statistics of a client made with an exporter to its gauges.
#[derive(Clone, Default)]
pub(crate) struct LogContext {
    stats: Option<Arc<stats::Exporter>>,
}

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        forward_log(level, fac, log_message);
    }

    // Overridden even without an exporter: rdkafka's default logs the whole
    // report at info, for a client given `statistics.interval.ms` through
    // `[kafka.properties]`.
    fn stats(&self, statistics: rdkafka::statistics::Statistics) {
        if let Some(e) = &self.stats {
            e.export(&statistics);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", error = %error, reason, "librdkafka error");
    }
}

impl ConsumerContext for LogContext {}

pub(crate) fn forward_log(level: RDKafkaLogLevel, fac: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", fac, "{message}")
        }
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", fac, "{message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
    }
}

pub(crate) struct Inner {
    settings: KafkaSettings,
    catalog: Catalog,
    names: Names,
    producer: FutureProducer<LogContext>,
    /// A consumer outside any group for metadata, watermarks and offsets-for-times.
    meta: Arc<BaseConsumer<LogContext>>,
    admin: rdkafka::admin::AdminClient<LogContext>,
    readers: reader::Readers,
    /// One client per group asked about by `committed` (it never joins the group).
    offset_clients: Mutex<HashMap<String, Arc<BaseConsumer<LogContext>>>>,
    /// Set once the catalog's topics are known to exist with the right partitions.
    ready: tokio::sync::OnceCell<()>,
}

impl Inner {
    /// The settings the log was made with.
    pub(crate) fn settings(&self) -> &KafkaSettings {
        &self.settings
    }

    /// A client config with courier's defaults for a role, then the user's properties.
    pub(crate) fn client_config(&self, role: &str, defaults: &[(&str, &str)]) -> ClientConfig {
        client_config(&self.settings, role, defaults)
    }

    fn spec(&self, topic: &str) -> Result<&TopicSpec, LogError> {
        self.catalog
            .get(topic)
            .ok_or_else(|| LogError::UnknownTopic(topic.to_string()))
    }

    /// Checks a topic and partition against the catalog; returns the Kafka topic.
    fn check(&self, topic: &str, partition: u32) -> Result<String, LogError> {
        let spec = self.spec(topic)?;
        if partition >= spec.partitions {
            return Err(LogError::UnknownPartition {
                topic: topic.to_string(),
                partition,
                partitions: spec.partitions,
            });
        }
        Ok(self.names.topic(topic))
    }

    pub(crate) fn names(&self) -> &Names {
        &self.names
    }

    fn offset_client(&self, group: &str) -> Result<Arc<BaseConsumer<LogContext>>, LogError> {
        let kafka_group = self.names.group(group);
        let mut clients = self
            .offset_clients
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&kafka_group) {
            return Ok(c.clone());
        }
        let c: BaseConsumer<LogContext> = self
            .client_config(
                "offsets",
                &[("group.id", &kafka_group), ("enable.auto.commit", "false")],
            )
            .create_with_context(LogContext::default())
            .map_err(|e| {
                LogError::backend(
                    "create a Kafka client for committed offsets",
                    format!("group {kafka_group}: {e}"),
                )
            })?;
        let c = Arc::new(c);
        clients.insert(kafka_group, c.clone());
        Ok(c)
    }
}

/// Runs a blocking librdkafka call off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    op: &'static str,
    f: impl FnOnce() -> Result<T, LogError> + Send + 'static,
) -> Result<T, LogError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LogError::backend(op, format!("the blocking task failed: {e}")))?
}

/// Retries a blocking request for up to [`OP_TIMEOUT`]: right after a topic was
/// created, or while a leader moves, brokers answer `NotLeaderForPartition` or
/// `UnknownTopicOrPartition` for a moment. The last error is returned.
pub(crate) fn retrying<T>(
    what: &'static str,
    mut f: impl FnMut() -> KafkaResult<T>,
) -> KafkaResult<T> {
    let deadline = Instant::now() + OP_TIMEOUT;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(what, error = %e, "Kafka request failed; retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Converts a fetched message of a catalog topic; `None` for a topic outside it.
pub(crate) fn to_record(
    names: &Names,
    topics: &mut TopicMemo,
    m: &BorrowedMessage<'_>,
) -> Option<ConsumedRecord> {
    let topic = topics.logical(names, topic_name(m))?;
    // One copy of the message into one buffer that key, value and headers then
    // view: a consumed record costs one allocation, not one per field (the consume
    // path's largest cost after librdkafka itself).
    let (key, value) = (m.key().unwrap_or_default(), m.payload().unwrap_or_default());
    let mut buf = Vec::with_capacity(key.len() + value.len() + 96);
    buf.extend_from_slice(key);
    buf.extend_from_slice(value);
    encode_headers(&mut buf, m);
    let buf = Bytes::from(buf);
    let value_end = key.len() + value.len();
    Some(ConsumedRecord {
        topic,
        partition: u32::try_from(m.partition()).ok()?,
        offset: u64::try_from(m.offset()).ok()?,
        timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
        key: buf.slice(..key.len()),
        value: buf.slice(key.len()..value_end),
        headers: RecordHeaders::from_encoded(buf.slice(value_end..)),
    })
}

/// Appends the header block of a fetched message to `out`.
///
/// Through librdkafka's C API rather than rust-rdkafka's `Headers`, which
/// checks every header name as UTF-8 on every read: with three headers a record
/// that check was the consume path's largest cost of its own. Names are copied
/// as bytes and compared as bytes later (see `RecordHeaders::from_encoded`).
fn encode_headers(out: &mut Vec<u8>, m: &BorrowedMessage<'_>) {
    use rdkafka::bindings as rd;
    let mut hdrs: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
    // SAFETY: `m` is a live message; librdkafka parses its headers once and
    // keeps them owned by the message, so `hdrs` stays valid while `m` is
    // borrowed here.
    let n = unsafe {
        if rd::rd_kafka_message_headers(m.ptr(), &mut hdrs)
            != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
            || hdrs.is_null()
        {
            return;
        }
        rd::rd_kafka_header_cnt(hdrs)
    };
    let start = out.len();
    let mut written = 0;
    crate::log::encode_block(
        out,
        n,
        (0..n)
            // SAFETY: `hdrs` is `m`'s, and `m` outlives `out`'s use of it.
            .map_while(|i| unsafe { header_at(hdrs, i) })
            .inspect(|_| written += 1),
    );
    if written != n {
        // librdkafka refused an index below its own count (never seen): encode
        // what it gives, so the count always matches the pairs.
        out.truncate(start);
        // SAFETY: as above.
        let pairs: Vec<_> = (0..n)
            .filter_map(|i| unsafe { header_at(hdrs, i) })
            .collect();
        crate::log::encode_block(out, pairs.len(), pairs);
    }
}

/// Header `i` of a message's parsed headers, as bytes.
///
/// # Safety
/// `hdrs` comes from `rd_kafka_message_headers` of a message the caller
/// borrows for at least `'a`.
unsafe fn header_at<'a>(
    hdrs: *const rdkafka::bindings::rd_kafka_headers_t,
    i: usize,
) -> Option<(&'a [u8], &'a [u8])> {
    use rdkafka::bindings as rd;
    use std::ffi::{CStr, c_char, c_void};
    let (mut name, mut value, mut size): (*const c_char, *const c_void, usize) =
        (std::ptr::null(), std::ptr::null(), 0);
    // SAFETY: per the contract, name and value point into the header list of
    // a message borrowed for 'a (a NUL-terminated name, `size` bytes of value).
    unsafe {
        if rd::rd_kafka_header_get_all(hdrs, i, &mut name, &mut value, &mut size)
            != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
            || name.is_null()
        {
            return None;
        }
        let value: &[u8] = if value.is_null() {
            &[]
        } else {
            std::slice::from_raw_parts(value.cast::<u8>(), size)
        };
        Some((CStr::from_ptr(name).to_bytes(), value))
    }
}

/// The Kafka log. Cheap to clone; clones share the clients.
#[derive(Clone)]
pub struct KafkaLog {
    inner: Arc<Inner>,
}

impl fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaLog")
            .field("brokers", &self.inner.settings.brokers)
            .field("namespace", &self.inner.settings.namespace)
            .finish()
    }
}

impl KafkaLog {
    /// Creates the clients without talking to Kafka yet; the catalog's topics are
    /// created or checked on first use. Fails only on invalid client settings.
    pub fn new(settings: KafkaSettings, catalog: &Catalog) -> Result<Self, LogError> {
        let names = Names::new(&settings.namespace, catalog);
        let interval = settings.statistics_interval_ms.to_string();
        let mut defaults = vec![
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("compression.type", "lz4"),
            ("linger.ms", "5"),
            // An append reports failure after this long instead of retrying
            // for librdkafka's default five minutes.
            ("message.timeout.ms", "30000"),
        ];
        let mut context = LogContext::default();
        if settings.statistics_interval_ms > 0 {
            defaults.push(("statistics.interval.ms", &interval));
            context.stats = Some(Arc::new(stats::Exporter::new(
                "producer",
                "",
                names.clone(),
            )));
        }
        let producer: FutureProducer<LogContext> = client_config(&settings, "producer", &defaults)
            .create_with_context(context)
            .map_err(|e| {
                LogError::backend(
                    "create the Kafka producer",
                    format!("{}: {e}", settings.brokers),
                )
            })?;
        let meta: BaseConsumer<LogContext> =
            client_config(&settings, "meta", &[("enable.auto.commit", "false")])
                .create_with_context(LogContext::default())
                .map_err(|e| {
                    LogError::backend(
                        "create the Kafka metadata client",
                        format!("{}: {e}", settings.brokers),
                    )
                })?;
        let admin = client_config(&settings, "admin", &[])
            .create_with_context(LogContext::default())
            .map_err(|e| {
                LogError::backend(
                    "create the Kafka admin client",
                    format!("{}: {e}", settings.brokers),
                )
            })?;
        let readers = reader::Readers::default();
        tracing::debug!(brokers = %settings.brokers, namespace = %settings.namespace, "Kafka log clients created");
        Ok(KafkaLog {
            inner: Arc::new(Inner {
                settings,
                catalog: catalog.clone(),
                names,
                producer,
                meta: Arc::new(meta),
                admin,
                readers,
                offset_clients: Mutex::new(HashMap::new()),
                ready: tokio::sync::OnceCell::new(),
            }),
        })
    }

    /// Creates the clients and makes sure the catalog's topics exist (creating the
    /// missing ones); fails if Kafka is unreachable or a topic has the wrong number
    /// of partitions.
    pub async fn connect(settings: KafkaSettings, catalog: &Catalog) -> Result<Self, LogError> {
        let log = KafkaLog::new(settings, catalog)?;
        log.ready().await?;
        Ok(log)
    }

    /// The settings this log was made with.
    pub fn settings(&self) -> &KafkaSettings {
        &self.inner.settings
    }

    /// The Kafka topic a logical topic maps to in this namespace.
    pub fn kafka_topic(&self, logical: &str) -> String {
        self.inner.names.topic(logical)
    }

    /// The Kafka consumer group a logical group maps to in this namespace.
    pub fn kafka_group(&self, logical: &str) -> String {
        self.inner.names.group(logical)
    }

    /// Creates the catalog's missing topics and reports, for every topic, whether it
    /// was created and how an existing one differs from the catalog (partition count,
    /// cleanup policy, retention). Existing topics are never changed.
    pub async fn apply_topics(&self, catalog: &Catalog) -> Result<Vec<TopicReport>, LogError> {
        admin::apply(&self.inner, catalog).await
    }

    /// Deletes this namespace's catalog topics (tests and throw-away environments).
    /// Refused without a namespace, so it can never delete the shared topics.
    pub async fn delete_namespace(&self) -> Result<(), LogError> {
        admin::delete_namespace(&self.inner).await
    }

    async fn ready(&self) -> Result<(), LogError> {
        self.inner
            .ready
            .get_or_try_init(|| admin::ensure(&self.inner))
            .await
            .map(|_| ())
    }

    async fn fetch_watermarks(&self, topic: &str, partition: u32) -> Result<(u64, u64), LogError> {
        let kafka_topic = self.inner.check(topic, partition)?;
        self.ready().await?;
        let meta = self.inner.meta.clone();
        blocking("read watermarks", move || {
            let (low, high) = retrying("read watermarks", || {
                meta.fetch_watermarks(&kafka_topic, partition as i32, OP_TIMEOUT)
            })
            .map_err(|e| {
                LogError::backend(
                    "read watermarks",
                    format!("{kafka_topic}[{partition}]: {e}"),
                )
            })?;
            Ok((low.max(0) as u64, high.max(0) as u64))
        })
        .await
    }
}

/// How long librdkafka waits before fetching again for a partition whose
/// prefetch queue was full (`queued.max.messages.kbytes` /
/// `queued.min.messages`). Its default of 1 s left a consumer that drains the
/// queue in a fraction of that idle for the rest: with the default a group
/// member read ~310,000 records/s, with 20 ms ~600,000 (BENCHMARKS.md, "Kafka").
/// The queue stays bounded by the same thresholds either way.
pub(crate) const FETCH_QUEUE_BACKOFF: (&str, &str) = ("fetch.queue.backoff.ms", "20");

/// A client config: brokers, a client id naming the role (and namespace), courier's
/// defaults for the role, then the user's properties, which win.
fn client_config(settings: &KafkaSettings, role: &str, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &settings.brokers);
    let client_id = if settings.namespace.is_empty() {
        format!("courier-{role}")
    } else {
        format!("courier-{}-{role}", settings.namespace)
    };
    c.set("client.id", client_id);
    for (k, v) in defaults {
        c.set(*k, *v);
    }
    for (k, v) in &settings.properties {
        c.set(k, v);
    }
    c
}

/// Waits for one delivery report and checks it landed where we sent it.
async fn settle(
    topic: &str,
    kafka_topic: &str,
    (index, partition, delivery): (usize, u32, DeliveryFuture),
    total: usize,
) -> Result<(usize, Appended), LogError> {
    let fail = |what: String| {
        LogError::backend(
            "append to Kafka",
            format!(
                "{kafka_topic}[{partition}] (record {} of {total} for {topic}): {what}",
                index + 1
            ),
        )
    };
    match delivery.await {
        Ok(Ok(d)) => {
            let offset = u64::try_from(d.offset)
                .map_err(|_| fail(format!("broker returned offset {}", d.offset)))?;
            if d.partition != partition as i32 {
                return Err(fail(format!(
                    "delivered to partition {} instead",
                    d.partition
                )));
            }
            Ok((index, Appended { partition, offset }))
        }
        Ok(Err((e, _))) => Err(fail(e.to_string())),
        Err(_) => Err(fail(
            "the producer was shut down before the broker answered".into(),
        )),
    }
}

#[async_trait]
impl EventLog for KafkaLog {
    fn backend(&self) -> &'static str {
        "kafka"
    }

    fn partitions(&self, topic: &str) -> Result<u32, LogError> {
        Ok(self.inner.spec(topic)?.partitions)
    }

    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Appended>, LogError> {
        let n = self.inner.spec(topic)?.partitions;
        if records.is_empty() {
            return Ok(Vec::new());
        }
        // Before anything is sent: a record the broker would refuse must not leave
        // the ones before it published and the caller told otherwise.
        for r in &records {
            r.check_size()?;
        }
        self.ready().await?;
        let _timer = metrics::log_append_timer(topic);
        let kafka_topic = self.inner.names.topic(topic);
        let total = records.len();
        let mut out: Vec<Option<Appended>> = vec![None; total];
        let mut first_error: Option<LogError> = None;
        let mut in_flight: VecDeque<(usize, u32, DeliveryFuture)> = VecDeque::new();
        // Every outcome is kept, failures included: on a failure the caller learns
        // exactly which records were acknowledged (`LogError::PartlyAppended`).
        let mut note = |outcome: Result<(usize, Appended), LogError>,
                        out: &mut Vec<Option<Appended>>| match outcome {
            Ok((i, a)) => out[i] = Some(a),
            Err(e) => {
                tracing::warn!(topic, error = %e, "append failed");
                first_error.get_or_insert(e);
            }
        };
        // Enqueue everything (librdkafka batches and pipelines it), then wait for the
        // acknowledgements; a full local queue waits for the oldest one.
        'enqueue: for (index, r) in records.iter().enumerate() {
            let partition = partition_for_key(&r.key, n);
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (name, value) in &r.headers {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(value.as_slice()),
                });
            }
            let mut record = FutureRecord::to(&kafka_topic)
                .partition(partition as i32)
                .key(r.key.as_slice())
                .payload(r.value.as_slice())
                .timestamp(r.timestamp_ms)
                .headers(headers);
            loop {
                match self.inner.producer.send_result(record) {
                    Ok(delivery) => {
                        in_flight.push_back((index, partition, delivery));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        match in_flight.pop_front() {
                            Some(oldest) => {
                                note(settle(topic, &kafka_topic, oldest, total).await, &mut out)
                            }
                            None => tokio::time::sleep(Duration::from_millis(5)).await,
                        }
                    }
                    Err((e, _)) => {
                        tracing::warn!(topic, partition, error = %e, "append refused by the producer");
                        note(
                            Err(LogError::backend(
                                "append to Kafka",
                                format!(
                                    "{kafka_topic}[{partition}] (record {} of {total} for {topic}): {e}",
                                    index + 1
                                ),
                            )),
                            &mut out,
                        );
                        break 'enqueue;
                    }
                }
            }
        }
        while let Some(next) = in_flight.pop_front() {
            note(settle(topic, &kafka_topic, next, total).await, &mut out);
        }
        let acknowledged: Vec<(usize, Appended)> = out
            .iter()
            .enumerate()
            .filter_map(|(i, a)| Some((i, (*a)?)))
            .collect();
        if acknowledged.len() != total {
            let cause = first_error.unwrap_or_else(|| {
                LogError::backend(
                    "append to Kafka",
                    format!("{topic}: a record went unanswered"),
                )
            });
            return Err(LogError::PartlyAppended {
                acknowledged,
                total,
                cause: Box::new(cause),
            });
        }
        metrics::log_appended(topic, total);
        Ok(acknowledged.into_iter().map(|(_, a)| a).collect())
    }

    async fn watermarks(&self, topic: &str, partition: u32) -> Result<(u64, u64), LogError> {
        self.fetch_watermarks(topic, partition).await
    }

    async fn resolve(
        &self,
        topic: &str,
        partition: u32,
        position: Position,
    ) -> Result<u64, LogError> {
        let kafka_topic = self.inner.check(topic, partition)?;
        match position {
            Position::Earliest => Ok(self.fetch_watermarks(topic, partition).await?.0),
            Position::Latest => Ok(self.fetch_watermarks(topic, partition).await?.1),
            Position::Offset(o) => Ok(o),
            Position::Timestamp(ts) => {
                self.ready().await?;
                let meta = self.inner.meta.clone();
                let found = blocking("seek by timestamp", move || {
                    let mut tpl = TopicPartitionList::new();
                    // Negative times are Kafka's special "latest"/"earliest" codes.
                    tpl.add_partition_offset(
                        &kafka_topic,
                        partition as i32,
                        Offset::Offset(ts.max(0)),
                    )
                    .map_err(|e| LogError::backend("seek by timestamp", e))?;
                    let res = retrying("seek by timestamp", || {
                        meta.offsets_for_times(tpl.clone(), OP_TIMEOUT)
                    })
                    .map_err(|e| {
                        LogError::backend(
                            "seek by timestamp",
                            format!("{kafka_topic}[{partition}] at {ts}: {e}"),
                        )
                    })?;
                    let offset = res
                        .find_partition(&kafka_topic, partition as i32)
                        .map(|e| e.offset())
                        .unwrap_or(Offset::End);
                    Ok(match offset {
                        Offset::Offset(o) if o >= 0 => Some(o as u64),
                        _ => None,
                    })
                })
                .await?;
                match found {
                    Some(o) => Ok(o),
                    // No record at or after the time: the end.
                    None => Ok(self.fetch_watermarks(topic, partition).await?.1),
                }
            }
        }
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<ConsumedRecord>, LogError> {
        let kafka_topic = self.inner.check(topic, partition)?;
        if max == 0 {
            return Ok(Vec::new());
        }
        self.ready().await?;
        reader::read(&self.inner, kafka_topic, partition, from, max, timeout).await
    }

    async fn committed(&self, group: &str, topic: &str) -> Result<Vec<Option<u64>>, LogError> {
        let n = self.inner.spec(topic)?.partitions;
        self.ready().await?;
        let kafka_topic = self.inner.names.topic(topic);
        let kafka_group = self.inner.names.group(group);
        let client = self.inner.offset_client(group)?;
        blocking("read committed offsets", move || {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_range(&kafka_topic, 0, n as i32 - 1);
            let res = retrying("read committed offsets", || {
                client.committed_offsets(tpl.clone(), OP_TIMEOUT)
            })
            .map_err(|e| {
                LogError::backend(
                    "read committed offsets",
                    format!("group {kafka_group} on {kafka_topic}: {e}"),
                )
            })?;
            Ok((0..n)
                .map(|p| {
                    match res
                        .find_partition(&kafka_topic, p as i32)
                        .map(|e| e.offset())
                    {
                        Some(Offset::Offset(o)) if o >= 0 => Some(o as u64),
                        _ => None,
                    }
                })
                .collect())
        })
        .await
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn GroupConsumer>, LogError> {
        for t in topics {
            self.inner.spec(t)?;
        }
        self.ready().await?;
        let c = consumer::KafkaConsumer::join(self.inner.clone(), group, topics).await?;
        Ok(Box::new(c))
    }

    async fn groups(&self) -> Result<Vec<String>, LogError> {
        self.ready().await?;
        groups::list(&self.inner).await
    }

    async fn describe_group(&self, group: &str) -> Result<GroupDescription, LogError> {
        self.ready().await?;
        groups::describe(&self.inner, group).await
    }

    async fn reset_committed(
        &self,
        group: &str,
        offsets: &[(TopicPartition, u64)],
    ) -> Result<(), LogError> {
        self.ready().await?;
        groups::reset(&self.inner, group, offsets).await
    }
}
