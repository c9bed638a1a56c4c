//! Replays: bounded reads of a topic outside any consumer group, for analysts and
//! rebuilds. A replay never moves a group's committed offsets.
//!
//! Partitions are merged by (timestamp, partition, offset), so a replay reads as a
//! timeline while each partition — each conversation — keeps its log order.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

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

struct Cursor {
    partition: u32,
    next: u64,
    end: u64,
    buf: VecDeque<ConsumedRecord>,
}

/// A running replay; pull events with [`Replay::next`].
pub struct Replay<'a> {
    log: &'a dyn EventLog,
    spec: ReplaySpec,
    cursors: Vec<Cursor>,
    heap: BinaryHeap<Reverse<(i64, u32, u64, usize)>>,
    total: u64,
    scanned: u64,
}

impl<'a> Replay<'a> {
    /// Resolves the range in every partition (the end is fixed now: records
    /// appended later are not part of this replay).
    pub async fn start(log: &'a dyn EventLog, spec: ReplaySpec) -> Result<Replay<'a>, ReplayError> {
        let n = log.partitions(&spec.topic)?;
        // A topic keyed by conversation holds a conversation in exactly one partition.
        let keyed_by_conversation = Catalog::builtin()
            .get(&spec.topic)
            .is_some_and(|t| t.key == "conversation_id");
        let partitions: Vec<u32> = match &spec.conversation {
            Some(c) if keyed_by_conversation => vec![partition_for_key(c.as_bytes(), n)],
            _ => (0..n).collect(),
        };
        let mut cursors = Vec::with_capacity(partitions.len());
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
            cursors.push(Cursor {
                partition: p,
                next: start,
                end,
                buf: VecDeque::new(),
            });
        }
        let mut replay = Replay {
            log,
            spec,
            cursors,
            heap: BinaryHeap::new(),
            total,
            scanned: 0,
        };
        for i in 0..replay.cursors.len() {
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

    async fn refill(&mut self, i: usize) -> Result<(), ReplayError> {
        let c = &mut self.cursors[i];
        if c.buf.is_empty() && c.next < c.end {
            let want = usize::try_from(c.end - c.next).unwrap_or(CHUNK).min(CHUNK);
            let got = self
                .log
                .read(&self.spec.topic, c.partition, c.next, want, Duration::ZERO)
                .await?;
            if let Some(last) = got.last() {
                c.next = last.offset + 1;
            } else {
                // Nothing where the range said there would be records (retention
                // removed them); the partition is done.
                c.next = c.end;
            }
            c.buf.extend(got.into_iter().filter(|r| r.offset < c.end));
        }
        if let Some(head) = c.buf.front() {
            self.heap
                .push(Reverse((head.timestamp_ms, c.partition, head.offset, i)));
        }
        Ok(())
    }

    /// The next matching event in timeline order, or `None` at the end of the range.
    pub async fn next(&mut self) -> Result<Option<(ConsumedRecord, Event)>, ReplayError> {
        while let Some(Reverse((_, _, _, i))) = self.heap.pop() {
            let record = self.cursors[i]
                .buf
                .pop_front()
                .expect("heap entries point at buffered records");
            self.refill(i).await?;
            self.scanned += 1;
            let event = decode(&record)?;
            if let Some(c) = &self.spec.conversation
                && event.conversation_id() != Some(c.as_str())
            {
                continue;
            }
            if let Some(u) = &self.spec.user
                && !event.involves_user(u)
            {
                continue;
            }
            return Ok(Some((record, event)));
        }
        Ok(None)
    }
}

/// Checks a record's schema headers and decodes its event.
pub fn decode(record: &ConsumedRecord) -> Result<Event, ReplayError> {
    let err = |detail: String| ReplayError::Decode {
        tp: record.topic_partition(),
        offset: record.offset,
        detail,
    };
    courier_schemas::headers::check(&record.headers).map_err(|e| err(e.to_string()))?;
    courier_schemas::decode(&record.value).map_err(|e| err(e.to_string()))
}
