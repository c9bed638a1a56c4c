//! `courier bench`: simulated users send messages through the producer path
//! while the processors of `courier up` (inbox, presence, search, notify) run in
//! this process; every message's end-to-end latency to each view is measured
//! exactly, from its `at_ms` to the moment the view has it.
//!
//! A run works in a namespace of its own (`bench_<ms>`: its own log directory or
//! Kafka topics, views and Cassandra keyspace), deleted afterwards unless
//! `--keep`, so it never mixes with real data and two runs never share a view.
//!
//! What "visible" means per view:
//! - inbox: the inbox processor's sink acknowledged the batch holding the message
//!   and its offset was committed (a read of the views now shows it);
//! - push: the notify processor wrote the message's push jobs to
//!   `courier.push-jobs.v1` and committed it;
//! - search: the search shard holding it committed past its offset (a reader
//!   opened now finds it). Shards commit about once a second (the writer's
//!   commit interval), which dominates this latency; the commit is sampled
//!   every [`SAMPLE`], so it is exact to within that.

mod baseline;
mod fleet;
// Public: the chaos harness (chaos/) drives the same simulated users.
pub mod load;
mod summary;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::config::{Backend, ViewsBackend};
use anyhow::Context;
use courier_pipeline::producer::publish;
use courier_pipeline::runner::{CommitObserver, observe_commits};
use courier_pipeline::{ConsumedRecord, EventLog, KafkaLog, shutdown};
use courier_schemas::EventKind;
use courier_schemas::headers::EVENT_TYPE;
use courier_sinks::inbox::Generations;
use courier_sinks::search::{Payload, shard_dir};
use courier_topics::Catalog;
use serde_json::Value;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::processors::{ProcessorThread, run_processor};
use crate::registry::Processor;
use fleet::Fleet;
use load::{Shape, Workload};
use summary::{Backends, Killed, Percentiles, ProcessorRate, ProcessorsAs, Sample, Summary};

/// Messages generated and published per append when not rate-limited; with
/// `--rate`, whatever is due (at most this many).
const MAX_BATCH: u64 = 1000;
/// How often the search shards' commits are read.
const SAMPLE: Duration = Duration::from_millis(20);
/// How often the driver checks progress (and a processor's failure).
const TICK: Duration = Duration::from_millis(50);
/// Messages sent when neither --messages nor --duration is given.
const DEFAULT_MESSAGES: u64 = 10_000;

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Simulated users.
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Conversations among them, a quarter of them groups (default: one per user).
    #[arg(long)]
    conversations: Option<usize>,
    /// Offered load in messages per second (receipts, edits, deletes and presence
    /// come on top); without it, as fast as the producer goes.
    #[arg(long, value_name = "MSGS_PER_S")]
    rate: Option<f64>,
    /// Stop sending after this many messages (default 10000, unless --duration).
    #[arg(long, conflicts_with = "duration")]
    messages: Option<u64>,
    /// Stop sending after this many seconds.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Zipf exponent of conversation activity (0: uniform).
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// Seed of the simulated traffic: the same seed sends the same events.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How long the processors may take to catch up after the last message.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    drain_timeout: u64,
    /// Only produce, with no processor running: the producer path's ceiling, the
    /// baseline the end-to-end rate compares to.
    #[arg(long)]
    produce_only: bool,
    /// Run the processors as tasks sharing the process's runtime instead of each
    /// on a thread of its own as `courier up` runs them (to compare the two).
    #[arg(long)]
    tasks: bool,
    /// Run N instances of each processor as child processes (`courier run P`),
    /// members of one consumer group per processor, each with a data directory
    /// of its own, as a deployment scales out (Kafka log only). Visibility is then
    /// sampled every 20 ms from the groups' committed offsets and the search
    /// shards' commits instead of observed at each commit.
    #[arg(long, value_name = "N", conflicts_with_all = ["produce_only", "tasks"])]
    instances: Option<usize>,
    /// With --instances 2 or more: SIGKILL the last instance of every processor
    /// this many seconds into the load. The group hands its partitions to the
    /// others once its session times out (10 s).
    #[arg(long, value_name = "SECS")]
    kill_at: Option<f64>,
    /// After the run, measure the ceilings over the same traffic on this machine
    /// (raw log append/read or Kafka's perf tools, raw inbox store writes, raw
    /// tantivy indexing) and report courier's figures as ratios of them.
    #[arg(long)]
    baselines: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Keep the run's namespace (log, views, Kafka topics, Cassandra keyspace).
    #[arg(long)]
    keep: bool,
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere ends the run anyway; the tallies stay readable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What one processor committed.
#[derive(Debug, Default)]
struct Tally {
    records: u64,
    /// message_sent records among them.
    messages: u64,
    /// Per message_sent: commit time − `at_ms`, in µs.
    latencies_us: Vec<u64>,
    /// When it last committed: its throughput is over the time it was busy, not
    /// over the run (which lasts until the slowest view caught up).
    last: Option<Instant>,
}

/// The runner's commit observer: tallies per processor.
#[derive(Default)]
struct Recorder {
    tallies: Mutex<HashMap<String, Tally>>,
}

impl CommitObserver for Recorder {
    fn committed(&self, processor: &str, records: &[ConsumedRecord]) {
        let now = now_us();
        let mut tallies = lock(&self.tallies);
        if !tallies.contains_key(processor) {
            tallies.insert(processor.to_string(), Tally::default());
        }
        let Some(t) = tallies.get_mut(processor) else {
            return;
        };
        t.records += records.len() as u64;
        t.last = Some(Instant::now());
        for r in records {
            if r.header(EVENT_TYPE) == Some(EventKind::MessageSent.as_str().as_bytes()) {
                t.messages += 1;
                t.latencies_us
                    .push((now - r.timestamp_ms * 1000).max(0) as u64);
            }
        }
    }
}

impl Recorder {
    fn records(&self, p: Processor) -> u64 {
        lock(&self.tallies).get(p.name()).map_or(0, |t| t.records)
    }

    fn messages(&self, p: Processor) -> u64 {
        lock(&self.tallies).get(p.name()).map_or(0, |t| t.messages)
    }

    fn take(&self, p: Processor) -> Tally {
        lock(&self.tallies).remove(p.name()).unwrap_or_default()
    }
}

/// Messages published but not yet visible in one view, and the latency of those
/// that are: visibility is learnt from a position per partition (a shard's
/// commit, a group's committed offset) sampled every [`SAMPLE`].
#[derive(Default)]
struct Pending {
    /// Per partition of courier.conversations.v1: (offset, at_ms) in offset order.
    pending: Mutex<HashMap<u32, VecDeque<(u64, i64)>>>,
    /// Per partition, the furthest position seen: a message registered after
    /// its position was passed (the sample came between publish and
    /// registration) is visible already.
    passed: Mutex<HashMap<u32, u64>>,
    latencies_us: Mutex<Vec<u64>>,
    visible: AtomicU64,
}

impl Pending {
    fn sent(&self, partition: u32, offset: u64, at_ms: i64) {
        if lock(&self.passed)
            .get(&partition)
            .is_some_and(|&n| offset < n)
        {
            self.found(vec![(now_us() - at_ms * 1000).max(0) as u64]);
            return;
        }
        lock(&self.pending)
            .entry(partition)
            .or_default()
            .push_back((offset, at_ms));
    }

    /// Everything below each partition's next offset is visible now.
    fn committed(&self, next: &HashMap<u32, u64>) {
        let now = now_us();
        let mut found = Vec::new();
        {
            let mut passed = lock(&self.passed);
            for (&p, &n) in next {
                let e = passed.entry(p).or_insert(n);
                *e = (*e).max(n);
            }
        }
        for (p, queue) in lock(&self.pending).iter_mut() {
            let Some(&next) = next.get(p) else { continue };
            while queue.front().is_some_and(|&(o, _)| o < next) {
                if let Some((_, at_ms)) = queue.pop_front() {
                    found.push((now - at_ms * 1000).max(0) as u64);
                }
            }
        }
        self.found(found);
    }

    fn found(&self, latencies_us: Vec<u64>) {
        self.visible
            .fetch_add(latencies_us.len() as u64, Ordering::Relaxed);
        lock(&self.latencies_us).extend(latencies_us);
    }
}

/// Records each group committed, sampled (processors in child processes).
#[derive(Default)]
struct Groups {
    /// Per processor: records committed on its input, and when that last grew.
    committed: Mutex<HashMap<&'static str, (u64, Option<Instant>)>>,
}

impl Groups {
    fn set(&self, p: Processor, records: u64) {
        let mut c = lock(&self.committed);
        let e = c.entry(p.name()).or_insert((0, None));
        if records > e.0 {
            *e = (records, Some(Instant::now()));
        }
    }

    fn get(&self, p: Processor) -> (u64, Option<Instant>) {
        lock(&self.committed)
            .get(p.name())
            .copied()
            .unwrap_or((0, None))
    }
}

/// The next offset in each search shard's last commit, from tantivy's
/// `meta.json` (replaced atomically on commit, so a read sees one commit or the
/// next). A shard not committed yet is absent.
fn shard_commits(root: &Path, partitions: u32) -> HashMap<u32, u64> {
    let mut out = HashMap::new();
    for p in 0..partitions {
        let Ok(bytes) = std::fs::read(shard_dir(root, p).join("meta.json")) else {
            continue;
        };
        let payload = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("payload")?.as_str().map(str::to_owned));
        if let Some(next) = payload.and_then(|s| Payload::parse(&s, p).ok()) {
            out.insert(p, next.next_offset);
        }
    }
    out
}

/// Exact percentiles (nearest rank) of latencies in µs, as milliseconds.
fn percentiles(mut v: Vec<u64>) -> Percentiles {
    v.sort_unstable();
    let n = v.len();
    let at = |q: f64| -> Option<f64> {
        if n == 0 {
            return None;
        }
        let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        Some(v[i] as f64 / 1000.0)
    };
    Percentiles {
        count: n,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        p999_ms: at(0.999),
        max_ms: at(1.0),
    }
}

/// Counters the producer updates and the driver reads.
#[derive(Default)]
struct Sent {
    messages: AtomicU64,
    events: AtomicU64,
    presence: AtomicU64,
    /// Microseconds the send phase took, once over.
    done_us: AtomicU64,
}

/// When to stop sending and how fast.
#[derive(Debug, Clone, Copy)]
struct Plan {
    rate: Option<f64>,
    messages: Option<u64>,
    duration: Option<Duration>,
}

/// Sends messages per `plan`, registering each message_sent's position with
/// the views measured by position.
async fn send(
    log: Arc<dyn EventLog>,
    mut workload: Workload,
    plan: Plan,
    sent: Arc<Sent>,
    seen: Option<Arc<Seen>>,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let start_ms = now_us() / 1000;
    let mut n_sent = 0u64;
    let mut batch = Vec::new();
    loop {
        let elapsed = start.elapsed();
        let left = plan.messages.map_or(u64::MAX, |m| m.saturating_sub(n_sent));
        if left == 0 || plan.duration.is_some_and(|d| elapsed >= d) {
            break;
        }
        batch.clear();
        match plan.rate {
            Some(rate) => {
                let due = (elapsed.as_secs_f64() * rate) as u64 + 1;
                if due <= n_sent {
                    let next = Duration::from_secs_f64(n_sent as f64 / rate);
                    tokio::time::sleep_until((start + next).into()).await;
                    continue;
                }
                // Each message carries the time it was due, not the time it was
                // generated: a producer that falls behind shows up as latency
                // (no coordinated omission).
                for i in n_sent..n_sent + (due - n_sent).min(MAX_BATCH).min(left) {
                    let at_ms = start_ms + (i as f64 * 1000.0 / rate) as i64;
                    workload.message(at_ms, &mut batch);
                }
            }
            None => {
                let at_ms = now_us() / 1000;
                for _ in 0..MAX_BATCH.min(left) {
                    workload.message(at_ms, &mut batch);
                }
            }
        }
        let published = publish(&*log, &batch)
            .await
            .with_context(|| format!("publishing after {n_sent} message(s)"))?;
        let mut presence = 0;
        for (e, p) in batch.iter().zip(&published) {
            match e.kind() {
                Some(EventKind::MessageSent) => {
                    n_sent += 1;
                    if let Some(seen) = &seen {
                        seen.sent(p.at.partition, p.at.offset, e.at_ms);
                    }
                }
                Some(EventKind::Presence) => presence += 1,
                _ => {}
            }
        }
        sent.messages.store(n_sent, Ordering::Relaxed);
        sent.events.fetch_add(batch.len() as u64, Ordering::Relaxed);
        sent.presence.fetch_add(presence, Ordering::Relaxed);
    }
    sent.done_us
        .store(start.elapsed().as_micros().max(1) as u64, Ordering::Relaxed);
    Ok(())
}

/// The backends of the run's namespace, created before and removed after.
struct Namespace {
    config: Config,
    kafka: bool,
    cassandra: bool,
}

impl Namespace {
    async fn create(mut config: Config) -> anyhow::Result<Self> {
        let stamp = now_us() / 1000;
        config.namespace = if config.namespace.is_empty() {
            format!("bench_{stamp}")
        } else {
            format!("{}_bench_{stamp}", config.namespace)
        };
        config.cassandra_keyspace()?;
        let kafka = config.log.backend == Backend::Kafka;
        if kafka {
            let log = KafkaLog::new(config.kafka_settings()?, Catalog::builtin())?;
            log.apply_topics(Catalog::builtin())
                .await
                .context("creating the run's Kafka topics")?;
        }
        let cassandra = config.views.backend == ViewsBackend::Cassandra;
        if cassandra {
            courier_sinks::inbox::cassandra::migrate(&crate::views::cassandra_settings(&config)?)
                .await
                .context("creating the run's Cassandra keyspace")?;
        }
        Ok(Namespace {
            config,
            kafka,
            cassandra,
        })
    }

    /// Where the run keeps local data (`data_dir/namespace`, see `Config::log_dir`).
    fn local_root(&self) -> PathBuf {
        self.config.data_dir.join(&self.config.namespace)
    }

    async fn remove(&self) -> anyhow::Result<()> {
        if self.kafka {
            KafkaLog::new(self.config.kafka_settings()?, Catalog::builtin())?
                .delete_namespace()
                .await
                .context("deleting the run's Kafka topics")?;
        }
        if self.cassandra {
            let settings = crate::views::cassandra_settings(&self.config)?;
            let session = courier_sinks::inbox::cassandra::connect(&settings).await?;
            session
                .query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", settings.keyspace), ())
                .await
                .context("dropping the run's Cassandra keyspace")?;
        }
        match std::fs::remove_dir_all(self.local_root()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", self.local_root().display()))
            }
            _ => Ok(()),
        }
    }
}

/// Progress on stderr: one line rewritten in place on a terminal, a line per
/// second otherwise (logs, tests).
struct Progress {
    tty: bool,
    started: Instant,
    last: Instant,
}

impl Progress {
    fn show(&mut self, line: &str) {
        let mut err = std::io::stderr().lock();
        let t = self.started.elapsed().as_secs_f64();
        let _ = if self.tty {
            write!(err, "\r\x1b[2K{t:6.1}s {line}")
        } else {
            writeln!(err, "{t:6.1}s {line}")
        };
        let _ = err.flush();
        self.last = Instant::now();
    }

    fn due(&self) -> bool {
        self.last.elapsed() >= Duration::from_secs(1)
    }

    fn done(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

/// A processor running for the bench: on a thread of its own as in `courier up`,
/// or a task of the process's runtime (`--tasks`).
enum Running {
    Task(JoinHandle<anyhow::Result<()>>),
    Thread(ProcessorThread),
}

impl Running {
    fn start(
        p: Processor,
        config: Arc<Config>,
        log: Arc<dyn EventLog>,
        stop: shutdown::Shutdown,
        tasks: bool,
    ) -> anyhow::Result<Self> {
        if !tasks {
            return Ok(Running::Thread(ProcessorThread::spawn(
                (*config).clone(),
                log,
                p,
                stop,
            )?));
        }
        Ok(Running::Task(tokio::spawn(async move {
            run_processor(&config, log, p, false, None, stop)
                .await
                .map(|_| ())
        })))
    }

    fn is_finished(&self) -> bool {
        match self {
            Running::Task(h) => h.is_finished(),
            Running::Thread(t) => t.is_finished(),
        }
    }

    async fn finish(self) -> anyhow::Result<()> {
        match self {
            Running::Task(h) => h.await?,
            Running::Thread(t) => t.finish().await.map(|_| ()),
        }
    }
}

/// Fails when the run was interrupted (Ctrl-C / SIGTERM) or a processor stopped
/// on its own (only the driver stops them), with the processor's error.
async fn check_processors(
    handles: &mut Vec<(Processor, Running)>,
    stop: &shutdown::Shutdown,
) -> anyhow::Result<()> {
    if stop.is_triggered() {
        anyhow::bail!("interrupted");
    }
    if let Some(i) = handles.iter().position(|(_, h)| h.is_finished()) {
        let (p, h) = handles.swap_remove(i);
        let why = match h.finish().await {
            Ok(()) => "without an error".to_string(),
            Err(e) => format!("{e:#}"),
        };
        anyhow::bail!("processor {} stopped during the run: {why}", p.name());
    }
    Ok(())
}

pub async fn run(
    config: &Config,
    config_path: Option<&Path>,
    args: Args,
) -> anyhow::Result<ExitCode> {
    if args.users < 2 {
        anyhow::bail!("--users must be at least 2 (a direct conversation has two members)");
    }
    if args.instances == Some(0) {
        anyhow::bail!("--instances must be at least 1");
    }
    if args.instances.unwrap_or(1) > 1 && config.kafka.instance_id.is_some() {
        anyhow::bail!(
            "--instances runs several members of each group in this process, and they cannot share              one --instance-id / COURIER_INSTANCE_ID (Kafka fences a duplicate): unset it"
        );
    }
    if args.kill_at.is_some() && args.instances.unwrap_or(1) < 2 {
        anyhow::bail!(
            "--kill-at kills one instance of each processor and needs --instances 2 or more \
             (the survivors take over its partitions)"
        );
    }
    if args.kill_at.is_some_and(|s| !(s >= 0.0 && s.is_finite())) {
        anyhow::bail!("--kill-at must be a number of seconds into the load");
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        anyhow::bail!("--rate must be a positive number of messages per second");
    }
    let plan = Plan {
        rate: args.rate,
        messages: args
            .messages
            .or((args.duration.is_none()).then_some(DEFAULT_MESSAGES)),
        duration: args.duration.map(Duration::from_secs_f64),
    };
    let ns = Namespace::create(config.clone()).await?;
    let span = tracing::info_span!("bench", namespace = %ns.config.namespace);
    let outcome = bench(&ns.config, config_path, &args, plan)
        .instrument(span)
        .await;
    let outcome = baseline::merge(outcome, &ns.config, &args).await;
    if args.keep {
        eprintln!(
            "kept namespace {} (run courier with COURIER_NAMESPACE={} to read its views)",
            ns.config.namespace, ns.config.namespace
        );
    } else if let Err(e) = ns.remove().await {
        eprintln!(
            "warning: cleaning up namespace {}: {e:#}",
            ns.config.namespace
        );
    }
    let summary = outcome?;
    if args.json {
        // Through a `Value`, whose maps sort their keys: the keys come out in
        // the order they always have, whatever the order of the fields.
        let json = serde_json::to_value(&summary)?;
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print_human(&summary);
    }
    Ok(ExitCode::SUCCESS)
}

/// Where a run's processors are, and so how their progress is seen.
enum Procs {
    /// None (`--produce-only`).
    None,
    /// In this process: every commit is observed as it happens.
    Here(Vec<(Processor, Running)>),
    /// Child processes (`--instances`): positions are sampled.
    Children(Fleet),
}

impl Procs {
    /// Fails when the run was interrupted or a processor stopped on its own.
    async fn check(&mut self, stop: &shutdown::Shutdown) -> anyhow::Result<()> {
        match self {
            Procs::Here(handles) => check_processors(handles, stop).await,
            _ if stop.is_triggered() => anyhow::bail!("interrupted"),
            Procs::None => Ok(()),
            Procs::Children(fleet) => fleet.check(),
        }
    }

    /// Stops and waits for every processor (the first error wins).
    async fn stop(self) -> anyhow::Result<()> {
        match self {
            Procs::None => Ok(()),
            Procs::Here(handles) => {
                let mut stopped = Ok(());
                for (p, h) in handles {
                    let r = h.finish().await;
                    if stopped.is_ok() {
                        stopped = r.with_context(|| format!("processor {}", p.name()));
                    }
                }
                stopped
            }
            Procs::Children(fleet) => {
                fleet.stop().await;
                Ok(())
            }
        }
    }
}

/// The views a run measures and what each has made visible so far.
const VIEWS: [&str; 3] = ["inbox", "search", "push"];

/// What the processors have done, however it is seen.
struct Seen {
    /// Processors here: their commits.
    recorder: Arc<Recorder>,
    /// Processors in children: their groups' committed offsets.
    children: bool,
    groups: Groups,
    inbox: Pending,
    search: Pending,
    push: Pending,
}

impl Seen {
    /// Records a processor has committed.
    fn records(&self, p: Processor) -> u64 {
        if self.children {
            self.groups.get(p).0
        } else {
            self.recorder.records(p)
        }
    }

    fn pending(&self, view: &str) -> &Pending {
        match view {
            "inbox" => &self.inbox,
            "push" => &self.push,
            _ => &self.search,
        }
    }

    /// The processor whose commits make a view visible, when it runs here.
    fn observed(&self, view: &str) -> Option<Processor> {
        match view {
            _ if self.children => None,
            "inbox" => Some(Processor::Inbox),
            "push" => Some(Processor::Notify),
            _ => None,
        }
    }

    /// Messages visible in a view.
    fn visible(&self, view: &str) -> u64 {
        match self.observed(view) {
            Some(p) => self.recorder.messages(p),
            None => self.pending(view).visible.load(Ordering::Relaxed),
        }
    }

    /// Latencies (µs) of the messages a view showed, from the `from`th on.
    fn latencies_from(&self, view: &str, from: usize) -> Vec<u64> {
        let slice = |v: &[u64]| v.get(from..).unwrap_or(&[]).to_vec();
        match self.observed(view) {
            Some(p) => lock(&self.recorder.tallies)
                .get(p.name())
                .map_or(Vec::new(), |t| slice(&t.latencies_us)),
            None => slice(&lock(&self.pending(view).latencies_us)),
        }
    }

    /// Registers a sent message with the views measured by position.
    fn sent(&self, partition: u32, offset: u64, at_ms: i64) {
        self.search.sent(partition, offset, at_ms);
        if self.children {
            self.inbox.sent(partition, offset, at_ms);
            self.push.sent(partition, offset, at_ms);
        }
    }
}

async fn bench(
    config: &Config,
    config_path: Option<&Path>,
    args: &Args,
    plan: Plan,
) -> anyhow::Result<Summary> {
    let log = config.open_log().context("opening the run's log")?;
    let children = args.instances.is_some();
    let seen = Arc::new(Seen {
        recorder: Arc::new(Recorder::default()),
        children,
        groups: Groups::default(),
        inbox: Pending::default(),
        search: Pending::default(),
        push: Pending::default(),
    });
    if !children && !observe_commits(seen.recorder.clone()) {
        anyhow::bail!("a commit observer is already installed in this process");
    }
    let conversations = args.conversations.unwrap_or(args.users).max(1);
    let mut workload = Workload::new(Shape {
        users: args.users,
        conversations,
        zipf: args.zipf,
        seed: args.seed,
    });
    let population = workload.population();

    let (trigger, stop) = shutdown::channel();
    crate::processors::on_signals(trigger.clone());
    let config = Arc::new(config.clone());
    // What `courier up` runs whatever the config (push delivery needs a provider;
    // its input, the push jobs, is what the push view measures).
    let in_up = Processor::always_in_up();
    // Inside the run's local root (see `Namespace::local_root`): removed with it.
    let instances_root = config.data_dir.join(&config.namespace).join("instances");
    let mut procs = match args.instances {
        _ if args.produce_only => Procs::None,
        Some(n) => Procs::Children(Fleet::spawn(
            &config,
            config_path,
            &in_up,
            n,
            &instances_root,
        )?),
        None => {
            let mut handles = Vec::new();
            for &p in &in_up {
                let (config, log, stop) = (config.clone(), log.clone(), stop.clone());
                handles.push((p, Running::start(p, config, log, stop, args.tasks)?));
            }
            Procs::Here(handles)
        }
    };
    // The groups whose committed offsets children are seen by.
    let mut groups = Vec::new();
    if children {
        for &p in &in_up {
            let topic = p.topics().into_iter().next().unwrap_or_default();
            groups.push((p, p.live_group(&config).await?, topic));
        }
    }
    let search_root = Generations::new(config.view_dir(Processor::Search.name())).current_dir()?;
    let search_roots = Arc::new(Mutex::new(vec![search_root]));
    // Whatever happens in the run, the processors stop and are waited for before
    // the namespace is removed under them.
    let mut producer_abort = None;
    let mut sampler = None;
    let driven = async {
        let mut progress = Progress {
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
            last: Instant::now(),
        };
        let partitions = log.partitions(courier_topics::CONVERSATIONS)?;
        if !args.produce_only {
            let (seen, log, mut stop, roots) =
                (seen.clone(), log.clone(), stop.clone(), search_roots.clone());
            let groups = groups.clone();
            sampler = Some(tokio::spawn(async move {
                let mut tick = tokio::time::interval(SAMPLE);
                loop {
                    tokio::select! {
                        _ = stop.wait() => break,
                        _ = tick.tick() => {}
                    }
                    let (roots, s) = (lock(&roots).clone(), seen.clone());
                    // File reads: off the async workers. The furthest commit of a
                    // partition among the live instances is what a query finds.
                    let _ = tokio::task::spawn_blocking(move || {
                        let mut next = HashMap::new();
                        for root in roots {
                            for (p, n) in shard_commits(&root, partitions) {
                                let e = next.entry(p).or_insert(n);
                                *e = (*e).max(n);
                            }
                        }
                        s.search.committed(&next);
                    })
                    .await;
                    for (p, group, topic) in &groups {
                        // A failed read is retried at the next sample.
                        let Ok(offsets) = log.committed(group, topic).await else {
                            continue;
                        };
                        let next: HashMap<u32, u64> = offsets
                            .iter()
                            .enumerate()
                            .filter_map(|(i, o)| o.map(|o| (i as u32, o)))
                            .collect();
                        seen.groups.set(*p, next.values().sum());
                        match p {
                            Processor::Inbox => seen.inbox.committed(&next),
                            Processor::Notify => seen.push.committed(&next),
                            _ => {}
                        }
                    }
                }
            }));
        }

        // Set-up: every conversation and the presence of who is online, applied by
        // every processor before the measured load (also their start-up).
        let setup = workload.setup(now_us() / 1000);
        let setup_presence = setup
            .iter()
            .filter(|e| e.kind() == Some(EventKind::Presence))
            .count() as u64;
        let setup_conversations = setup.len() as u64 - setup_presence;
        for chunk in setup.chunks(5000) {
            publish(&*log, chunk)
                .await
                .context("publishing the set-up")?;
        }
        let ready = |s: &Seen| {
            in_up.iter().all(|&p| {
                s.records(p)
                    >= if matches!(p, Processor::Presence) {
                        setup_presence
                    } else {
                        setup_conversations
                    }
            })
        };
        let balanced = |procs: &Procs| match procs {
            Procs::Children(fleet) => fleet.all_assigned(),
            _ => true,
        };
        if !args.produce_only {
            let deadline = Instant::now() + Duration::from_secs(args.drain_timeout);
            while !(ready(&seen) && balanced(&procs)) {
                procs.check(&stop).await?;
                if Instant::now() > deadline {
                    anyhow::bail!(
                        "the processors did not apply the set-up{} within --drain-timeout",
                        if balanced(&procs) { "" } else { " (or some instance holds no partition)" }
                    );
                }
                if progress.due() {
                    progress.show(&format!(
                        "set-up: {setup_conversations} conversations, {setup_presence} online; applied inbox {} search {} notify {}",
                        seen.records(Processor::Inbox),
                        seen.records(Processor::Search),
                        seen.records(Processor::Notify),
                    ));
                }
                tokio::time::sleep(TICK).await;
            }
        }
        if let Procs::Children(fleet) = &procs {
            *lock(&search_roots) = fleet.search_roots();
        }
        let setup_records: HashMap<&str, u64> = in_up
            .iter()
            .map(|&p| (p.name(), seen.records(p)))
            .collect();

        // The measured load.
        let sent = Arc::new(Sent::default());
        let load_started = Instant::now();
        let mut producer = tokio::spawn(send(
            log.clone(),
            workload,
            plan,
            sent.clone(),
            (!args.produce_only).then(|| seen.clone()),
        ));
        producer_abort = Some(producer.abort_handle());

        let mut timeline = Vec::new();
        let mut producing = true;
        let mut drain_deadline = None;
        let mut next_sample = Duration::from_secs(1);
        let mut shown = [0usize; 3];
        let mut killed = None;
        loop {
            if producing && producer.is_finished() {
                producing = false;
                (&mut producer).await.context("the producer task")??;
                drain_deadline = Some(Instant::now() + Duration::from_secs(args.drain_timeout));
            }
            procs.check(&stop).await?;
            let t = load_started.elapsed();
            if let (Procs::Children(fleet), Some(at), None) = (&mut procs, args.kill_at, &killed)
                && t.as_secs_f64() >= at
            {
                let names = fleet.kill_last().await?;
                *lock(&search_roots) = fleet.search_roots();
                progress.show(&format!("killed {} (SIGKILL)", names.join(", ")));
                killed = Some(Killed {
                    at_s: t.as_secs_f64(),
                    instances: names,
                });
            }
            let n = sent.messages.load(Ordering::Relaxed);
            let [inbox, search, push] = VIEWS.map(|v| seen.visible(v));
            if t >= next_sample {
                // p99 of the messages each view showed during this second.
                let [inbox_p99_ms, search_p99_ms, push_p99_ms] =
                    std::array::from_fn(|i| {
                        let window = seen.latencies_from(VIEWS[i], shown[i]);
                        shown[i] += window.len();
                        percentiles(window).p99_ms
                    });
                timeline.push(Sample {
                    t_s: next_sample.as_secs(),
                    sent: n,
                    inbox,
                    search,
                    push,
                    inbox_p99_ms,
                    search_p99_ms,
                    push_p99_ms,
                });
                next_sample += Duration::from_secs(1);
            }
            let presence_done = seen.records(Processor::Presence)
                >= setup_presence + sent.presence.load(Ordering::Relaxed);
            if !producing
                && (args.produce_only || (inbox >= n && push >= n && search >= n && presence_done))
            {
                break;
            }
            if drain_deadline.is_some_and(|d| Instant::now() > d) {
                anyhow::bail!(
                    "the processors did not catch up within --drain-timeout: of {n} messages, inbox has {inbox}, search {search}, push {push}"
                );
            }
            if progress.due() {
                let rate = n as f64 / t.as_secs_f64().max(1e-3);
                progress.show(&format!(
                    "{} {n} messages ({rate:.0}/s) · behind: inbox {} search {} push {}",
                    if producing { "sending" } else { "draining" },
                    n.saturating_sub(inbox),
                    n.saturating_sub(search),
                    n.saturating_sub(push),
                ));
            }
            tokio::time::sleep(TICK).await;
        }
        progress.done();
        Ok((load_started, load_started.elapsed(), setup_records, sent, timeline, killed))
    }
    .await;
    trigger.trigger();
    if let Some(producer) = producer_abort {
        producer.abort();
    }
    let stopped = procs.stop().await;
    let (load_started, total, setup_records, sent, timeline, killed) = driven?;
    stopped?;
    if let Some(s) = sampler {
        let _ = s.await;
    }

    let dead_letters = records_on(&*log, courier_topics::DEAD_LETTERS).await?;
    // The fan-out notify wrote (set-up included: it makes none).
    let push_jobs = records_on(&*log, courier_topics::PUSH_JOBS).await?;
    let messages = sent.messages.load(Ordering::Relaxed);
    let events = sent.events.load(Ordering::Relaxed);
    let send_s = sent.done_us.load(Ordering::Relaxed) as f64 / 1e6;
    let mut views = BTreeMap::new();
    let mut processors = BTreeMap::new();
    if !args.produce_only {
        // Before the tallies are taken below.
        for view in VIEWS {
            views.insert(view.into(), percentiles(seen.latencies_from(view, 0)));
        }
        for &p in &in_up {
            let (records, last) = if children {
                seen.groups.get(p)
            } else {
                let t = seen.recorder.take(p);
                (t.records, t.last)
            };
            let records = records - setup_records.get(p.name()).copied().unwrap_or(0);
            let busy = last.map_or(0.0, |l| {
                l.saturating_duration_since(load_started).as_secs_f64()
            });
            processors.insert(
                p.name().into(),
                ProcessorRate {
                    records,
                    busy_s: busy,
                    records_per_s: if busy > 0.0 {
                        records as f64 / busy
                    } else {
                        0.0
                    },
                },
            );
        }
    }
    Ok(Summary {
        backend: Backends {
            log: log.backend().into(),
            views: format!("{:?}", config.views.backend).to_lowercase(),
        },
        namespace: config.namespace.clone(),
        population,
        offered_rate: args.rate,
        produce_only: args.produce_only,
        processors_as: match (args.instances, args.tasks) {
            (Some(_), _) => ProcessorsAs::Processes,
            (None, true) => ProcessorsAs::Tasks,
            (None, false) => ProcessorsAs::Threads,
        },
        instances: args.instances.unwrap_or(1),
        killed,
        messages,
        events,
        send_s,
        messages_per_s: messages as f64 / send_s,
        events_per_s: events as f64 / send_s,
        total_s: total.as_secs_f64(),
        views,
        processors,
        dead_letters,
        push_jobs,
        timeline,
        baselines: None,
    })
}

/// Records on every partition of `topic` (the run's namespace is new: all of
/// them are the run's).
async fn records_on(log: &dyn EventLog, topic: &str) -> anyhow::Result<u64> {
    let mut n = 0;
    for p in 0..log.partitions(topic)? {
        let (low, high) = log.watermarks(topic, p).await?;
        n += high - low;
    }
    Ok(n)
}

fn print_human(s: &Summary) {
    let p = &s.population;
    println!(
        "courier bench: {} messages ({} events) sent in {:.1} s: {:.0} messages/s{} [log {}, views {}]",
        s.messages,
        s.events,
        s.send_s,
        s.messages_per_s,
        s.offered_rate
            .map_or(" (as fast as it goes)".to_string(), |r| format!(
                " (offered {r:.0}/s)"
            )),
        s.backend.log,
        s.backend.views,
    );
    println!(
        "  {} users; {} direct conversations, {} groups (mean size {:.1}, largest {})",
        p.users, p.direct, p.groups, p.group_size_mean, p.group_size_max
    );
    if s.produce_only {
        println!("  produce only: no processor ran");
        baseline::print_human(s);
        return;
    }
    match s.processors_as {
        ProcessorsAs::Processes => println!(
            "  processors: {} processes each, one consumer group per processor (visibility sampled every {} ms)",
            s.instances,
            SAMPLE.as_millis()
        ),
        how => println!("  processors: in this process, as {}", how.name()),
    }
    if let Some(k) = &s.killed {
        println!(
            "  killed (SIGKILL) at {:.1} s: {}",
            k.at_s,
            k.instances.join(", ")
        );
    }
    println!("  end-to-end latency, at_ms → visible (ms):");
    println!(
        "    {:<28} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "view", "p50", "p99", "p99.9", "max", "messages"
    );
    if let Some(note) = unthrottled_note(s) {
        println!("{note}");
    }
    let ms = |x: Option<f64>| x.unwrap_or(0.0);
    for (view, what) in [
        ("inbox", "inbox (in the views)"),
        ("search", "search (shard committed)"),
        ("push", "push (jobs written)"),
    ] {
        let v = s.views.get(view).cloned().unwrap_or_default();
        // The count unpadded, as this line has always printed it (under a
        // header padded to 9).
        println!(
            "    {what:<28} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {}",
            ms(v.p50_ms),
            ms(v.p99_ms),
            ms(v.p999_ms),
            ms(v.max_ms),
            v.count
        );
    }
    let procs: Vec<String> = s
        .processors
        .iter()
        .map(|(k, v)| format!("{k} {:.0}", v.records_per_s))
        .collect();
    println!(
        "  processors, records/s until their last commit: {}",
        procs.join(", ")
    );
    // Lag over time, in one line: the worst second of each view.
    let behind = |visible: fn(&Sample) -> u64| {
        s.timeline
            .iter()
            .map(|x| x.sent.saturating_sub(visible(x)))
            .max()
            .unwrap_or(0)
    };
    // And the worst second's p99 (a kill shows up here).
    let worst =
        |p99: fn(&Sample) -> Option<f64>| s.timeline.iter().filter_map(p99).fold(0.0, f64::max);
    println!(
        "  worst 1 s p99 (ms): inbox {:.0}, search {:.0}, push {:.0}",
        worst(|x| x.inbox_p99_ms),
        worst(|x| x.search_p99_ms),
        worst(|x| x.push_p99_ms)
    );
    println!(
        "  most messages behind at a 1 s sample: inbox {}, search {}, push {} (--json: timeline)",
        behind(|x| x.inbox),
        behind(|x| x.search),
        behind(|x| x.push)
    );
    println!(
        "  push jobs written: {} ({:.2} per message); dead letters: {}",
        s.push_jobs,
        s.push_jobs as f64 / (s.messages as f64).max(1.0),
        s.dead_letters
    );
    baseline::print_human(s);
}

/// Why an unthrottled run's latencies are large: every message waits behind
/// all those sent before it, so they measure the backlog, not the pipeline.
fn unthrottled_note(s: &Summary) -> Option<String> {
    (s.offered_rate.is_none() && !s.produce_only).then(|| {
        format!(
            "  unthrottled: all {} messages were offered at once (no --rate), so each waits behind \
             those before it and the latencies below measure that queue, not the pipeline; \
             for latency at a load, give --rate (e.g. --rate {:.0}, about 80% of this run's {:.0}/s)",
            s.messages,
            (s.messages_per_s * 0.8).max(1.0),
            s.messages_per_s
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unthrottled_run_says_its_latencies_are_the_queue() {
        let mut s: Summary = serde_json::from_value(summary::tests::example()).unwrap();
        s.offered_rate = None;
        s.produce_only = false;
        let note = unthrottled_note(&s).expect("a note without --rate");
        assert!(note.contains("no --rate"), "{note}");
        assert!(note.contains("--rate "), "{note}");
        s.offered_rate = Some(500.0);
        assert_eq!(unthrottled_note(&s), None);
        s.offered_rate = None;
        s.produce_only = true;
        assert_eq!(unthrottled_note(&s), None, "nothing to wait for");
    }

    #[test]
    fn percentiles_are_nearest_rank_over_every_sample() {
        // 1..=1000 µs, shuffled: p50 is the 500th, p99 the 990th, p99.9 the 999th.
        let v: Vec<u64> = (1..=1000u64).map(|i| (i * 7919) % 1000 + 1).collect();
        assert_eq!(
            percentiles(v),
            Percentiles {
                count: 1000,
                p50_ms: Some(0.5),
                p99_ms: Some(0.99),
                p999_ms: Some(0.999),
                max_ms: Some(1.0),
            }
        );
        assert_eq!(
            percentiles(vec![42_000]),
            Percentiles {
                count: 1,
                p50_ms: Some(42.0),
                p99_ms: Some(42.0),
                p999_ms: Some(42.0),
                max_ms: Some(42.0),
            }
        );
        assert_eq!(percentiles(Vec::new()).p99_ms, None);
    }
}
