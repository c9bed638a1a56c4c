//! `courier produce`: canonical JSON lines → the log, validated first.
//!
//! Every line is checked before anything is published: it parses, and its record
//! fits the log's limit (`MAX_RECORD_BYTES`, the same on every backend). A file
//! that breaks either publishes nothing (unless `--skip-invalid`).
//!
//! A publish that still fails midway (a broker down, a partition without a
//! leader) reports exactly what reached the log, per topic and partition, and a
//! journal of the published lines, kept under the data directory and named by the
//! file's content and the log it went to, lets the same command run again
//! publish only the rest. The journal is written after each acknowledged chunk and
//! removed once the whole file is in; a producer killed mid-chunk may publish
//! that chunk again on its rerun: duplicates in the log, which the views ignore
//! (an event's `event_id` and content make it a redelivery).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use courier_pipeline::producer::{publish, to_record, topic_for};
use courier_pipeline::{EventLog, LogError};
use courier_schemas::{Event, json};

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

/// Where `produce` keeps its journals, and which log it publishes to (so a
/// journal never applies to another log).
pub struct Journals {
    /// The directory of journals.
    pub dir: PathBuf,
    /// Names the log: its backend and where it is.
    pub log_identity: String,
}

/// What one run has published so far, per topic and partition: count, first and
/// last offset.
#[derive(Default)]
struct Tally(BTreeMap<(&'static str, u32), (usize, u64, u64)>);

impl Tally {
    fn add(&mut self, topic: &'static str, partition: u32, offset: u64) {
        let e = self
            .0
            .entry((topic, partition))
            .or_insert((0, offset, offset));
        e.0 += 1;
        e.1 = e.1.min(offset);
        e.2 = e.2.max(offset);
    }

    fn describe(&self) -> String {
        if self.0.is_empty() {
            return "nothing".to_string();
        }
        self.0
            .iter()
            .map(|((t, p), (n, lo, hi))| format!("{t}[{p}]: {n} event(s) at offsets {lo}..={hi}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

pub async fn run(log: &dyn EventLog, journals: Journals, args: Args) -> anyhow::Result<ExitCode> {
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

    // Validate everything before publishing anything. Each event keeps its line
    // number: the journal and the failure report speak of lines.
    let mut events: Vec<(usize, Event)> = Vec::new();
    let mut bad = Vec::new();
    let mut content = Fnv::new();
    content.write(journals.log_identity.as_bytes());
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {name} at line {}", i + 1))?;
        content.write(line.as_bytes());
        if line.trim().is_empty() {
            continue;
        }
        match json::parse_line(&line) {
            Ok(e) => match to_record(&e).check_size() {
                Ok(()) => events.push((i + 1, e)),
                Err(err) => bad.push(format!("{name}:{}: event `{}`: {err}", i + 1, e.event_id)),
            },
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

    let journal = journals.dir.join(format!("{:016x}.published", content.0));
    let earlier = read_journal(&journal)?;
    if !earlier.is_empty() {
        eprintln!(
            "{} event(s) of this file were published by an earlier run that failed ({}); publishing the other {}",
            earlier.len(),
            journal.display(),
            events.iter().filter(|(l, _)| !earlier.contains(l)).count()
        );
        events.retain(|(l, _)| !earlier.contains(l));
    }
    // Line numbers beside the events, so each chunk is published as it stands
    // (no copy of its events).
    let (line_numbers, events): (Vec<usize>, Vec<Event>) = events.into_iter().unzip();

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
    let mut tally = Tally::default();
    let mut written = 0;
    for (batch, line_of) in events.chunks(CHUNK).zip(line_numbers.chunks(CHUNK)) {
        let (landed, failure) = match publish(log, batch).await {
            Ok(published) => (
                published
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (i, p.topic, p.at))
                    .collect(),
                None,
            ),
            Err(LogError::PartlyAppended {
                acknowledged,
                cause,
                ..
            }) => (
                acknowledged
                    .into_iter()
                    .map(|(i, at)| (i, topic_of(&batch[i]), at))
                    .collect(),
                Some(*cause),
            ),
            Err(e) => (Vec::new(), Some(e)),
        };
        let lines: Vec<usize> = landed.iter().map(|(i, _, _)| line_of[*i]).collect();
        for (_, topic, at) in &landed {
            *per_topic.entry(topic).or_default() += 1;
            tally.add(topic, at.partition, at.offset);
        }
        written += landed.len();
        let journaled = append_journal(&journal, &lines);
        if let Some(cause) = failure {
            if let Some(b) = &bar {
                b.abandon();
            }
            let done: BTreeSet<usize> = lines.iter().copied().collect();
            // Every chunk before this one was published whole: the rest is this
            // chunk's unacknowledged lines and every later chunk.
            let missing: Vec<usize> = line_numbers[written - landed.len()..]
                .iter()
                .copied()
                .filter(|l| !done.contains(l))
                .collect();
            let shown: Vec<String> = missing.iter().take(10).map(|l| l.to_string()).collect();
            let rerun = match journaled {
                Ok(()) => format!(
                    "run the same command again to publish only the rest (the lines already in the log are kept in {})",
                    journal.display()
                ),
                Err(e) => format!(
                    "the journal of what was published could not be written ({e}): running the file again publishes it all again"
                ),
            };
            anyhow::bail!(
                "publishing failed: {cause}\npublished by this run: {} ({written} event(s))\nnot published: {} event(s), lines {}{}\n{rerun}",
                tally.describe(),
                missing.len(),
                shown.join(", "),
                if missing.len() > shown.len() {
                    ", …"
                } else {
                    ""
                },
            );
        }
        journaled.with_context(|| format!("recording progress in {}", journal.display()))?;
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
    // Everything is in: a later run of the same file is a new publish.
    match std::fs::remove_file(&journal) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => eprintln!("warning: removing {}: {e}", journal.display()),
    }
    let topics: Vec<String> = per_topic.iter().map(|(t, n)| format!("{t}: {n}")).collect();
    println!(
        "published {written} event(s){}{}{}",
        if topics.is_empty() {
            String::new()
        } else {
            format!(" ({})", topics.join(", "))
        },
        if earlier.is_empty() {
            String::new()
        } else {
            format!("; {} published by an earlier run", earlier.len())
        },
        if bad.is_empty() {
            String::new()
        } else {
            format!("; skipped {} invalid line(s)", bad.len())
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn topic_of(e: &Event) -> &'static str {
    // Every event here passed `publish`'s check for a body.
    e.kind().map(topic_for).unwrap_or("?")
}

/// The line numbers a journal holds (none when there is no journal).
fn read_journal(path: &Path) -> anyhow::Result<BTreeSet<usize>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    // A line torn by a crash mid-write is not a number, and its chunk is
    // published again: duplicates, never a gap.
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// Appends line numbers to a journal, durably.
fn append_journal(path: &Path, lines: &[usize]) -> std::io::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut buf = String::with_capacity(lines.len() * 8);
    for l in lines {
        buf.push_str(&l.to_string());
        buf.push('\n');
    }
    f.write_all(buf.as_bytes())?;
    f.sync_data()
}

/// FNV-1a, 64 bits: stable across builds and processes, unlike `DefaultHasher`,
/// so a rerun finds the journal of the run before.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes.iter().chain(&[0xff]) {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}
