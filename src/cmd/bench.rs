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
mod load;

use std::collections::{HashMap, VecDeque};
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use courier_pipeline::config::{Backend, ViewsBackend};
use courier_pipeline::producer::publish;
use courier_pipeline::runner::{CommitObserver, observe_commits};
use courier_pipeline::{Config, ConsumedRecord, EventLog, KafkaLog, shutdown};
use courier_schemas::EventKind;
use courier_schemas::headers::EVENT_TYPE;
use courier_sinks::inbox::Generations;
use courier_sinks::search::{Payload, shard_dir};
use courier_topics::Catalog;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::run::{Processor, ProcessorThread, run_processor};
use load::{Shape, Workload};

/// The processors of `courier up` that the load exercises (push delivery needs
/// a provider; its input, the push jobs, is what the push view measures).
const PROCESSORS: [Processor; 4] = [
    Processor::Inbox,
    Processor::Presence,
    Processor::Search,
    Processor::Notify,
];

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

/// Messages published but not yet in a committed search shard, and the latency
/// of those that are.
#[derive(Default)]
struct Searchable {
    /// Per partition of courier.conversations.v1: (offset, at_ms) in offset order.
    pending: Mutex<HashMap<u32, VecDeque<(u64, i64)>>>,
    latencies_us: Mutex<Vec<u64>>,
    visible: AtomicU64,
}

impl Searchable {
    fn sent(&self, partition: u32, offset: u64, at_ms: i64) {
        lock(&self.pending)
            .entry(partition)
            .or_default()
            .push_back((offset, at_ms));
    }

    /// Everything below each shard's committed next offset is searchable now.
    fn committed(&self, next: &HashMap<u32, u64>) {
        let now = now_us();
        let mut found = Vec::new();
        for (p, queue) in lock(&self.pending).iter_mut() {
            let Some(&next) = next.get(p) else { continue };
            while queue.front().is_some_and(|&(o, _)| o < next) {
                if let Some((_, at_ms)) = queue.pop_front() {
                    found.push((now - at_ms * 1000).max(0) as u64);
                }
            }
        }
        self.visible
            .fetch_add(found.len() as u64, Ordering::Relaxed);
        lock(&self.latencies_us).extend(found);
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
fn percentiles(mut v: Vec<u64>) -> Value {
    v.sort_unstable();
    let n = v.len();
    let at = |q: f64| -> Value {
        if n == 0 {
            return Value::Null;
        }
        let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        json!(v[i] as f64 / 1000.0)
    };
    json!({
        "count": n,
        "p50_ms": at(0.50),
        "p99_ms": at(0.99),
        "p999_ms": at(0.999),
        "max_ms": at(1.0),
    })
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

/// Sends messages per `plan`, registering each message_sent's position for the
/// search view.
async fn send(
    log: Arc<dyn EventLog>,
    mut workload: Workload,
    plan: Plan,
    sent: Arc<Sent>,
    searchable: Arc<Searchable>,
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
                    searchable.sent(p.at.partition, p.at.offset, e.at_ms);
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
            let log = KafkaLog::new(config.kafka_settings(), Catalog::builtin())?;
            log.apply_topics(Catalog::builtin())
                .await
                .context("creating the run's Kafka topics")?;
        }
        let cassandra = config.views.backend == ViewsBackend::Cassandra;
        if cassandra {
            courier_sinks::inbox::cassandra::migrate(&super::inbox::cassandra_settings(&config)?)
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
            KafkaLog::new(self.config.kafka_settings(), Catalog::builtin())?
                .delete_namespace()
                .await
                .context("deleting the run's Kafka topics")?;
        }
        if self.cassandra {
            let settings = super::inbox::cassandra_settings(&self.config)?;
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

pub async fn run(config: &Config, args: Args) -> anyhow::Result<ExitCode> {
    if args.users < 2 {
        anyhow::bail!("--users must be at least 2 (a direct conversation has two members)");
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
    let outcome = bench(&ns.config, &args, plan).instrument(span).await;
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
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_human(&summary);
    }
    Ok(ExitCode::SUCCESS)
}

async fn bench(config: &Config, args: &Args, plan: Plan) -> anyhow::Result<Value> {
    let log = config.open_log().context("opening the run's log")?;
    let recorder = Arc::new(Recorder::default());
    if !observe_commits(recorder.clone()) {
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
    super::run::on_signals(trigger.clone());
    let config = Arc::new(config.clone());
    let mut handles = Vec::new();
    if !args.produce_only {
        for p in PROCESSORS {
            let (config, log, stop) = (config.clone(), log.clone(), stop.clone());
            handles.push((p, Running::start(p, config, log, stop, args.tasks)?));
        }
    }
    // Whatever happens in the run, the processors stop and are waited for before
    // the namespace is removed under them.
    let mut producer_abort = None;
    let driven = async {
        let mut progress = Progress {
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
            last: Instant::now(),
        };

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
        let ready = |r: &Recorder| {
            PROCESSORS.iter().all(|&p| {
                r.records(p)
                    >= if matches!(p, Processor::Presence) {
                        setup_presence
                    } else {
                        setup_conversations
                    }
            })
        };
        if !args.produce_only {
            let deadline = Instant::now() + Duration::from_secs(args.drain_timeout);
            while !ready(&recorder) {
                check_processors(&mut handles, &stop).await?;
                if Instant::now() > deadline {
                    anyhow::bail!("the processors did not apply the set-up within --drain-timeout");
                }
                if progress.due() {
                    progress.show(&format!(
                        "set-up: {setup_conversations} conversations, {setup_presence} online; applied inbox {} search {} notify {}",
                        recorder.records(Processor::Inbox),
                        recorder.records(Processor::Search),
                        recorder.records(Processor::Notify),
                    ));
                }
                tokio::time::sleep(TICK).await;
            }
        }
        let setup_records: HashMap<&str, u64> = PROCESSORS
            .iter()
            .map(|&p| (p.name(), recorder.records(p)))
            .collect();

        // The measured load.
        let search_root = Generations::new(config.view_dir("search"))
            .dir(Generations::new(config.view_dir("search")).current()?);
        let partitions = log.partitions(courier_topics::CONVERSATIONS)?;
        let searchable = Arc::new(Searchable::default());
        let sent = Arc::new(Sent::default());
        let load_started = Instant::now();
        let mut producer = tokio::spawn(send(
            log.clone(),
            workload,
            plan,
            sent.clone(),
            searchable.clone(),
        ));
        producer_abort = Some(producer.abort_handle());
        let sampler = (!args.produce_only).then(|| {
            let (searchable, root, mut stop) = (searchable.clone(), search_root.clone(), stop.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(SAMPLE);
                loop {
                    tokio::select! {
                        _ = stop.wait() => break,
                        _ = tick.tick() => {}
                    }
                    let (root, s) = (root.clone(), searchable.clone());
                    // File reads: off the async workers.
                    let _ = tokio::task::spawn_blocking(move || {
                        s.committed(&shard_commits(&root, partitions));
                    })
                    .await;
                }
            })
        });

        let mut timeline = Vec::new();
        let mut producing = true;
        let mut drain_deadline = None;
        let mut next_sample = Duration::from_secs(1);
        loop {
            if producing && producer.is_finished() {
                producing = false;
                (&mut producer).await.context("the producer task")??;
                drain_deadline = Some(Instant::now() + Duration::from_secs(args.drain_timeout));
            }
            check_processors(&mut handles, &stop).await?;
            let n = sent.messages.load(Ordering::Relaxed);
            let (inbox, push, search) = (
                recorder.messages(Processor::Inbox),
                recorder.messages(Processor::Notify),
                searchable.visible.load(Ordering::Relaxed),
            );
            let t = load_started.elapsed();
            if t >= next_sample {
                timeline.push(json!({
                    "t_s": next_sample.as_secs(), "sent": n, "inbox": inbox, "search": search, "push": push,
                }));
                next_sample += Duration::from_secs(1);
            }
            let presence_done = recorder.records(Processor::Presence)
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
        Ok((load_started, load_started.elapsed(), setup_records, sent, searchable, timeline, sampler))
    }
    .await;
    trigger.trigger();
    if let Some(producer) = producer_abort {
        producer.abort();
    }
    let mut stopped = Ok(());
    for (p, h) in handles {
        let r = h.finish().await;
        if stopped.is_ok() {
            stopped = r.with_context(|| format!("processor {}", p.name()));
        }
    }
    let (load_started, total, setup_records, sent, searchable, timeline, sampler) = driven?;
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
    let mut views = serde_json::Map::new();
    let mut processors = serde_json::Map::new();
    if !args.produce_only {
        for p in PROCESSORS {
            let t = recorder.take(p);
            let records = t.records - setup_records.get(p.name()).copied().unwrap_or(0);
            let busy = t.last.map_or(0.0, |l| {
                l.saturating_duration_since(load_started).as_secs_f64()
            });
            processors.insert(
                p.name().into(),
                json!({
                    "records": records,
                    "busy_s": busy,
                    "records_per_s": if busy > 0.0 { records as f64 / busy } else { 0.0 },
                }),
            );
            match p {
                Processor::Inbox => views.insert("inbox".into(), percentiles(t.latencies_us)),
                Processor::Notify => views.insert("push".into(), percentiles(t.latencies_us)),
                _ => None,
            };
        }
        let search = std::mem::take(&mut *lock(&searchable.latencies_us));
        views.insert("search".into(), percentiles(search));
    }
    Ok(json!({
        "backend": {"log": log.backend(), "views": format!("{:?}", config.views.backend).to_lowercase()},
        "namespace": config.namespace,
        "population": population.to_json(),
        "offered_rate": args.rate,
        "produce_only": args.produce_only,
        "processors_as": if args.tasks { "tasks" } else { "threads" },
        "messages": messages,
        "events": events,
        "send_s": send_s,
        "messages_per_s": messages as f64 / send_s,
        "events_per_s": events as f64 / send_s,
        "total_s": total.as_secs_f64(),
        "views": views,
        "processors": processors,
        "dead_letters": dead_letters,
        "push_jobs": push_jobs,
        "timeline": timeline,
    }))
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

fn print_human(s: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let p = &s["population"];
    println!(
        "courier bench: {} messages ({} events) sent in {:.1} s: {:.0} messages/s{} [log {}, views {}]",
        s["messages"],
        s["events"],
        f(&s["send_s"]),
        f(&s["messages_per_s"]),
        s["offered_rate"]
            .as_f64()
            .map_or(" (as fast as it goes)".to_string(), |r| format!(
                " (offered {r:.0}/s)"
            )),
        s["backend"]["log"].as_str().unwrap_or("?"),
        s["backend"]["views"].as_str().unwrap_or("?"),
    );
    println!(
        "  {} users; {} direct conversations, {} groups (mean size {:.1}, largest {})",
        p["users"],
        p["direct"],
        p["groups"],
        f(&p["group_size_mean"]),
        p["group_size_max"]
    );
    if s["produce_only"].as_bool() == Some(true) {
        println!("  produce only: no processor ran");
        baseline::print_human(s);
        return;
    }
    println!("  end-to-end latency, at_ms → visible (ms):");
    println!(
        "    {:<28} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "view", "p50", "p99", "p99.9", "max", "messages"
    );
    for (view, what) in [
        ("inbox", "inbox (in the views)"),
        ("search", "search (shard committed)"),
        ("push", "push (jobs written)"),
    ] {
        let v = &s["views"][view];
        println!(
            "    {what:<28} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>9}",
            f(&v["p50_ms"]),
            f(&v["p99_ms"]),
            f(&v["p999_ms"]),
            f(&v["max_ms"]),
            v["count"]
        );
    }
    let procs: Vec<String> = s["processors"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| format!("{k} {:.0}", f(&v["records_per_s"])))
                .collect()
        })
        .unwrap_or_default();
    println!(
        "  processors, records/s until their last commit: {}",
        procs.join(", ")
    );
    // Lag over time, in one line: the worst second of each view.
    let behind = |view: &str| {
        s["timeline"].as_array().map_or(0, |t| {
            t.iter()
                .map(|x| {
                    x["sent"]
                        .as_u64()
                        .unwrap_or(0)
                        .saturating_sub(x[view].as_u64().unwrap_or(0))
                })
                .max()
                .unwrap_or(0)
        })
    };
    println!(
        "  most messages behind at a 1 s sample: inbox {}, search {}, push {} (--json: timeline)",
        behind("inbox"),
        behind("search"),
        behind("push")
    );
    println!(
        "  push jobs written: {} ({:.2} per message); dead letters: {}",
        s["push_jobs"],
        s["push_jobs"].as_f64().unwrap_or(0.0) / f(&s["messages"]).max(1.0),
        s["dead_letters"]
    );
    baseline::print_human(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_over_every_sample() {
        // 1..=1000 µs, shuffled: p50 is the 500th, p99 the 990th, p99.9 the 999th.
        let v: Vec<u64> = (1..=1000u64).map(|i| (i * 7919) % 1000 + 1).collect();
        assert_eq!(
            percentiles(v),
            json!({"count": 1000, "p50_ms": 0.5, "p99_ms": 0.99, "p999_ms": 0.999, "max_ms": 1.0})
        );
        assert_eq!(
            percentiles(vec![42_000]),
            json!({"count": 1, "p50_ms": 42.0, "p99_ms": 42.0, "p999_ms": 42.0, "max_ms": 42.0})
        );
        assert_eq!(percentiles(Vec::new())["p99_ms"], Value::Null);
    }
}
