//! `courier dead-letters list|redrive`: the records processors could not apply,
//! and taking each back to the processor that rejected it.
//!
//! A redrive of processor P runs as consumer group `courier.redrive.P` over
//! `courier.dead-letters.v1`, until caught up with the end as it was at start:
//! each of P's dead letters is appended again to its source topic, under its
//! source key (so on its source partition), addressed to P alone
//! (`dead_letter::redrive_record`); the group commits once the batch is
//! appended, so a second redrive takes nothing back twice, and a redrive
//! stopped between its append and its commit appends the same records again
//! under the same derived event ids, which the processor applies once. One
//! that fails again is dead-lettered again: a new dead letter, which a later
//! redrive takes back. See docs/decisions/2026-12-07-redrive.md.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use courier_pipeline::dead_letter::{Letter, redrive_record};
use courier_pipeline::runner::{self, Handler, HandlerError, RunOptions};
use courier_pipeline::{ConsumedRecord, EventLog, LogError, Record, shutdown};
use courier_topics::DEAD_LETTERS;

use crate::config::Config;
use crate::groups::open_for_inspection;
use crate::processors::on_signals;
use crate::registry::Processor;

/// `courier dead-letters` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Every dead letter: the processor that rejected which record, why, and
    /// whether it was taken back.
    List {
        /// Only this processor's.
        #[arg(long, value_enum)]
        processor: Option<Processor>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Takes each dead letter not yet taken back to the processor that rejected
    /// it, and to no other; without --execute, lists what it would take back.
    Redrive {
        /// Only this processor's (default: every processor's).
        #[arg(long, value_enum)]
        processor: Option<Processor>,
        /// Append them for their processors (which apply them when they run).
        #[arg(long)]
        execute: bool,
    },
}

/// The consumer group of `processor`'s redrives: its committed offsets on
/// `courier.dead-letters.v1` say how far its dead letters were taken back.
pub fn redrive_group(processor: Processor) -> String {
    format!("courier.redrive.{}", processor.name())
}

pub async fn run(config: &Config, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::List { processor, json } => list(config, processor, json, false).await,
        Command::Redrive {
            processor,
            execute: false,
        } => {
            list(config, processor, false, true).await?;
            println!("dry run: nothing taken back (--execute takes them back)");
            Ok(ExitCode::SUCCESS)
        }
        Command::Redrive {
            processor,
            execute: true,
        } => redrive(config, processor).await,
    }
}

/// A dead letter as `list` shows it.
#[derive(Debug, serde::Serialize)]
struct Row {
    partition: u32,
    offset: u64,
    id: String,
    at_ms: i64,
    processor: Option<String>,
    source_topic: String,
    source_partition: i32,
    source_offset: i64,
    source_key: String,
    reason: String,
    /// Whether its processor's redrive took it back; `None` when no processor
    /// is named.
    redriven: Option<bool>,
}

/// Every record of the dead-letters topic, in partition and offset order.
async fn read_all(log: &dyn EventLog) -> anyhow::Result<Vec<Result<Letter, String>>> {
    let mut out = Vec::new();
    for p in 0..log.partitions(DEAD_LETTERS)? {
        let (low, high) = log.watermarks(DEAD_LETTERS, p).await?;
        let mut from = low;
        while from < high {
            let records = log
                .read(DEAD_LETTERS, p, from, 1000, Duration::from_secs(1))
                .await?;
            let Some(last) = records.last() else { break };
            from = last.offset + 1;
            out.extend(records.iter().map(|r| {
                Letter::parse(r)
                    .map_err(|e| format!("{DEAD_LETTERS}[{p}] offset {}: {e}", r.offset))
            }));
        }
    }
    Ok(out)
}

fn processor_named(name: &str) -> Option<Processor> {
    Processor::all().find(|p| p.name() == name)
}

async fn list(
    config: &Config,
    only: Option<Processor>,
    json: bool,
    pending_only: bool,
) -> anyhow::Result<ExitCode> {
    let log = open_for_inspection(config).context("opening the log")?;
    let log = &*log.log;
    let mut done: HashMap<Processor, Vec<Option<u64>>> = HashMap::new();
    for p in Processor::all() {
        done.insert(p, log.committed(&redrive_group(p), DEAD_LETTERS).await?);
    }
    let mut rows = Vec::new();
    let mut unreadable = Vec::new();
    for letter in read_all(log).await? {
        let l = match letter {
            Ok(l) => l,
            Err(e) => {
                unreadable.push(e);
                continue;
            }
        };
        let p = l.processor.as_deref().and_then(processor_named);
        if only.is_some() && p != only {
            continue;
        }
        let redriven = p.map(|p| {
            done[&p]
                .get(l.partition as usize)
                .copied()
                .flatten()
                .is_some_and(|c| l.offset < c)
        });
        if pending_only && redriven != Some(false) {
            continue;
        }
        rows.push(Row {
            partition: l.partition,
            offset: l.offset,
            id: l.id,
            at_ms: l.at_ms,
            processor: l.processor,
            source_topic: l.letter.source_topic,
            source_partition: l.letter.source_partition,
            source_offset: l.letter.source_offset,
            source_key: l.letter.source_key,
            reason: l.letter.reason,
            redriven,
        });
    }
    for e in &unreadable {
        eprintln!("warning: not a readable dead letter: {e}");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<14} {:<10} {:<34} {:<16} {:<9} REASON",
        "DEAD-LETTER", "PROCESSOR", "SOURCE", "KEY", "REDRIVEN"
    );
    for r in &rows {
        println!(
            "{:<14} {:<10} {:<34} {:<16} {:<9} {}",
            format!("{}:{}", r.partition, r.offset),
            r.processor.as_deref().unwrap_or("-"),
            format!(
                "{}[{}]@{}",
                r.source_topic, r.source_partition, r.source_offset
            ),
            r.source_key,
            match r.redriven {
                Some(true) => "yes",
                Some(false) => "no",
                None => "-",
            },
            r.reason
        );
    }
    println!("{} dead letter(s)", rows.len());
    Ok(ExitCode::SUCCESS)
}

/// The redrive of one processor's dead letters, as a handler of its group.
struct Redrive {
    processor: Processor,
    log: Arc<dyn EventLog>,
    /// Dead letters taken back, by source topic.
    redriven: BTreeMap<String, u64>,
    /// Dead letters naming no processor (written before courier named it).
    unattributed: u64,
    /// Records of the topic that are no dead letter, or whose source topic
    /// this log does not have.
    unreadable: u64,
}

#[async_trait]
impl Handler for Redrive {
    async fn handle(&mut self, batch: &[ConsumedRecord]) -> Result<(), HandlerError> {
        let name = self.processor.name();
        let mut by_topic: BTreeMap<String, Vec<Record>> = BTreeMap::new();
        let (mut unattributed, mut unreadable) = (0, 0);
        for r in batch {
            match Letter::parse(r) {
                Ok(l) if l.processor.as_deref() == Some(name) => {
                    let (topic, record) = redrive_record(&l, name);
                    if self.log.partitions(&topic).is_err() {
                        tracing::warn!(dead_letter = %l.position(), topic, "the dead letter's source topic is not in the catalog; not redriven");
                        unreadable += 1;
                        continue;
                    }
                    by_topic.entry(topic).or_default().push(record);
                }
                Ok(l) if l.processor.is_none() => unattributed += 1,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(partition = r.partition, offset = r.offset, error = %e, "not a readable dead letter; skipped");
                    unreadable += 1;
                }
            }
        }
        // Counted once appended: a failed batch is tried again whole.
        let mut appended = Vec::new();
        for (topic, records) in by_topic {
            let n = records.len() as u64;
            match self.log.append(&topic, records).await {
                Ok(_) => appended.push((topic, n)),
                Err(e @ LogError::TooLarge { .. }) => {
                    return Err(HandlerError::fatal(format!("redriving to {topic}: {e}")));
                }
                // What an earlier try appended is appended again under the
                // same ids: the processor applies it once.
                Err(e) => {
                    return Err(HandlerError::retryable(format!(
                        "redriving to {topic}: {e}"
                    )));
                }
            }
        }
        for (topic, n) in appended {
            *self.redriven.entry(topic).or_default() += n;
        }
        self.unattributed += unattributed;
        self.unreadable += unreadable;
        Ok(())
    }
}

async fn redrive(config: &Config, only: Option<Processor>) -> anyhow::Result<ExitCode> {
    let log = config.open_log().context("opening the log")?;
    let (trigger, stop) = shutdown::channel();
    on_signals(trigger);
    let processors: Vec<Processor> = match only {
        Some(p) => vec![p],
        None => Processor::all().collect(),
    };
    let mut unattributed = 0;
    for p in processors {
        let mut handler = Redrive {
            processor: p,
            log: log.clone(),
            redriven: BTreeMap::new(),
            unattributed: 0,
            unreadable: 0,
        };
        let opts = RunOptions {
            processor: format!("redrive-{}", p.name()),
            group: redrive_group(p),
            topics: vec![DEAD_LETTERS.to_string()],
            until_caught_up: true,
            runner: config.runner.clone(),
        };
        runner::run(log.clone(), &mut handler, opts, stop.clone()).await?;
        let total: u64 = handler.redriven.values().sum();
        let to: Vec<String> = handler.redriven.keys().cloned().collect();
        if total > 0 {
            println!(
                "{}: took {total} dead letter(s) back (to {}); `courier run {}` applies them",
                p.name(),
                to.join(", "),
                p.name()
            );
        } else {
            println!("{}: no dead letter to take back", p.name());
        }
        if handler.unreadable > 0 {
            println!(
                "{}: {} record(s) of {DEAD_LETTERS} could not be taken back (see the warnings)",
                p.name(),
                handler.unreadable
            );
        }
        unattributed = unattributed.max(handler.unattributed);
    }
    if unattributed > 0 {
        println!(
            "{unattributed} dead letter(s) name no processor (written before courier recorded \
             it): not taken back"
        );
    }
    Ok(ExitCode::SUCCESS)
}
