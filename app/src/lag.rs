//! `courier lag`: how far each processor's consumer group is behind, per partition.
//!
//! It only reads, so on the embedded log it opens the log read-only when another
//! process (`courier up`, `courier run`) holds it, as `courier groups` does.

use std::process::ExitCode;

use anyhow::Context;

use crate::config::Config;
use crate::groups::open_for_inspection;
use crate::registry::Processor;

/// Arguments of `lag`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

pub async fn run(config: &Config, args: Args) -> anyhow::Result<ExitCode> {
    let log = open_for_inspection(config).context("opening the log")?.log;
    let mut rows = Vec::new();
    for p in Processor::all() {
        let group = p.live_group(config).await?;
        for topic in p.topics() {
            let committed = log.committed(&group, &topic).await?;
            for (partition, committed) in committed.into_iter().enumerate() {
                let (low, high) = log.watermarks(&topic, partition as u32).await?;
                // A group that never committed starts at the earliest record.
                let lag = high.saturating_sub(committed.unwrap_or(low));
                rows.push((
                    group.clone(),
                    topic.clone(),
                    partition,
                    committed,
                    high,
                    lag,
                ));
            }
        }
    }
    if args.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(g, t, p, c, h, l)| {
                serde_json::json!({"group": g, "topic": t, "partition": p, "committed": c, "end": h, "lag": l})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:<26} {:>9} {:>10} {:>10} {:>10}",
        "GROUP", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG"
    );
    for (g, t, p, c, h, l) in rows {
        let c = c.map_or_else(|| "-".to_string(), |c| c.to_string());
        println!("{g:<20} {t:<26} {p:>9} {c:>10} {h:>10} {l:>10}");
    }
    Ok(ExitCode::SUCCESS)
}
