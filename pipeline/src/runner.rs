//! The processor runner: poll a batch, hand it to a processor, wait for its sink to
//! acknowledge, then commit — per consumer group, until told to stop or caught up.
//!
//! Offsets are committed only after the handler returned `Ok` for the batch (the
//! sink has the data), and rebalances happen only while polling, so nothing is in
//! flight for a partition the consumer is losing. A crash between the sink's write and
//! the commit replays the batch; processors make that harmless (docs/DESIGN.md,
//! "effectively once").

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tracing::Instrument;

use crate::config::RunnerConfig;
use crate::log::{
    ConsumedRecord, ConsumerEvent, EventLog, GroupConsumer, LogError, TopicPartition,
};
use crate::metrics::metrics;
use crate::shutdown::Shutdown;

/// A failure of a handler.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    /// Whether trying the same batch again may succeed (a sink that is down).
    pub retryable: bool,
    /// What failed, for a person.
    pub message: String,
}

impl HandlerError {
    /// A failure worth retrying.
    pub fn retryable(message: impl Into<String>) -> Self {
        HandlerError {
            retryable: true,
            message: message.into(),
        }
    }

    /// A failure that retrying cannot fix.
    pub fn fatal(message: impl Into<String>) -> Self {
        HandlerError {
            retryable: false,
            message: message.into(),
        }
    }
}

/// The first offset still in `tp`: where a handler whose view has no checkpoint
/// for a partition (a new or lost store, a rebuild) starts it, whatever its group
/// committed.
pub async fn start_of(log: &dyn EventLog, tp: &TopicPartition) -> Result<u64, HandlerError> {
    let (low, _) = log
        .watermarks(&tp.topic, tp.partition)
        .await
        .map_err(|e| HandlerError::retryable(format!("reading the start of {tp}: {e}")))?;
    Ok(low)
}

/// What a processor plugs into the runner. `handle` returns once the batch's effects
/// are durable in the sink.
#[async_trait]
pub trait Handler: Send {
    /// Partitions just assigned. Return a start offset for every partition whose
    /// position the handler keeps itself (a checkpoint stored with its view); the
    /// others start at the group's committed offset.
    async fn on_assigned(
        &mut self,
        _partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, u64)>, HandlerError> {
        Ok(Vec::new())
    }

    /// Partitions taken away; drop any per-partition state.
    async fn on_revoked(&mut self, _partitions: &[TopicPartition]) -> Result<(), HandlerError> {
        Ok(())
    }

    /// Applies a batch (records in offset order per partition) and makes its
    /// effects durable.
    async fn handle(&mut self, batch: &[ConsumedRecord]) -> Result<(), HandlerError>;

    /// A batch failed with a retryable error, and the runner is about to try
    /// again. Some stores can lose writes they had acknowledged when they fail
    /// (a lone Cassandra node killed within its commitlog sync period forgets
    /// the last seconds), and a handler that cached state ahead of its store
    /// would then never write those rows again. Such a handler forgets what it
    /// cached for `partitions` and returns where its store says each one stands,
    /// like `on_assigned`: the runner drops the batch and reads again from
    /// there. `None` (the default): retry the same batch as it is.
    async fn recover(
        &mut self,
        _partitions: &[TopicPartition],
    ) -> Result<Option<Vec<(TopicPartition, u64)>>, HandlerError> {
        Ok(None)
    }

    /// The log is idle (a poll found nothing) or the run is ending (caught up, or
    /// shutdown): make everything handled durable.
    /// Only a handler that keeps its own checkpoint with its view and seeks to it
    /// on assignment may defer durability past `handle` (the search view commits
    /// its shards by interval); the default has nothing pending.
    async fn flush(&mut self) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// Why a run stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The log failed.
    #[error("log: {0}")]
    Log(#[from] LogError),
    /// The handler failed for good.
    #[error("processor {processor}: {source}")]
    Handler {
        /// Which processor.
        processor: String,
        /// Its error.
        source: HandlerError,
    },
}

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunStats {
    /// Records handed to the handler and committed.
    pub records: u64,
    /// Batches committed.
    pub batches: u64,
}

/// How to run one processor.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Processor name: metrics label and consumer group suffix.
    pub processor: String,
    /// Consumer group.
    pub group: String,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Stop once every owned partition reached the end it had when the run began.
    pub until_caught_up: bool,
    /// Batching and retry settings.
    pub runner: RunnerConfig,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Sees every batch a processor committed, right after the commit: how a
/// benchmark measures exact end-to-end latency per record (the Prometheus
/// histogram only keeps buckets). Installed at most once per process, by
/// `courier bench`; without one the runner pays one atomic load per batch.
pub trait CommitObserver: Send + Sync {
    /// `records` were handled by `processor`'s sink and their offsets committed.
    fn committed(&self, processor: &str, records: &[ConsumedRecord]);
}

static COMMIT_OBSERVER: OnceLock<Arc<dyn CommitObserver>> = OnceLock::new();

/// Installs the process's commit observer; `false` if one was installed already
/// (it stays).
pub fn observe_commits(observer: Arc<dyn CommitObserver>) -> bool {
    COMMIT_OBSERVER.set(observer).is_ok()
}

/// Exponential backoff with jitter: 100 ms · 2^attempt, capped at 10 s, times a
/// factor in [0.5, 1.0) so restarted instances do not retry in lockstep.
pub fn backoff(attempt: u32) -> Duration {
    let base = 100u64.saturating_mul(1 << attempt.min(7)).min(10_000);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let jitter = 0.5 + f64::from(nanos % 1000) / 2000.0;
    Duration::from_millis((base as f64 * jitter) as u64)
}

/// Runs a handler as a member of its consumer group until shutdown, or until caught
/// up when asked. On return the last batch is committed and the group left cleanly.
pub async fn run(
    log: Arc<dyn EventLog>,
    handler: &mut dyn Handler,
    opts: RunOptions,
    mut shutdown: Shutdown,
) -> Result<RunStats, RunError> {
    // The ends as they were when the run began: `--until-caught-up` means this much,
    // not a moving target that a busy producer could keep ahead forever.
    let mut targets = BTreeMap::new();
    if opts.until_caught_up {
        for topic in &opts.topics {
            for p in 0..log.partitions(topic)? {
                let (_, high) = log.watermarks(topic, p).await?;
                targets.insert(TopicPartition::new(topic.clone(), p), high);
            }
        }
    }
    let mut consumer = log.subscribe(&opts.group, &opts.topics).await?;
    let mut result = drive(
        &*log,
        &mut *consumer,
        handler,
        &opts,
        &targets,
        &mut shutdown,
    )
    .await;
    if result.is_ok()
        && let Err(e) = handler.flush().await
    {
        result = Err(failed(&opts.processor)(e));
    }
    if let Err(e) = consumer.close().await {
        tracing::warn!(error = %e, group = %opts.group, "leaving the consumer group failed");
    }
    result
}

async fn drive(
    log: &dyn EventLog,
    consumer: &mut dyn GroupConsumer,
    handler: &mut dyn Handler,
    opts: &RunOptions,
    targets: &BTreeMap<TopicPartition, u64>,
    shutdown: &mut Shutdown,
) -> Result<RunStats, RunError> {
    let m = metrics();
    let poll_timeout = Duration::from_millis(opts.runner.poll_timeout_ms);
    let mut stats = RunStats::default();
    let processor = opts.processor.as_str();
    let mut waiting_for: Vec<TopicPartition> = Vec::new();
    // Offsets of applied batches whose commit failed (the broker or the group
    // coordinator away): committed with the next batch's, or before the run
    // reports itself caught up.
    let mut owed: BTreeMap<TopicPartition, u64> = BTreeMap::new();
    let mut poll_failures = 0;
    loop {
        if shutdown.is_triggered() {
            if !owed.is_empty() {
                commit(consumer, &mut owed, processor, shutdown).await?;
            }
            if owed.is_empty() {
                tracing::info!(processor, "shutdown requested; last batch committed");
            } else {
                tracing::warn!(processor, offsets = ?owed, "shutdown requested; the last commits failed: these partitions' next owner applies their last batches again");
            }
            return Ok(stats);
        }
        let event = tokio::select! {
            ev = consumer.poll(opts.runner.max_batch, poll_timeout) => ev,
            _ = shutdown.wait() => continue,
        };
        let event = match event {
            Ok(event) => {
                poll_failures = 0;
                event
            }
            // The log away (a broker restarting while a new assignment's
            // offsets are read, say): the consumer keeps what it has and the
            // next poll asks again, so the run waits instead of ending.
            Err(e @ LogError::Backend { .. }) => {
                m.errors.with_label_values(&[processor, "poll"]).inc();
                let wait = backoff(poll_failures);
                poll_failures += 1;
                tracing::warn!(processor, error = %e, attempt = poll_failures, retry_in_ms = wait.as_millis() as u64, "poll failed; trying again");
                let mut stop = shutdown.clone();
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.wait() => {}
                }
                continue;
            }
            Err(e) => {
                m.errors.with_label_values(&[processor, "poll"]).inc();
                return Err(e.into());
            }
        };
        match event {
            ConsumerEvent::Assigned(tps) => {
                tracing::info!(processor, partitions = ?tps, "partitions assigned");
                let mut retry = Retry::new(processor, opts.runner.max_attempts);
                let seeks = loop {
                    match handler.on_assigned(&tps).await {
                        Ok(seeks) => break seeks,
                        Err(e) => {
                            retry
                                .after(e, "opening assigned partitions", shutdown)
                                .await?
                        }
                    }
                };
                retry.recovered();
                for (tp, offset) in seeks {
                    tracing::info!(processor, %tp, offset, "resuming from the processor's checkpoint");
                    consumer.seek(&tp, offset).await?;
                }
            }
            ConsumerEvent::Revoked(tps) => {
                tracing::info!(processor, partitions = ?tps, "partitions revoked");
                // No longer ours to commit: the next owner starts from the
                // last commit and applies the rest again (harmless by design).
                owed.retain(|tp, _| !tps.contains(tp));
                for tp in &tps {
                    m.lag
                        .with_label_values(&[processor, &tp.topic, &tp.partition.to_string()])
                        .set(0);
                }
                let mut retry = Retry::new(processor, opts.runner.max_attempts);
                while let Err(e) = handler.on_revoked(&tps).await {
                    retry
                        .after(e, "closing revoked partitions", shutdown)
                        .await?;
                }
                retry.recovered();
            }
            ConsumerEvent::Records(records) if records.is_empty() => {
                // Idle: whatever a handler deferred becomes durable now.
                let mut retry = Retry::new(processor, opts.runner.max_attempts);
                while let Err(e) = handler.flush().await {
                    retry.after(e, "flush", shutdown).await?;
                }
                retry.recovered();
                if !owed.is_empty() {
                    commit(consumer, &mut owed, processor, shutdown).await?;
                }
                if opts.until_caught_up
                    && owed.is_empty()
                    && caught_up(log, &mut *consumer, &opts.group, targets, &mut waiting_for).await
                {
                    tracing::info!(
                        processor,
                        records = stats.records,
                        "caught up with the end of the log"
                    );
                    return Ok(stats);
                }
            }
            ConsumerEvent::Records(records) => {
                let span = tracing::info_span!(
                    "batch",
                    processor,
                    records = records.len(),
                    first_offset = records[0].offset,
                    partition = records[0].partition
                );
                let applied = process_batch(consumer, handler, opts, &records, &mut owed, shutdown)
                    .instrument(span)
                    .await?;
                if !applied {
                    // The handler started over from its store: read again.
                    continue;
                }
                stats.records += records.len() as u64;
                stats.batches += 1;
                if opts.until_caught_up
                    && owed.is_empty()
                    && caught_up(log, &mut *consumer, &opts.group, targets, &mut waiting_for).await
                {
                    tracing::info!(
                        processor,
                        records = stats.records,
                        "caught up with the end of the log"
                    );
                    return Ok(stats);
                }
            }
        }
    }
}

/// Retries of one failing handler call. A retryable failure (a sink that is
/// down: Cassandra restarting, a full disk) is retried with [`backoff`] for as
/// long as it lasts, so a processor rides out an outage and resumes where it
/// was instead of exiting (which, in `courier up`, stopped the gateway too).
/// Past `max_attempts` the processor is reported stalled: an error log per
/// attempt and `courier_processor_stalled` = 1 until a call succeeds. A fatal
/// failure, or a stop request, ends the run without committing the batch.
struct Retry<'a> {
    processor: &'a str,
    max_attempts: u32,
    attempt: u32,
}

impl<'a> Retry<'a> {
    fn new(processor: &'a str, max_attempts: u32) -> Self {
        Retry {
            processor,
            max_attempts,
            attempt: 0,
        }
    }

    /// After a failure of `what`: `Ok` once it is time to try again, `Err` to end
    /// the run.
    async fn after(
        &mut self,
        e: HandlerError,
        what: &str,
        shutdown: &Shutdown,
    ) -> Result<(), RunError> {
        let (m, processor) = (metrics(), self.processor);
        m.errors.with_label_values(&[processor, "handler"]).inc();
        self.attempt += 1;
        let attempt = self.attempt;
        if !e.retryable || shutdown.is_triggered() {
            tracing::error!(processor, error = %e, attempt, "{what} failed; not committed");
            return Err(failed(processor)(e));
        }
        let wait = backoff(attempt - 1);
        let retry_in_ms = wait.as_millis() as u64;
        if attempt >= self.max_attempts {
            m.stalled.with_label_values(&[processor]).set(1);
            tracing::error!(processor, error = %e, attempt, retry_in_ms, "{what} keeps failing; stalled, retrying until it succeeds or the processor is stopped");
        } else {
            tracing::warn!(processor, error = %e, attempt, retry_in_ms, "{what} failed; retrying");
        }
        let mut stop = shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(wait) => Ok(()),
            _ = stop.wait() => {
                tracing::error!(processor, error = %e, attempt, "stop requested while {what} was failing; not committed");
                Err(failed(processor)(e))
            }
        }
    }

    /// The call succeeded: no longer stalled.
    fn recovered(&self) {
        if self.attempt >= self.max_attempts {
            metrics()
                .stalled
                .with_label_values(&[self.processor])
                .set(0);
            tracing::info!(
                processor = self.processor,
                attempts = self.attempt,
                "recovered"
            );
        }
    }
}

/// Wraps a handler failure with the processor's name.
fn failed(processor: &str) -> impl Fn(HandlerError) -> RunError + '_ {
    move |source| RunError::Handler {
        processor: processor.to_string(),
        source,
    }
}

/// Whether the *group* has caught up with every partition of its topics: those
/// this member holds by its own position, every other one by the group's
/// committed offset. Another member may still hold a partition it never
/// processed, e.g. one killed a moment ago whose session has not expired: the
/// run then waits (its session ends, the partition comes here, or a live owner
/// commits) instead of reporting a view complete that is not. `waiting_for`
/// remembers what was last reported, so the wait is logged once per change.
async fn caught_up(
    log: &dyn EventLog,
    // `&mut`: a shared `&dyn GroupConsumer` held across the awaits below would
    // need the consumer to be `Sync`.
    consumer: &mut dyn GroupConsumer,
    group: &str,
    targets: &BTreeMap<TopicPartition, u64>,
    waiting_for: &mut Vec<TopicPartition>,
) -> bool {
    let assignment = consumer.assignment();
    if !reached(&assignment, |tp| consumer.position(tp), targets) {
        return false;
    }
    let mut committed: BTreeMap<&str, Vec<Option<u64>>> = BTreeMap::new();
    for tp in targets.keys().filter(|tp| !assignment.contains(tp)) {
        if !committed.contains_key(tp.topic.as_str()) {
            match log.committed(group, &tp.topic).await {
                Ok(c) => committed.insert(&tp.topic, c),
                Err(e) => {
                    // The broker away: not known to be caught up, so not yet.
                    tracing::warn!(group, error = %e, "reading the group's committed offsets failed; asking again later");
                    return false;
                }
            };
        }
    }
    let behind = elsewhere_behind(&assignment, targets, |tp| {
        committed
            .get(tp.topic.as_str())
            .and_then(|c| c.get(tp.partition as usize).copied().flatten())
    });
    if behind.is_empty() {
        return true;
    }
    if *waiting_for != behind {
        tracing::info!(
            group,
            partitions = ?behind,
            "caught up with this member's partitions; waiting for the group's others (held by another member, perhaps one that died and whose session has not ended)"
        );
        *waiting_for = behind;
    }
    false
}

/// Whether every assigned partition's position reached its target. With nothing
/// assigned yet — on Kafka the first polls can come back empty before the group's
/// first assignment — only an empty log counts as caught up: otherwise a run would
/// "catch up" having applied nothing. (Partitions held elsewhere: see
/// [`elsewhere_behind`].)
fn reached(
    assignment: &[TopicPartition],
    position: impl Fn(&TopicPartition) -> Option<u64>,
    targets: &BTreeMap<TopicPartition, u64>,
) -> bool {
    if assignment.is_empty() {
        return targets.values().all(|&end| end == 0);
    }
    assignment.iter().all(|tp| {
        let target = targets.get(tp).copied().unwrap_or(0);
        position(tp).is_some_and(|pos| pos >= target)
    })
}

/// The partitions this member does not hold whose committed offset is short of
/// their target (an empty partition needs nothing).
fn elsewhere_behind(
    assignment: &[TopicPartition],
    targets: &BTreeMap<TopicPartition, u64>,
    committed: impl Fn(&TopicPartition) -> Option<u64>,
) -> Vec<TopicPartition> {
    targets
        .iter()
        .filter(|(tp, end)| **end > 0 && !assignment.contains(tp))
        .filter(|(tp, end)| committed(tp).is_none_or(|c| c < **end))
        .map(|(tp, _)| tp.clone())
        .collect()
}

/// Commit attempts of one round before the run carries on without it: about
/// 40 s of backoff, longer than a broker takes to restart.
const COMMIT_ATTEMPTS: u32 = 10;

/// Commits `owed` (clearing it) with retries while the log fails: a broker
/// restarting, the group coordinator moving or not yet known. Past
/// [`COMMIT_ATTEMPTS`], or on a stop request, the offsets stay owed and the
/// run goes on: the batches are applied, the next commit covers them, and if
/// the partitions move meanwhile their next owner applies them again
/// (redelivery is harmless by design), so a commit failure never ends a run.
/// Partitions no longer owned are dropped from `owed` for the same reason.
async fn commit(
    consumer: &mut dyn GroupConsumer,
    owed: &mut BTreeMap<TopicPartition, u64>,
    processor: &str,
    shutdown: &Shutdown,
) -> Result<(), RunError> {
    let m = metrics();
    let mut attempt = 0;
    while !owed.is_empty() {
        let offsets: Vec<(TopicPartition, u64)> =
            owed.iter().map(|(tp, o)| (tp.clone(), *o)).collect();
        let e = match consumer.commit(&offsets).await {
            Ok(()) => {
                if attempt > 0 {
                    tracing::info!(processor, attempts = attempt + 1, "commit succeeded");
                }
                owed.clear();
                return Ok(());
            }
            Err(LogError::NotOwned(tp)) => {
                tracing::warn!(processor, %tp, "partition revoked before its commit; its next owner applies the batch again");
                owed.remove(&tp);
                continue;
            }
            Err(e @ LogError::Backend { .. }) => e,
            Err(e) => {
                m.errors.with_label_values(&[processor, "commit"]).inc();
                return Err(e.into());
            }
        };
        m.errors.with_label_values(&[processor, "commit"]).inc();
        attempt += 1;
        if attempt >= COMMIT_ATTEMPTS || shutdown.is_triggered() {
            tracing::warn!(processor, error = %e, attempt, "commit keeps failing; going on: the next commit covers these offsets");
            return Ok(());
        }
        let wait = backoff(attempt - 1);
        tracing::warn!(processor, error = %e, attempt, retry_in_ms = wait.as_millis() as u64, "commit failed; retrying");
        let mut stop = shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait() => {}
        }
    }
    Ok(())
}

async fn process_batch(
    consumer: &mut dyn GroupConsumer,
    handler: &mut dyn Handler,
    opts: &RunOptions,
    records: &[ConsumedRecord],
    owed: &mut BTreeMap<TopicPartition, u64>,
    shutdown: &Shutdown,
) -> Result<bool, RunError> {
    let m = metrics();
    let processor = opts.processor.as_str();
    let started = Instant::now();
    let mut retry = Retry::new(processor, opts.runner.max_attempts);
    loop {
        match handler.handle(records).await {
            Ok(()) => break,
            Err(e) => {
                retry.after(e, "batch", shutdown).await?;
                let tps = consumer.assignment();
                let resume = loop {
                    match handler.recover(&tps).await {
                        Ok(resume) => break resume,
                        Err(e) => {
                            retry
                                .after(e, "recovering after a failed batch", shutdown)
                                .await?
                        }
                    }
                };
                if let Some(seeks) = resume {
                    // Each partition from where the handler's store says, else from
                    // the failed batch's first record (everything before it is
                    // committed).
                    let mut from: BTreeMap<TopicPartition, u64> = BTreeMap::new();
                    for r in records {
                        from.entry(r.topic_partition()).or_insert(r.offset);
                    }
                    from.extend(seeks);
                    for (tp, offset) in from {
                        if tps.contains(&tp) {
                            tracing::info!(processor, %tp, offset, "reading again from the store's checkpoint after a failure");
                            consumer.seek(&tp, offset).await?;
                        }
                    }
                    retry.recovered();
                    return Ok(false);
                }
            }
        }
    }
    retry.recovered();
    // Next offset to read per partition: one past the last record handled.
    let mut next: BTreeMap<TopicPartition, u64> = BTreeMap::new();
    for r in records {
        let e = next.entry(r.topic_partition()).or_insert(0);
        *e = (*e).max(r.offset + 1);
    }
    let offsets: Vec<_> = next.into_iter().collect();
    for (tp, offset) in &offsets {
        let e = owed.entry(tp.clone()).or_insert(0);
        *e = (*e).max(*offset);
    }
    commit(consumer, owed, processor, shutdown).await?;

    m.batch_seconds
        .with_label_values(&[processor])
        .observe(started.elapsed().as_secs_f64());
    let now = now_ms();
    let e2e = m.e2e_seconds.with_label_values(&[processor]);
    for r in records {
        e2e.observe((now - r.timestamp_ms).max(0) as f64 / 1000.0);
    }
    if let Some(observer) = COMMIT_OBSERVER.get() {
        observer.committed(processor, records);
    }
    for (tp, _) in &offsets {
        let n = records
            .iter()
            .filter(|r| r.partition == tp.partition && *r.topic == *tp.topic)
            .count();
        m.events
            .with_label_values(&[processor, &tp.topic, &tp.partition.to_string()])
            .inc_by(n as u64);
    }
    for (tp, lag) in consumer.lag() {
        m.lag
            .with_label_values(&[processor, &tp.topic, &tp.partition.to_string()])
            .set(lag as i64);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: u32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    /// A consumer owning nothing whose log fails as scripted: the next
    /// `poll_errors` polls and `commit_fails` commits fail (then polls come
    /// back empty), and a commit naming `revoked` is refused as not owned.
    #[derive(Default)]
    struct Scripted {
        poll_errors: Vec<LogError>,
        polled: u32,
        commit_fails: u32,
        revoked: Option<TopicPartition>,
        committed: Vec<(TopicPartition, u64)>,
    }

    #[async_trait]
    impl GroupConsumer for Scripted {
        async fn poll(&mut self, _: usize, _: Duration) -> Result<ConsumerEvent, LogError> {
            self.polled += 1;
            match self.poll_errors.pop() {
                Some(e) => Err(e),
                None => Ok(ConsumerEvent::Records(Vec::new())),
            }
        }
        fn assignment(&self) -> Vec<TopicPartition> {
            Vec::new()
        }
        fn position(&self, _: &TopicPartition) -> Option<u64> {
            None
        }
        async fn seek(&mut self, _: &TopicPartition, _: u64) -> Result<(), LogError> {
            Ok(())
        }
        async fn commit(&mut self, offsets: &[(TopicPartition, u64)]) -> Result<(), LogError> {
            if let Some((tp, _)) = offsets
                .iter()
                .find(|(tp, _)| Some(tp) == self.revoked.as_ref())
            {
                return Err(LogError::NotOwned(tp.clone()));
            }
            if self.commit_fails > 0 {
                self.commit_fails -= 1;
                return Err(LogError::backend(
                    "commit offsets",
                    "Consumer commit error: WaitingForCoordinator",
                ));
            }
            self.committed.extend_from_slice(offsets);
            Ok(())
        }
        fn lag(&self) -> Vec<(TopicPartition, u64)> {
            Vec::new()
        }
        async fn close(self: Box<Self>) -> Result<(), LogError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_commit_the_log_fails_is_retried_and_never_ends_the_run() {
        let (_trigger, shutdown) = crate::shutdown::channel();
        let mut c = Scripted {
            commit_fails: 3,
            ..Scripted::default()
        };
        let mut owed = BTreeMap::from([(tp(0), 7), (tp(1), 3)]);
        commit(&mut c, &mut owed, "test", &shutdown).await.unwrap();
        assert!(owed.is_empty(), "committed once the log answered");
        assert_eq!(c.committed, vec![(tp(0), 7), (tp(1), 3)]);

        // Still failing past the attempts of a round (here: asked to stop):
        // the run goes on and the offsets stay owed for the next commit.
        let (trigger, stopping) = crate::shutdown::channel();
        trigger.trigger();
        let mut c = Scripted {
            commit_fails: u32::MAX,
            ..Scripted::default()
        };
        let mut owed = BTreeMap::from([(tp(0), 9)]);
        commit(&mut c, &mut owed, "test", &stopping).await.unwrap();
        assert_eq!(owed, BTreeMap::from([(tp(0), 9)]));
    }

    struct Nothing;

    #[async_trait]
    impl Handler for Nothing {
        async fn handle(&mut self, _: &[ConsumedRecord]) -> Result<(), HandlerError> {
            Ok(())
        }
    }

    #[cfg(feature = "embedded")]
    #[tokio::test]
    async fn a_poll_the_log_fails_is_tried_again_and_a_fatal_one_ends_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let log = crate::EmbeddedLog::open(
            dir.path(),
            courier_topics::Catalog::builtin(),
            crate::embedded::EmbeddedOptions::default(),
        )
        .unwrap();
        let opts = RunOptions {
            processor: "test".into(),
            group: "courier.test".into(),
            topics: vec![courier_topics::PRESENCE.into()],
            until_caught_up: true,
            runner: RunnerConfig::default(),
        };
        let run = async |mut c: Scripted| {
            let (_trigger, mut shutdown) = crate::shutdown::channel();
            let ended = drive(
                &log,
                &mut c,
                &mut Nothing,
                &opts,
                &BTreeMap::new(),
                &mut shutdown,
            )
            .await;
            (ended, c.polled)
        };
        // The broker away while an assignment's offsets are read, twice; then
        // nothing to catch up with (no targets): the run ends at its first
        // answered poll.
        let timed_out = || {
            LogError::backend(
                "read watermarks",
                "Meta data fetch error: OperationTimedOut",
            )
        };
        let (ended, polled) = run(Scripted {
            poll_errors: vec![timed_out(), timed_out()],
            ..Scripted::default()
        })
        .await;
        let stats = ended.expect("failed polls are tried again");
        assert_eq!((stats.records, polled), (0, 3));

        let (ended, polled) = run(Scripted {
            poll_errors: vec![LogError::Fatal {
                op: "poll a Kafka consumer group",
                detail: "fatal: FencedInstanceId".into(),
            }],
            ..Scripted::default()
        })
        .await;
        assert!(ended.is_err(), "a fatal poll ends the run");
        assert_eq!(polled, 1);
    }

    #[tokio::test]
    async fn a_revoked_partition_is_dropped_from_the_commit_and_the_rest_committed() {
        let (_trigger, shutdown) = crate::shutdown::channel();
        let mut c = Scripted {
            revoked: Some(tp(1)),
            ..Scripted::default()
        };
        let mut owed = BTreeMap::from([(tp(0), 7), (tp(1), 3)]);
        commit(&mut c, &mut owed, "test", &shutdown).await.unwrap();
        assert!(owed.is_empty());
        assert_eq!(c.committed, vec![(tp(0), 7)]);
    }

    #[test]
    fn nothing_assigned_is_caught_up_only_on_an_empty_log() {
        let empty = BTreeMap::from([(tp(0), 0), (tp(1), 0)]);
        let full = BTreeMap::from([(tp(0), 0), (tp(1), 5)]);
        assert!(reached(&[], |_| None, &empty));
        assert!(!reached(&[], |_| None, &full));
    }

    #[test]
    fn every_assigned_partition_must_reach_its_target() {
        let targets = BTreeMap::from([(tp(0), 3), (tp(1), 5)]);
        let at = |p0: u64, p1: u64| {
            move |t: &TopicPartition| Some(if t.partition == 0 { p0 } else { p1 })
        };
        assert!(reached(&[tp(0), tp(1)], at(3, 5), &targets));
        assert!(!reached(&[tp(0), tp(1)], at(3, 4), &targets));
        // Another member owns partition 1: this one is done with its own...
        assert!(reached(&[tp(0)], at(3, 0), &targets));
        // ...but the group is done only once partition 1 is committed to its end.
        assert_eq!(elsewhere_behind(&[tp(0)], &targets, |_| None), vec![tp(1)]);
        assert_eq!(
            elsewhere_behind(&[tp(0)], &targets, |_| Some(4)),
            vec![tp(1)]
        );
        assert!(elsewhere_behind(&[tp(0)], &targets, |_| Some(5)).is_empty());
        assert!(elsewhere_behind(&[tp(0), tp(1)], &targets, |_| None).is_empty());
        // No position yet (not fetched since assignment): not caught up.
        assert!(!reached(&[tp(0)], |_| None, &targets));
    }
}
