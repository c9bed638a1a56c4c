//! Replays: bounded reads of a topic outside any consumer group, for analysts and
//! rebuilds. A replay never moves a group's committed offsets.
//!
//! Partitions are merged by (timestamp, partition, offset), so a replay reads as a
//! timeline while each partition — each conversation — keeps its log order.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use courier_schemas::Event;
use courier_topics::{Catalog, partition_for_key};

use crate::log::{ConsumedRecord, EventLog, LogError, Position, TopicPartition};

/// Records fetched from a partition at a time.
const CHUNK: usize = 2048;

/// The exclusive end of a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Stop before this offset (in every partition).
    Offset(u64),
    /// Stop before the first record at or after this time (ms).
    Timestamp(i64),
}

/// What to replay.
#[derive(Debug, Clone)]
pub struct ReplaySpec {
    /// Logical topic name.
    pub topic: String,
    /// Where to start in every partition.
    pub from: Position,
    /// Where to stop; `None` is the end of the log when the replay starts.
    pub to: Option<End>,
    /// Only events of this conversation.
    pub conversation: Option<String>,
    /// Only events that name this user in any user field.
    pub user: Option<String>,
}

/// A replay that cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A record in range is not a courier event.
    #[error("{tp} offset {offset}: {detail}")]
    Decode {
        /// Where.
        tp: TopicPartition,
        /// Which record.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
}

/// A matching record and its decoded event.
type Item = (ConsumedRecord, Event);

/// What a partition reader hands the merge: matching items, and how many records
/// it read to find them.
struct Chunk {
    items: VecDeque<Item>,
    scanned: u64,
}

/// The merge's view of one partition.
struct Feed {
    rx: mpsc::Receiver<Result<Chunk, ReplayError>>,
    buf: VecDeque<Item>,
    done: bool,
}

/// A running replay; pull events with [`Replay::next`].
///
/// Each partition is read and decoded by its own task, a few chunks ahead (bounded
/// channels, so memory stays flat), while `next` merges their heads: decoding runs
/// on every core, and the timeline order is still exact.
pub struct Replay {
    feeds: Vec<Feed>,
    heap: BinaryHeap<Reverse<(i64, u32, u64, usize)>>,
    total: u64,
    scanned: u64,
}

/// Chunks a partition reader may run ahead of the merge.
const AHEAD: usize = 2;

impl Replay {
    /// Resolves the range in every partition (the end is fixed now: records
    /// appended later are not part of this replay) and starts the readers.
    pub async fn start(log: Arc<dyn EventLog>, spec: ReplaySpec) -> Result<Replay, ReplayError> {
        let n = log.partitions(&spec.topic)?;
        // A topic keyed by conversation holds a conversation in exactly one partition.
        let keyed_by_conversation = Catalog::builtin()
            .get(&spec.topic)
            .is_some_and(|t| t.key == "conversation_id");
        let partitions: Vec<u32> = match &spec.conversation {
            Some(c) if keyed_by_conversation => vec![partition_for_key(c.as_bytes(), n)],
            _ => (0..n).collect(),
        };
        let mut ranges = Vec::with_capacity(partitions.len());
        let mut total = 0;
        for p in partitions {
            let start = log.resolve(&spec.topic, p, spec.from).await?;
            let (_, high) = log.watermarks(&spec.topic, p).await?;
            let end = match spec.to {
                None => high,
                Some(End::Offset(o)) => o.min(high),
                Some(End::Timestamp(ts)) => log
                    .resolve(&spec.topic, p, Position::Timestamp(ts))
                    .await?
                    .min(high),
            };
            total += end.saturating_sub(start);
            ranges.push((p, start, end));
        }
        let spec = Arc::new(spec);
        let mut feeds = Vec::with_capacity(ranges.len());
        for (p, start, end) in ranges {
            let (tx, rx) = mpsc::channel(AHEAD);
            tokio::spawn(read_partition(log.clone(), spec.clone(), p, start, end, tx));
            feeds.push(Feed {
                rx,
                buf: VecDeque::new(),
                done: start >= end,
            });
        }
        let mut replay = Replay {
            feeds,
            heap: BinaryHeap::new(),
            total,
            scanned: 0,
        };
        for i in 0..replay.feeds.len() {
            replay.refill(i).await?;
        }
        Ok(replay)
    }

    /// Records in range before filtering (for a progress bar).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Records read so far, matching or not.
    pub fn scanned(&self) -> u64 {
        self.scanned
    }

    /// Makes sure partition `i` has a head item (unless it is finished) and puts
    /// that head on the heap.
    async fn refill(&mut self, i: usize) -> Result<(), ReplayError> {
        let feed = &mut self.feeds[i];
        while feed.buf.is_empty() && !feed.done {
            match feed.rx.recv().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    self.scanned += chunk.scanned;
                    feed.buf = chunk.items;
                }
                None => feed.done = true,
            }
        }
        if let Some((r, _)) = feed.buf.front() {
            self.heap
                .push(Reverse((r.timestamp_ms, r.partition, r.offset, i)));
        }
        Ok(())
    }

    /// The next matching event in timeline order, or `None` at the end of the range.
    pub async fn next(&mut self) -> Result<Option<Item>, ReplayError> {
        let Some(Reverse((_, _, _, i))) = self.heap.pop() else {
            return Ok(None);
        };
        let item = self.feeds[i]
            .buf
            .pop_front()
            .expect("heap entries point at buffered items");
        self.refill(i).await?;
        Ok(Some(item))
    }
}

fn matches(spec: &ReplaySpec, event: &Event) -> bool {
    spec.conversation
        .as_deref()
        .is_none_or(|c| event.conversation_id() == Some(c))
        && spec.user.as_deref().is_none_or(|u| event.involves_user(u))
}

/// Reads `[start, end)` of one partition in chunks, decodes and filters, and feeds
/// the merge until the range is done or the replay is dropped.
async fn read_partition(
    log: Arc<dyn EventLog>,
    spec: Arc<ReplaySpec>,
    partition: u32,
    start: u64,
    end: u64,
    tx: mpsc::Sender<Result<Chunk, ReplayError>>,
) {
    let mut decoder = Decoder::default();
    let mut next = start;
    while next < end {
        let want = usize::try_from(end - next).unwrap_or(CHUNK).min(CHUNK);
        let got = match log
            .read(&spec.topic, partition, next, want, Duration::ZERO)
            .await
        {
            Ok(got) => got,
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        };
        let Some(last) = got.last() else {
            // Nothing where the range said there would be records (retention removed
            // them): the partition is done.
            return;
        };
        next = last.offset + 1;
        let mut items = VecDeque::with_capacity(got.len());
        let mut scanned = 0;
        for record in got.into_iter().filter(|r| r.offset < end) {
            scanned += 1;
            match decoder.decode(&record) {
                Ok(event) if matches(&spec, &event) => items.push_back((record, event)),
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
        if tx.send(Ok(Chunk { items, scanned })).await.is_err() {
            // The replay was dropped.
            return;
        }
    }
}

/// [`decode`] for a stream of records: remembers the few header blocks it has
/// accepted, so a record whose block is byte-equal to one of them skips the check
/// (the check is a function of those bytes alone). A topic written by courier has
/// one block per event type, and walking it for two names was, measured, the
/// largest cost of a replay's readers after RocksDB.
#[derive(Default)]
pub struct Decoder {
    /// Copies, not views: a view would keep a whole read chunk alive.
    accepted: Vec<Box<[u8]>>,
}

/// Distinct accepted header blocks a [`Decoder`] remembers (one per event type,
/// with room to spare).
const ACCEPTED_BLOCKS: usize = 16;

impl Decoder {
    /// Checks a record's schema headers (unless its block was accepted before) and
    /// decodes its event.
    pub fn decode(&mut self, record: &ConsumedRecord) -> Result<Event, ReplayError> {
        let block = record.headers.as_bytes();
        if !self.accepted.iter().any(|b| b[..] == block[..]) {
            check(record)?;
            if self.accepted.len() < ACCEPTED_BLOCKS {
                self.accepted.push(block.into());
            }
        }
        courier_schemas::decode(&record.value).map_err(|e| decode_error(record, e.to_string()))
    }
}

fn decode_error(record: &ConsumedRecord, detail: String) -> ReplayError {
    ReplayError::Decode {
        tp: record.topic_partition(),
        offset: record.offset,
        detail,
    }
}

fn check(record: &ConsumedRecord) -> Result<(), ReplayError> {
    courier_schemas::headers::check_with(|name| record.headers.last(name))
        .map_err(|e| decode_error(record, e.to_string()))
}

/// Checks a record's schema headers and decodes its event.
pub fn decode(record: &ConsumedRecord) -> Result<Event, ReplayError> {
    check(record)?;
    courier_schemas::decode(&record.value).map_err(|e| decode_error(record, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::RecordHeaders;

    fn record(offset: u64, headers: &[(&str, &[u8])], value: Vec<u8>) -> ConsumedRecord {
        ConsumedRecord {
            topic: Arc::from("courier.conversations.v1"),
            partition: 3,
            offset,
            timestamp_ms: 1,
            key: bytes::Bytes::from_static(b"c1"),
            value: value.into(),
            headers: RecordHeaders::from_pairs(headers.iter().copied()),
        }
    }

    #[test]
    fn a_decoder_skips_only_the_check_of_blocks_it_accepted() {
        let event = courier_schemas::json::parse_line(
            r#"{"type":"message_sent","event_id":"e1","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"hi","at_ms":1}"#,
        )
        .unwrap();
        let good: &[(&str, &[u8])] = &[
            ("courier-schema", b"courier.v1.Event"),
            ("courier-schema-version", b"1"),
        ];
        let newer: &[(&str, &[u8])] = &[
            ("courier-schema", b"courier.v1.Event"),
            ("courier-schema-version", b"99"),
        ];
        let value = courier_schemas::encode(&event);
        let mut d = Decoder::default();
        assert_eq!(d.decode(&record(0, good, value.clone())).unwrap(), event);
        // Accepted once, the same block is not re-checked, but the value still is.
        assert_eq!(d.decode(&record(1, good, value.clone())).unwrap(), event);
        let garbage = d.decode(&record(2, good, vec![0xff; 7])).unwrap_err();
        assert!(
            matches!(garbage, ReplayError::Decode { offset: 2, .. }),
            "{garbage}"
        );
        // Another block is checked, and a refused one is refused every time.
        for offset in [3, 4] {
            let e = d.decode(&record(offset, newer, value.clone())).unwrap_err();
            assert!(e.to_string().contains("newer"), "{e}");
            assert_eq!(
                decode(&record(offset, newer, value.clone()))
                    .unwrap_err()
                    .to_string(),
                e.to_string()
            );
        }
        let missing = d.decode(&record(5, &[], value.clone())).unwrap_err();
        assert!(missing.to_string().contains("courier-schema"), "{missing}");
    }
}
