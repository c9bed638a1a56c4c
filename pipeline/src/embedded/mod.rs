//! The embedded log: partitioned, durable topics in one RocksDB database.
//!
//! Layout (column families):
//! - `records`: `topic_id|partition|offset` → framed record (see `codec`);
//! - `timeindex`: sparse `topic_id|partition|max_ts|offset` entries for seek by time;
//! - `offsets`: `group|0|topic_id|partition` → committed next offset;
//! - `meta`: topic ids, and per-partition append state written in the same batch as
//!   the records, so a restart recovers the end of every partition without a scan.
//!
//! One process owns a data directory (RocksDB's lock); inside it the log is shared
//! by producers, consumer groups and replays, which wait on a change signal rather
//! than polling the disk. Other processes may open it read-only
//! ([`EmbeddedLog::open_read_only`]) to read records, ends and committed offsets;
//! the owner publishes its groups' members beside the database (`members`).

pub mod baseline;
pub mod codec;
mod group;
mod members;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use courier_topics::{Catalog, partition_for_key};
use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, DB, DBCompressionType, Direction, IteratorMode,
    Options, ReadOptions, WriteBatch, WriteOptions,
};
use tokio::sync::watch;

use crate::log::{
    Appended, ConsumedRecord, EventLog, GroupConsumer, GroupDescription, GroupMember, LogError,
    Position, Record, RecordHeaders, TopicPartition,
};
use crate::metrics;

const CF_RECORDS: &str = "records";
const CF_TIMEINDEX: &str = "timeindex";
const CF_OFFSETS: &str = "offsets";
const CF_META: &str = "meta";

/// A time-index entry is written at most once per this many records of a partition;
/// a seek scans at most about this many records past the entry it lands on.
const TIME_INDEX_INTERVAL: u64 = 64;

/// Settings of the embedded log.
#[derive(Debug, Clone, Default)]
pub struct EmbeddedOptions {
    /// fsync the WAL on every append. Off, an acknowledged append survives the
    /// process being killed (it is in the OS page cache) but not a power cut.
    pub fsync: bool,
}

/// Per-partition append state, persisted in `meta` with every batch.
#[derive(Debug, Clone, Copy, Default)]
struct PartitionState {
    /// Offset the next record gets.
    next: u64,
    /// Highest timestamp appended so far (the time index is over this running max).
    max_ts: i64,
    /// Offset of the last time-index entry, if any.
    last_indexed: Option<u64>,
}

impl PartitionState {
    fn encode(&self) -> [u8; 25] {
        let mut b = [0u8; 25];
        b[..8].copy_from_slice(&self.next.to_be_bytes());
        b[8..16].copy_from_slice(&self.max_ts.to_be_bytes());
        if let Some(o) = self.last_indexed {
            b[16] = 1;
            b[17..].copy_from_slice(&o.to_be_bytes());
        }
        b
    }

    fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != 25 {
            return None;
        }
        Some(PartitionState {
            next: u64::from_be_bytes(b[..8].try_into().ok()?),
            max_ts: i64::from_be_bytes(b[8..16].try_into().ok()?),
            last_indexed: (b[16] == 1)
                .then(|| u64::from_be_bytes(b[17..].try_into().unwrap_or_default())),
        })
    }
}

struct Topic {
    id: u32,
    name: String,
    /// Serializes appends to this topic so offsets are assigned and become visible
    /// in order.
    append: Mutex<Vec<PartitionState>>,
    /// High watermark per partition, readable without the append lock.
    high: Vec<AtomicU64>,
}

pub(crate) struct Inner {
    db: DB,
    dir: PathBuf,
    topics: HashMap<String, Arc<Topic>>,
    write_opts: WriteOptions,
    /// Bumped after every append and every group change; waiters re-check then.
    changed: watch::Sender<u64>,
    groups: group::Coordinator,
    /// Opened read-only beside the process that holds the log: no appends, no
    /// groups, no commits; ends as they were when opened.
    read_only: bool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The members this process published are gone with it.
        if !self.read_only {
            members::remove(&self.dir);
        }
    }
}

/// Why the database did not open.
enum OpenError {
    /// Another process holds it (RocksDB's lock).
    Held(LogError),
    /// Anything else.
    Other(LogError),
}

impl From<OpenError> for LogError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Held(e) | OpenError::Other(e) => e,
        }
    }
}

/// The live members of the groups, as far as this process can know them.
enum LiveMembers {
    /// Every group with members, by name.
    Known(BTreeMap<String, Vec<GroupMember>>),
    /// The process holding the log published none it still stands by (an
    /// older build, or it was killed and the file is stale).
    Unknown,
}

/// The embedded log. Cheap to clone; all clones share one database.
#[derive(Clone)]
pub struct EmbeddedLog {
    inner: Arc<Inner>,
}

/// RocksDB options shared by the log and by the raw baseline of the benchmark, so the
/// two measure the same storage engine configuration.
pub fn db_options() -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    o.create_missing_column_families(true);
    o.increase_parallelism(2);
    o.set_max_background_jobs(2);
    o.set_write_buffer_size(64 << 20);
    o
}

/// Options of the column family holding records (also used by the baseline).
pub fn records_cf_options() -> Options {
    let mut o = db_options();
    o.set_compression_type(DBCompressionType::Lz4);
    let mut t = BlockBasedOptions::default();
    t.set_block_size(32 << 10);
    o.set_block_based_table_factory(&t);
    o
}

fn be_u32(b: &[u8]) -> Option<u32> {
    b.try_into().ok().map(u32::from_be_bytes)
}

impl EmbeddedLog {
    /// Opens (creating if needed) the log in `dir` with the topics of `catalog`.
    pub fn open(dir: &Path, catalog: &Catalog, options: EmbeddedOptions) -> Result<Self, LogError> {
        Ok(Self::open_db(dir, false).and_then(|db| {
            Self::with_db(db, dir, catalog, options, false).map_err(OpenError::Other)
        })?)
    }

    /// Opens the log in `dir` read-only, beside the process that holds it (or
    /// none): records, ends and committed offsets as they were when opened, and
    /// the members the holder publishes. Appends, subscriptions and commits are
    /// refused.
    pub fn open_read_only(dir: &Path, catalog: &Catalog) -> Result<Self, LogError> {
        let db = Self::open_db(dir, true)?;
        Self::with_db(db, dir, catalog, EmbeddedOptions::default(), true)
    }

    /// Opens the log read-write, or read-only when another process holds it:
    /// for commands that only look (`courier groups describe` beside `courier
    /// up`).
    pub fn open_for_inspection(
        dir: &Path,
        catalog: &Catalog,
        options: EmbeddedOptions,
    ) -> Result<Self, LogError> {
        match Self::open_db(dir, false) {
            Ok(db) => Self::with_db(db, dir, catalog, options, false),
            Err(OpenError::Held(_)) => Self::open_read_only(dir, catalog),
            Err(OpenError::Other(e)) => Err(e),
        }
    }

    /// Whether it was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    fn open_db(dir: &Path, read_only: bool) -> Result<DB, OpenError> {
        if !read_only {
            std::fs::create_dir_all(dir).map_err(|e| {
                OpenError::Other(LogError::backend(
                    "create the log directory",
                    format!("{}: {e}", dir.display()),
                ))
            })?;
        }
        let cfs = vec![
            ColumnFamilyDescriptor::new(CF_RECORDS, records_cf_options()),
            ColumnFamilyDescriptor::new(CF_TIMEINDEX, db_options()),
            ColumnFamilyDescriptor::new(CF_OFFSETS, db_options()),
            ColumnFamilyDescriptor::new(CF_META, db_options()),
        ];
        let opened = if read_only {
            DB::open_cf_descriptors_read_only(&db_options(), dir, cfs, false)
        } else {
            DB::open_cf_descriptors(&db_options(), dir, cfs)
        };
        opened.map_err(|e| {
            let msg = e.to_string();
            if msg.contains("LOCK") {
                OpenError::Held(LogError::backend(
                    "open the embedded log",
                    format!(
                        "{} is in use by another courier process (only one process may own a data directory; stop it or use another --data)",
                        dir.display()
                    ),
                ))
            } else {
                OpenError::Other(LogError::backend(
                    "open the embedded log",
                    format!("{}: {msg}", dir.display()),
                ))
            }
        })
    }

    fn with_db(
        db: DB,
        dir: &Path,
        catalog: &Catalog,
        options: EmbeddedOptions,
        read_only: bool,
    ) -> Result<Self, LogError> {
        let mut topics = HashMap::new();
        let meta = db
            .cf_handle(CF_META)
            .expect("meta column family was just opened");
        // Topic ids are assigned once and persisted: catalog order may change, ids
        // stored in keys must not.
        let mut next_id = 0u32;
        for item in db.iterator_cf(meta, IteratorMode::From(b"topic/", Direction::Forward)) {
            let (k, v) = item.map_err(|e| LogError::backend("read topic ids", e))?;
            if !k.starts_with(b"topic/") {
                break;
            }
            if let Some(id) = be_u32(&v) {
                next_id = next_id.max(id + 1);
            }
        }
        for spec in catalog.topics() {
            let key = format!("topic/{}", spec.name);
            let id = match db
                .get_cf(meta, &key)
                .map_err(|e| LogError::backend("read topic ids", e))?
            {
                Some(v) => be_u32(&v).ok_or_else(|| {
                    LogError::backend("read topic ids", format!("bad id for {}", spec.name))
                })?,
                // Never written to: an id no key holds, so the topic reads as
                // empty (a read-only log cannot record one).
                None if read_only => {
                    let id = next_id;
                    next_id += 1;
                    id
                }
                None => {
                    let id = next_id;
                    next_id += 1;
                    db.put_cf(meta, &key, id.to_be_bytes())
                        .map_err(|e| LogError::backend("write topic ids", e))?;
                    id
                }
            };
            let mut states = Vec::with_capacity(spec.partitions as usize);
            for p in 0..spec.partitions {
                let s = db
                    .get_cf(meta, pstate_key(id, p))
                    .map_err(|e| LogError::backend("read partition state", e))?
                    .map(|v| {
                        PartitionState::decode(&v).ok_or_else(|| {
                            LogError::backend(
                                "read partition state",
                                format!("{}[{p}] state is corrupt", spec.name),
                            )
                        })
                    })
                    .transpose()?
                    .unwrap_or_default();
                states.push(s);
            }
            let high = states.iter().map(|s| AtomicU64::new(s.next)).collect();
            topics.insert(
                spec.name.clone(),
                Arc::new(Topic {
                    id,
                    name: spec.name.clone(),
                    append: Mutex::new(states),
                    high,
                }),
            );
        }
        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(options.fsync);
        let (changed, _) = watch::channel(0);
        Ok(EmbeddedLog {
            inner: Arc::new(Inner {
                db,
                dir: dir.to_path_buf(),
                topics,
                write_opts,
                changed,
                groups: group::Coordinator::new((!read_only).then(|| dir.to_path_buf())),
                read_only,
            }),
        })
    }

    /// Directory of the database.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }
}

fn pstate_key(topic_id: u32, partition: u32) -> Vec<u8> {
    let mut k = b"pstate/".to_vec();
    k.extend_from_slice(&codec::partition_prefix(topic_id, partition));
    k
}

impl Inner {
    fn topic(&self, name: &str) -> Result<&Arc<Topic>, LogError> {
        self.topics
            .get(name)
            .ok_or_else(|| LogError::UnknownTopic(name.to_string()))
    }

    fn check_partition(&self, t: &Topic, partition: u32) -> Result<(), LogError> {
        if (partition as usize) < t.high.len() {
            Ok(())
        } else {
            Err(LogError::UnknownPartition {
                topic: t.name.clone(),
                partition,
                partitions: t.high.len() as u32,
            })
        }
    }

    pub(crate) fn high(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        let t = self.topic(topic)?;
        self.check_partition(t, partition)?;
        Ok(t.high[partition as usize].load(Ordering::Acquire))
    }

    pub(crate) fn partitions_of(&self, topic: &str) -> Result<u32, LogError> {
        Ok(self.topic(topic)?.high.len() as u32)
    }

    pub(crate) fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    pub(crate) fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Refuses a write to a log opened read-only.
    fn writable(&self, op: &'static str) -> Result<(), LogError> {
        if !self.read_only {
            return Ok(());
        }
        let holder = members::read(&self.dir)
            .map(|p| format!(" (process {})", p.pid))
            .unwrap_or_default();
        Err(LogError::backend(
            op,
            format!(
                "the embedded log in {} is held by another process{holder} and open read-only here; stop that process first",
                self.dir.display()
            ),
        ))
    }

    /// The live members of every group: this process's own, or, read-only,
    /// what the holder published (see `members`).
    fn live_members(&self) -> LiveMembers {
        if !self.read_only {
            return LiveMembers::Known(self.groups.snapshot());
        }
        match members::read(&self.dir) {
            Some(p) if members::alive(p.pid) => LiveMembers::Known(p.groups),
            _ => LiveMembers::Unknown,
        }
    }

    /// Every group with a committed offset.
    fn committed_groups(&self) -> Result<BTreeSet<String>, LogError> {
        let cf = self.db.cf_handle(CF_OFFSETS).expect("offsets cf");
        let mut it = self.db.raw_iterator_cf(cf);
        let mut out = BTreeSet::new();
        it.seek_to_first();
        while let Some(k) = it.key() {
            // `group | 0 | topic_id | partition`: the group is all but 9 bytes.
            let Some(end) = k.len().checked_sub(9).filter(|e| k[*e] == 0) else {
                it.next();
                continue;
            };
            let group = k[..end].to_vec();
            out.insert(String::from_utf8_lossy(&group).into_owned());
            // The group's keys are contiguous: skip past them (`group | 1`).
            let mut next = group;
            next.push(1);
            it.seek(&next);
        }
        it.status()
            .map_err(|e| LogError::backend("list consumer groups", e))?;
        Ok(out)
    }

    /// A group's committed offsets on the catalog's topics, in order.
    fn committed_of(&self, group: &str) -> Result<Vec<(TopicPartition, u64)>, LogError> {
        let by_id: HashMap<u32, &str> = self
            .topics
            .values()
            .map(|t| (t.id, t.name.as_str()))
            .collect();
        let cf = self.db.cf_handle(CF_OFFSETS).expect("offsets cf");
        let mut prefix = group.as_bytes().to_vec();
        prefix.push(0);
        let mut it = self.db.raw_iterator_cf(cf);
        it.seek(&prefix);
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(&prefix) || k.len() != prefix.len() + 8 {
                break;
            }
            let id = be_u32(&k[prefix.len()..prefix.len() + 4]);
            let partition = be_u32(&k[prefix.len() + 4..]);
            let offset = <[u8; 8]>::try_from(v).ok().map(u64::from_be_bytes);
            if let (Some(topic), Some(partition), Some(offset)) =
                (id.and_then(|id| by_id.get(&id)), partition, offset)
            {
                out.push((TopicPartition::new(*topic, partition), offset));
            }
            it.next();
        }
        it.status()
            .map_err(|e| LogError::backend("read committed offsets", e))?;
        out.sort();
        Ok(out)
    }

    fn append_sync(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Appended>, LogError> {
        self.writable("append to the embedded log")?;
        let t = self.topic(topic)?;
        let n_parts = t.high.len() as u32;
        let records_cf = self.db.cf_handle(CF_RECORDS).expect("records cf");
        let time_cf = self.db.cf_handle(CF_TIMEINDEX).expect("timeindex cf");
        let meta_cf = self.db.cf_handle(CF_META).expect("meta cf");

        let mut states = t.append.lock().unwrap_or_else(|p| p.into_inner());
        // Work on a copy: if the write fails, nothing of the batch is visible and the
        // in-memory state must not have moved either.
        let mut next = states.clone();
        let mut touched = vec![false; n_parts as usize];
        let mut batch = WriteBatch::default();
        let mut out = Vec::with_capacity(records.len());
        let mut buf = Vec::with_capacity(256);
        for r in &records {
            let partition = partition_for_key(&r.key, n_parts);
            let s = &mut next[partition as usize];
            let offset = s.next;
            s.next += 1;
            touched[partition as usize] = true;
            buf.clear();
            codec::encode_record(&mut buf, r.timestamp_ms, &r.key, &r.headers, &r.value);
            batch.put_cf(records_cf, codec::record_key(t.id, partition, offset), &buf);
            if s.last_indexed.is_none() || r.timestamp_ms > s.max_ts {
                s.max_ts = if s.last_indexed.is_none() {
                    r.timestamp_ms
                } else {
                    s.max_ts.max(r.timestamp_ms)
                };
                if s.last_indexed
                    .is_none_or(|last| offset - last >= TIME_INDEX_INTERVAL)
                {
                    batch.put_cf(
                        time_cf,
                        codec::time_key(t.id, partition, s.max_ts, offset),
                        [],
                    );
                    s.last_indexed = Some(offset);
                }
            }
            out.push(Appended { partition, offset });
        }
        for (p, touched) in touched.iter().enumerate() {
            if *touched {
                batch.put_cf(meta_cf, pstate_key(t.id, p as u32), next[p].encode());
            }
        }
        self.db
            .write_opt(batch, &self.write_opts)
            .map_err(|e| LogError::backend("append to the embedded log", e))?;
        for (p, touched) in touched.iter().enumerate() {
            if *touched {
                t.high[p].store(next[p].next, Ordering::Release);
            }
        }
        *states = next;
        drop(states);
        metrics::log_appended(topic, out.len());
        self.notify();
        Ok(out)
    }

    pub(crate) fn read_sync(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<ConsumedRecord>, LogError> {
        let t = self.topic(topic)?;
        self.check_partition(t, partition)?;
        let high = t.high[partition as usize].load(Ordering::Acquire);
        if from >= high || max == 0 {
            return Ok(Vec::new());
        }
        let upto = high.min(from.saturating_add(max as u64));
        let cf = self.db.cf_handle(CF_RECORDS).expect("records cf");
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(codec::record_key(t.id, partition, upto).to_vec());
        let mut it = self.db.raw_iterator_cf_opt(cf, ro);
        it.seek(codec::record_key(t.id, partition, from));
        // One copy of the stored bytes per read, into a single buffer that every
        // record's key, value and headers then borrow (`Bytes` views): a record costs
        // refcounts, not allocations.
        let n = (upto - from) as usize;
        let mut buf = Vec::with_capacity(n * 192);
        let mut spans = Vec::with_capacity(n);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let offset = codec::offset_of(k).unwrap_or(u64::MAX);
            spans.push((offset, buf.len(), buf.len() + v.len()));
            buf.extend_from_slice(v);
            it.next();
        }
        it.status()
            .map_err(|e| LogError::backend("read the embedded log", e))?;
        let buf = Bytes::from(buf);
        // One topic name per read, not the topic's shared one: every record holds a
        // reference, and a replay drops records on another thread than the reader
        // that made them. One count shared by all readers would bounce its cache
        // line between cores on every record; this one is touched by one reader,
        // then by the thread that drops the chunk.
        let topic_name: Arc<str> = Arc::from(t.name.as_str());
        let mut out = Vec::with_capacity(spans.len());
        for (offset, start, end) in spans {
            let corrupt = |detail| LogError::Corrupt {
                tp: TopicPartition::new(topic, partition),
                offset,
                detail,
            };
            let f = codec::decode_record(&buf[start..end]).map_err(corrupt)?;
            out.push(ConsumedRecord {
                topic: topic_name.clone(),
                partition,
                offset,
                timestamp_ms: f.timestamp_ms,
                key: buf.slice_ref(f.key),
                value: buf.slice_ref(f.value),
                // `decode_record` validated the block.
                headers: RecordHeaders::from_validated_block(buf.slice_ref(f.headers)),
            });
        }
        Ok(out)
    }

    fn low(&self, t: &Topic, partition: u32) -> Result<u64, LogError> {
        // Nothing deletes records yet (retention is a Kafka-side setting for now), so
        // the first stored key is the low watermark.
        let cf = self.db.cf_handle(CF_RECORDS).expect("records cf");
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(codec::partition_prefix(t.id, partition + 1).to_vec());
        let mut it = self.db.raw_iterator_cf_opt(cf, ro);
        it.seek(codec::partition_prefix(t.id, partition));
        match it.key() {
            Some(k) => Ok(codec::offset_of(k).unwrap_or(0)),
            None => {
                it.status()
                    .map_err(|e| LogError::backend("read the embedded log", e))?;
                Ok(t.high[partition as usize].load(Ordering::Acquire))
            }
        }
    }

    fn offset_for_time(&self, t: &Topic, partition: u32, ts: i64) -> Result<u64, LogError> {
        let high = t.high[partition as usize].load(Ordering::Acquire);
        // The last index entry whose running max is below `ts`: every record up to its
        // offset is older than `ts`, so the answer lies after it.
        let time_cf = self.db.cf_handle(CF_TIMEINDEX).expect("timeindex cf");
        let mut it = self.db.raw_iterator_cf(time_cf);
        let start = match ts.checked_sub(1) {
            None => None,
            Some(before) => {
                it.seek_for_prev(codec::time_key(t.id, partition, before, u64::MAX));
                match it.key() {
                    Some(k) if k.starts_with(&codec::partition_prefix(t.id, partition)) => {
                        codec::time_key_offset(k).map(|o| o + 1)
                    }
                    _ => None,
                }
            }
        };
        let from = match start {
            Some(o) => o,
            None => self.low(t, partition)?,
        };
        let cf = self.db.cf_handle(CF_RECORDS).expect("records cf");
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(codec::record_key(t.id, partition, high).to_vec());
        let mut it = self.db.raw_iterator_cf_opt(cf, ro);
        it.seek(codec::record_key(t.id, partition, from));
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let offset = codec::offset_of(k).unwrap_or(u64::MAX);
            let rts = codec::decode_timestamp(v).map_err(|detail| LogError::Corrupt {
                tp: TopicPartition::new(t.name.clone(), partition),
                offset,
                detail,
            })?;
            if rts >= ts {
                return Ok(offset);
            }
            it.next();
        }
        it.status()
            .map_err(|e| LogError::backend("seek by timestamp", e))?;
        Ok(high)
    }

    pub(crate) fn committed_sync(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<u64>, LogError> {
        let t = self.topic(topic)?;
        let cf = self.db.cf_handle(CF_OFFSETS).expect("offsets cf");
        let v = self
            .db
            .get_cf(cf, codec::group_key(group, t.id, partition))
            .map_err(|e| LogError::backend("read committed offsets", e))?;
        Ok(v.and_then(|v| v.as_slice().try_into().ok().map(u64::from_be_bytes)))
    }

    pub(crate) fn commit_sync(
        &self,
        group: &str,
        offsets: &[(TopicPartition, u64)],
    ) -> Result<(), LogError> {
        self.writable("commit group offsets")?;
        let cf = self.db.cf_handle(CF_OFFSETS).expect("offsets cf");
        let mut batch = WriteBatch::default();
        for (tp, offset) in offsets {
            let t = self.topic(&tp.topic)?;
            batch.put_cf(
                cf,
                codec::group_key(group, t.id, tp.partition),
                offset.to_be_bytes(),
            );
        }
        self.db
            .write_opt(batch, &self.write_opts)
            .map_err(|e| LogError::backend("commit group offsets", e))
    }

    pub(crate) fn earliest(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        let t = self.topic(topic)?;
        self.check_partition(t, partition)?;
        self.low(t, partition)
    }
}

/// Waits until the log changes after `rx` last looked, or the timeout passes.
pub(crate) async fn wait_for_change(rx: &mut watch::Receiver<u64>, timeout: Duration) {
    let _ = tokio::time::timeout(timeout, rx.changed()).await;
}

#[async_trait]
impl EventLog for EmbeddedLog {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    fn partitions(&self, topic: &str) -> Result<u32, LogError> {
        self.inner.partitions_of(topic)
    }

    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Appended>, LogError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        // The same limit as Kafka's, so a file one backend takes the other takes.
        for r in &records {
            r.check_size()?;
        }
        let _timer = metrics::log_append_timer(topic);
        self.inner.append_sync(topic, records)
    }

    async fn watermarks(&self, topic: &str, partition: u32) -> Result<(u64, u64), LogError> {
        let high = self.inner.high(topic, partition)?;
        let low = self.inner.earliest(topic, partition)?;
        Ok((low, high))
    }

    async fn resolve(
        &self,
        topic: &str,
        partition: u32,
        position: Position,
    ) -> Result<u64, LogError> {
        let t = self.inner.topic(topic)?;
        self.inner.check_partition(t, partition)?;
        match position {
            Position::Earliest => self.inner.low(t, partition),
            Position::Latest => Ok(t.high[partition as usize].load(Ordering::Acquire)),
            Position::Offset(o) => Ok(o),
            Position::Timestamp(ts) => self.inner.offset_for_time(t, partition, ts),
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
        let mut rx = self.inner.subscribe_changes();
        let got = self.inner.read_sync(topic, partition, from, max)?;
        if !got.is_empty() || timeout.is_zero() {
            return Ok(got);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(Vec::new());
            }
            wait_for_change(&mut rx, left).await;
            let got = self.inner.read_sync(topic, partition, from, max)?;
            if !got.is_empty() {
                return Ok(got);
            }
        }
    }

    async fn committed(&self, group: &str, topic: &str) -> Result<Vec<Option<u64>>, LogError> {
        let n = self.inner.partitions_of(topic)?;
        (0..n)
            .map(|p| self.inner.committed_sync(group, topic, p))
            .collect()
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn GroupConsumer>, LogError> {
        self.inner.writable("join a consumer group")?;
        for t in topics {
            self.inner.topic(t)?;
        }
        Ok(Box::new(group::EmbeddedConsumer::join(
            self.inner.clone(),
            group,
            topics,
        )))
    }

    async fn groups(&self) -> Result<Vec<String>, LogError> {
        let mut names = self.inner.committed_groups()?;
        if let LiveMembers::Known(live) = self.inner.live_members() {
            names.extend(live.into_keys());
        }
        Ok(names.into_iter().collect())
    }

    async fn describe_group(&self, group: &str) -> Result<GroupDescription, LogError> {
        let (state, members) = match self.inner.live_members() {
            LiveMembers::Known(mut live) => match live.remove(group) {
                Some(m) if !m.is_empty() => ("Stable", m),
                _ => ("Empty", Vec::new()),
            },
            LiveMembers::Unknown => ("Unknown", Vec::new()),
        };
        Ok(GroupDescription {
            group: group.to_string(),
            state: state.to_string(),
            members,
            committed: self.inner.committed_of(group)?,
        })
    }

    async fn reset_committed(
        &self,
        group: &str,
        offsets: &[(TopicPartition, u64)],
    ) -> Result<(), LogError> {
        for (tp, _) in offsets {
            let t = self.inner.topic(&tp.topic)?;
            self.inner.check_partition(t, tp.partition)?;
        }
        if self.inner.read_only {
            // The members the holder published name who to stop; without them
            // the holder itself must stop (one process per log).
            if let LiveMembers::Known(mut live) = self.inner.live_members()
                && let Some(members) = live.remove(group).filter(|m| !m.is_empty())
            {
                return Err(LogError::GroupNotEmpty {
                    group: group.to_string(),
                    members,
                });
            }
            self.inner.writable("move committed offsets")?;
        }
        self.inner
            .groups
            .while_empty(group, || self.inner.commit_sync(group, offsets))
    }
}
