//! Drives notify from the runner: keep the presence table caught up, apply each
//! conversation event to the notifier's own fold state, publish the jobs of applied
//! messages, then write states and checkpoints in one atomic store write.
//!
//! Order within a batch, and what a crash at each point leaves behind:
//! 1. jobs are appended to `courier.push-jobs.v1`;
//! 2. states and per-partition checkpoints are written atomically;
//! 3. the runner commits the group offsets.
//!
//! A crash after 1 and before 2 redelivers the batch, which publishes the same jobs
//! again *with the same `job_id`s*; the push side's store of sent ids drops them.
//! The other order (state first) could lose jobs for good, which is worse than a
//! duplicate record that is never delivered twice. A crash after 2 redelivers
//! records at or below the checkpoint, which are skipped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use courier_pipeline::runner::{Handler, HandlerError};
use courier_pipeline::{ConsumedRecord, EventLog, TopicPartition, producer, replay};
use courier_schemas::Event;

use super::{NotifyStore, jobs_for};
use crate::inbox::{ConversationState, Position, STATE_FORMAT, Triage, Verdict, apply, triage};
use crate::presence::{PresenceRow, PresenceStore, Status, fold};
use crate::store::StoreError;

/// Records read per call while catching the presence table up.
const PRESENCE_READ: usize = 5_000;

/// The notify processor over its two store ports.
pub struct NotifyProcessor<S, P> {
    store: S,
    presence: P,
    log: Arc<dyn EventLog>,
    /// The consumer group, to find where a processor without stored state left off.
    group: String,
    /// Next offset to apply per owned partition of the conversations topic.
    checkpoints: HashMap<u32, u64>,
    /// Per partition: below this offset the fold runs silently (no jobs), because
    /// the group already processed those records with a state this store lost.
    silent_below: HashMap<u32, u64>,
    /// Cached states of conversations on owned partitions.
    states: HashMap<u32, HashMap<String, ConversationState>>,
    /// Next offset of each presence partition the table holds.
    presence_next: Option<Vec<u64>>,
    /// Decodes records, remembering the header blocks it accepted.
    decoder: replay::Decoder,
}

impl<S: NotifyStore, P: PresenceStore> NotifyProcessor<S, P> {
    /// A notifier with its fold state in `store`, its presence table in
    /// `presence`, consuming as `group` and publishing through `log`.
    pub fn new(store: S, presence: P, log: Arc<dyn EventLog>, group: impl Into<String>) -> Self {
        NotifyProcessor {
            store,
            presence,
            log,
            group: group.into(),
            checkpoints: HashMap::new(),
            silent_below: HashMap::new(),
            states: HashMap::new(),
            presence_next: None,
            decoder: replay::Decoder::default(),
        }
    }

    /// The presence table (for queries after a run).
    pub fn presence(&self) -> &P {
        &self.presence
    }

    /// Reads every partition of `courier.presence.v1` from where the table stands
    /// to the end as it is now, folding it into the table (rows and checkpoints in
    /// one write per read). Returns the records applied.
    pub async fn catch_up_presence(&mut self) -> Result<u64, HandlerError> {
        let topic = courier_topics::PRESENCE;
        let log_err = |what: &str, e: courier_pipeline::LogError| {
            HandlerError::retryable(format!("{what} {topic}: {e}"))
        };
        let partitions = self
            .log
            .partitions(topic)
            .map_err(|e| log_err("counting the partitions of", e))?;
        let mut next = match self.presence_next.take() {
            Some(n) => n,
            None => {
                let mut n = Vec::with_capacity(partitions as usize);
                for p in 0..partitions {
                    n.push(self.presence.checkpoint(p)?.unwrap_or(0));
                }
                n
            }
        };
        let mut applied = 0;
        for p in 0..partitions {
            let (low, high) = self
                .log
                .watermarks(topic, p)
                .await
                .map_err(|e| log_err("reading the end of", e))?;
            // Compaction or retention may have removed what the table last read.
            let mut from = next[p as usize].max(low);
            while from < high {
                let records = self
                    .log
                    .read(topic, p, from, PRESENCE_READ, Duration::from_secs(1))
                    .await
                    .map_err(|e| log_err("reading", e))?;
                let Some(last) = records.last() else { break };
                from = last.offset + 1;
                let mut rows: HashMap<String, PresenceRow> = HashMap::new();
                for r in &records {
                    match replay::decode(r)
                        .map_err(|e| e.to_string())
                        .and_then(|e| fold(&e))
                    {
                        Ok(row) => {
                            rows.insert(row.user_id.clone(), row);
                        }
                        // The presence processor dead-letters these; the table
                        // just does not change.
                        Err(reason) => tracing::warn!(
                            processor = "notify",
                            partition = p,
                            offset = r.offset,
                            reason = %reason,
                            "skipping a presence record"
                        ),
                    }
                }
                applied += records.len() as u64;
                let rows: Vec<_> = rows.into_values().collect();
                self.presence.write(&rows, &[(p, from)])?;
            }
            next[p as usize] = from;
        }
        self.presence_next = Some(next);
        Ok(applied)
    }

    fn is_online(&self, user: &str) -> Result<bool, StoreError> {
        Ok(self
            .presence
            .get(user)?
            .is_some_and(|r| r.status == Status::Online))
    }
}

#[async_trait]
impl<S: NotifyStore, P: PresenceStore> Handler for NotifyProcessor<S, P> {
    async fn on_assigned(
        &mut self,
        tps: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, u64)>, HandlerError> {
        // A global table's bootstrap: the whole presence topic before any message.
        let n = self.catch_up_presence().await?;
        tracing::info!(
            processor = "notify",
            records = n,
            "presence table caught up"
        );
        let mut committed: Option<Vec<Option<u64>>> = None;
        let mut seeks = Vec::with_capacity(tps.len());
        for tp in tps {
            let next = match self.store.checkpoint(tp.partition)? {
                Some(next) => next,
                None => {
                    // No state here: rebuild it from the start of the log. Whatever
                    // the group already processed is replayed silently, so a lost or
                    // new store never sends old pushes again ("rebuilds never send").
                    let low = courier_pipeline::runner::start_of(&*self.log, tp).await?;
                    if committed.is_none() {
                        committed =
                            Some(self.log.committed(&self.group, &tp.topic).await.map_err(
                                |e| {
                                    HandlerError::retryable(format!(
                                        "reading the committed offsets of {}: {e}",
                                        self.group
                                    ))
                                },
                            )?);
                    }
                    let done = committed
                        .as_ref()
                        .and_then(|c| c.get(tp.partition as usize).copied().flatten());
                    if let Some(done) = done.filter(|d| *d > low) {
                        tracing::info!(processor = "notify", %tp, silent_below = done, "no stored state: rebuilding it without sending");
                        self.silent_below.insert(tp.partition, done);
                    }
                    low
                }
            };
            self.checkpoints.insert(tp.partition, next);
            self.states.entry(tp.partition).or_default();
            seeks.push((tp.clone(), next));
        }
        Ok(seeks)
    }

    async fn on_revoked(&mut self, tps: &[TopicPartition]) -> Result<(), HandlerError> {
        for tp in tps {
            self.checkpoints.remove(&tp.partition);
            self.silent_below.remove(&tp.partition);
            self.states.remove(&tp.partition);
        }
        Ok(())
    }

    async fn handle(&mut self, batch: &[ConsumedRecord]) -> Result<(), HandlerError> {
        // Presence as of now, before judging who is offline.
        self.catch_up_presence().await?;
        let mut next: BTreeMap<u32, u64> = BTreeMap::new();
        let mut todo: Vec<(&ConsumedRecord, Event, String)> = Vec::new();
        for r in batch {
            next.insert(r.partition, r.offset + 1);
            // The inbox processor dead-letters what cannot be applied (under the
            // same dead-letter id); the notifier only makes no job of it.
            match triage(
                "notify",
                r,
                self.checkpoints.get(&r.partition).copied(),
                &mut self.decoder,
            ) {
                Triage::Applied => {}
                Triage::Fold(e, c) => todo.push((r, e, c)),
                Triage::Rejected(reason) => tracing::warn!(
                    processor = "notify",
                    partition = r.partition,
                    offset = r.offset,
                    reason = %reason,
                    "no push for an unreadable record"
                ),
            }
        }

        // Take the batch's states out of the cache (loading the missing ones): a
        // failed write below leaves nothing half-applied behind.
        let mut work: HashMap<String, (u32, ConversationState, bool)> = HashMap::new();
        let mut missing: Vec<(String, u32)> = Vec::new();
        let mut asked: HashSet<&str> = HashSet::new();
        for (r, _, c) in &todo {
            if !asked.insert(c) {
                continue;
            }
            match self.states.get_mut(&r.partition).and_then(|m| m.remove(c)) {
                Some(s) => {
                    work.insert(c.clone(), (r.partition, s, false));
                }
                None => missing.push((c.clone(), r.partition)),
            }
        }
        let ids: Vec<String> = missing.iter().map(|(c, _)| c.clone()).collect();
        let loaded = if ids.is_empty() {
            Vec::new()
        } else {
            self.store.load_states(&ids)?
        };
        for ((c, p), s) in missing.into_iter().zip(loaded) {
            let s = match s {
                Some(s) if s.format() > STATE_FORMAT => {
                    return Err(StoreError::fatal(
                        "notify",
                        format!(
                            "the stored state of conversation {c} has format {}, newer than \
                             this build's {STATE_FORMAT}: run a newer courier",
                            s.format()
                        ),
                    )
                    .into());
                }
                Some(s) => s,
                None => ConversationState::new(c.clone()),
            };
            work.insert(c, (p, s, false));
        }

        let mut jobs: Vec<Event> = Vec::new();
        let mut online: HashMap<String, bool> = HashMap::new();
        for (r, event, c) in &todo {
            let (_, state, changed) = work
                .get_mut(c)
                .expect("every routed conversation was taken");
            let outcome = apply(state, event, Position::new(r.partition, r.offset));
            *changed |= outcome.state_changed();
            if outcome.verdict != Verdict::Applied
                || self
                    .silent_below
                    .get(&r.partition)
                    .is_some_and(|below| r.offset < *below)
            {
                continue;
            }
            // Presence lookups memoised per batch: the table does not move within it.
            for u in &outcome.effects.inbox {
                if !online.contains_key(&u.user_id) {
                    online.insert(u.user_id.clone(), self.is_online(&u.user_id)?);
                }
            }
            jobs.extend(jobs_for(event, &outcome, |u| {
                online.get(u).copied().unwrap_or(false)
            }));
        }

        if !jobs.is_empty() {
            producer::publish(&*self.log, &jobs)
                .await
                .map_err(|e| HandlerError::retryable(format!("publishing push jobs: {e}")))?;
            crate::metrics::notify_jobs(jobs.len());
        }
        let mut states = Vec::new();
        let mut placed = Vec::new();
        let mut unchanged = Vec::new();
        for (c, (p, s, changed)) in work {
            if changed {
                placed.push((c, p));
                states.push(s);
            } else {
                unchanged.push((c, p, s));
            }
        }
        let checkpoints: Vec<(u32, u64)> = next.into_iter().collect();
        self.store.write(&states, &checkpoints)?;
        tracing::debug!(
            processor = "notify",
            jobs = jobs.len(),
            states = states.len(),
            "batch written"
        );
        self.checkpoints.extend(checkpoints.iter().copied());
        // Stored: a store that keeps states in parts writes only what changes
        // from here on.
        let back = placed.into_iter().zip(states).map(|((c, p), mut s)| {
            s.mark_written();
            (c, p, s)
        });
        for (c, p, s) in unchanged.into_iter().chain(back) {
            self.states.entry(p).or_default().insert(c, s);
        }
        Ok(())
    }
}
