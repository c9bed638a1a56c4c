//! `courier topics`: the catalog, with where each partition ends now.

use std::process::ExitCode;

use anyhow::Context;

use crate::config::Backend;
use crate::config::Config;
use courier_pipeline::kafka::TopicAction;
use courier_pipeline::{EventLog, KafkaLog};
use courier_topics::Catalog;

/// Subcommands of `topics`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Every topic of the catalog with its partitions and their current end offsets.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Create the catalog's topics on Kafka, or check existing ones and report drift
    /// (wrong partition count, cleanup policy, retention). Never changes or deletes
    /// an existing topic. Exits non-zero when anything drifted.
    Apply,
}

/// `topics apply`: needs no open log on the embedded backend (its partitions are laid
/// out from the catalog on open).
async fn apply(config: &Config) -> anyhow::Result<ExitCode> {
    if config.log.backend == Backend::Embedded {
        println!(
            "embedded log: its topics are laid out from the catalog when it opens; nothing to apply"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let log = KafkaLog::new(config.kafka_settings()?, Catalog::builtin())?;
    let reports = log.apply_topics(Catalog::builtin()).await?;
    let mut drifted = false;
    for r in &reports {
        let action = match r.action {
            TopicAction::Created => "created",
            TopicAction::Existing => "exists",
        };
        if r.drift.is_empty() {
            println!("{:<40} {action}, matches the catalog", r.kafka_topic);
        } else {
            drifted = true;
            for d in &r.drift {
                println!("{:<40} {action}, DRIFT: {d}", r.kafka_topic);
            }
        }
    }
    if drifted {
        eprintln!("error: some topics differ from the catalog; courier changed nothing on them");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run(config: &Config, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Apply => apply(config).await,
        Command::List { json } => {
            let log = config.open_log().context("opening the log")?;
            list(&*log, json).await
        }
    }
}

async fn list(log: &dyn EventLog, json: bool) -> anyhow::Result<ExitCode> {
    let mut rows = Vec::new();
    for t in Catalog::builtin().topics() {
        let mut ends = Vec::with_capacity(t.partitions as usize);
        for p in 0..log.partitions(&t.name)? {
            ends.push(log.watermarks(&t.name, p).await?.1);
        }
        rows.push((t, ends));
    }
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|(t, ends)| {
                serde_json::json!({
                    "name": t.name, "key": t.key, "partitions": t.partitions,
                    "cleanup": t.cleanup.as_str(), "retention_ms": t.retention_ms,
                    "end_offsets": ends, "records": ends.iter().sum::<u64>(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("backend: {}", log.backend());
    println!(
        "{:<26} {:<16} {:>10} {:<8} {:>14} {:>10}  end offsets",
        "TOPIC", "KEY", "PARTITIONS", "CLEANUP", "RETENTION", "RECORDS"
    );
    for (t, ends) in rows {
        let retention = if t.retention_ms < 0 {
            "forever".to_string()
        } else {
            format!("{}h", t.retention_ms / 3_600_000)
        };
        let ends_s: Vec<String> = ends
            .iter()
            .enumerate()
            .map(|(p, e)| format!("{p}:{e}"))
            .collect();
        println!(
            "{:<26} {:<16} {:>10} {:<8} {:>14} {:>10}  {}",
            t.name,
            t.key,
            t.partitions,
            t.cleanup.as_str(),
            retention,
            ends.iter().sum::<u64>(),
            ends_s.join(" ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
