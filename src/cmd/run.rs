//! `courier run PROCESSOR`: one processor as a member of its consumer group, until
//! Ctrl-C / SIGTERM (finish the batch, commit, leave) or, with --until-caught-up,
//! until the end of the log as it was at start.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use courier_pipeline::runner::{self, RunOptions};
use courier_pipeline::{Config, EventLog, shutdown};
use courier_processors::presence::PresenceProcessor;
use courier_sinks::presence::RocksPresenceStore;

/// Processors `run` can start.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Processor {
    /// Latest presence of every user (courier.presence.v1 → presence table).
    Presence,
}

impl Processor {
    /// Its name: metrics label, and its consumer group is `courier.NAME`.
    pub fn name(self) -> &'static str {
        match self {
            Processor::Presence => "presence",
        }
    }

    /// Its consumer group.
    pub fn group(self) -> String {
        format!("courier.{}", self.name())
    }

    /// The topics it consumes.
    pub fn topics(self) -> Vec<String> {
        match self {
            Processor::Presence => vec![courier_topics::PRESENCE.to_string()],
        }
    }
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
fn on_signals(trigger: shutdown::ShutdownTrigger) {
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
async fn serve_metrics(listen: &str) -> anyhow::Result<()> {
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
    let opts = RunOptions {
        processor: name.to_string(),
        group: args.processor.group(),
        topics: args.processor.topics(),
        until_caught_up: args.until_caught_up,
        runner: config.runner.clone(),
    };
    let stats = match args.processor {
        Processor::Presence => {
            let store = RocksPresenceStore::open(&config.view_dir("presence"))?;
            let mut p = PresenceProcessor::new(store, log.clone());
            runner::run(log, &mut p, opts, stop).await?
        }
    };
    eprintln!(
        "{name}: applied {} record(s) in {} batch(es)",
        stats.records, stats.batches
    );
    Ok(ExitCode::SUCCESS)
}
