//! `courier run PROCESSOR`: one processor as a member of its consumer group, until
//! Ctrl-C / SIGTERM (finish the batch, commit, leave) or, with --until-caught-up,
//! until the end of the log as it was at start.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use courier_pipeline::config::ViewsBackend;
use courier_pipeline::runner::{self, RunOptions};
use courier_pipeline::{Config, EventLog, shutdown};
use courier_processors::inbox::InboxProcessor;
use courier_processors::notify::NotifyProcessor;
use courier_processors::presence::PresenceProcessor;
use courier_processors::push::{PushOptions, PushProcessor};
use courier_processors::search::SearchProcessor;
use courier_sinks::inbox::{
    CassandraGenerations, CassandraInboxStore, Generations, RocksInboxStore,
};
use courier_sinks::notify::RocksNotifyStore;
use courier_sinks::presence::RocksPresenceStore;
use courier_sinks::push::{HttpProvider, RocksSentStore};
use courier_sinks::search::TantivySearchIndex;

/// Processors `run` can start.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Processor {
    /// Inboxes and message history (courier.conversations.v1 → inbox views).
    Inbox,
    /// Latest presence of every user (courier.presence.v1 → presence table).
    Presence,
    /// Push jobs for offline recipients (courier.conversations.v1 and the
    /// presence table → courier.push-jobs.v1).
    Notify,
    /// Push delivery (courier.push-jobs.v1 → the push provider at push.endpoint).
    Push,
    /// Full-text search (courier.conversations.v1 → tantivy, one shard per
    /// partition).
    Search,
}

impl Processor {
    /// Its name: metrics label, and its consumer group is `courier.NAME`.
    pub fn name(self) -> &'static str {
        match self {
            Processor::Inbox => "inbox",
            Processor::Presence => "presence",
            Processor::Notify => "notify",
            Processor::Push => "push",
            Processor::Search => "search",
        }
    }

    /// Its consumer group (for the inbox: of generation 0, see [`inbox_group`]).
    pub fn group(self) -> String {
        format!("courier.{}", self.name())
    }

    /// The consumer group of the instance running now: the inbox's follows the view
    /// generation it serves (see [`inbox_group`]), on RocksDB and on Cassandra.
    pub async fn live_group(self, config: &Config) -> anyhow::Result<String> {
        match self {
            Processor::Inbox if config.views.backend == ViewsBackend::Cassandra => {
                let settings = super::inbox::cassandra_settings(config)?;
                let generations = CassandraGenerations::connect(&settings).await?;
                Ok(inbox_group(generations.current().await?))
            }
            Processor::Inbox => Ok(inbox_group(
                Generations::new(config.view_dir("inbox")).current()?,
            )),
            Processor::Presence | Processor::Notify | Processor::Push => Ok(self.group()),
            Processor::Search => Ok(search_group(
                Generations::new(config.view_dir("search")).current()?,
            )),
        }
    }

    /// The topics it consumes.
    pub fn topics(self) -> Vec<String> {
        match self {
            Processor::Inbox => vec![courier_topics::CONVERSATIONS.to_string()],
            Processor::Presence => vec![courier_topics::PRESENCE.to_string()],
            // Presence is read too, but outside the group (a global table).
            Processor::Notify => vec![courier_topics::CONVERSATIONS.to_string()],
            Processor::Push => vec![courier_topics::PUSH_JOBS.to_string()],
            Processor::Search => vec![courier_topics::CONVERSATIONS.to_string()],
        }
    }
}

/// The consumer group of generation `g` of the inbox view: each generation has its
/// own, so a rebuild starts from the beginning of the log and the live processor
/// continues where the generation it serves ended. Generation 0 keeps the plain
/// `courier.inbox`.
pub fn inbox_group(g: u64) -> String {
    let base = Processor::Inbox.group();
    if g == 0 { base } else { format!("{base}.g{g}") }
}

/// The consumer group of generation `g` of the search view, as [`inbox_group`]
/// is for the inbox: `courier.search`, then `courier.search.gN`.
pub fn search_group(g: u64) -> String {
    let base = Processor::Search.group();
    if g == 0 { base } else { format!("{base}.g{g}") }
}

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which processor.
    #[arg(value_enum)]
    processor: Processor,
    /// Process up to the end of the log as it is now, then exit.
    #[arg(long)]
    until_caught_up: bool,
    /// search only: answer `GET /v1/shards/search` on ADDR for the shards this
    /// instance owns (distributed mode; `courier search --peers` fans out).
    #[arg(long, value_name = "ADDR", env = "COURIER_SEARCH_SERVE")]
    serve: Option<String>,
}

/// Fires shutdown on Ctrl-C or SIGTERM.
pub(crate) fn on_signals(trigger: shutdown::ShutdownTrigger) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = match signal(SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = tokio::signal::ctrl_c().await;
                    trigger.trigger();
                    return;
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("stop requested: finishing the batch, committing, leaving the group");
        trigger.trigger();
    });
}

/// Serves `/metrics` on the configured address while the process runs.
pub(crate) async fn serve_metrics(listen: &str) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the metrics endpoint to {listen}"))?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics");
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async { courier_pipeline::metrics::gather() }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok(())
}

pub async fn run(config: &Config, log: Arc<dyn EventLog>, args: Args) -> anyhow::Result<ExitCode> {
    if let Some(listen) = &config.metrics.listen {
        serve_metrics(listen).await?;
    }
    if args.serve.is_some() && !matches!(args.processor, Processor::Search) {
        anyhow::bail!("--serve answers search queries: it is for `courier run search` only");
    }
    let (trigger, stop) = shutdown::channel();
    on_signals(trigger);
    let name = args.processor.name();
    let stats = run_processor(
        config,
        log,
        args.processor,
        args.until_caught_up,
        args.serve.as_deref(),
        stop,
    )
    .await?;
    eprintln!(
        "{name}: applied {} record(s) in {} batch(es)",
        stats.records, stats.batches
    );
    Ok(ExitCode::SUCCESS)
}

/// A processor running on an OS thread of its own, with a single-threaded
/// runtime ([`ProcessorThread::spawn`]). Several processors in one process
/// (`courier up`, `courier bench`) run this way because a batch is CPU work and
/// local-disk I/O inside `async fn`s (folds, RocksDB writes, tantivy commits): as
/// tasks of one runtime, one processor's batch holds a worker and delays the
/// others' commits (measured: BENCHMARKS.md, "End to end"); as threads, the OS
/// shares the cores among them as among separate `courier run` processes.
pub struct ProcessorThread {
    thread: std::thread::JoinHandle<()>,
    ended: tokio::sync::oneshot::Receiver<anyhow::Result<runner::RunStats>>,
}

impl ProcessorThread {
    /// Starts `processor` as [`run_processor`] does, until `stop`.
    pub fn spawn(
        config: Config,
        log: Arc<dyn EventLog>,
        processor: Processor,
        stop: shutdown::Shutdown,
    ) -> anyhow::Result<ProcessorThread> {
        let (tx, ended) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("courier-{}", processor.name()))
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("starting a processor's runtime")
                    .and_then(|rt| {
                        rt.block_on(run_processor(&config, log, processor, false, None, stop))
                    });
                // The receiver may be gone (the process is stopping anyway).
                let _ = tx.send(result);
            })
            .with_context(|| format!("starting the {} processor's thread", processor.name()))?;
        Ok(ProcessorThread { thread, ended })
    }

    /// Whether it has stopped.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// How it ended, once it has; a panic of its thread is an error.
    pub async fn finish(self) -> anyhow::Result<runner::RunStats> {
        match self.ended.await {
            Ok(result) => result,
            Err(_) => Err(anyhow::anyhow!("its thread panicked")),
        }
    }
}

/// Runs one processor in its consumer group until `stop` (or, with
/// `until_caught_up`, the end of the log as it was at start). `courier run` runs
/// one; `courier up` runs several in one process. `serve` (search only) answers
/// shard queries over HTTP on that address (distributed search).
pub async fn run_processor(
    config: &Config,
    log: Arc<dyn EventLog>,
    processor: Processor,
    until_caught_up: bool,
    serve: Option<&str>,
    stop: shutdown::Shutdown,
) -> anyhow::Result<runner::RunStats> {
    let name = processor.name();
    let opts = RunOptions {
        processor: name.to_string(),
        group: processor.group(),
        topics: processor.topics(),
        until_caught_up,
        runner: config.runner.clone(),
    };
    let stats = match processor {
        Processor::Inbox if config.views.backend == ViewsBackend::Cassandra => {
            run_inbox_on_cassandra(config, log, opts, stop).await?
        }
        Processor::Inbox => {
            // Always the current generation: `rebuild` may have switched it.
            let generations = Generations::new(config.view_dir("inbox"));
            let g = generations.current()?;
            let store = RocksInboxStore::open(&generations.dir(g))?;
            let mut p = InboxProcessor::new(store, log.clone());
            let opts = RunOptions {
                group: inbox_group(g),
                ..opts
            };
            runner::run(log, &mut p, opts, stop).await?
        }
        Processor::Search => {
            // Search is tantivy on local disk in both modes: with Kafka, each
            // instance keeps the shards of the partitions it is assigned.
            let generations = Generations::new(config.view_dir("search"));
            let g = generations.current()?;
            let index = TantivySearchIndex::new(generations.dir(g));
            if let Some(listen) = serve {
                let shards = courier_sinks::search::SearchShards::open(generations.dir(g))?;
                super::search::serve(listen, shards, index.owned()).await?;
            }
            let mut p = SearchProcessor::new(index, log.clone());
            let opts = RunOptions {
                group: search_group(g),
                ..opts
            };
            runner::run(log, &mut p, opts, stop).await?
        }
        Processor::Presence => {
            let store = RocksPresenceStore::open(&config.view_dir("presence"))?;
            let mut p = PresenceProcessor::new(store, log.clone());
            runner::run(log, &mut p, opts, stop).await?
        }
        Processor::Notify => run_notify(config, log, until_caught_up, stop).await?,
        Processor::Push => run_push(config, log, until_caught_up, stop).await?,
    };
    Ok(stats)
}

/// How often a live inbox processor on Cassandra checks whether a rebuild switched
/// generations.
const GENERATION_POLL: Duration = Duration::from_secs(1);

/// Runs the inbox processor on Cassandra in the generation serving reads. When a
/// rebuild switches generations, it finishes (or abandons, uncommitted) its batch
/// and continues in the new generation's keyspace and consumer group, which start
/// where the rebuild ended; so no live instance keeps writing a dropped generation.
async fn run_inbox_on_cassandra(
    config: &Config,
    log: Arc<dyn EventLog>,
    opts: RunOptions,
    stop: shutdown::Shutdown,
) -> anyhow::Result<runner::RunStats> {
    // The keyspace must be migrated (`courier migrate`); reading the pointer says so.
    let generations =
        Arc::new(CassandraGenerations::connect(&super::inbox::cassandra_settings(config)?).await?);
    let mut total = runner::RunStats::default();
    loop {
        let g = generations.current().await?;
        let store = CassandraInboxStore::open(&generations.settings(g)?).await?;
        let mut p = InboxProcessor::new(store, log.clone());
        let (switch, this_generation) = shutdown::channel();
        let switched = this_generation.clone();
        let watcher = tokio::spawn({
            let generations = generations.clone();
            let mut stop = stop.clone();
            async move {
                let mut tick = tokio::time::interval(GENERATION_POLL);
                loop {
                    tokio::select! {
                        _ = stop.wait() => break,
                        _ = tick.tick() => match generations.current().await {
                            Ok(now) if now != g => {
                                tracing::info!(from = g, to = now, "inbox views switched generation; following");
                                break;
                            }
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "cannot read the current inbox generation"),
                        },
                    }
                }
                switch.trigger();
            }
        });
        let group = inbox_group(g);
        tracing::info!(generation = g, group = %group, "inbox on Cassandra");
        let result = runner::run(
            log.clone(),
            &mut p,
            RunOptions {
                group,
                ..opts.clone()
            },
            this_generation,
        )
        .await;
        watcher.abort();
        let followed = switched.is_triggered() && !stop.is_triggered();
        match result {
            Ok(stats) => {
                total.records += stats.records;
                total.batches += stats.batches;
            }
            // A batch cut off by the switch (its generation may be gone) was not
            // committed; the new generation's group has it.
            Err(e) if followed => {
                tracing::warn!(error = %e, "batch abandoned at a generation switch")
            }
            Err(e) => return Err(e.into()),
        }
        if !followed {
            return Ok(total);
        }
    }
}

/// Runs the notifier (`courier run notify`) until `stop` fires or, with
/// `until_caught_up`, until the end of `courier.conversations.v1` as it is now. Its
/// fold state and its own presence table live under `views/notify/`. Also the entry
/// point for running it inside another command (`courier up`).
pub async fn run_notify(
    config: &Config,
    log: Arc<dyn EventLog>,
    until_caught_up: bool,
    stop: shutdown::Shutdown,
) -> anyhow::Result<runner::RunStats> {
    let dir = config.view_dir("notify");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let store = RocksNotifyStore::open(&dir.join("states"))?;
    let presence = RocksPresenceStore::open(&dir.join("presence"))?;
    let p = Processor::Notify;
    let mut handler = NotifyProcessor::new(store, presence, log.clone(), p.group());
    let opts = RunOptions {
        processor: p.name().to_string(),
        group: p.group(),
        topics: p.topics(),
        until_caught_up,
        runner: config.runner.clone(),
    };
    Ok(runner::run(log, &mut handler, opts, stop).await?)
}

/// Runs push delivery (`courier run push`) until `stop` fires or, with
/// `until_caught_up`, until every job to the end of `courier.push-jobs.v1` as it is
/// now is delivered or dead-lettered. Sent job ids live under `views/push/`. Also
/// the entry point for running it inside another command (`courier up`).
pub async fn run_push(
    config: &Config,
    log: Arc<dyn EventLog>,
    until_caught_up: bool,
    stop: shutdown::Shutdown,
) -> anyhow::Result<runner::RunStats> {
    let push = &config.push;
    let endpoint = push.endpoint.as_deref().context(
        "courier run push needs the push provider's URL: set push.endpoint in the config \
         or COURIER_PUSH_ENDPOINT",
    )?;
    let provider = HttpProvider::new(endpoint, Duration::from_millis(push.timeout_ms))
        .map_err(anyhow::Error::msg)?;
    let dir = config.view_dir("push");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let sent = RocksSentStore::open(&dir.join("sent"))?;
    let p = Processor::Push;
    let mut handler = PushProcessor::new(
        provider,
        sent,
        log.clone(),
        PushOptions {
            concurrency: push.concurrency,
            max_attempts: push.max_attempts,
            breaker_failures: push.breaker_failures,
            breaker_cooldown: Duration::from_millis(push.breaker_cooldown_ms),
            sent_ttl: Duration::from_millis(push.sent_ttl_ms),
        },
    );
    let opts = RunOptions {
        processor: p.name().to_string(),
        group: p.group(),
        topics: p.topics(),
        until_caught_up,
        runner: config.runner.clone(),
    };
    Ok(runner::run(log, &mut handler, opts, stop).await?)
}
