//! Drives the search view from the runner: decode and route each record, apply the
//! inbox fold to its conversation's state, map the outcome to index operations,
//! dead-letter what cannot be applied, and commit each touched shard with its
//! states and next offset through the [`SearchIndex`] port.
//!
//! As in the inbox handler, a batch works on states taken *out* of the cache and
//! puts them back only once the index acknowledged the write, so a failed write
//! leaves nothing half-applied in memory: the retry reloads what was committed.
//! States are `Arc`s shared with the index until it commits them: a batch copies
//! a state only when the index still holds the version it changes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use courier_pipeline::runner::{Handler, HandlerError};
use courier_pipeline::{ConsumedRecord, EventLog, TopicPartition, dead_letter, replay};
use courier_schemas::Event;

use super::index::{SearchBatch, SearchIndex, ShardWrite};
use super::ops::{IndexOp, index_ops};
use crate::inbox::{ConversationState, Position, STATE_FORMAT, Triage, apply, triage};
use crate::store::StoreError;

/// The default processor name: metrics label and dead-letter attribution.
const PROCESSOR: &str = "search";

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
    states: HashMap<u32, HashMap<String, Arc<ConversationState>>>,
    /// Per partition, the offset below which the generation a rebuild replaces
    /// already sent the dead letters (empty for a live processor).
    dead_lettered: HashMap<u32, u64>,
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
            dead_lettered: HashMap::new(),
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
    pub fn dead_lettered_below(mut self, next_offsets: HashMap<u32, u64>) -> Self {
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
        match self.index.flush().await {
            Ok(()) => e,
            Err(f) => {
                self.states.values_mut().for_each(HashMap::clear);
                HandlerError::fatal(format!("{e}; then committing earlier batches: {f}"))
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
        let mut asked: HashSet<&str> = HashSet::new();
        for (r, _, c) in todo {
            if !asked.insert(c) {
                continue;
            }
            match self.states.get_mut(&r.partition).and_then(|m| m.remove(c)) {
                Some(state) => {
                    work.insert(c.clone(), (r.partition, state));
                }
                None => missing.entry(r.partition).or_default().push(c.clone()),
            }
        }
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
                work.insert(c, (partition, Arc::new(state)));
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
            self.checkpoints.remove(&tp.partition);
            self.states.remove(&tp.partition);
            self.index.close_shard(tp.partition).await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), HandlerError> {
        self.index.flush().await?;
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
            let outcome = apply(
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
        if let Err(e) = dead_letter::send(&*self.log, &self.name, &rejected).await {
            let e = HandlerError::retryable(format!("writing dead letters: {e}"));
            return Err(self.abandon(e).await);
        }

        let mut shards: BTreeMap<u32, ShardWrite> = next
            .iter()
            .map(|(&partition, &(next_offset, newest_record_ms))| {
                (
                    partition,
                    ShardWrite {
                        partition,
                        ops: ops.remove(&partition).unwrap_or_default(),
                        states: Vec::new(),
                        next_offset,
                        newest_record_ms,
                    },
                )
            })
            .collect();
        let mut unchanged = Vec::new();
        for (c, (partition, state)) in work {
            if changed.contains(&c) {
                shards
                    .get_mut(&partition)
                    .expect("a changed state's partition is in the batch")
                    .states
                    .push(state);
            } else {
                unchanged.push((partition, c, state));
            }
        }
        let write = SearchBatch {
            shards: shards.into_values().collect(),
        };
        let documents: usize = write.shards.iter().map(|s| s.ops.len()).sum();
        // On error the taken states are gone from the cache: the retry reloads
        // them as committed. A fatal error (deferred work lost) drops the whole
        // cache, so nothing ahead of the shards' commits survives in memory.
        if let Err(e) = self.index.write(&write).await {
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

        for shard in write.shards {
            self.checkpoints.insert(shard.partition, shard.next_offset);
            let cache = self.states.entry(shard.partition).or_default();
            for s in shard.states {
                cache.insert(s.conversation_id().to_owned(), s);
            }
        }
        for (partition, c, state) in unchanged {
            self.states.entry(partition).or_default().insert(c, state);
        }
        Ok(())
    }
}
