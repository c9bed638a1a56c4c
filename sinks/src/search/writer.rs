//! The I/O half of the tantivy sink for the processor: one tantivy index per
//! partition of `courier.conversations.v1` (`ROOT/pNN/`), each with its own
//! writer, committed with a payload naming the shard's next offset.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use courier_processors::inbox::ConversationState;
use courier_processors::search::{IndexOp, LatestStates, SearchBatch, SearchIndex, ShardWrite};
use courier_processors::store::StoreError;
use tantivy::collector::TopDocs;
use tantivy::query::{TermQuery, TermSetQuery};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument};

use super::STORE;
use super::documents::{Fields, LAYOUT, Payload};
use super::metrics::metrics;
use crate::states;

/// Indexing memory per shard. tantivy needs at least 15 MB per indexing thread;
/// one thread per shard, since the shards of a process already index in parallel
/// and the machine is shared with the other processors.
pub const WRITER_MEMORY: usize = 32 * 1024 * 1024;

/// The directory of partition `p`'s shard under a generation's root.
pub fn shard_dir(root: &Path, partition: u32) -> PathBuf {
    root.join(format!("p{partition:02}"))
}

/// The next offset of every committed shard under `root`, by partition, read
/// without taking any writer lock (a rebuild asks the generation it replaces).
pub fn committed_offsets(root: &Path) -> Result<HashMap<u32, u64>, StoreError> {
    let mut out = HashMap::new();
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            return Err(StoreError::fatal(
                STORE,
                format!("listing {}: {e}", root.display()),
            ));
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(partition) = name
            .to_str()
            .and_then(|n| n.strip_prefix('p'))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        if !dir.join("meta.json").exists() {
            continue;
        }
        let metas = Index::open_in_dir(&dir)
            .and_then(|i| i.load_metas())
            .map_err(|e| StoreError::fatal(STORE, format!("reading {}: {e}", dir.display())))?;
        if let Some(p) = metas.payload {
            out.insert(partition, Payload::next_offset_of(&p, partition)?);
        }
    }
    Ok(out)
}

/// An open shard: the writer, and a reader of its own commits for states.
struct Shard {
    writer: IndexWriter,
    reader: IndexReader,
    /// The reader has not seen the latest commit: reloaded only when a state is
    /// read (rarely: after an assignment), not after every commit.
    stale: bool,
    /// Staged, acknowledged to the processor, not yet committed.
    pending: Option<Pending>,
    /// The conversations whose state changed since the last commit: their
    /// latest versions are written once per commit, read from the processor
    /// then (a state is only needed together with the commit that covers it).
    dirty: HashSet<String>,
}

/// A shard's work since its last commit.
struct Pending {
    /// When the first of it was staged.
    since: Instant,
    /// What the commit payload will say.
    next_offset: u64,
    /// Document and state operations staged.
    operations: usize,
    /// How far behind the log the latest write was (now − its newest record's
    /// log timestamp).
    behind: Duration,
}

/// A shard commits when its oldest uncommitted work is [`commit_interval`] old
/// (how stale a query may be while the processor is busy), or when this much is
/// staged. A commit costs far more than a document (a new segment whose terms
/// and states are all written again, its fsyncs, fresh indexing memory, later
/// merges), so committing every batch would make catch-up several times slower.
/// The commit payload, not the group offset, is the processor's position, so
/// deferring commits loses nothing: a crash redoes the uncommitted work.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
const MAX_COMMIT_INTERVAL: Duration = Duration::from_secs(30);
const COMMIT_OPERATIONS: usize = 200_000;

/// How long a shard may defer its commit when the processor is `behind` the log:
/// [`COMMIT_INTERVAL`] while it keeps up; half its lag while it catches up (a
/// restart, a rebuild, a burst), up to [`MAX_COMMIT_INTERVAL`]. Queries are at
/// least `behind` stale then whatever the interval, so this adds at most half
/// to their staleness, and it saves most of the per-commit work of a catch-up:
/// committing every second made a catch-up of 1,000,000 messages spend most of
/// its CPU on commits (BENCHMARKS.md, "Search view").
pub fn commit_interval(behind: Duration) -> Duration {
    (behind / 2).clamp(COMMIT_INTERVAL, MAX_COMMIT_INTERVAL)
}

impl Shard {
    /// Commits what was staged, and the dirty states, with `next_offset` in the
    /// payload.
    fn commit(
        &mut self,
        fields: &Fields,
        partition: u32,
        next_offset: u64,
        latest: &dyn LatestStates,
    ) -> Result<(), StoreError> {
        // One delete for all the replaced states, before their new versions (a
        // delete only reaches documents added before it): tantivy runs every
        // delete as a query on every segment, so one per state would cost more
        // than writing the states.
        if !self.dirty.is_empty() {
            let keys = TermSetQuery::new(self.dirty.iter().map(|c| fields.state_key(c)));
            self.writer
                .delete_query(Box::new(keys))
                .map_err(|e| err(partition, "deleting replaced states", e))?;
        }
        let mut buf = Vec::new();
        for c in self.dirty.drain() {
            let s = latest.latest(partition, &c).ok_or_else(|| {
                StoreError::fatal(
                    STORE,
                    format!(
                        "shard p{partition}: the state of conversation {c} changed but the \
                         processor no longer has it (a bug)"
                    ),
                )
            })?;
            self.writer
                .add_document(fields.state_doc(s, &mut buf))
                .map_err(|e| err(partition, "adding a state", e))?;
        }
        let payload = serde_json::to_string(&Payload {
            layout: LAYOUT,
            partition,
            next_offset,
        })
        .expect("a payload serializes");
        let mut prepared = self
            .writer
            .prepare_commit()
            .map_err(|e| err(partition, "preparing a commit", e))?;
        prepared.set_payload(&payload);
        prepared
            .commit()
            .map_err(|e| err(partition, "committing", e))?;
        self.stale = true;
        self.pending = None;
        Ok(())
    }
}

/// The search index of one generation on local disk, for the processor.
///
/// Its methods block on local disk I/O inside `async fn`s, like the RocksDB
/// stores: the runner drives one batch at a time, so there is nothing to starve.
pub struct TantivySearchIndex {
    root: PathBuf,
    fields: Fields,
    shards: HashMap<u32, Shard>,
    /// The partitions whose shards are open here, shared with a query server so it
    /// answers only for the shards this instance owns (a stale copy of a shard
    /// that moved to another instance must not answer).
    owned: Arc<RwLock<BTreeSet<u32>>>,
}

/// How long ago a record with log timestamp `record_ms` was appended; zero for a
/// timestamp in the future (clocks of producer and processor disagree).
fn behind(record_ms: i64) -> Duration {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Duration::from_millis(now_ms.saturating_sub(record_ms).max(0) as u64)
}

fn err(partition: u32, what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::retryable(STORE, format!("shard p{partition}: {what}: {e}"))
}

impl TantivySearchIndex {
    /// The index under `root` (shards are created as partitions are assigned).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        TantivySearchIndex {
            root: root.into(),
            fields: Fields::new(),
            shards: HashMap::new(),
            owned: Arc::default(),
        }
    }

    /// The partitions this index has open for writing, kept up to date as they
    /// are assigned and revoked.
    pub fn owned(&self) -> Arc<RwLock<BTreeSet<u32>>> {
        self.owned.clone()
    }

    /// Where the shards are.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn shard(&mut self, partition: u32) -> Result<&mut Shard, StoreError> {
        self.shards.get_mut(&partition).ok_or_else(|| {
            StoreError::fatal(
                STORE,
                format!("shard p{partition} is not open (a processor bug)"),
            )
        })
    }

    /// Applies one shard's part of a batch without committing: nothing of it is
    /// visible or durable until [`Self::commit_shard`]. Public so a test can stop
    /// between the two, as a crash would.
    pub fn stage(&mut self, w: &ShardWrite) -> Result<(), StoreError> {
        let fields = self.fields.clone();
        let partition = w.partition;
        let shard = self.shard(partition)?;
        let (mut upserts, mut deletes) = (0u64, 0u64);
        for op in &w.ops {
            match op {
                IndexOp::Add(d) => {
                    shard
                        .writer
                        .add_document(fields.message_doc(d))
                        .map_err(|e| err(partition, "adding a document", e))?;
                    upserts += 1;
                }
                // tantivy applies a delete to the documents added before it, so
                // delete-then-add in log order leaves the latest version only.
                IndexOp::Upsert(d) => {
                    shard
                        .writer
                        .delete_term(fields.message_key(&d.conversation_id, &d.message_id));
                    shard
                        .writer
                        .add_document(fields.message_doc(d))
                        .map_err(|e| err(partition, "adding a document", e))?;
                    upserts += 1;
                }
                IndexOp::Delete {
                    conversation_id,
                    message_id,
                } => {
                    shard
                        .writer
                        .delete_term(fields.message_key(conversation_id, message_id));
                    deletes += 1;
                }
            }
        }
        for c in &w.changed {
            if !shard.dirty.contains(c) {
                shard.dirty.insert(c.clone());
            }
        }
        let m = metrics();
        m.documents.with_label_values(&["upsert"]).inc_by(upserts);
        m.documents.with_label_values(&["delete"]).inc_by(deletes);
        Ok(())
    }

    /// Commits what was staged on `partition` with `next_offset` in the payload
    /// and the latest versions of the states it changed.
    pub fn commit_shard(
        &mut self,
        partition: u32,
        next_offset: u64,
        latest: &dyn LatestStates,
    ) -> Result<(), StoreError> {
        let fields = self.fields.clone();
        self.shard(partition)?
            .commit(&fields, partition, next_offset, latest)
    }

    /// Commits the pending work of `partitions`, side by side: a commit mostly
    /// waits (the indexing thread writes its segment, then fsyncs). Each stays
    /// atomic; the first error is returned after all have finished.
    fn commit_all(
        &mut self,
        partitions: &[u32],
        latest: &dyn LatestStates,
    ) -> Result<(), StoreError> {
        if partitions.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let fields = &self.fields;
        let results: Vec<(u32, Result<(), StoreError>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .shards
                .iter_mut()
                .filter(|(p, _)| partitions.contains(p))
                .filter_map(|(p, shard)| {
                    let next = shard.pending.as_ref()?.next_offset;
                    let p = *p;
                    Some((
                        p,
                        scope.spawn(move || shard.commit(fields, p, next, latest)),
                    ))
                })
                .collect();
            handles
                .into_iter()
                .map(|(p, h)| {
                    let r = h.join().unwrap_or_else(|_| {
                        Err(StoreError::fatal(
                            STORE,
                            format!("shard p{p}: commit panicked"),
                        ))
                    });
                    (p, r)
                })
                .collect()
        });
        let mut first_error = None;
        for (p, r) in results {
            match r {
                Ok(()) => metrics()
                    .commit_seconds
                    .with_label_values(&[&p.to_string()])
                    .observe(started.elapsed().as_secs_f64()),
                Err(e) => {
                    self.roll_back(p);
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// After a failed write: every shard of the batch goes back to its commit.
    /// Retryable only if that loses nothing but this batch.
    fn fail(&mut self, batch: &SearchBatch, acked_pending: bool, e: StoreError) -> StoreError {
        for w in &batch.shards {
            self.roll_back(w.partition);
        }
        if acked_pending {
            StoreError::fatal(
                STORE,
                format!(
                    "{e}; uncommitted work of earlier batches is lost until a restart redoes it"
                ),
            )
        } else {
            e
        }
    }

    /// Drops whatever was staged on `partition` since its last commit.
    fn roll_back(&mut self, partition: u32) {
        if let Some(shard) = self.shards.get_mut(&partition) {
            shard.pending = None;
            shard.dirty.clear();
        }
        if let Some(shard) = self.shards.get_mut(&partition)
            && let Err(e) = shard.writer.rollback()
        {
            // The writer is unusable; closing it makes the next batch reopen the
            // shard from its last commit.
            tracing::error!(partition, error = %e, "rolling back a search shard failed; closing it");
            self.shards.remove(&partition);
        }
    }
}

#[async_trait]
impl SearchIndex for TantivySearchIndex {
    async fn open_shard(&mut self, partition: u32) -> Result<Option<u64>, StoreError> {
        let dir = shard_dir(&self.root, partition);
        std::fs::create_dir_all(&dir)
            .map_err(|e| StoreError::fatal(STORE, format!("creating {}: {e}", dir.display())))?;
        let fatal = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::fatal(STORE, format!("{what} {}: {e}", dir.display()))
        };
        let index = if dir.join("meta.json").exists() {
            let index = Index::open_in_dir(&dir).map_err(|e| fatal("opening", &e))?;
            if index.schema() != self.fields.schema {
                return Err(StoreError::fatal(
                    STORE,
                    format!(
                        "{} has another schema than this build's: rebuild search",
                        dir.display()
                    ),
                ));
            }
            index
        } else {
            Index::create_in_dir(&dir, self.fields.schema.clone())
                .map_err(|e| fatal("creating", &e))?
        };
        let payload = index
            .load_metas()
            .map_err(|e| fatal("reading the commit of", &e))?
            .payload;
        let next = match payload {
            Some(p) => Some(Payload::parse(&p, partition)?.next_offset),
            None => None,
        };
        let writer = index
            .writer_with_num_threads(1, WRITER_MEMORY)
            .map_err(|e| match e {
                tantivy::TantivyError::LockFailure(..) => StoreError::fatal(
                    STORE,
                    format!(
                        "{} is in use by another courier process (one search processor per shard)",
                        dir.display()
                    ),
                ),
                e => fatal("opening a writer on", &e),
            })?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| fatal("opening a reader on", &e))?;
        self.shards.insert(
            partition,
            Shard {
                writer,
                reader,
                stale: false,
                pending: None,
                dirty: HashSet::new(),
            },
        );
        self.owned.write().expect("owned lock").insert(partition);
        Ok(next)
    }

    async fn close_shard(
        &mut self,
        partition: u32,
        latest: &dyn LatestStates,
    ) -> Result<(), StoreError> {
        // The next owner starts from the commit: make it hold everything handled.
        if self
            .shards
            .get(&partition)
            .is_some_and(|s| s.pending.is_some())
        {
            self.commit_all(&[partition], latest).map_err(|e| {
                StoreError::fatal(
                    STORE,
                    format!("{e} (uncommitted work is redone on restart)"),
                )
            })?;
        }
        // Dropping the writer releases the lock.
        self.owned.write().expect("owned lock").remove(&partition);
        self.shards.remove(&partition);
        Ok(())
    }

    async fn load_states(
        &mut self,
        partition: u32,
        conversations: &[String],
    ) -> Result<Vec<Option<ConversationState>>, StoreError> {
        let fields = self.fields.clone();
        let shard = self.shard(partition)?;
        if shard.stale {
            shard
                .reader
                .reload()
                .map_err(|e| err(partition, "reloading after a commit", e))?;
            shard.stale = false;
        }
        let searcher = shard.reader.searcher();
        let mut out = Vec::with_capacity(conversations.len());
        for c in conversations {
            let q = TermQuery::new(fields.state_key(c), IndexRecordOption::Basic);
            let top = searcher
                .search(&q, &TopDocs::with_limit(1).order_by_score())
                .map_err(|e| err(partition, "looking up a state", e))?;
            let Some((_, addr)) = top.first() else {
                out.push(None);
                continue;
            };
            let doc: TantivyDocument = searcher
                .doc(*addr)
                .map_err(|e| err(partition, "reading a state", e))?;
            let bytes = doc
                .get_first(fields.state)
                .and_then(|v| v.as_bytes())
                .ok_or_else(|| {
                    StoreError::fatal(STORE, format!("shard p{partition}: state of {c} is empty"))
                })?;
            let state = states::decode(bytes, STORE, c)?;
            out.push(Some(state));
        }
        Ok(out)
    }

    async fn write(
        &mut self,
        batch: &SearchBatch,
        latest: &dyn LatestStates,
    ) -> Result<(), StoreError> {
        // Work the processor was already told is written, and would be lost with
        // a roll back: then any failure is fatal (see the port's contract).
        let acked_pending = self.shards.values().any(|s| s.pending.is_some());
        for w in &batch.shards {
            if let Err(e) = self.stage(w) {
                return Err(self.fail(batch, acked_pending, e));
            }
            let shard = self.shard(w.partition)?;
            let pending = shard.pending.get_or_insert(Pending {
                since: Instant::now(),
                next_offset: w.next_offset,
                operations: 0,
                behind: Duration::ZERO,
            });
            pending.next_offset = w.next_offset;
            pending.operations += w.ops.len() + w.changed.len();
            pending.behind = behind(w.newest_record_ms);
        }
        let due: Vec<u32> = self
            .shards
            .iter()
            .filter(|(_, s)| {
                s.pending.as_ref().is_some_and(|p| {
                    p.since.elapsed() >= commit_interval(p.behind)
                        || p.operations >= COMMIT_OPERATIONS
                })
            })
            .map(|(p, _)| *p)
            .collect();
        if let Err(e) = self.commit_all(&due, latest) {
            return Err(self.fail(batch, acked_pending, e));
        }
        Ok(())
    }

    async fn flush(&mut self, latest: &dyn LatestStates) -> Result<(), StoreError> {
        let pending: Vec<u32> = self
            .shards
            .iter()
            .filter(|(_, s)| s.pending.is_some())
            .map(|(p, _)| *p)
            .collect();
        self.commit_all(&pending, latest).map_err(|e| {
            StoreError::fatal(
                STORE,
                format!("{e} (uncommitted work is redone on restart)"),
            )
        })
    }
}
