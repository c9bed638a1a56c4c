//! `courier run PROCESSOR`: one processor as a member of its consumer group, until
//! Ctrl-C / SIGTERM (finish the batch, commit, leave) or, with --until-caught-up,
//! until the end of the log as it was at start.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use courier_pipeline::config::ViewsBackend;
use courier_pipeline::runner::{self, RunOptions};
use courier_pipeline::{Config, EventLog, shutdown};
use courier_processors::inbox::InboxProcessor;
use courier_processors::presence::PresenceProcessor;
use courier_sinks::inbox::{CassandraInboxStore, Generations, RocksInboxStore};
use courier_sinks::presence::RocksPresenceStore;

/// Processors `run` can start.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Processor {
    /// Inboxes and message history (courier.conversations.v1 → inbox views).
    Inbox,
    /// Latest presence of every user (courier.presence.v1 → presence table).
    Presence,
}

impl Processor {
    /// Its name: metrics label, and its consumer group is `courier.NAME`.
    pub fn name(self) -> &'static str {
        match self {
            Processor::Inbox => "inbox",
            Processor::Presence => "presence",
        }
    }

    /// Its consumer group (for the inbox: of generation 0, see [`inbox_group`]).
    pub fn group(self) -> String {
        format!("courier.{}", self.name())
    }

    /// The consumer group of the instance running now: the inbox's follows the view
    /// generation it serves (see [`inbox_group`]); on Cassandra (no generations yet)
    /// it is the plain `courier.inbox`.
    pub fn live_group(self, config: &Config) -> anyhow::Result<String> {
        match self {
            Processor::Inbox if config.views.backend == ViewsBackend::Cassandra => Ok(self.group()),
            Processor::Inbox => Ok(inbox_group(
                Generations::new(config.view_dir("inbox")).current()?,
            )),
            Processor::Presence => Ok(self.group()),
        }
    }

    /// The topics it consumes.
    pub fn topics(self) -> Vec<String> {
        match self {
            Processor::Inbox => vec![courier_topics::CONVERSATIONS.to_string()],
            Processor::Presence => vec![courier_topics::PRESENCE.to_string()],
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

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which processor.
    #[arg(value_enum)]
    processor: Processor,
    /// Process up to the end of the log as it is now, then exit.
    #[arg(long)]
    until_caught_up: bool,
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
    let (trigger, stop) = shutdown::channel();
    on_signals(trigger);
    let name = args.processor.name();
    let stats = run_processor(config, log, args.processor, args.until_caught_up, stop).await?;
    eprintln!(
        "{name}: applied {} record(s) in {} batch(es)",
        stats.records, stats.batches
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs one processor in its consumer group until `stop` (or, with
/// `until_caught_up`, the end of the log as it was at start). `courier run` runs
/// one; `courier up` runs several in one process.
pub async fn run_processor(
    config: &Config,
    log: Arc<dyn EventLog>,
    processor: Processor,
    until_caught_up: bool,
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
            // The keyspace must be migrated (`courier migrate`); opening says so.
            let settings = super::inbox::cassandra_settings(config)?;
            let store = CassandraInboxStore::open(&settings).await?;
            let mut p = InboxProcessor::new(store, log.clone());
            runner::run(log, &mut p, opts, stop).await?
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
        Processor::Presence => {
            let store = RocksPresenceStore::open(&config.view_dir("presence"))?;
            let mut p = PresenceProcessor::new(store, log.clone());
            runner::run(log, &mut p, opts, stop).await?
        }
    };
    Ok(stats)
}
