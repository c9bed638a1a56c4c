//! Starting processors: one in its consumer group until a shutdown (`courier run`),
//! several on threads of their own in one process (`courier up`, `courier bench`),
//! and what every long-running command shares (signals, `/metrics`).

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::config::ViewsBackend;
use anyhow::Context;
use courier_pipeline::runner::{self, RunOptions};
use courier_pipeline::{EventLog, shutdown};
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

use crate::registry::Processor;

/// Fires shutdown on Ctrl-C or SIGTERM.
pub fn on_signals(trigger: shutdown::ShutdownTrigger) {
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
pub async fn serve_metrics(listen: &str) -> anyhow::Result<()> {
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
            let generations = Generations::new(config.view_dir(Processor::Inbox.name()));
            let g = generations.current()?;
            let store = RocksInboxStore::open(&generations.dir(g))?;
            let mut p = InboxProcessor::new(store, log.clone());
            let opts = RunOptions {
                group: processor.generation_group(g),
                ..opts
            };
            runner::run(log, &mut p, opts, stop).await?
        }
        Processor::Search => {
            // Search is tantivy on local disk in both modes: with Kafka, each
            // instance keeps the shards of the partitions it is assigned.
            let generations = Generations::new(config.view_dir(Processor::Search.name()));
            let g = generations.current()?;
            let mut index = TantivySearchIndex::new(generations.dir(g));
            if let Some(store) = config.search_snapshots(g) {
                tracing::info!(snapshots = %store.root().display(), every_ms = config.search.snapshot_interval_ms, "search shards are snapshotted for hand-over");
                index = index.with_snapshots(store);
            }
            if let Some(listen) = serve {
                let shards = courier_sinks::search::SearchShards::open(generations.dir(g))?;
                crate::search::serve(listen, shards, index.owned()).await?;
            }
            let mut p = SearchProcessor::new(index, log.clone());
            let opts = RunOptions {
                group: processor.generation_group(g),
                ..opts
            };
            runner::run(log, &mut p, opts, stop).await?
        }
        Processor::Presence => {
            let store = RocksPresenceStore::open(&config.view_dir(Processor::Presence.name()))?;
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
        Arc::new(CassandraGenerations::connect(&crate::views::cassandra_settings(config)?).await?);
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
        let group = Processor::Inbox.generation_group(g);
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
    let dir = config.view_dir(Processor::Notify.name());
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
    let provider = HttpProvider::with_tls(
        endpoint,
        Duration::from_millis(push.timeout_ms),
        &push.tls(),
    )
    .map_err(anyhow::Error::msg)?;
    let dir = config.view_dir(Processor::Push.name());
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
