//! Drives the inbox fold from the runner: decode and route each record, apply it to
//! its conversation's state, coalesce the batch's rows, dead-letter what cannot be
//! applied, and write rows, states and checkpoints through the [`InboxStore`] port.
//!
//! States of the conversations on owned partitions are cached in memory, loaded on
//! first use. A batch works on states taken *out* of the cache and puts them back
//! only once the store acknowledged the write: a failed write leaves no
//! half-applied state behind, so the retry (or the next owner) starts from what is
//! stored.
//!
//! The cache is bounded ([`DEFAULT_MAX_CACHED_STATES`], or
//! [`InboxProcessor::max_cached_states`]): after a batch, if it holds more, the
//! least recently used states go until it holds nine tenths of the bound. Every
//! cached state equals the stored one (states return to the cache only after the
//! write), so an evicted conversation is simply loaded again when next needed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use courier_pipeline::runner::{Handler, HandlerError};
use courier_pipeline::{ConsumedRecord, EventLog, TopicPartition, dead_letter, replay};
use courier_schemas::Event;

use super::batch::Coalesced;
use super::effects::Position;
use super::fold::{apply, route};
use super::state::{ConversationState, STATE_FORMAT};
use super::store::InboxStore;
use crate::store::StoreError;

/// How many conversation states the cache holds at most by default.
pub const DEFAULT_MAX_CACHED_STATES: usize = 100_000;

/// The processor name: metrics label and dead-letter attribution.
const PROCESSOR: &str = "inbox";

/// The inbox processor over a store port.
pub struct InboxProcessor<S> {
    store: S,
    /// Where dead letters go.
    log: Arc<dyn EventLog>,
    /// Next offset to apply per owned partition, as stored with the views.
    checkpoints: HashMap<u32, u64>,
    /// States of conversations on owned partitions, by partition, then id, with
    /// the sequence number of the batch that last used them.
    states: HashMap<u32, HashMap<String, (u64, ConversationState)>>,
    /// At most this many states stay cached between batches.
    max_cached: usize,
    /// Sequence number of the current batch (for least-recently-used eviction).
    batch_seq: u64,
    /// Per partition, the offset below which dead letters were already sent by
    /// the generation a rebuild replaces (empty for a live processor).
    dead_lettered: HashMap<u32, u64>,
    /// Decodes records, remembering the header blocks it accepted.
    decoder: replay::Decoder,
}

/// What a processor folding `courier.conversations.v1` (inbox, search, notify)
/// does with one record of a batch.
pub(crate) enum Triage {
    /// Below the view's checkpoint: applied before a crash that came before the
    /// group's commit. Or redriven for another processor: not this one's to
    /// apply, passed over as if applied.
    Applied,
    /// Cannot be applied (undecodable, or no conversation event), and why.
    Rejected(String),
    /// To fold into the state of this conversation.
    Fold(Event, String),
}

/// Sorts one record for processor `me`: `checkpoint` is the view's next offset
/// for its partition. `decoder` skips the schema-header check for header
/// blocks it accepted before.
pub(crate) fn triage(
    me: &str,
    r: &ConsumedRecord,
    checkpoint: Option<u64>,
    decoder: &mut replay::Decoder,
) -> Triage {
    if checkpoint.is_some_and(|cp| r.offset < cp) || dead_letter::addressed_to_another(r, me) {
        return Triage::Applied;
    }
    let event = match decoder.decode(r) {
        Ok(e) => e,
        Err(e) => return Triage::Rejected(e.to_string()),
    };
    match route(&event) {
        Ok(c) => {
            let c = c.to_owned();
            Triage::Fold(event, c)
        }
        Err(reason) => Triage::Rejected(reason),
    }
}

/// A conversation's state while a batch works on it.
struct Working {
    partition: u32,
    state: ConversationState,
    /// Whether some event changed it, so it must be written.
    changed: bool,
}

impl<S: InboxStore> InboxProcessor<S> {
    /// A processor writing to `store`, dead-lettering through `log`.
    pub fn new(store: S, log: Arc<dyn EventLog>) -> Self {
        InboxProcessor {
            store,
            log,
            checkpoints: HashMap::new(),
            states: HashMap::new(),
            max_cached: DEFAULT_MAX_CACHED_STATES,
            batch_seq: 0,
            dead_lettered: HashMap::new(),
            decoder: replay::Decoder::default(),
        }
    }

    /// Keeps at most `n` conversation states cached between batches (at least 1).
    pub fn max_cached_states(mut self, n: usize) -> Self {
        self.max_cached = n.max(1);
        self
    }

    /// How many conversation states are cached now.
    pub fn cached_states(&self) -> usize {
        self.states.values().map(HashMap::len).sum()
    }

    /// Drops the least recently used states down to nine tenths of the bound
    /// (so eviction does not run on every batch once the cache is full).
    fn evict(&mut self) {
        let cached = self.cached_states();
        if cached <= self.max_cached {
            return;
        }
        let keep = (self.max_cached * 9 / 10).max(1);
        let mut ages: Vec<(u64, u32, String)> = self
            .states
            .iter()
            .flat_map(|(p, m)| m.iter().map(move |(c, (used, _))| (*used, *p, c.clone())))
            .collect();
        let drop = cached - keep;
        ages.select_nth_unstable(drop - 1);
        for (_, p, c) in &ages[..drop] {
            if let Some(m) = self.states.get_mut(p) {
                m.remove(c);
            }
        }
    }

    /// For a rebuild: records below these next-offsets (per partition) were
    /// applied, and their rejections dead-lettered, by the generation being
    /// replaced, so they are not dead-lettered twice. Records after them are.
    pub fn dead_lettered_below(mut self, next_offsets: HashMap<u32, u64>) -> Self {
        self.dead_lettered = next_offsets;
        self
    }

    /// The store (for queries after a run).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Gives the store back (to close it before switching generations).
    pub fn into_store(self) -> S {
        self.store
    }

    /// Takes the states the batch needs out of the cache, loading the others.
    async fn take_states(
        &mut self,
        todo: &[(&ConsumedRecord, Event, String)],
    ) -> Result<HashMap<String, Working>, HandlerError> {
        let mut work: HashMap<String, Working> = HashMap::new();
        let mut missing: Vec<(String, u32)> = Vec::new();
        let mut asked: HashSet<&str> = HashSet::new();
        for (r, _, c) in todo {
            if work.contains_key(c) || !asked.insert(c) {
                continue;
            }
            match self.states.get_mut(&r.partition).and_then(|m| m.remove(c)) {
                Some((_, state)) => {
                    work.insert(
                        c.clone(),
                        Working {
                            partition: r.partition,
                            state,
                            changed: false,
                        },
                    );
                }
                None => missing.push((c.clone(), r.partition)),
            }
        }
        if missing.is_empty() {
            return Ok(work);
        }
        let ids: Vec<String> = missing.iter().map(|(c, _)| c.clone()).collect();
        let loaded = self.store.load_states(&ids).await?;
        for ((c, partition), state) in missing.into_iter().zip(loaded) {
            let state = match state {
                Some(s) if s.format() > STATE_FORMAT => {
                    return Err(StoreError::fatal(
                        "inbox",
                        format!(
                            "the stored state of conversation {c} has format {}, newer than \
                             this build's {STATE_FORMAT}: run a newer courier or rebuild the view",
                            s.format()
                        ),
                    )
                    .into());
                }
                Some(s) => s,
                None => ConversationState::new(c.clone()),
            };
            work.insert(
                c,
                Working {
                    partition,
                    state,
                    changed: false,
                },
            );
        }
        Ok(work)
    }
}

#[async_trait]
impl<S: InboxStore> Handler for InboxProcessor<S> {
    async fn on_assigned(
        &mut self,
        tps: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, u64)>, HandlerError> {
        // The checkpoint stored with the views is the truth: the group's commit may
        // lag it by a batch after a crash. A partition this store holds nothing of
        // starts at the beginning of the log, whatever the group committed: the
        // store is new (a rebuild, a deleted directory), and a view built from the
        // middle of the log would be silently wrong.
        let mut seeks = Vec::with_capacity(tps.len());
        for tp in tps {
            let next = match self.store.checkpoint(tp.partition).await? {
                Some(next) => next,
                None => courier_pipeline::runner::start_of(&*self.log, tp).await?,
            };
            self.checkpoints.insert(tp.partition, next);
            self.states.entry(tp.partition).or_default();
            seeks.push((tp.clone(), next));
        }
        Ok(seeks)
    }

    async fn recover(
        &mut self,
        tps: &[TopicPartition],
    ) -> Result<Option<Vec<(TopicPartition, u64)>>, HandlerError> {
        // The store failed: it may also have lost what it acknowledged just
        // before (a lone Cassandra killed within its commitlog sync period).
        // The cache would hide that for ever, so start again from the store.
        self.on_revoked(tps).await?;
        self.on_assigned(tps).await.map(Some)
    }

    async fn on_revoked(&mut self, tps: &[TopicPartition]) -> Result<(), HandlerError> {
        // Everything of a revoked partition is stored (batches are written before
        // the runner polls again); its next owner loads the states from the store.
        for tp in tps {
            self.checkpoints.remove(&tp.partition);
            self.states.remove(&tp.partition);
        }
        Ok(())
    }

    async fn handle(&mut self, batch: &[ConsumedRecord]) -> Result<(), HandlerError> {
        let mut next: BTreeMap<u32, u64> = BTreeMap::new();
        let mut rejected: Vec<(&ConsumedRecord, String)> = Vec::new();
        // Decode and route everything first, so the states the batch needs are
        // loaded in one call.
        let mut todo: Vec<(&ConsumedRecord, Event, String)> = Vec::new();
        for r in batch {
            next.insert(r.partition, r.offset + 1);
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

        let mut work = self.take_states(&todo).await?;
        let mut rows = Coalesced::default();
        for (r, event, c) in &todo {
            let w = work
                .get_mut(c)
                .expect("every routed conversation was taken");
            let outcome = apply(&mut w.state, event, Position::new(r.partition, r.offset));
            w.changed |= outcome.state_changed();
            if let Some(reason) = outcome.rejection() {
                rejected.push((r, reason.to_owned()));
            }
            rows.add(outcome);
        }

        // Dead letters before the views: if the write then fails, the retry sends
        // them again under the same ids (`dl:TOPIC:PARTITION:OFFSET`) rather than
        // losing them.
        rejected.retain(|(r, _)| {
            self.dead_lettered
                .get(&r.partition)
                .is_none_or(|below| r.offset >= *below)
        });
        rejected.sort_by_key(|(r, _)| (r.partition, r.offset));
        dead_letter::send(&*self.log, PROCESSOR, &rejected)
            .await
            .map_err(|e| HandlerError::retryable(format!("writing dead letters: {e}")))?;

        let mut unchanged = Vec::new();
        let mut changed = Vec::new();
        let mut states = Vec::new();
        for (c, w) in work {
            if w.changed {
                changed.push((c, w.partition));
                states.push(w.state);
            } else {
                unchanged.push((c, w.partition, w.state));
            }
        }
        let write = rows.into_batch(states, next.into_iter().collect());
        // On error `work` is gone: the cache no longer holds these conversations,
        // so the retry reloads them as stored.
        self.store.write(&write).await?;

        self.checkpoints.extend(write.checkpoints.iter().copied());
        // Stored: a store that keeps states in parts writes only what changes
        // from here on.
        let back = changed
            .into_iter()
            .zip(write.states)
            .map(|((c, p), mut s)| {
                s.mark_written();
                (c, p, s)
            });
        self.batch_seq += 1;
        let seq = self.batch_seq;
        for (c, partition, state) in unchanged.into_iter().chain(back) {
            self.states
                .entry(partition)
                .or_default()
                .insert(c, (seq, state));
        }
        self.evict();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use courier_pipeline::config::RunnerConfig;
    use courier_pipeline::runner::{RunOptions, run};
    use courier_pipeline::shutdown::Shutdown;
    use courier_pipeline::{EmbeddedLog, Record, producer};
    use courier_schemas::json::parse_line;
    use courier_topics::{CONVERSATIONS, Catalog, DEAD_LETTERS};

    use super::*;
    use crate::inbox::store::{ConversationRows, InboxBatch, Versioned, inbox, messages};
    use crate::inbox::{InboxRow, InboxUpdate, MessageRow, ParticipantRow, ViewModel};

    /// The port in memory, honouring versions like Cassandra would, and failing
    /// every `fail_every`-th write (retryably) before touching anything.
    #[derive(Default)]
    struct MemoryStore {
        messages: BTreeMap<(String, String), Versioned<MessageRow>>,
        participants: BTreeMap<(String, String), Versioned<ParticipantRow>>,
        inbox: BTreeMap<(String, String), Versioned<InboxUpdate>>,
        states: BTreeMap<String, ConversationState>,
        checkpoints: BTreeMap<u32, u64>,
        writes: usize,
        fail_every: usize,
    }

    fn upsert<T: Clone>(
        map: &mut BTreeMap<(String, String), Versioned<T>>,
        key: (String, String),
        v: &Versioned<T>,
    ) {
        if map.get(&key).is_none_or(|old| old.version <= v.version) {
            map.insert(key, v.clone());
        }
    }

    #[async_trait]
    impl InboxStore for MemoryStore {
        async fn checkpoint(&self, partition: u32) -> Result<Option<u64>, StoreError> {
            Ok(self.checkpoints.get(&partition).copied())
        }
        async fn load_states(
            &self,
            conversations: &[String],
        ) -> Result<Vec<Option<ConversationState>>, StoreError> {
            Ok(conversations
                .iter()
                .map(|c| self.states.get(c).cloned())
                .collect())
        }
        async fn write(&mut self, batch: &InboxBatch) -> Result<(), StoreError> {
            self.writes += 1;
            if self.fail_every > 0 && self.writes.is_multiple_of(self.fail_every) {
                return Err(StoreError::retryable("memory", "injected failure"));
            }
            for m in &batch.messages {
                let key = (m.row.conversation_id.clone(), m.row.message_id.clone());
                upsert(&mut self.messages, key, m);
            }
            for p in &batch.participants {
                let key = (p.row.conversation_id.clone(), p.row.user_id.clone());
                upsert(&mut self.participants, key, p);
            }
            for i in &batch.inbox {
                let key = (i.row.user_id.clone(), i.row.row.conversation_id.clone());
                upsert(&mut self.inbox, key, i);
            }
            for s in &batch.states {
                self.states
                    .insert(s.conversation_id().to_owned(), s.clone());
            }
            self.checkpoints.extend(batch.checkpoints.iter().copied());
            Ok(())
        }
        async fn inbox_rows(&self, user: &str) -> Result<Vec<InboxRow>, StoreError> {
            Ok(self
                .inbox
                .values()
                .filter(|v| v.row.user_id == user)
                .map(|v| v.row.row.clone())
                .collect())
        }
        async fn conversation_rows(
            &self,
            conversation: &str,
        ) -> Result<ConversationRows, StoreError> {
            Ok(ConversationRows {
                participants: self
                    .participants
                    .values()
                    .filter(|v| v.row.conversation_id == conversation)
                    .map(|v| v.row.clone())
                    .collect(),
                messages: self
                    .messages
                    .values()
                    .filter(|v| v.row.conversation_id == conversation)
                    .map(|v| v.row.clone())
                    .collect(),
            })
        }
    }

    fn opts(max_batch: usize) -> RunOptions {
        RunOptions {
            processor: "inbox".into(),
            group: "courier.inbox".into(),
            topics: vec![CONVERSATIONS.into()],
            until_caught_up: true,
            runner: RunnerConfig {
                max_batch,
                poll_timeout_ms: 50,
                max_attempts: 3,
            },
        }
    }

    /// A stream with churn, receipts, edits, deletes, a rule break and retries.
    const STREAM: &str = r#"
{"type":"conversation_created","event_id":"e1","conversation_id":"c1","kind":"group","creator_id":"u1","member_ids":["u1","u2","u3"],"title":"t","at_ms":10}
{"type":"conversation_created","event_id":"e2","conversation_id":"c2","kind":"direct","creator_id":"u1","member_ids":["u1","u2"],"title":"","at_ms":11}
{"type":"message_sent","event_id":"e3","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"hello","at_ms":12}
{"type":"message_sent","event_id":"e4","conversation_id":"c2","message_id":"m1","sender_id":"u2","text":"psst","at_ms":13}
{"type":"receipt","event_id":"e5","conversation_id":"c1","message_id":"m1","user_id":"u2","status":"read","at_ms":14}
{"type":"members_removed","event_id":"e6","conversation_id":"c1","actor_id":"u1","user_ids":["u3"],"at_ms":15}
{"type":"message_sent","event_id":"e7","conversation_id":"c1","message_id":"m2","sender_id":"u3","text":"not a member","at_ms":16}
{"type":"message_sent","event_id":"e8","conversation_id":"c1","message_id":"m3","sender_id":"u2","text":"bye u3","at_ms":17}
{"type":"members_added","event_id":"e9","conversation_id":"c1","actor_id":"u2","user_ids":["u3","u4"],"at_ms":18}
{"type":"message_edited","event_id":"e10","conversation_id":"c1","message_id":"m3","editor_id":"u2","text":"welcome back","at_ms":19}
{"type":"message_sent","event_id":"e11","conversation_id":"c1","message_id":"m4","sender_id":"u4","text":"hi all","at_ms":20}
{"type":"message_deleted","event_id":"e12","conversation_id":"c1","message_id":"m1","actor_id":"u1","at_ms":21}
{"type":"receipt","event_id":"e13","conversation_id":"c1","message_id":"m4","user_id":"u3","status":"delivered","at_ms":22}
{"type":"message_sent","event_id":"e3","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"hello","at_ms":12}
{"type":"receipt","event_id":"e5","conversation_id":"c1","message_id":"m1","user_id":"u2","status":"read","at_ms":14}
"#;

    async fn log_with_stream() -> (tempfile::TempDir, Arc<dyn EventLog>) {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> = Arc::new(
            EmbeddedLog::open(dir.path(), Catalog::builtin(), Default::default()).unwrap(),
        );
        let events: Vec<Event> = STREAM
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| parse_line(l).unwrap())
            .collect();
        producer::publish(&*log, &events).await.unwrap();
        // Bytes that are no event, on c1's partition.
        let garbage = Record {
            key: b"c1".to_vec(),
            value: vec![0xff, 0xff],
            headers: vec![],
            timestamp_ms: 23,
        };
        log.append(CONVERSATIONS, vec![garbage]).await.unwrap();
        (dir, log)
    }

    /// One clean pass of the fold over the log, without the handler.
    async fn reference(log: &dyn EventLog) -> (ViewModel, usize) {
        let mut view = ViewModel::new();
        let mut states: HashMap<String, ConversationState> = HashMap::new();
        let mut rejected = 0;
        for p in 0..log.partitions(CONVERSATIONS).unwrap() {
            for r in log
                .read(CONVERSATIONS, p, 0, 10_000, Duration::ZERO)
                .await
                .unwrap()
            {
                let Ok(event) = replay::decode(&r) else {
                    rejected += 1;
                    continue;
                };
                let c = route(&event).unwrap().to_owned();
                let s = states
                    .entry(c.clone())
                    .or_insert_with(|| ConversationState::new(c));
                let outcome = apply(s, &event, Position::new(r.partition, r.offset));
                rejected += usize::from(outcome.rejection().is_some());
                view.apply(&outcome);
            }
        }
        (view, rejected)
    }

    async fn dead_letters(log: &dyn EventLog) -> Vec<String> {
        let mut ids = Vec::new();
        for p in 0..log.partitions(DEAD_LETTERS).unwrap() {
            for r in log
                .read(DEAD_LETTERS, p, 0, 100, Duration::ZERO)
                .await
                .unwrap()
            {
                ids.push(replay::decode(&r).unwrap().event_id);
            }
        }
        ids.sort();
        ids.dedup();
        ids
    }

    async fn dead_letter_count(log: &dyn EventLog) -> u64 {
        let mut n = 0;
        for p in 0..log.partitions(DEAD_LETTERS).unwrap() {
            n += log.watermarks(DEAD_LETTERS, p).await.unwrap().1;
        }
        n
    }

    async fn assert_same_views(store: &MemoryStore, want: &ViewModel) {
        for u in ["u1", "u2", "u3", "u4", "u5"] {
            assert_eq!(
                inbox(store, u).await.unwrap(),
                want.inbox(u),
                "inbox of {u}"
            );
            for c in ["c1", "c2", "c3"] {
                let got = messages(store, c, u).await.map_err(|e| e.to_string());
                let wanted = want.messages(c, u).map_err(|e| e.to_string());
                assert_eq!(got, wanted, "messages of {c} as {u}");
            }
        }
    }

    /// The memory store behind a lock, so that the conformance suite can open
    /// it again: the same data, as a durable store's would be after a restart.
    struct SharedMemory(Arc<tokio::sync::Mutex<MemoryStore>>);

    #[async_trait]
    impl InboxStore for SharedMemory {
        async fn checkpoint(&self, partition: u32) -> Result<Option<u64>, StoreError> {
            self.0.lock().await.checkpoint(partition).await
        }
        async fn load_states(
            &self,
            conversations: &[String],
        ) -> Result<Vec<Option<ConversationState>>, StoreError> {
            self.0.lock().await.load_states(conversations).await
        }
        async fn write(&mut self, batch: &InboxBatch) -> Result<(), StoreError> {
            self.0.lock().await.write(batch).await
        }
        async fn inbox_rows(&self, user: &str) -> Result<Vec<InboxRow>, StoreError> {
            self.0.lock().await.inbox_rows(user).await
        }
        async fn conversation_rows(
            &self,
            conversation: &str,
        ) -> Result<ConversationRows, StoreError> {
            self.0.lock().await.conversation_rows(conversation).await
        }
    }

    struct MemoryFactory;

    #[async_trait]
    impl crate::inbox::store::conformance::InboxStoreFactory for MemoryFactory {
        type Place = Arc<tokio::sync::Mutex<MemoryStore>>;
        type Store = SharedMemory;
        async fn place(&self) -> Self::Place {
            Arc::default()
        }
        async fn open(&self, place: &Self::Place) -> SharedMemory {
            SharedMemory(place.clone())
        }
    }

    // The memory store writes each batch at once, like RocksDB.
    crate::inbox_store_conformance!(MemoryFactory, writes = atomic);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failing_writes_and_restarts_give_the_views_of_one_clean_pass() {
        let (_dir, log) = log_with_stream().await;
        let (want, rejected) = reference(&*log).await;
        assert_eq!(rejected, 2, "the non-member's send and the garbage");
        assert!(!want.inbox("u3").is_empty());

        // Every other write fails: each failed batch is retried from the stored
        // states, not from the half-applied ones.
        let store = MemoryStore {
            fail_every: 2,
            ..MemoryStore::default()
        };
        let mut p = InboxProcessor::new(store, log.clone());
        let stats = run(log.clone(), &mut p, opts(3), Shutdown::never())
            .await
            .unwrap();
        assert_eq!(stats.records, 16);
        assert!(
            p.store().writes > stats.batches as usize,
            "failures happened"
        );
        assert_same_views(p.store(), &want).await;
        assert_eq!(dead_letters(&*log).await.len(), 2);

        // A new instance (state hand-over) resumes at the stored checkpoint: nothing
        // to apply, nothing written, nothing dead-lettered again.
        let mut store = p.into_store();
        store.fail_every = 0;
        let writes = store.writes;
        let mut again = InboxProcessor::new(store, log.clone());
        let stats = run(log.clone(), &mut again, opts(3), Shutdown::never())
            .await
            .unwrap();
        assert_eq!(stats.records, 0);
        assert_eq!(again.store().writes, writes);
        assert_same_views(again.store(), &want).await;

        // A store that lost everything (a new generation) rebuilds from the start
        // even in a group that has committed to the end; told what the old
        // generation covered, it sends no dead letter twice.
        let covered = again.store().checkpoints.clone().into_iter().collect();
        let sent = dead_letter_count(&*log).await;
        let mut fresh =
            InboxProcessor::new(MemoryStore::default(), log.clone()).dead_lettered_below(covered);
        let stats = run(log.clone(), &mut fresh, opts(1000), Shutdown::never())
            .await
            .unwrap();
        assert_eq!(stats.records, 16);
        assert_same_views(fresh.store(), &want).await;
        assert_eq!(dead_letters(&*log).await.len(), 2);
        assert_eq!(dead_letter_count(&*log).await, sent, "none sent again");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_redriven_dead_letter_applies_once_and_only_for_its_processor() {
        let (_dir, log) = log_with_stream().await;
        let mut p = InboxProcessor::new(MemoryStore::default(), log.clone());
        run(log.clone(), &mut p, opts(100), Shutdown::never())
            .await
            .unwrap();
        // u3's send while removed (e7) was dead-lettered; u3 is a member again.
        let mut letters = Vec::new();
        for part in 0..log.partitions(DEAD_LETTERS).unwrap() {
            for r in log
                .read(DEAD_LETTERS, part, 0, 100, Duration::ZERO)
                .await
                .unwrap()
            {
                letters.push(dead_letter::Letter::parse(&r).unwrap());
            }
        }
        let e7 = letters
            .iter()
            .find(|l| l.letter.reason.contains("m2"))
            .expect("e7's dead letter");
        assert_eq!(e7.processor.as_deref(), Some("inbox"));
        let sent = dead_letter_count(&*log).await;

        // First a copy for search (the inbox passes over it), then the inbox's
        // twice: a redrive stopped between its append and its commit.
        let (topic, for_search) = dead_letter::redrive_record(e7, "search");
        let (_, for_inbox) = dead_letter::redrive_record(e7, "inbox");
        let at = log
            .append(&topic, vec![for_search, for_inbox.clone(), for_inbox])
            .await
            .unwrap();
        let stats = run(log.clone(), &mut p, opts(100), Shutdown::never())
            .await
            .unwrap();
        assert_eq!(stats.records, 3);
        let row = &p.store().messages[&("c1".to_string(), "m2".to_string())];
        assert_eq!(
            row.version.offset, at[1].offset,
            "applied from the inbox's first copy, not search's nor the repeat"
        );
        let seen: Vec<String> = messages(p.store(), "c1", "u3")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.message_id)
            .collect();
        assert_eq!(seen.iter().filter(|m| *m == "m2").count(), 1, "{seen:?}");
        assert_eq!(dead_letter_count(&*log).await, sent, "nothing failed again");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bounded_state_cache_evicts_and_reloads_to_the_same_views() {
        let (_dir, log) = log_with_stream().await;
        let (want, _) = reference(&*log).await;

        let mut unbounded = InboxProcessor::new(MemoryStore::default(), log.clone());
        run(log.clone(), &mut unbounded, opts(3), Shutdown::never())
            .await
            .unwrap();
        assert_eq!(unbounded.cached_states(), 2, "c1 and c2 stay cached");

        // Bound 1 with batches touching both conversations: one of them is
        // evicted after nearly every batch and loaded back from the store.
        let mut bounded =
            InboxProcessor::new(MemoryStore::default(), log.clone()).max_cached_states(1);
        let stats = run(log.clone(), &mut bounded, opts(3), Shutdown::never())
            .await
            .unwrap();
        assert_eq!(stats.records, 16);
        assert_eq!(bounded.cached_states(), 1);
        assert_same_views(bounded.store(), &want).await;
        let applied = |p: &InboxProcessor<MemoryStore>| -> Vec<(String, Option<u64>)> {
            let states = &p.store().states;
            states
                .iter()
                .map(|(c, s)| (c.clone(), s.applied_offset()))
                .collect()
        };
        assert_eq!(
            applied(&bounded),
            applied(&unbounded),
            "the same stored states"
        );
    }
}
