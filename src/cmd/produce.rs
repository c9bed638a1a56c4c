//! `courier produce`: canonical JSON lines → the log, validated first.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use courier_pipeline::EventLog;
use courier_pipeline::producer::publish;
use courier_schemas::json;

/// Events appended per log call. Each call is atomic on the embedded log, and
/// progress is reported after each, so a killed producer has lost nothing it reported.
const CHUNK: usize = 5000;

/// Arguments of `produce`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// File of canonical JSON lines; `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    file: PathBuf,
    /// Publish the valid lines and report the invalid ones, instead of publishing
    /// nothing when any line is invalid.
    #[arg(long)]
    skip_invalid: bool,
}

pub async fn run(log: &dyn EventLog, args: Args) -> anyhow::Result<ExitCode> {
    let reader: Box<dyn BufRead> = if args.file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(&args.file)
            .with_context(|| format!("opening {}", args.file.display()))?;
        Box::new(std::io::BufReader::new(f))
    };
    let name = if args.file.as_os_str() == "-" {
        "stdin".to_string()
    } else {
        args.file.display().to_string()
    };

    // Validate everything before publishing anything.
    let mut events = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {name} at line {}", i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        match json::parse_line(&line) {
            Ok(e) => events.push(e),
            Err(e) => bad.push(format!("{name}:{}: {e}", i + 1)),
        }
    }
    for b in &bad {
        eprintln!("{b}");
    }
    if !bad.is_empty() && !args.skip_invalid {
        eprintln!(
            "error: {} invalid line(s); nothing was published (--skip-invalid publishes the valid ones)",
            bad.len()
        );
        return Ok(ExitCode::FAILURE);
    }

    let total = events.len();
    let bar = (std::io::stderr().is_terminal() && total > CHUNK).then(|| {
        let b = indicatif::ProgressBar::new(total as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} events {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut per_topic: BTreeMap<&str, usize> = BTreeMap::new();
    let mut written = 0;
    for chunk in events.chunks(CHUNK) {
        let published = publish(log, chunk).await.with_context(|| {
            format!(
                "publishing events {}..{} of {total}; the first {written} were written",
                written + 1,
                written + chunk.len()
            )
        })?;
        for p in &published {
            *per_topic.entry(p.topic).or_default() += 1;
        }
        written += chunk.len();
        match &bar {
            Some(b) => b.set_position(written as u64),
            // Machine-readable progress for pipes and tests: everything up to here is
            // durable.
            None if total > CHUNK => eprintln!("written {written}/{total}"),
            None => {}
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let topics: Vec<String> = per_topic.iter().map(|(t, n)| format!("{t}: {n}")).collect();
    println!(
        "published {written} event(s){}{}",
        if topics.is_empty() {
            String::new()
        } else {
            format!(" ({})", topics.join(", "))
        },
        if bad.is_empty() {
            String::new()
        } else {
            format!("; skipped {} invalid line(s)", bad.len())
        }
    );
    Ok(ExitCode::SUCCESS)
}
