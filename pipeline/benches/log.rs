//! Embedded log throughput against raw RocksDB, measured in the same run.
//!
//! `cargo bench -p courier-pipeline --bench log [-- --events N --rounds R]`
//!
//! Five measurements, interleaved round by round so machine noise hits them alike:
//! - raw put: the same framed record bytes under the same keys, `WriteBatch`es of
//!   the same size, into a RocksDB opened with the log's own options;
//! - courier append: `EmbeddedLog::append` of those records (partitioning, offsets,
//!   time index, partition state);
//! - raw iterate: a plain iterator over the same key range, touching every value;
//! - raw iterate + decode: the same, unframing and protobuf-decoding every event on
//!   one thread — the least any replay that hands out events must do;
//! - courier replay: `Replay` over the whole topic — merge, header check and
//!   protobuf decode of every event.
//!
//! Each read phase opens its database afresh and waits the same few seconds for
//! the recovery flush and compaction to finish before its clock starts: measured
//! without that pause, courier's replay ran against compaction of the just-reopened
//! log while the baselines mostly did not (0.65 instead of 0.82).
//!
//! Prints one line per measurement (median of the rounds) and the ratios.

use std::sync::Arc;
use std::time::{Duration, Instant};

use courier_pipeline::embedded::EmbeddedOptions;
use courier_pipeline::embedded::baseline::{Framed, RawLog, frame};
use courier_pipeline::producer::to_record;
use courier_pipeline::replay::{Replay, ReplaySpec};
use courier_pipeline::{EmbeddedLog, EventLog, Position, Record};
use courier_schemas::json;
use courier_topics::{CONVERSATIONS, Catalog};

// The courier binary's allocator (see src/main.rs): measure what it runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 1000;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Small, realistic events: messages in 10,000 conversations.
fn records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let line = format!(
                r#"{{"type":"message_sent","event_id":"e{i}","conversation_id":"c{}","message_id":"m{i}","sender_id":"u{}","text":"see you at the station at {} o'clock","at_ms":{}}}"#,
                i % 10_000,
                i % 7919,
                i % 24,
                1_764_000_000_000i64 + i as i64
            );
            to_record(&json::parse_line(&line).expect("valid event"))
        })
        .collect()
}

/// Lets a database just (re)opened finish its recovery flush and the compaction
/// that follows, so no read phase competes with background work the others did
/// not have. Every read phase gets the same pause after opening.
fn settle() {
    if !smoke() {
        std::thread::sleep(SETTLE);
    }
}

/// Long enough for 1,000,000 records' recovery flush and L0 compaction here.
const SETTLE: Duration = Duration::from_secs(3);

struct Sample {
    secs: f64,
    bytes: u64,
}

/// Opens the raw database in `dir` and, after the same pause every read phase
/// gets, iterates over it (see `RawLog::iterate`).
fn raw_iterate(dir: &std::path::Path, decode: bool) -> Sample {
    let raw = RawLog::open(dir).expect("open raw db");
    settle();
    let s = raw.iterate(decode).expect("iterate");
    Sample {
        secs: s.secs,
        bytes: s.bytes,
    }
}

async fn courier_append(log: &EmbeddedLog, recs: &[Record]) -> Sample {
    let bytes: u64 = recs.iter().map(|r| r.value.len() as u64).sum();
    let batches: Vec<Vec<Record>> = recs.chunks(BATCH).map(<[Record]>::to_vec).collect();
    let started = Instant::now();
    for b in batches {
        log.append(CONVERSATIONS, b).await.expect("append");
    }
    Sample {
        secs: started.elapsed().as_secs_f64(),
        bytes,
    }
}

async fn courier_replay(log: Arc<dyn EventLog>, n: usize) -> Sample {
    let started = Instant::now();
    let spec = ReplaySpec {
        topic: CONVERSATIONS.into(),
        from: Position::Earliest,
        to: None,
        conversation: None,
        user: None,
    };
    let mut r = Replay::start(log, spec).await.expect("replay");
    let mut count = 0;
    let mut bytes = 0u64;
    while let Some((rec, event)) = r.next().await.expect("next") {
        bytes += rec.value.len() as u64;
        count += usize::from(!event.event_id.is_empty());
    }
    assert_eq!(count, n, "replay returned every event");
    Sample {
        secs: started.elapsed().as_secs_f64(),
        bytes,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `cargo bench` passes `--bench`; `cargo test` (which also builds and runs bench
/// targets) does not: then this is a quick smoke run that the harness works.
fn smoke() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

fn main() {
    courier_pipeline::alloc::tune();
    let (n, rounds) = if smoke() {
        (5_000, 1)
    } else {
        (arg("--events", 1_000_000), arg("--rounds", 3))
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let recs = records(n);
    // The bytes courier stores for each record, under the keys it uses, so the raw
    // baseline writes exactly what the log writes.
    let framed: Vec<Framed> = recs
        .iter()
        .enumerate()
        .map(|(i, r)| frame(0, (i % 12) as u32, i as u64, r))
        .collect();
    let framed_bytes: u64 = framed.iter().map(|(_, v)| v.len() as u64).sum();
    let payload_bytes: u64 = recs.iter().map(|r| r.value.len() as u64).sum();
    println!(
        "events: {n}; event payload {:.0} B avg, stored record {:.0} B avg; batches of {BATCH}; {rounds} rounds",
        payload_bytes as f64 / n as f64,
        framed_bytes as f64 / n as f64
    );
    let (mut put, mut app, mut iter, mut rep) = (vec![], vec![], vec![], vec![]);
    let mut iter_dec = vec![];
    for round in 0..rounds {
        let raw_dir = tempfile::tempdir().expect("tempdir");
        let log_dir = tempfile::tempdir().expect("tempdir");
        let s = RawLog::open(raw_dir.path())
            .and_then(|raw| raw.put(framed.chunks(BATCH), false))
            .expect("raw put");
        put.push(s.secs);
        let log = EmbeddedLog::open(
            log_dir.path(),
            Catalog::builtin(),
            EmbeddedOptions::default(),
        )
        .expect("open log");
        let a = runtime.block_on(courier_append(&log, &recs));
        app.push(a.secs);
        let s = raw_iterate(raw_dir.path(), false);
        assert!(s.bytes == framed_bytes);
        iter.push(s.secs);
        let s = raw_iterate(raw_dir.path(), true);
        assert!(s.bytes == framed_bytes);
        iter_dec.push(s.secs);
        // Reopen the log as the baseline reopens its database, so both read the same
        // storage state (recovered from the WAL into level-0 files).
        drop(log);
        let log = EmbeddedLog::open(
            log_dir.path(),
            Catalog::builtin(),
            EmbeddedOptions::default(),
        )
        .expect("reopen log");
        settle();
        let r = runtime.block_on(courier_replay(Arc::new(log.clone()), n));
        rep.push(r.secs);
        eprintln!(
            "round {round}: raw put {:.2}s, append {:.2}s, raw iterate {:.2}s, raw iterate+decode {:.2}s, replay {:.2}s",
            put[round], app[round], iter[round], iter_dec[round], rep[round]
        );
        drop(log);
        std::thread::sleep(Duration::from_millis(200));
    }
    let report = |name: &str, secs: f64, bytes: u64| {
        println!(
            "{name:<34} {:>12.0} events/s {:>8.1} MB/s  ({secs:.3} s)",
            n as f64 / secs,
            bytes as f64 / secs / 1e6
        );
    };
    let (put, app, iter, rep) = (median(put), median(app), median(iter), median(rep));
    let iter_dec = median(iter_dec);
    report("baseline: raw RocksDB put", put, framed_bytes);
    report("courier: embedded log append", app, framed_bytes);
    report("baseline: raw RocksDB iterate", iter, framed_bytes);
    report("baseline: raw iterate + decode", iter_dec, framed_bytes);
    report("courier: replay with decoding", rep, framed_bytes);
    println!("ratio append/raw put:      {:.2}", put / app);
    println!("ratio replay/raw iterate:  {:.2}", iter / rep);
    println!("ratio replay/raw iterate+decode: {:.2}", iter_dec / rep);
}
