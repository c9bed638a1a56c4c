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
use super::documents::{Documents, Fields, LAYOUT, Payload};
use super::metrics::metrics;
use super::snapshots::{self, SnapshotStore};
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
    /// The next offset of the shard's last commit.
    committed: Option<u64>,
    /// The next offset of the newest snapshot known to hold this shard.
    snapshotted: Option<u64>,
    /// When the last snapshot was started (or the shard opened).
    last_snapshot: Instant,
    /// A snapshot being written on a thread of its own: its offset once done.
    snapshotting: Option<std::thread::JoinHandle<Option<u64>>>,
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
        self.committed = Some(next_offset);
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
    /// Where shards are snapshotted for their next owners, if anywhere.
    snapshots: Option<SnapshotStore>,
}

/// How long ago a record with log timestamp `record_ms` was appended; zero for a
/// timestamp in the future (clocks of producer and processor disagree).
fn behind(record_ms: i64) -> Duration {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Duration::from_millis(now_ms.saturating_sub(record_ms).max(0) as u64)
}

/// Attempts at restoring a shard from the newest snapshot (one may be pruned
/// while it is read).
const RESTORE_ATTEMPTS: usize = 3;

/// Writes a captured commit to the store, with its span, log and metrics; the
/// offset it covers, `None` if it failed.
fn write_snapshot(
    store: &SnapshotStore,
    capture: snapshots::Capture,
    started: Instant,
) -> Option<u64> {
    let partition = capture.partition;
    let span = tracing::info_span!(
        "search_snapshot",
        partition,
        next_offset = capture.next_offset
    );
    let _enter = span.enter();
    match store.write(capture) {
        Ok(s) => {
            let m = metrics();
            let seconds = started.elapsed().as_secs_f64();
            m.snapshot_seconds.observe(seconds);
            m.snapshots
                .with_label_values(&[&partition.to_string(), "ok"])
                .inc();
            m.snapshot_offset
                .with_label_values(&[&partition.to_string()])
                .set(s.next_offset as i64);
            tracing::debug!(partition, next_offset = s.next_offset, dir = %s.dir.display(), seconds, "search shard snapshotted");
            Some(s.next_offset)
        }
        Err(e) => {
            snapshot_failed(partition, &e);
            None
        }
    }
}

/// A snapshot that could not be taken: the next owner replays more.
fn snapshot_failed(partition: u32, error: &str) {
    metrics()
        .snapshots
        .with_label_values(&[&partition.to_string(), "error"])
        .inc();
    tracing::warn!(partition, %error, "search shard snapshot failed; its next owner replays from an older one");
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
            snapshots: None,
        }
    }

    /// Snapshots every shard into `store` at most once per its interval while it
    /// commits, and when it is revoked; and on assignment restores a shard from
    /// the store's newest snapshot when that is ahead of the local commit.
    pub fn with_snapshots(mut self, store: SnapshotStore) -> Self {
        self.snapshots = Some(store);
        self
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

    /// Starts a snapshot of a shard whose last commit is newer than its last
    /// snapshot, once the store's interval has passed since the previous one.
    /// The commit's files are captured (held open) here, between two commits;
    /// the copy runs on a thread of its own, so indexing goes on meanwhile. One
    /// snapshot at a time per process, the longest-waiting shard first: a
    /// capture holds every file of a commit open (several per segment), so all
    /// shards at once could pass the open-file limit, and their copies would
    /// share one disk anyway. A failed snapshot costs only a longer replay for
    /// the next owner: logged and counted, never an error of the processor.
    fn snapshot_due(&mut self) {
        let Some(store) = &self.snapshots else {
            return;
        };
        for shard in self.shards.values_mut() {
            if shard.snapshotting.as_ref().is_some_and(|h| h.is_finished())
                && let Some(h) = shard.snapshotting.take()
                && let Ok(Some(offset)) = h.join()
            {
                shard.snapshotted = Some(offset);
            }
        }
        if self.shards.values().any(|s| s.snapshotting.is_some()) {
            return;
        }
        let Some((&partition, shard)) = self
            .shards
            .iter_mut()
            .filter(|(_, s)| {
                s.committed > s.snapshotted && s.last_snapshot.elapsed() >= store.interval()
            })
            .min_by_key(|(_, s)| s.last_snapshot)
        else {
            return;
        };
        shard.last_snapshot = Instant::now();
        let started = Instant::now();
        let dir = shard_dir(&self.root, partition);
        let capture = match snapshots::capture(&dir, shard.writer.index(), partition) {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(e) => return snapshot_failed(partition, &e),
        };
        let store = store.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("courier-snapshot-p{partition}"))
            .spawn(move || write_snapshot(&store, capture, started));
        match spawned {
            Ok(h) => shard.snapshotting = Some(h),
            Err(e) => snapshot_failed(partition, &format!("starting its thread: {e}")),
        }
    }

    /// Before a revoked shard closes: its last commit is snapshotted now, so its
    /// next owner replays nothing of what this instance handled.
    fn snapshot_now(&mut self, partition: u32) {
        let Some(store) = &self.snapshots else {
            return;
        };
        let Some(shard) = self.shards.get_mut(&partition) else {
            return;
        };
        if let Some(h) = shard.snapshotting.take()
            && let Ok(Some(offset)) = h.join()
        {
            shard.snapshotted = Some(offset);
        }
        if shard.committed <= shard.snapshotted {
            return;
        }
        let started = Instant::now();
        let dir = shard_dir(&self.root, partition);
        match snapshots::capture(&dir, shard.writer.index(), partition) {
            Ok(Some(c)) => {
                shard.snapshotted = write_snapshot(store, c, started);
            }
            Ok(None) => {}
            Err(e) => snapshot_failed(partition, &e),
        }
    }

    /// On assignment, with a snapshot store: restores the shard in `dir` from
    /// the newest snapshot if that is ahead of the shard's own commit (`local`),
    /// and says where the shard's contents come from (log and metric). A restore
    /// that fails is tried again from the then newest snapshot; after the last
    /// attempt the shard starts from its own commit, which is slower, not wrong.
    /// Returns the next offset of the newest snapshot seen.
    fn restore_if_behind(&self, dir: &Path, partition: u32, local: Option<u64>) -> Option<u64> {
        let store = self.snapshots.as_ref()?;
        let span = tracing::info_span!("search_restore", partition);
        let _enter = span.enter();
        let m = metrics();
        let label = partition.to_string();
        let from_own = if local.is_some() { "local" } else { "reindex" };
        let mut last_error = None;
        for _ in 0..RESTORE_ATTEMPTS {
            let newest = match store.newest(partition) {
                Ok(n) => n,
                Err(e) => {
                    last_error = Some(e);
                    continue;
                }
            };
            let seen = newest.as_ref().map(|s| s.next_offset);
            let Some(snapshot) = newest.filter(|s| local.is_none_or(|l| s.next_offset > l)) else {
                m.restores.with_label_values(&[&label, from_own]).inc();
                match local {
                    Some(next_offset) => tracing::info!(
                        partition,
                        next_offset,
                        "search shard resumes from its own commit"
                    ),
                    None => tracing::info!(
                        partition,
                        snapshots = %store.root().display(),
                        "no snapshot of this search shard: re-indexing it from the partition's start"
                    ),
                }
                return seen;
            };
            let started = Instant::now();
            match snapshots::restore(&snapshot, dir) {
                Ok(r) => {
                    let seconds = started.elapsed().as_secs_f64();
                    m.restore_seconds.observe(seconds);
                    m.restores.with_label_values(&[&label, "snapshot"]).inc();
                    tracing::info!(
                        partition,
                        next_offset = snapshot.next_offset,
                        local_next_offset = ?local,
                        snapshot = %snapshot.dir.display(),
                        files = r.files,
                        bytes = r.bytes,
                        seconds,
                        "restored search shard from a snapshot; replaying the log after it"
                    );
                    return seen;
                }
                Err(e) => last_error = Some(e),
            }
        }
        m.restores.with_label_values(&[&label, from_own]).inc();
        tracing::error!(
            partition,
            error = %last_error.unwrap_or_default(),
            snapshots = %store.root().display(),
            "cannot restore search shard from a snapshot; starting from its own commit"
        );
        None
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

impl Drop for TantivySearchIndex {
    /// A stopping processor hands its shards over as a revoked one does: what it
    /// committed is snapshotted before it goes (a run ends with a flush, then
    /// leaves its group without revoking).
    fn drop(&mut self) {
        let partitions: Vec<u32> = self.shards.keys().copied().collect();
        for partition in partitions {
            self.snapshot_now(partition);
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
        let mut snapshotted = None;
        if self.snapshots.is_some() {
            let local = if dir.join("meta.json").exists() {
                let metas = Index::open_in_dir(&dir)
                    .and_then(|i| i.load_metas())
                    .map_err(|e| fatal("reading the commit of", &e))?;
                match metas.payload {
                    Some(p) => Some(Payload::parse(&p, partition)?.next_offset),
                    None => None,
                }
            } else {
                None
            };
            snapshotted = self.restore_if_behind(&dir, partition, local);
        }
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
        if self.snapshots.is_none() {
            // Said with a snapshot store by `restore_if_behind`.
            let source = if next.is_some() { "local" } else { "reindex" };
            metrics()
                .restores
                .with_label_values(&[&partition.to_string(), source])
                .inc();
            if next.is_none() {
                tracing::info!(
                    partition,
                    "no snapshot store ([search] snapshot_dir): re-indexing it from the partition's start"
                );
            }
        }
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
                committed: next,
                snapshotted,
                last_snapshot: Instant::now(),
                snapshotting: None,
            },
        );
        self.owned.write().expect("owned lock").insert(partition);
        metrics()
            .owned
            .with_label_values(&[&partition.to_string()])
            .set(1);
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
        self.snapshot_now(partition);
        // Dropping the writer releases the lock.
        self.owned.write().expect("owned lock").remove(&partition);
        metrics()
            .owned
            .with_label_values(&[&partition.to_string()])
            .set(0);
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
        self.snapshot_due();
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
        })?;
        self.snapshot_due();
        Ok(())
    }
}
