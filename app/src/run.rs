//! `courier run PROCESSOR`: one processor as a member of its consumer group, until
//! Ctrl-C / SIGTERM (finish the batch, commit, leave) or, with --until-caught-up,
//! until the end of the log as it was at start.

use std::process::ExitCode;
use std::sync::Arc;

use crate::config::Config;
use courier_pipeline::{EventLog, shutdown};

use crate::processors::{on_signals, run_processor, serve_metrics};
use crate::registry::Processor;

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
    // A run to the end of the log is a batch job: show how far it is.
    let progress = args
        .until_caught_up
        .then(|| crate::progress::Progress::start(name.to_string()));
    let stats = run_processor(
        config,
        log,
        args.processor,
        args.until_caught_up,
        args.serve.as_deref(),
        stop,
    )
    .await?;
    drop(progress);
    eprintln!(
        "{name}: applied {} record(s) in {} batch(es)",
        stats.records, stats.batches
    );
    Ok(ExitCode::SUCCESS)
}
