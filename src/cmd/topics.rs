//! `courier topics`: the catalog, with where each partition ends now.

use std::process::ExitCode;

use courier_pipeline::EventLog;
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
}

pub async fn run(log: &dyn EventLog, command: Command) -> anyhow::Result<ExitCode> {
    let Command::List { json } = command;
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
