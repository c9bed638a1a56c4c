//! `courier replay`: a bounded range of a topic as canonical JSON lines or an Avro
//! object container file. Reads outside every consumer group.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use courier_pipeline::replay::{End, Replay, ReplaySpec};
use courier_pipeline::{EventLog, Position};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Output formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// Canonical JSON, one event per line.
    Json,
    /// Avro object container file (schema: courier.v1.Event).
    Avro,
}

type Out = std::io::BufWriter<Box<dyn Write>>;

/// Where replayed events go, by format.
enum Output {
    Json(Out),
    // Boxed: the Avro writer is large and there is exactly one Output per replay.
    Avro(Box<apache_avro::Writer<'static, Out>>),
}

/// Arguments of `replay`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Topic (catalog name, e.g. courier.conversations.v1).
    topic: String,
    /// earliest | latest | OFFSET | RFC3339 time.
    #[arg(long, default_value = "earliest")]
    from: String,
    /// Exclusive end: OFFSET | RFC3339 time. Default: the end of the log now.
    #[arg(long)]
    to: Option<String>,
    /// Only this conversation's events.
    #[arg(long, value_name = "ID")]
    conversation: Option<String>,
    /// Only events that name this user (sender, member, actor, recipient...).
    #[arg(long, value_name = "ID")]
    user: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
    /// Write here instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

fn parse_time(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

fn parse_from(s: &str) -> anyhow::Result<Position> {
    Ok(match s {
        "earliest" => Position::Earliest,
        "latest" => Position::Latest,
        _ => match (s.parse::<u64>(), parse_time(s)) {
            (Ok(o), _) => Position::Offset(o),
            (_, Some(ts)) => Position::Timestamp(ts),
            _ => bail!(
                "--from {s:?}: expected earliest, latest, an offset or an RFC 3339 time (2025-11-24T10:00:00Z)"
            ),
        },
    })
}

fn parse_to(s: &str) -> anyhow::Result<End> {
    match (s.parse::<u64>(), parse_time(s)) {
        (Ok(o), _) => Ok(End::Offset(o)),
        (_, Some(ts)) => Ok(End::Timestamp(ts)),
        _ => bail!("--to {s:?}: expected an offset or an RFC 3339 time (2025-11-24T10:00:00Z)"),
    }
}

pub async fn run(log: Arc<dyn EventLog>, args: Args) -> anyhow::Result<ExitCode> {
    let spec = ReplaySpec {
        topic: args.topic.clone(),
        from: parse_from(&args.from)?,
        to: args.to.as_deref().map(parse_to).transpose()?,
        conversation: args.conversation.clone(),
        user: args.user.clone(),
    };
    let out: Box<dyn Write> = match &args.out {
        Some(p) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => {
            if matches!(args.format, Format::Avro) && std::io::stdout().is_terminal() {
                bail!("Avro is binary: use --out FILE or redirect standard output");
            }
            Box::new(std::io::stdout().lock())
        }
    };
    let out = std::io::BufWriter::with_capacity(1 << 16, out);
    let mut replay = Replay::start(log, spec).await?;
    let bar = (std::io::stderr().is_terminal() && replay.total() > 50_000).then(|| {
        let b = indicatif::ProgressBar::new(replay.total());
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} records {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut output = match args.format {
        Format::Json => Output::Json(out),
        Format::Avro => Output::Avro(Box::new(
            apache_avro::Writer::new(courier_schemas::avro::schema(), out)
                .context("starting the Avro container file")?,
        )),
    };
    let mut n = 0u64;
    while let Some((_, event)) = replay.next().await? {
        match &mut output {
            Output::Json(w) => {
                w.write_all(courier_schemas::json::to_line(&event).as_bytes())?;
                w.write_all(b"\n")?;
            }
            Output::Avro(w) => {
                w.append_value(courier_schemas::avro::to_value(&event))
                    .with_context(|| format!("writing event {} as Avro", event.event_id))?;
            }
        }
        n += 1;
        if n.is_multiple_of(4096)
            && let Some(b) = &bar
        {
            b.set_position(replay.scanned());
        }
    }
    let mut out = match output {
        Output::Json(w) => w,
        Output::Avro(w) => w
            .into_inner()
            .context("finishing the Avro container file")?,
    };
    out.flush()?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if args.out.is_some() {
        eprintln!("replayed {n} event(s) of {}", args.topic);
    }
    Ok(ExitCode::SUCCESS)
}
