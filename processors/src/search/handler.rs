//! Drives the search view from the runner: decode and route each record, apply the
//! inbox fold to its conversation's state, map the outcome to index operations,
//! dead-letter what cannot be applied, and commit each touched shard with its
//! states and next offset through the [`SearchIndex`] port.
//!
//! As in the inbox handler, a batch works on states taken *out* of the cache and
//! puts them back only once the index acknowledged the write, so a failed write
//! leaves nothing half-applied in memory: the retry reloads what was committed.
//! The index holds no states of its own: when it commits, it reads the latest
//! version of each state its writes changed from this processor ([`Latest`]),
//! so the fold changes states in place and never copies one. The price: once a
//! batch has folded, the states as they were before it are gone, so a batch may
//! fail after its fold only where nothing deferred needs them (see
//! `send_dead_letters`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use courier_pipeline::runner::{Handler, HandlerError, backoff};
use courier_pipeline::{ConsumedRecord, EventLog, TopicPartition, dead_letter, replay};
use courier_schemas::Event;
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use super::index::{LatestStates, SearchBatch, SearchIndex, ShardWrite};
use super::ops::{IndexOp, index_ops};
use crate::inbox::{
    ConversationState, Position, STATE_FORMAT, Triage, apply_without_inbox_rows, triage,
};
use crate::store::StoreError;

/// The default processor name: metrics label and dead-letter attribution.
const PROCESSOR: &str = "search";

/// Attempts at writing a batch's dead letters before the processor gives up
/// (a fatal error: it restarts from the shards' commits), paced by the
/// runner's [`backoff`].
const DEAD_LETTER_ATTEMPTS: u32 = 6;

/// States by partition, then conversation.
type Cache = HashMap<u32, HashMap<String, Arc<ConversationState>>>;

/// The processor's latest states for the index: a batch's own (taken out of
/// the cache while it runs) over the cache.
struct Latest<'a> {
    batch: Option<&'a HashMap<String, (u32, Arc<ConversationState>)>>,
    cache: &'a Cache,
}

impl<'a> Latest<'a> {
    /// The cache alone: between batches, everything is in it.
    fn cached(cache: &'a Cache) -> Self {
        Latest { batch: None, cache }
    }
}

impl LatestStates for Latest<'_> {
    fn latest(&self, partition: u32, conversation: &str) -> Option<&ConversationState> {
        if let Some((_, s)) = self.batch.and_then(|b| b.get(conversation)) {
            return Some(s);
        }
        self.cache.get(&partition)?.get(conversation).map(|s| &**s)
    }
}

/// The search processor over an index port.
pub struct SearchProcessor<S> {
    index: S,
    /// Where dead letters go, and where the start of a partition is read.
    log: Arc<dyn EventLog>,
    /// Metrics label (`search`, or `search-rebuild` while rebuilding).
    name: String,
    /// Next offset to apply per owned partition, as committed in its shard.
    checkpoints: HashMap<u32, u64>,
    /// States of conversations on owned partitions, by partition, then id.
    states: Cache,
    /// Per partition, the offset below which the generation a rebuild replaces
    /// already sent the dead letters (empty for a live processor).
    dead_lettered: std::collections::HashMap<u32, u64>,
    /// Decodes records, remembering the header blocks it accepted.
    decoder: replay::Decoder,
}

impl<S: SearchIndex> SearchProcessor<S> {
    /// A processor writing to `index`, dead-lettering through `log`.
    pub fn new(index: S, log: Arc<dyn EventLog>) -> Self {
        SearchProcessor {
            index,
            log,
            name: PROCESSOR.to_string(),
            checkpoints: HashMap::new(),
            states: HashMap::new(),
            dead_lettered: std::collections::HashMap::new(),
            decoder: replay::Decoder::default(),
        }
    }

    /// Names the processor in logs and dead-letter warnings (a rebuild is
    /// `search-rebuild`).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// For a rebuild: records below these next-offsets (per partition) had their
    /// rejections dead-lettered by the generation being replaced.
    pub fn dead_lettered_below(
        mut self,
        next_offsets: std::collections::HashMap<u32, u64>,
    ) -> Self {
        self.dead_lettered = next_offsets;
        self
    }

    /// The index.
    pub fn index(&self) -> &S {
        &self.index
    }

    /// Gives the index back.
    pub fn into_index(self) -> S {
        self.index
    }

    /// A batch failed before reaching the index, with states taken out of the
    /// cache (some changed by the fold): the retry reloads them from the shards'
    /// commits, which is right only if those hold every earlier batch. So what
    /// the index deferred is committed first; if that fails, it is lost until a
    /// restart redoes it, and nothing of the cache may survive.
    async fn abandon(&mut self, e: HandlerError) -> HandlerError {
        let latest = Latest::cached(&self.states);
        match self.index.flush(&latest).await {
            Ok(()) => e,
            Err(f) => {
                self.states.values_mut().for_each(HashMap::clear);
                HandlerError::fatal(format!("{e}; then committing earlier batches: {f}"))
            }
        }
    }

    /// Sends a batch's dead letters, retrying a failing log here rather than
    /// through the runner: the batch has folded by now, and a retry of the
    /// whole batch would need the states as they were before it (see the
    /// module doc). If every attempt fails the error is fatal.
    async fn send_dead_letters(
        log: &dyn EventLog,
        name: &str,
        rejected: &[(&ConsumedRecord, String)],
    ) -> Result<(), HandlerError> {
        let mut attempt = 1;
        loop {
            // Attributed to the view, `search`, even from `search-rebuild`: its
            // redrive is search's.
            match dead_letter::send_as(log, name, PROCESSOR, rejected).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt >= DEAD_LETTER_ATTEMPTS => {
                    return Err(HandlerError::fatal(format!(
                        "writing dead letters failed {attempt} times: {e} (the processor \
                         restarts from the shards' commits)"
                    )));
                }
                Err(e) => {
                    let wait = backoff(attempt - 1);
                    tracing::warn!(processor = %name, error = %e, attempt, retry_in_ms = wait.as_millis() as u64, "writing dead letters failed; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Takes the states the batch needs out of the cache, loading the others.
    async fn take_states(
        &mut self,
        todo: &[(&ConsumedRecord, Event, String)],
    ) -> Result<HashMap<String, (u32, Arc<ConversationState>)>, HandlerError> {
        let mut work: HashMap<String, (u32, Arc<ConversationState>)> = HashMap::new();
        let mut missing: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        let mut cached: Vec<(u32, &str)> = Vec::new();
        let mut asked: HashSet<&str> = HashSet::new();
        for (r, _, c) in todo {
            if !asked.insert(c) {
                continue;
            }
            if self
                .states
                .get(&r.partition)
                .is_some_and(|m| m.contains_key(c.as_str()))
            {
                cached.push((r.partition, c));
            } else {
                missing.entry(r.partition).or_default().push(c.clone());
            }
        }
        // Loads first, so a failed load leaves the cache whole: the index may
        // still need those states to commit what it deferred.
        let mut fresh = Vec::new();
        for (partition, ids) in missing {
            let loaded = self.index.load_states(partition, &ids).await?;
            for (c, state) in ids.into_iter().zip(loaded) {
                let state = match state {
                    Some(s) if s.format() > STATE_FORMAT => {
                        return Err(StoreError::fatal(
                            "search",
                            format!(
                                "the stored state of conversation {c} has format {}, newer than \
                                 this build's {STATE_FORMAT}: run a newer courier or rebuild search",
                                s.format()
                            ),
                        )
                        .into());
                    }
                    Some(s) => s,
                    None => ConversationState::new(c.clone()),
                };
                fresh.push((c, partition, state));
            }
        }
        for (c, partition, state) in fresh {
            work.insert(c, (partition, Arc::new(state)));
        }
        for (partition, c) in cached {
            if let Some(state) = self.states.get_mut(&partition).and_then(|m| m.remove(c)) {
                work.insert(c.to_owned(), (partition, state));
            }
        }
        Ok(work)
    }
}

#[async_trait]
impl<S: SearchIndex> Handler for SearchProcessor<S> {
    async fn on_assigned(
        &mut self,
        tps: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, u64)>, HandlerError> {
        // The offset in the shard's last commit is the truth: the group's commit
        // may lag it by a batch after a crash, and a shard that was never committed
        // (new, deleted, a rebuild) starts at the beginning of the log whatever the
        // group committed, or it would silently miss documents.
        let mut seeks = Vec::with_capacity(tps.len());
        for tp in tps {
            let next = match self.index.open_shard(tp.partition).await? {
                Some(next) => next,
                None => courier_pipeline::runner::start_of(&*self.log, tp).await?,
            };
            tracing::info!(processor = %self.name, partition = tp.partition, next, "search shard open");
            self.checkpoints.insert(tp.partition, next);
            self.states.entry(tp.partition).or_default();
            seeks.push((tp.clone(), next));
        }
        Ok(seeks)
    }

    async fn on_revoked(&mut self, tps: &[TopicPartition]) -> Result<(), HandlerError> {
        // Every batch is committed before the runner polls again, so nothing of a
        // revoked partition is pending; its next owner reads the shard's commit.
        for tp in tps {
            // Closing commits the shard's pending work, with these states.
            let latest = Latest::cached(&self.states);
            self.index.close_shard(tp.partition, &latest).await?;
            self.checkpoints.remove(&tp.partition);
            self.states.remove(&tp.partition);
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), HandlerError> {
        let latest = Latest::cached(&self.states);
        self.index.flush(&latest).await?;
        Ok(())
    }

    async fn handle(&mut self, batch: &[ConsumedRecord]) -> Result<(), HandlerError> {
        let started = Instant::now();
        // Per partition: the next offset, and the newest record's log timestamp.
        let mut next: BTreeMap<u32, (u64, i64)> = BTreeMap::new();
        let mut rejected: Vec<(&ConsumedRecord, String)> = Vec::new();
        let mut todo: Vec<(&ConsumedRecord, Event, String)> = Vec::new();
        for r in batch {
            let newest = next.get(&r.partition).map_or(i64::MIN, |n| n.1);
            next.insert(r.partition, (r.offset + 1, newest.max(r.timestamp_ms)));
            // Below the shard's commit: applied before a crash that came before
            // the group's commit.
            match triage(
                PROCESSOR,
                r,
                self.checkpoints.get(&r.partition).copied(),
                &mut self.decoder,
            ) {
                Triage::Applied => {}
                Triage::Rejected(reason) => rejected.push((r, reason)),
                Triage::Fold(event, c) => todo.push((r, event, c)),
            }
        }

        let mut work = match self.take_states(&todo).await {
            Ok(work) => work,
            Err(e) => return Err(self.abandon(e).await),
        };
        let mut ops: BTreeMap<u32, Vec<IndexOp>> = BTreeMap::new();
        let mut changed: HashSet<String> = HashSet::new();
        for (r, event, c) in &todo {
            let (_, state) = work
                .get_mut(c)
                .expect("every routed conversation was taken");
            let outcome = apply_without_inbox_rows(
                Arc::make_mut(state),
                event,
                Position::new(r.partition, r.offset),
            );
            if outcome.state_changed() {
                changed.insert(c.clone());
            }
            if let Some(reason) = outcome.rejection() {
                rejected.push((r, reason.to_owned()));
            }
            ops.entry(r.partition)
                .or_default()
                .extend(index_ops(state, &outcome));
        }

        // Dead letters before the index: if the write fails, the retry sends them
        // again under the same ids rather than losing them.
        rejected.retain(|(r, _)| {
            self.dead_lettered
                .get(&r.partition)
                .is_none_or(|below| r.offset >= *below)
        });
        rejected.sort_by_key(|(r, _)| (r.partition, r.offset));
        if let Err(e) = Self::send_dead_letters(&*self.log, &self.name, &rejected).await {
            // The fold changed the taken states in place: what the index
            // deferred can no longer be committed as it was, so only a restart
            // from the shards' commits redoes it.
            self.states.values_mut().for_each(HashMap::clear);
            return Err(e);
        }

        let mut shards: BTreeMap<u32, ShardWrite> = next
            .iter()
            .map(|(&partition, &(next_offset, newest_record_ms))| {
                (
                    partition,
                    ShardWrite {
                        partition,
                        ops: ops.remove(&partition).unwrap_or_default(),
                        changed: Vec::new(),
                        next_offset,
                        newest_record_ms,
                    },
                )
            })
            .collect();
        for c in changed {
            let (partition, _) = work[&c];
            shards
                .get_mut(&partition)
                .expect("a changed state's partition is in the batch")
                .changed
                .push(c);
        }
        let write = SearchBatch {
            shards: shards.into_values().collect(),
        };
        let documents: usize = write.shards.iter().map(|s| s.ops.len()).sum();
        // On error the taken states are gone from the cache: the retry reloads
        // them as committed. A fatal error (deferred work lost) drops the whole
        // cache, so nothing ahead of the shards' commits survives in memory.
        let latest = Latest {
            batch: Some(&work),
            cache: &self.states,
        };
        if let Err(e) = self.index.write(&write, &latest).await {
            if !e.retryable {
                self.states.values_mut().for_each(HashMap::clear);
            }
            return Err(e.into());
        }
        tracing::debug!(
            processor = %self.name,
            records = batch.len(),
            documents,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "search batch committed"
        );

        for shard in &write.shards {
            self.checkpoints.insert(shard.partition, shard.next_offset);
        }
        for (c, (partition, state)) in work {
            self.states.entry(partition).or_default().insert(c, state);
        }
        Ok(())
    }
}
