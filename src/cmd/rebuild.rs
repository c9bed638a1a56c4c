//! `courier rebuild VIEW`: build a fresh generation of a view from the start of the
//! log in a fresh consumer group, then switch reads to it atomically and drop the
//! old one.
//!
//! The embedded log admits one process per data directory, so in embedded mode
//! the rebuild runs with nothing else running (no producer, no live processor) and
//! ends when it has caught up with the end of the log as it was at start; the next
//! `courier run inbox` continues from there in the new generation's group.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use courier_pipeline::runner::{self, RunOptions};
use courier_pipeline::{Config, EventLog, shutdown};
use courier_processors::inbox::InboxProcessor;
use courier_processors::inbox::store::InboxStore;
use courier_processors::search::SearchProcessor;
use courier_sinks::inbox::{Generations, RocksInboxStore};
use courier_sinks::search::{TantivySearchIndex, committed_offsets};
use courier_topics::CONVERSATIONS;

use super::run::{Processor, inbox_group, on_signals, search_group, serve_metrics};

/// Views `rebuild` can rebuild.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum View {
    /// Inboxes and message history.
    Inbox,
    /// The full-text search shards.
    Search,
}

/// Arguments of `rebuild`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which view.
    #[arg(value_enum)]
    view: View,
}

impl Args {
    /// Whether this rebuilds the search view (tantivy whatever the views backend).
    pub fn is_search(&self) -> bool {
        matches!(self.view, View::Search)
    }
}

pub async fn run(config: &Config, log: Arc<dyn EventLog>, args: Args) -> anyhow::Result<ExitCode> {
    let View::Inbox = args.view else {
        return rebuild_search(config, log).await;
    };
    let generations = Generations::new(config.view_dir("inbox"));
    let current = generations.current()?;
    for g in generations.remove_stale()? {
        tracing::info!(
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

    // What the current generation covered was dead-lettered by it already.
    let mut covered = HashMap::new();
    if let Some(old) = RocksInboxStore::open_read_only(&generations.dir(current))? {
        for partition in 0..log.partitions(CONVERSATIONS)? {
            if let Some(next) = old.checkpoint(partition).await? {
                covered.insert(partition, next);
            }
        }
    }
    let dir = generations.dir(next);
    let store = RocksInboxStore::open(&dir)
        .with_context(|| format!("creating generation g{next} of the inbox views"))?;
    let mut p = InboxProcessor::new(store, log.clone()).dead_lettered_below(covered);
    let opts = RunOptions {
        // Its own metrics label, so its lag never reads as the live processor's.
        processor: "inbox-rebuild".to_string(),
        group: inbox_group(next),
        topics: Processor::Inbox.topics(),
        until_caught_up: true,
        runner: config.runner.clone(),
    };
    tracing::info!(generation = next, group = %opts.group, "rebuilding the inbox views from the start of the log");
    let result = runner::run(log, &mut p, opts, stop).await;
    // Closes the new generation's store before anyone else opens it.
    drop(p);
    let stats = match result {
        Ok(stats) if !stopped.is_triggered() => stats,
        outcome => {
            generations.remove(next)?;
            outcome?;
            anyhow::bail!(
                "rebuild stopped before it caught up; generation g{current} still serves reads"
            );
        }
    };
    generations.switch_to(next)?;
    generations.remove(current)?;
    eprintln!(
        "inbox: rebuilt generation g{next} from {} record(s) in {} batch(es); reads switched from g{current}",
        stats.records, stats.batches
    );
    Ok(ExitCode::SUCCESS)
}

/// `courier rebuild search`: the same steps as the inbox's, over tantivy shards.
/// The new generation's shards start empty, so each seeks to the start of its
/// partition whatever its fresh group holds.
async fn rebuild_search(config: &Config, log: Arc<dyn EventLog>) -> anyhow::Result<ExitCode> {
    let generations = Generations::new(config.view_dir("search"));
    let current = generations.current()?;
    for g in generations.remove_stale()? {
        tracing::info!(
            generation = g,
            "removed a search generation no one reads (an unfinished rebuild)"
        );
    }
    let next = generations.next()?;
    if let Some(listen) = &config.metrics.listen {
        serve_metrics(listen).await?;
    }
    let (trigger, stop) = shutdown::channel();
    let stopped = trigger.subscribe();
    on_signals(trigger);

    // What the current generation covered was dead-lettered by it already.
    let covered = committed_offsets(&generations.dir(current))?;
    let index = TantivySearchIndex::new(generations.dir(next));
    let mut p = SearchProcessor::new(index, log.clone())
        .named("search-rebuild")
        .dead_lettered_below(covered);
    let opts = RunOptions {
        // Its own metrics label, so its lag never reads as the live processor's.
        processor: "search-rebuild".to_string(),
        group: search_group(next),
        topics: Processor::Search.topics(),
        until_caught_up: true,
        runner: config.runner.clone(),
    };
    tracing::info!(generation = next, group = %opts.group, "rebuilding the search shards from the start of the log");
    let result = runner::run(log, &mut p, opts, stop).await;
    // Closes the new shards' writers before anyone else opens them.
    drop(p);
    let stats = match result {
        Ok(stats) if !stopped.is_triggered() => stats,
        outcome => {
            generations.remove(next)?;
            outcome?;
            anyhow::bail!(
                "rebuild stopped before it caught up; search generation g{current} still serves queries"
            );
        }
    };
    generations.switch_to(next)?;
    generations.remove(current)?;
    eprintln!(
        "search: rebuilt generation g{next} from {} record(s) in {} batch(es); queries switched from g{current}",
        stats.records, stats.batches
    );
    Ok(ExitCode::SUCCESS)
}
