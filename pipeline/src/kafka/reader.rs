//! Group-less reads of the Kafka log (`EventLog::read`, replays): cached assign-only
//! consumers, one per partition read, that never join a group nor commit.
//!
//! A reader remembers the offset after the last record it returned; a read that
//! continues there keeps fetching (librdkafka has prefetched the next records), any
//! other offset re-assigns the partition there. Replays read many partitions in
//! turn, so readers are cached per partition (at most [`MAX_READERS`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::{Inner, LogContext, OP_TIMEOUT, TopicMemo, blocking, retrying, to_record};
use crate::log::{ConsumedRecord, LogError};

/// The group id readers carry without ever joining it.
const READER_GROUP: &str = "courier.reader";

/// Readers kept at once; the least recently used one is dropped beyond this.
const MAX_READERS: usize = 64;

/// How long a read waits for records that the watermarks say exist, whatever its
/// own timeout: "nothing at `from` yet" means nothing below the high watermark, not
/// "not fetched yet" (replays read with a zero timeout).
const FETCH_PATIENCE: Duration = Duration::from_secs(30);

struct Reader {
    consumer: BaseConsumer<LogContext>,
    /// Offset the next record fetched will have, if the reader is positioned.
    next: Option<u64>,
    /// The logical name of its topic.
    topics: TopicMemo,
}

type Shared = Arc<Mutex<Reader>>;

#[derive(Default)]
pub(crate) struct Readers {
    pool: Mutex<Pool>,
}

#[derive(Default)]
struct Pool {
    /// Per (Kafka topic, partition): when it was last used, and the reader.
    readers: HashMap<(String, u32), (u64, Shared)>,
    tick: u64,
}

impl Readers {
    fn get(
        &self,
        inner: &Inner,
        kafka_topic: &str,
        partition: u32,
    ) -> Result<Arc<Mutex<Reader>>, LogError> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        pool.tick += 1;
        let tick = pool.tick;
        let key = (kafka_topic.to_string(), partition);
        if let Some((used, r)) = pool.readers.get_mut(&key) {
            *used = tick;
            return Ok(r.clone());
        }
        if pool.readers.len() >= MAX_READERS
            && let Some(oldest) = pool
                .readers
                .iter()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(k, _)| k.clone())
        {
            pool.readers.remove(&oldest);
        }
        let group = inner.names().group(READER_GROUP);
        let consumer: BaseConsumer<LogContext> = inner
            .client_config(
                "reader",
                &[
                    // librdkafka's `assign` needs a group id; this group is never
                    // joined (no subscribe) and never committed to.
                    ("group.id", &group),
                    ("enable.auto.commit", "false"),
                    ("enable.auto.offset.store", "false"),
                    // An offset below the low watermark (retention removed it) reads
                    // from the first record still there.
                    ("auto.offset.reset", "earliest"),
                    ("fetch.wait.max.ms", "100"),
                    super::FETCH_QUEUE_BACKOFF,
                    // Many readers may exist at once: bound each one's prefetch.
                    ("queued.max.messages.kbytes", "16384"),
                ],
            )
            .create_with_context(LogContext::default())
            .map_err(|e| {
                LogError::backend(
                    "create a Kafka reader",
                    format!("{kafka_topic}[{partition}]: {e}"),
                )
            })?;
        let r = Arc::new(Mutex::new(Reader {
            consumer,
            next: None,
            topics: TopicMemo::default(),
        }));
        pool.readers.insert(key, (tick, r.clone()));
        Ok(r)
    }
}

/// Reads up to `max` records of one partition from `from` (see `EventLog::read`).
pub(crate) async fn read(
    inner: &Arc<Inner>,
    kafka_topic: String,
    partition: u32,
    from: u64,
    max: usize,
    timeout: Duration,
) -> Result<Vec<ConsumedRecord>, LogError> {
    let reader = inner.readers.get(inner, &kafka_topic, partition)?;
    let inner = inner.clone();
    blocking("read from Kafka", move || {
        let mut r = reader.lock().unwrap_or_else(|p| p.into_inner());
        r.read(&inner, &kafka_topic, partition, from, max, timeout)
    })
    .await
}

impl Reader {
    fn read(
        &mut self,
        inner: &Inner,
        kafka_topic: &str,
        partition: u32,
        from: u64,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<ConsumedRecord>, LogError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            LogError::backend(
                "read from Kafka",
                format!("{kafka_topic}[{partition}] at offset {from}: {what}: {e}"),
            )
        };
        if self.next != Some(from) {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(kafka_topic, partition as i32, Offset::Offset(from as i64))
                .map_err(|e| fail("position the reader", &e))?;
            self.consumer
                .assign(&tpl)
                .map_err(|e| fail("position the reader", &e))?;
            self.next = Some(from);
            tracing::debug!(topic = kafka_topic, partition, from, "reader positioned");
        }
        let started = Instant::now();
        let mut deadline = started + timeout;
        let mut checked_high = false;
        let mut out = Vec::new();
        while out.len() < max {
            let left = if out.is_empty() {
                deadline.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            match self.consumer.poll(left) {
                Some(Ok(m)) => {
                    let Some(rec) = to_record(inner.names(), &mut self.topics, &m) else {
                        continue;
                    };
                    // After an offset reset to the earliest record (an offset past the
                    // end was asked for) older records are not what was asked.
                    if rec.offset < from {
                        continue;
                    }
                    self.next = Some(rec.offset + 1);
                    out.push(rec);
                }
                Some(Err(e)) => {
                    tracing::warn!(topic = kafka_topic, partition, error = %e, "reader fetch error");
                    if !out.is_empty() {
                        break;
                    }
                    if Instant::now() >= deadline {
                        return Err(fail("fetch", &e));
                    }
                }
                None if !out.is_empty() => break,
                None if Instant::now() < deadline => {}
                None if checked_high => break,
                None => {
                    // Nothing within the caller's timeout. Records exist at `from` when
                    // it is below the high watermark: then wait for them, even when
                    // the timeout is shorter than a fetch (replays pass zero).
                    checked_high = true;
                    let consumer = &self.consumer;
                    let (_, high) = retrying("read watermarks", || {
                        consumer.fetch_watermarks(kafka_topic, partition as i32, OP_TIMEOUT)
                    })
                    .map_err(|e| fail("read watermarks", &e))?;
                    if (from as i64) < high {
                        deadline = started + timeout.max(FETCH_PATIENCE);
                    } else {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }
}
