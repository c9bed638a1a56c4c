//! A member of a Kafka consumer group behind [`GroupConsumer`].
//!
//! - Manual commits only (`enable.auto.commit=false`, `enable.auto.offset.store=false`):
//!   offsets move when the runner commits after its sink acknowledged.
//! - `cooperative-sticky` assignment: a rebalance only moves the partitions that
//!   change owner, in two steps (revoke, then assign), as the embedded groups do.
//! - librdkafka runs rebalance callbacks synchronously inside `poll`. The context's
//!   pre/post-rebalance hooks push `Revoked`/`Assigned` into a queue, and `poll`
//!   returns queued events BEFORE any record: records fetched after an assignment
//!   wait in a stash until the `Assigned` event has been handed out, and records of
//!   revoked partitions are dropped from it. Because the runner only polls between
//!   batches (it has committed its last batch before it polls again), nothing is in
//!   flight for a partition when it is revoked, so there is nothing to drain.
//! - Positions are tracked here, not asked of librdkafka: on `Assigned` each
//!   partition starts at the group's committed offset or, without one, the low
//!   watermark; every record handed out moves it. A record below the position is a
//!   stale prefetch and is dropped. `seek` records the wanted offset and applies it
//!   from the next `poll`, retrying while librdkafka still refuses with "erroneous
//!   state" (its fetcher for a just-assigned partition has not started yet); until
//!   it took, records of that partition are dropped.
//! - `commit` refuses partitions this member does not own (`LogError::NotOwned`):
//!   Kafka itself would accept a commit from any member of the generation.
//! - `close`, and dropping the consumer, leave the group (LeaveGroup), so the others
//!   take the partitions over at once; a killed process is noticed after
//!   `session.timeout.ms` (10 s by default here).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::CString;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};

use super::{Inner, Names, OP_TIMEOUT, TopicMemo, blocking, forward_log, retrying, to_record};
use crate::log::{ConsumedRecord, ConsumerEvent, GroupConsumer, LogError, TopicPartition};

/// Longest single wait inside `poll`, so pending seeks are retried promptly.
const SLICE: Duration = Duration::from_millis(50);

/// Group settings courier chooses (before the user's `[kafka.properties]`).
const GROUP_DEFAULTS: &[(&str, &str)] = &[
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    ("partition.assignment.strategy", "cooperative-sticky"),
    ("auto.offset.reset", "earliest"),
    // A member that dies without leaving is replaced after this long.
    ("session.timeout.ms", "10000"),
    ("heartbeat.interval.ms", "1000"),
    ("fetch.wait.max.ms", "100"),
    super::FETCH_QUEUE_BACKOFF,
];

/// A rebalance step seen by a callback, not yet handed out by `poll`.
enum Step {
    Assigned(Vec<TopicPartition>),
    Revoked(Vec<TopicPartition>),
}

/// The consumer's context: rebalance callbacks push into `steps`; statistics
/// (with `statistics.interval.ms`) go to the gauges under the logical group.
struct GroupContext {
    names: Names,
    group: String,
    steps: Arc<Mutex<VecDeque<Step>>>,
    stats: super::stats::Exporter,
}

impl GroupContext {
    fn logical(&self, tpl: &rdkafka::TopicPartitionList) -> Vec<TopicPartition> {
        tpl.elements()
            .iter()
            .filter_map(|e| {
                let topic = self.names.logical(e.topic())?;
                Some(TopicPartition::new(
                    topic,
                    u32::try_from(e.partition()).ok()?,
                ))
            })
            .collect()
    }

    fn push(&self, step: Step) {
        self.steps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(step);
    }
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        forward_log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", group = %self.group, error = %error, reason, "consumer error");
    }

    fn stats(&self, statistics: rdkafka::statistics::Statistics) {
        self.stats.export(&statistics);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let tps = self.logical(tpl);
                tracing::debug!(group = %self.group, partitions = ?tps, "rebalance: revoking");
                if !tps.is_empty() {
                    self.push(Step::Revoked(tps));
                }
            }
            Rebalance::Error(e) => {
                tracing::warn!(group = %self.group, error = %e, "rebalance failed")
            }
            Rebalance::Assign(_) => {}
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let tps = self.logical(tpl);
            tracing::debug!(group = %self.group, partitions = ?tps, "rebalance: assigned");
            // Cooperative rebalances that add nothing still call back with an empty list.
            if !tps.is_empty() {
                self.push(Step::Assigned(tps));
            }
        }
    }
}

/// What the member knows, shared with the blocking task that polls librdkafka.
#[derive(Default)]
struct State {
    owned: BTreeSet<TopicPartition>,
    /// Next offset to hand out per owned partition.
    positions: BTreeMap<TopicPartition, u64>,
    /// Last high watermark learned per owned partition (fallback for `lag`).
    highs: BTreeMap<TopicPartition, u64>,
    /// Seeks not yet accepted by librdkafka.
    pending_seeks: BTreeMap<TopicPartition, u64>,
    /// Records fetched but not handed out yet.
    stash: VecDeque<ConsumedRecord>,
    /// The result of a poll whose caller went away (its future was dropped).
    outbox: Option<Result<ConsumerEvent, LogError>>,
    /// The key `accept` looks records up with, reused.
    scratch: TopicPartition,
    /// The logical name of the topic of the last record.
    topics: TopicMemo,
    /// librdkafka declared this static member fenced (fatal for its client).
    fenced: bool,
}

/// One member of a Kafka consumer group.
pub(crate) struct KafkaConsumer {
    inner: Arc<Inner>,
    group: String,
    /// The logical group and topics (a fenced member joins again with them).
    logical_group: String,
    topics: Vec<String>,
    consumer: Option<Arc<BaseConsumer<GroupContext>>>,
    state: Arc<Mutex<State>>,
    /// When this member last joined again after being fenced.
    rejoined: Option<Instant>,
}

/// A static member fenced again this soon after joining again is not the
/// victim of an outage but of a second process with its `group.instance.id`.
const REFENCED_WITHIN: Duration = Duration::from_secs(60);

fn has_steps(c: &BaseConsumer<GroupContext>) -> bool {
    !c.context()
        .steps
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_empty()
}

fn tpl_of(names: &Names, tps: &[TopicPartition]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(tps.len());
    for tp in tps {
        tpl.add_partition(&names.topic(&tp.topic), tp.partition as i32);
    }
    tpl
}

impl KafkaConsumer {
    pub(crate) async fn join(
        inner: Arc<Inner>,
        group: &str,
        topics: &[String],
    ) -> Result<Self, LogError> {
        let consumer = Self::create(&inner, group, topics).await?;
        let kafka_group = inner.names().group(group);
        tracing::info!(group = %kafka_group, topics = ?topics, "joining Kafka consumer group");
        Ok(KafkaConsumer {
            inner,
            group: kafka_group,
            logical_group: group.to_string(),
            topics: topics.to_vec(),
            consumer: Some(Arc::new(consumer)),
            state: Arc::new(Mutex::new(State::default())),
            rejoined: None,
        })
    }

    /// A client subscribed to `topics` as a member of `group`.
    async fn create(
        inner: &Arc<Inner>,
        group: &str,
        topics: &[String],
    ) -> Result<BaseConsumer<GroupContext>, LogError> {
        let kafka_group = inner.names().group(group);
        let kafka_topics: Vec<String> = topics.iter().map(|t| inner.names().topic(t)).collect();
        let steps = Arc::new(Mutex::new(VecDeque::new()));
        let context = GroupContext {
            names: inner.names().clone(),
            group: kafka_group.clone(),
            steps,
            stats: super::stats::Exporter::new("consumer", group, inner.names().clone()),
        };
        let interval = inner.settings().statistics_interval_ms.to_string();
        let mut defaults: Vec<(&str, &str)> = GROUP_DEFAULTS.to_vec();
        defaults.push(("group.id", &kafka_group));
        if inner.settings().statistics_interval_ms > 0 {
            defaults.push(("statistics.interval.ms", &interval));
        }
        if let Some(id) = &inner.settings().instance_id {
            defaults.push(("group.instance.id", id));
        }
        let config = inner.client_config("group", &defaults);
        let g = kafka_group.clone();
        let consumer = blocking("join a Kafka consumer group", move || {
            let c: BaseConsumer<GroupContext> =
                config.create_with_context(context).map_err(|e| {
                    LogError::backend("join a Kafka consumer group", format!("group {g}: {e}"))
                })?;
            let refs: Vec<&str> = kafka_topics.iter().map(String::as_str).collect();
            c.subscribe(&refs).map_err(|e| {
                LogError::backend(
                    "join a Kafka consumer group",
                    format!("group {g} on {refs:?}: {e}"),
                )
            })?;
            Ok(c)
        })
        .await?;
        Ok(consumer)
    }

    /// After librdkafka declared this static member fenced: a broker restart
    /// can leave the coordinator holding another member id for our
    /// `group.instance.id` (a join retried during the outage), and fencing is
    /// fatal for the client. The member joins again with a new client, and
    /// what it owned is handed out as revoked (its next owner, likely itself
    /// again, starts from the last commit). Fenced again within
    /// [`REFENCED_WITHIN`] means another process has the same id: an error.
    async fn rejoin_after_fencing(&mut self) -> Result<ConsumerEvent, LogError> {
        let id = self
            .inner
            .settings()
            .instance_id
            .clone()
            .unwrap_or_default();
        if self.rejoined.is_some_and(|t| t.elapsed() < REFENCED_WITHIN) {
            return Err(LogError::Fatal {
                op: "poll a Kafka consumer group",
                detail: format!(
                    "group {}: fenced again by another consumer with group.instance.id {id:?} \
                     (is a second instance running with --instance-id {id}?)",
                    self.group
                ),
            });
        }
        tracing::warn!(group = %self.group, instance_id = %id, "fenced by the coordinator (after a broker restart?): joining again with a new client");
        let lost: Vec<TopicPartition> = {
            let mut s = self.state();
            let lost = s.owned.iter().cloned().collect();
            let topics = std::mem::take(&mut s.topics);
            *s = State {
                topics,
                ..State::default()
            };
            lost
        };
        if let Some(old) = self.consumer.take() {
            // Closing a fenced client talks to the broker: off the async threads.
            blocking("close a fenced Kafka consumer", move || {
                drop(old);
                Ok(())
            })
            .await?;
        }
        let fresh = Self::create(&self.inner, &self.logical_group, &self.topics).await?;
        self.consumer = Some(Arc::new(fresh));
        self.rejoined = Some(Instant::now());
        Ok(ConsumerEvent::Revoked(lost))
    }

    fn consumer(&self) -> Result<Arc<BaseConsumer<GroupContext>>, LogError> {
        self.consumer.clone().ok_or(LogError::Closed)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    /// Hands out one queued rebalance step, updating what is owned.
    fn next_step(
        &mut self,
        c: &BaseConsumer<GroupContext>,
        group: &str,
    ) -> Result<Option<ConsumerEvent>, LogError> {
        let step = c
            .context()
            .steps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front();
        match step {
            None => Ok(None),
            Some(Step::Revoked(tps)) => {
                for tp in &tps {
                    self.owned.remove(tp);
                    self.positions.remove(tp);
                    self.highs.remove(tp);
                    self.pending_seeks.remove(tp);
                }
                self.stash.retain(|r| !tps.contains(&r.topic_partition()));
                tracing::info!(group, partitions = ?tps, "partitions revoked");
                Ok(Some(ConsumerEvent::Revoked(tps)))
            }
            Some(Step::Assigned(tps)) => {
                if let Err(e) = self.start_positions(c, group, &tps) {
                    // Keep the step: the next poll hands it out once Kafka answers.
                    c.context()
                        .steps
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push_front(Step::Assigned(tps));
                    return Err(e);
                }
                self.owned.extend(tps.iter().cloned());
                tracing::info!(group, partitions = ?tps, "partitions assigned");
                Ok(Some(ConsumerEvent::Assigned(tps)))
            }
        }
    }

    /// Where newly assigned partitions start: the committed offset, else the low
    /// watermark (`auto.offset.reset=earliest`), the same choice librdkafka makes.
    fn start_positions(
        &mut self,
        c: &BaseConsumer<GroupContext>,
        group: &str,
        tps: &[TopicPartition],
    ) -> Result<(), LogError> {
        let names = &c.context().names;
        let committed = retrying("read committed offsets", || {
            c.committed_offsets(tpl_of(names, tps), OP_TIMEOUT)
        })
        .map_err(|e| LogError::backend("read committed offsets", format!("group {group}: {e}")))?;
        for tp in tps {
            let kafka_topic = names.topic(&tp.topic);
            let (low, high) = retrying("read watermarks", || {
                c.fetch_watermarks(&kafka_topic, tp.partition as i32, OP_TIMEOUT)
            })
            .map_err(|e| {
                LogError::backend(
                    "read watermarks",
                    format!("{kafka_topic}[{}]: {e}", tp.partition),
                )
            })?;
            let (low, high) = (low.max(0) as u64, high.max(0) as u64);
            let start = match committed
                .find_partition(&kafka_topic, tp.partition as i32)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(o)) if o >= 0 && (o as u64) <= high && (o as u64) >= low => {
                    o as u64
                }
                _ => low,
            };
            self.positions.insert(tp.clone(), start);
            self.highs.insert(tp.clone(), high);
        }
        Ok(())
    }

    /// Applies the seeks librdkafka accepts now; keeps the others for later.
    fn apply_seeks(&mut self, c: &BaseConsumer<GroupContext>, group: &str) -> Result<(), LogError> {
        if self.pending_seeks.is_empty() {
            return Ok(());
        }
        let names = &c.context().names;
        let pending: Vec<(TopicPartition, u64)> = self
            .pending_seeks
            .iter()
            .map(|(t, o)| (t.clone(), *o))
            .collect();
        for (tp, offset) in pending {
            let kafka_topic = names.topic(&tp.topic);
            match c.seek(
                &kafka_topic,
                tp.partition as i32,
                Offset::Offset(offset as i64),
                Duration::from_secs(1),
            ) {
                Ok(()) => {
                    self.pending_seeks.remove(&tp);
                    self.stash.retain(|r| r.topic_partition() != tp);
                    tracing::debug!(group, %tp, offset, "seek applied");
                }
                // "Erroneous state": the fetcher of a just-assigned partition has not
                // started yet. Retry at the next turn of the poll loop.
                Err(KafkaError::Seek(ref s))
                    if s.contains("Erroneous state") || s.contains("Timed out") => {}
                Err(e) => {
                    return Err(LogError::backend(
                        "seek",
                        format!("group {group}, {tp} to {offset}: {e}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Puts records taken for this poll back at the head of the stash and their
    /// partitions' positions back to them, as if they had not been taken.
    fn unread(&mut self, out: &mut Vec<ConsumedRecord>) {
        for r in out.drain(..).rev() {
            if let Some(pos) = self.positions.get_mut(&r.topic_partition()) {
                *pos = (*pos).min(r.offset);
            }
            self.stash.push_front(r);
        }
    }

    /// Whether a fetched record is handed out, advancing the position if so.
    fn accept(&mut self, r: &ConsumedRecord) -> bool {
        // A reused key: building a `TopicPartition` per record would allocate its
        // topic name for every record consumed.
        let tp = &mut self.scratch;
        tp.topic.clear();
        tp.topic.push_str(&r.topic);
        tp.partition = r.partition;
        if !self.owned.contains(&*tp) || self.pending_seeks.contains_key(&*tp) {
            return false;
        }
        match self.positions.get_mut(&*tp) {
            Some(pos) if r.offset >= *pos => {
                *pos = r.offset + 1;
                true
            }
            _ => false,
        }
    }

    fn poll(
        &mut self,
        c: &BaseConsumer<GroupContext>,
        group: &str,
        max: usize,
        timeout: Duration,
    ) -> Result<ConsumerEvent, LogError> {
        let deadline = Instant::now() + timeout;
        let mut out: Vec<ConsumedRecord> = Vec::with_capacity(max.min(4096));
        let mut idle = false;
        loop {
            // Rebalance steps first: records gathered meanwhile go back to the stash
            // and are re-checked against the new ownership later.
            if has_steps(c) {
                self.unread(&mut out);
                if let Some(ev) = self.next_step(c, group)? {
                    return Ok(ev);
                }
            }
            self.apply_seeks(c, group)?;
            while out.len() < max {
                let Some(r) = self.stash.pop_front() else {
                    break;
                };
                if self.accept(&r) {
                    out.push(r);
                }
            }
            if out.len() >= max || (idle && !out.is_empty()) {
                return Ok(ConsumerEvent::Records(out));
            }
            // The clock only when there is nothing to hand out yet: reading it
            // for every record was a few percent of the consume path (this VM's
            // clock_gettime is not cheap), and with records in hand the poll
            // does not wait anyway.
            let wait = if out.is_empty() {
                let now = Instant::now();
                if idle && now >= deadline {
                    return Ok(ConsumerEvent::Records(out));
                }
                deadline.saturating_duration_since(now).min(SLICE)
            } else {
                Duration::ZERO
            };
            idle = false;
            match c.poll(wait) {
                Some(Ok(m)) => {
                    if let Some(r) = to_record(&c.context().names, &mut self.topics, &m) {
                        // With nothing stashed before it, a record goes straight
                        // out (what the stash would do at the next turn, without
                        // moving it twice); a rebalance step at the next turn
                        // puts it back with `unread`, as any handed-out record.
                        if self.stash.is_empty() && out.len() < max {
                            if self.accept(&r) {
                                out.push(r);
                            }
                        } else {
                            self.stash.push_back(r);
                        }
                    }
                }
                Some(Err(KafkaError::MessageConsumptionFatal(
                    rdkafka::types::RDKafkaErrorCode::FencedInstanceId,
                ))) => {
                    self.unread(&mut out);
                    self.fenced = true;
                    return Ok(ConsumerEvent::Records(Vec::new()));
                }
                Some(Err(KafkaError::MessageConsumptionFatal(code))) => {
                    return Err(LogError::Fatal {
                        op: "poll a Kafka consumer group",
                        detail: format!("group {group}: fatal: {code}"),
                    });
                }
                Some(Err(e)) => {
                    tracing::warn!(group, error = %e, "consumer error (librdkafka retries)");
                    idle = true;
                }
                None => idle = true,
            }
        }
    }
}

#[async_trait]
impl GroupConsumer for KafkaConsumer {
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<ConsumerEvent, LogError> {
        let c = self.consumer()?;
        let state = self.state.clone();
        let group = self.group.clone();
        // The blocking task leaves its result in the outbox: if this future is
        // dropped (shutdown in a `select!`), the next poll returns it instead of
        // losing an assignment or records.
        blocking("poll a Kafka consumer group", move || {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            if s.outbox.is_none() {
                let result = s.poll(&c, &group, max.max(1), timeout);
                s.outbox = Some(result);
            }
            Ok(())
        })
        .await?;
        if std::mem::take(&mut self.state().fenced) {
            return self.rejoin_after_fencing().await;
        }
        self.state()
            .outbox
            .take()
            .unwrap_or(Ok(ConsumerEvent::Records(Vec::new())))
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.state().owned.iter().cloned().collect()
    }

    fn position(&self, tp: &TopicPartition) -> Option<u64> {
        self.state().positions.get(tp).copied()
    }

    async fn seek(&mut self, tp: &TopicPartition, offset: u64) -> Result<(), LogError> {
        let mut s = self.state();
        if !s.owned.contains(tp) {
            return Err(LogError::NotOwned(tp.clone()));
        }
        s.positions.insert(tp.clone(), offset);
        s.pending_seeks.insert(tp.clone(), offset);
        s.stash.retain(|r| r.topic_partition() != *tp);
        tracing::debug!(group = %self.group, %tp, offset, "seek requested");
        Ok(())
    }

    async fn commit(&mut self, offsets: &[(TopicPartition, u64)]) -> Result<(), LogError> {
        if offsets.is_empty() {
            return Ok(());
        }
        {
            let s = self.state();
            if let Some((tp, _)) = offsets.iter().find(|(tp, _)| !s.owned.contains(tp)) {
                return Err(LogError::NotOwned(tp.clone()));
            }
        }
        let c = self.consumer()?;
        let names = self.inner.names().clone();
        let group = self.group.clone();
        let offsets = offsets.to_vec();
        blocking("commit offsets", move || {
            let mut tpl = TopicPartitionList::with_capacity(offsets.len());
            for (tp, offset) in &offsets {
                tpl.add_partition_offset(
                    &names.topic(&tp.topic),
                    tp.partition as i32,
                    Offset::Offset(*offset as i64),
                )
                .map_err(|e| {
                    LogError::backend("commit offsets", format!("group {group}, {tp}: {e}"))
                })?;
            }
            // While the group completes a rebalance the coordinator answers
            // RebalanceInProgress, or IllegalGeneration when the commit carried
            // the generation this member just left to rejoin (cooperative
            // rebalancing rejoins after every revocation; librdkafka learns the
            // new generation in the background). The partitions are still ours
            // (they are only revoked inside `poll`), so the commit is retried
            // until the group settles.
            let deadline = Instant::now() + OP_TIMEOUT;
            loop {
                match c.commit(&tpl, CommitMode::Sync) {
                    Ok(()) => break,
                    Err(KafkaError::ConsumerCommit(
                        RDKafkaErrorCode::RebalanceInProgress | RDKafkaErrorCode::IllegalGeneration,
                    )) if Instant::now() < deadline => {
                        tracing::debug!(group = %group, "commit during a rebalance; retrying");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(e) => {
                        tracing::warn!(group = %group, error = %e, "commit failed");
                        return Err(LogError::backend(
                            "commit offsets",
                            format!("group {group}, {offsets:?}: {e}"),
                        ));
                    }
                }
            }
            tracing::debug!(group = %group, offsets = ?offsets, "committed");
            Ok(())
        })
        .await
    }

    fn lag(&self) -> Vec<(TopicPartition, u64)> {
        let Some(c) = self.consumer.as_ref() else {
            return Vec::new();
        };
        let s = self.state();
        s.positions
            .iter()
            .map(|(tp, pos)| {
                let high = cached_high(c, &self.inner.names().topic(&tp.topic), tp.partition)
                    .or_else(|| s.highs.get(tp).copied())
                    .unwrap_or(*pos);
                (tp.clone(), high.saturating_sub(*pos))
            })
            .collect()
    }

    async fn close(mut self: Box<Self>) -> Result<(), LogError> {
        let Some(c) = self.consumer.take() else {
            return Ok(());
        };
        let group = self.group.clone();
        blocking("leave a Kafka consumer group", move || {
            // Dropping the last handle closes the consumer: librdkafka revokes the
            // assignment (served by the callbacks above) and sends LeaveGroup.
            drop(c);
            tracing::info!(group = %group, "left Kafka consumer group");
            Ok(())
        })
        .await
    }
}

impl Drop for KafkaConsumer {
    fn drop(&mut self) {
        // Dropped without `close` (a crashed task): still leave the group, so the
        // others need not wait for the session to time out. Closing blocks on the
        // network, so it happens off the async threads.
        if let Some(c) = self.consumer.take() {
            let group = self.group.clone();
            let spawned = std::thread::Builder::new()
                .name("courier-kafka-close".into())
                .spawn(move || {
                    drop(c);
                    tracing::info!(group = %group, "left Kafka consumer group (consumer dropped)");
                });
            if let Err(e) = spawned {
                tracing::warn!(group = %self.group, error = %e, "could not close the dropped consumer in the background");
            }
        }
    }
}

/// The high watermark librdkafka learned from its last fetch response (no request).
fn cached_high(c: &BaseConsumer<GroupContext>, kafka_topic: &str, partition: u32) -> Option<u64> {
    let topic = CString::new(kafka_topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid while `c` lives; `topic` is a valid C string
    // for the duration of the call; librdkafka only writes the two out-parameters.
    // rust-rdkafka does not wrap this cache-only variant of `fetch_watermarks`.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            c.client().native_ptr(),
            topic.as_ptr(),
            partition as i32,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some(high as u64)
}
