//! `courier-chaos`: runs seeded fault schedules against the `courier` binary and
//! compares every view with the reference fold (`./dev chaos` builds both and
//! runs it). Schedule `i` of `--seed N --schedules M` is seed `N + i`; a failure
//! prints that seed and its schedule, and `--seed N+i --schedules 1` replays it.

mod courier;
mod http;
mod provider;
mod run;
mod servers;
mod traffic;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use courier_chaos::schedule::{Backend, Faults, Schedule};

/// Seeded fault schedules against courier, checked against a reference fold of
/// docs/DESIGN.md.
#[derive(Debug, Parser)]
#[command(name = "courier-chaos")]
struct Args {
    /// Where the log and the views live: `embedded` (process kills) or
    /// `kafka-cassandra` (process kills, two inbox instances in a group, server
    /// kills and restarts, on a Kafka broker and a Cassandra node of the
    /// harness's own, started with compose/local's scripts).
    #[arg(long, default_value = "embedded", value_parser = ["embedded", "kafka-cassandra"])]
    backend: String,
    /// compose/local, whose up.sh and down.sh start and stop the servers of
    /// Kafka + Cassandra schedules.
    #[arg(long, value_name = "DIR", default_value = "compose/local")]
    scripts: PathBuf,
    /// The first schedule's seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many schedules (seeds N, N+1, …).
    #[arg(long, default_value_t = 1)]
    schedules: u64,
    /// The `courier` binary (default: beside this one, i.e. target/debug/courier).
    #[arg(long, value_name = "PATH")]
    courier: Option<PathBuf>,
    /// Where each schedule gets its directory (failed ones are kept there).
    #[arg(long, value_name = "DIR", default_value = "target/chaos")]
    work: PathBuf,
    /// Keep every schedule's directory, not only failed ones.
    #[arg(long)]
    keep: bool,
    /// Print the schedules and stop.
    #[arg(long)]
    plan: bool,
    /// Report differences that are a known, open courier bug (by name; see
    /// RELIABILITY.md) without failing. None is open now.
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    allow: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let backend = match args.backend.as_str() {
        "kafka-cassandra" => Backend::KafkaCassandra,
        _ => Backend::Embedded,
    };
    let schedules: Vec<Schedule> = (0..args.schedules)
        .map(|i| Schedule::generate(args.seed + i, backend))
        .collect();
    if args.plan {
        for s in &schedules {
            print!("{s}");
        }
        return ExitCode::SUCCESS;
    }
    let exe = std::env::current_exe().expect("the harness's own path");
    let bin = args.courier.unwrap_or_else(|| run::default_bin(&exe));
    if !bin.exists() {
        eprintln!(
            "error: {} does not exist (cargo build first)",
            bin.display()
        );
        return ExitCode::FAILURE;
    }
    // Runs use a copy: others rebuilding target/debug/courier mid-batch must
    // neither break a schedule nor mix two builds in one batch.
    if let Err(e) = std::fs::create_dir_all(&args.work) {
        eprintln!("error: {}: {e}", args.work.display());
        return ExitCode::FAILURE;
    }
    let copy = args.work.join(format!("courier-{}", std::process::id()));
    if let Err(e) = std::fs::copy(&bin, &copy) {
        eprintln!(
            "error: copying {} to {}: {e}",
            bin.display(),
            copy.display()
        );
        return ExitCode::FAILURE;
    }
    let servers = if backend == Backend::KafkaCassandra {
        let state = args.work.join("servers");
        eprintln!(
            "starting the schedules' own Kafka and Cassandra under {}",
            state.display()
        );
        match servers::Servers::start(&args.scripts, &state) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("error: starting the servers: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let opts = run::Options {
        bin: copy.clone(),
        keep: args.keep,
        work: args.work,
        servers,
    };
    let started = Instant::now();
    let mut faults = Faults::default();
    let (mut failed, mut extra, mut skipped, mut pushes) = (Vec::new(), 0, 0, 0);
    let (mut events, mut dups, mut invalid, mut requests, mut retried, mut republished) =
        (0, 0, 0, 0, 0, 0);
    let (mut queries, mut rows) = (0, 0);
    for name in &args.allow {
        if !courier_chaos::check::KNOWN_ISSUES
            .iter()
            .any(|k| k.name == name)
        {
            eprintln!("error: --allow {name}: no known issue has that name");
            return ExitCode::FAILURE;
        }
    }
    let mut known: Vec<String> = Vec::new();
    for s in &schedules {
        let mut r = run::run(s, &opts);
        // Known, allowed issues are reported, not failures.
        r.differences
            .retain(|d| match courier_chaos::check::known_issue(d) {
                Some(k) if args.allow.iter().any(|a| a == k.name) => {
                    known.push(format!("seed {}: {}: {d}", s.seed, k.name));
                    false
                }
                _ => true,
            });
        faults.add(&r.faults);
        extra += r.extra_pushes;
        skipped += r.skipped_kills;
        pushes += r.pushes;
        events += r.events;
        dups += r.duplicates;
        invalid += r.invalid;
        requests += r.http_requests;
        retried += r.http_retried;
        republished += r.republished_sends;
        queries += r.queries;
        rows += r.rows;
        let f = r.faults;
        println!(
            "seed {}: {} in {:.0} s — kills: processor {} ({} of two), push {}, up {}, rebuild {}, kafka {}, cassandra {}; provider 500 ×{}, 429 ×{}, timeout ×{}; pushes {} (+{} extra)",
            s.seed,
            if r.differences.is_empty() {
                "ok".to_string()
            } else {
                format!("{} DIFFERENCE(S)", r.differences.len())
            },
            r.duration.as_secs_f64(),
            f.processor_kills,
            f.paired_kills,
            f.push_kills,
            f.up_kills,
            f.rebuild_kills,
            f.kafka_kills,
            f.cassandra_kills,
            f.provider_500,
            f.provider_429,
            f.provider_timeouts,
            r.pushes,
            r.extra_pushes
        );
        if !r.differences.is_empty() {
            println!("\n{s}");
            for d in r.differences.iter().take(30) {
                println!("  - {d}");
            }
            if r.differences.len() > 30 {
                println!("  … and {} more", r.differences.len() - 30);
            }
            if let Some(dir) = &r.dir {
                println!("  its logs and data: {}", dir.display());
            }
            println!(
                "  replay: ./dev chaos --backend {} --seed {} --schedules 1\n",
                s.backend, s.seed
            );
            failed.push(s.seed);
        } else if let Some(dir) = &r.dir {
            println!("  kept: {}", dir.display());
        }
    }
    let _ = std::fs::remove_file(&copy);
    let secs = started.elapsed().as_secs_f64();
    let n = schedules.len() as f64;
    println!(
        "\n== chaos on {backend}: {} schedule(s), seeds {}..={}, in {secs:.0} s ({:.0} s per schedule)",
        schedules.len(),
        args.seed,
        args.seed + args.schedules.saturating_sub(1),
        secs / n.max(1.0)
    );
    println!(
        "   faults injected: processor SIGKILL {} ({} of them one of two instances), push processor SIGKILL {}, courier up SIGKILL {}, rebuild SIGKILL {}, Kafka kill -9 + restart {}, Cassandra kill -9 + restart {}, provider 500 ×{}, 429 ×{}, timeout ×{} ({skipped} fault(s) skipped: the process finished first)",
        faults.processor_kills,
        faults.paired_kills,
        faults.push_kills,
        faults.up_kills,
        faults.rebuild_kills,
        faults.kafka_kills,
        faults.cassandra_kills,
        faults.provider_500,
        faults.provider_429,
        faults.provider_timeouts
    );
    println!(
        "   traffic: {events} events produced ({dups} duplicates, {invalid} invalid mixed in), {requests} HTTP requests ({retried} retried after a kill or a 503; {republished} send(s) published twice)"
    );
    println!(
        "   compared: {queries} view queries holding {rows} rows (inbox rows, history entries, search hits)"
    );
    println!(
        "   differences: {} schedule(s) {failed:?}; pushes delivered: {pushes}, extra deliveries after kills: {extra}",
        failed.len()
    );
    if !known.is_empty() {
        println!("   known issues seen (allowed by --allow; RELIABILITY.md):");
        for k in &known {
            println!("     {k}");
        }
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
