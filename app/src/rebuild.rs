//! `courier rebuild VIEW`: build a fresh generation of a view from the start of the
//! log in a fresh consumer group, then switch reads to it atomically and drop the
//! old one.
//!
//! The embedded log admits one process per data directory, so in embedded mode
//! the rebuild runs with nothing else running (no producer, no live processor) and
//! ends when it has caught up with the end of the log as it was at start; the next
//! `courier run inbox` continues from there in the new generation's group.
//!
//! On Cassandra a generation is a keyspace (`<keyspace>_gN`, migrated like the
//! base; see `courier_sinks::inbox::cassandra_generations`): the live processors
//! keep serving the current one while the rebuild fills the next, then the
//! pointer row switches, live processors follow it, and the old one is dropped.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::config::Config;
use crate::config::ViewsBackend;
use anyhow::Context;
use courier_pipeline::runner::{self, RunOptions};
use courier_pipeline::{EventLog, shutdown};
use courier_processors::inbox::InboxProcessor;
use courier_processors::inbox::store::InboxStore;
use courier_processors::search::SearchProcessor;
use courier_sinks::inbox::{
    CassandraGenerations, CassandraInboxStore, Generations, RocksInboxStore,
};
use courier_sinks::search::{TantivySearchIndex, committed_offsets};
use courier_topics::CONVERSATIONS;

use crate::processors::{on_signals, serve_metrics};
use crate::registry::Processor;

/// Arguments of `rebuild`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which view: one kept in generations (inbox, search).
    #[arg(value_enum)]
    view: Processor,
}

pub async fn run(config: &Config, log: Arc<dyn EventLog>, args: Args) -> anyhow::Result<ExitCode> {
    if !args.view.entry().generations {
        anyhow::bail!(
            "the {} view is not kept in generations; `courier rebuild` rebuilds {}",
            args.view.name(),
            crate::registry::REGISTRY
                .iter()
                .filter(|e| e.generations)
                .map(|e| e.name)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Processor::Search = args.view {
        return rebuild_search(config, log).await;
    }
    if config.views.backend == ViewsBackend::Cassandra {
        return rebuild_on_cassandra(config, log).await;
    }
    rebuild_local(
        config,
        log.clone(),
        Processor::Inbox,
        async |current_dir, next_dir, next| {
            // What the current generation covered was dead-lettered by it already.
            let covered = match RocksInboxStore::open_read_only(&current_dir)? {
                Some(old) => covered_by(&old, &*log).await?,
                None => HashMap::new(),
            };
            let store = RocksInboxStore::open(&next_dir)
                .with_context(|| format!("creating generation g{next} of the inbox views"))?;
            Ok(InboxProcessor::new(store, log.clone()).dead_lettered_below(covered))
        },
    )
    .await
}

/// What every view kept in local generation directories (the embedded inbox, the
/// search shards) does to rebuild: drop an unfinished rebuild, fill the next
/// generation from the start of the log in its own consumer group until caught up,
/// then switch reads to it and remove the old one. `start(current_dir, next_dir,
/// next)` opens the new generation's processor. A rebuild stopped early removes
/// its generation; the current one keeps serving.
async fn rebuild_local<H: runner::Handler>(
    config: &Config,
    log: Arc<dyn EventLog>,
    processor: Processor,
    start: impl AsyncFnOnce(PathBuf, PathBuf, u64) -> anyhow::Result<H>,
) -> anyhow::Result<ExitCode> {
    let view = processor.name();
    let generations = Generations::new(config.view_dir(view));
    let current = generations.current()?;
    for g in generations.remove_stale()? {
        tracing::info!(
            view,
            generation = g,
            "removed a generation no one reads (an unfinished rebuild)"
        );
    }
    let next = generations.next()?;
    if let Some(listen) = &config.metrics.listen {
        serve_metrics(listen).await?;
    }
    let (trigger, stop) = shutdown::channel();
    let stopped = trigger.subscribe();
    on_signals(trigger);

    let mut p = start(generations.dir(current), generations.dir(next), next).await?;
    let opts = RunOptions {
        // Its own metrics label, so its lag never reads as the live processor's.
        processor: format!("{view}-rebuild"),
        group: processor.generation_group(next),
        topics: processor.topics(),
        until_caught_up: true,
        runner: config.runner.clone(),
    };
    tracing::info!(view, generation = next, group = %opts.group, "rebuilding from the start of the log");
    let progress = crate::progress::Progress::start(opts.processor.clone());
    let result = runner::run(log, &mut p, opts, stop).await;
    drop(progress);
    // Closes the new generation's store before anyone else opens it.
    drop(p);
    let stats = match result {
        Ok(stats) if !stopped.is_triggered() => stats,
        outcome => {
            generations.remove(next)?;
            outcome?;
            anyhow::bail!(
                "rebuild stopped before it caught up; {view} generation g{current} still serves reads"
            );
        }
    };
    generations.switch_to(next)?;
    generations.remove(current)?;
    eprintln!(
        "{view}: rebuilt generation g{next} from {} record(s) in {} batch(es); reads switched from g{current}",
        stats.records, stats.batches
    );
    Ok(ExitCode::SUCCESS)
}

/// Partitions of the conversations topic to the next offset `store` covered: what
/// the generation being replaced has dead-lettered already.
async fn covered_by(
    store: &dyn InboxStore,
    log: &dyn EventLog,
) -> anyhow::Result<HashMap<u32, u64>> {
    let mut covered = HashMap::new();
    for partition in 0..log.partitions(CONVERSATIONS)? {
        if let Some(next) = store.checkpoint(partition).await? {
            covered.insert(partition, next);
        }
    }
    Ok(covered)
}

/// `rebuild inbox` with the views in Cassandra: a new generation keyspace filled
/// from the start of the log in its own consumer group while the current one keeps
/// serving, then the pointer switches and the old generation is dropped.
async fn rebuild_on_cassandra(config: &Config, log: Arc<dyn EventLog>) -> anyhow::Result<ExitCode> {
    let generations =
        CassandraGenerations::connect(&crate::views::cassandra_settings(config)?).await?;
    let current = generations.current().await?;
    for g in generations.remove_stale().await? {
        tracing::info!(
            generation = g,
            "dropped a generation no one reads (an unfinished rebuild)"
        );
    }
    let next = generations.next().await?;
    if let Some(listen) = &config.metrics.listen {
        serve_metrics(listen).await?;
    }
    let (trigger, stop) = shutdown::channel();
    let stopped = trigger.subscribe();
    on_signals(trigger);

    let old = CassandraInboxStore::open(&generations.settings(current)?).await?;
    let covered = covered_by(&old, &*log).await?;
    drop(old);
    let settings = generations
        .create(next)
        .await
        .with_context(|| format!("creating generation g{next} of the inbox views"))?;
    let store = CassandraInboxStore::open(&settings).await?;
    let mut p = InboxProcessor::new(store, log.clone()).dead_lettered_below(covered);
    let opts = RunOptions {
        processor: "inbox-rebuild".to_string(),
        group: Processor::Inbox.generation_group(next),
        topics: Processor::Inbox.topics(),
        until_caught_up: true,
        runner: config.runner.clone(),
    };
    tracing::info!(generation = next, keyspace = %settings.keyspace, group = %opts.group, "rebuilding the inbox views from the start of the log");
    let progress = crate::progress::Progress::start(opts.processor.clone());
    let result = runner::run(log, &mut p, opts, stop).await;
    drop(progress);
    drop(p);
    let stats = match result {
        Ok(stats) if !stopped.is_triggered() => stats,
        outcome => {
            generations.remove(next).await?;
            outcome?;
            anyhow::bail!(
                "rebuild stopped before it caught up; generation g{current} still serves reads"
            );
        }
    };
    generations.switch_to(next).await?;
    generations.remove(current).await?;
    eprintln!(
        "inbox: rebuilt generation g{next} from {} record(s) in {} batch(es) in keyspace {}; reads switched from g{current}",
        stats.records, stats.batches, settings.keyspace
    );
    Ok(ExitCode::SUCCESS)
}

/// `courier rebuild search`: the same steps as the inbox's, over tantivy shards.
/// The new generation's shards start empty, so each seeks to the start of its
/// partition whatever its fresh group holds.
async fn rebuild_search(config: &Config, log: Arc<dyn EventLog>) -> anyhow::Result<ExitCode> {
    rebuild_local(
        config,
        log.clone(),
        Processor::Search,
        async |current_dir, next_dir, _| {
            // What the current generation covered was dead-lettered by it already.
            let covered = committed_offsets(&current_dir)?;
            Ok(
                SearchProcessor::new(TantivySearchIndex::new(next_dir), log.clone())
                    .named("search-rebuild")
                    .dead_lettered_below(covered),
            )
        },
    )
    .await
}
