//! courier's produce, consume and replay paths on a real Kafka broker, beside Kafka's
//! own perf tools and kcat on the same broker in the same run.
//!
//! `compose/local/up.sh kafka && cargo bench -p courier-pipeline --bench kafka [-- --records N --rounds R]`
//!
//! - courier produce: `producer::publish` of message events in chunks of 5,000 (what
//!   `courier produce` does), to a fresh namespaced topic of 12 partitions;
//! - Kafka's `ProducerPerformance` (`kafka-producer-perf-test`) with the same record
//!   size, `acks=all`, idempotence, lz4, to a 12-partition topic;
//! - courier consume: a group member polling batches of 1,000 until it has read all;
//! - Kafka's `ConsumerPerformance` over the perf tool's topic;
//! - courier replay: the `courier replay --format json` path (merge, header check,
//!   decode, canonical JSON) into a sink, against `kcat -C -e` dumping the same
//!   topic raw.
//!
//! Each pair runs back to back `--rounds` times (default 3); per-round ratios and
//! the ratio of the medians are printed; the namespace's topics are deleted at the
//! end.

use std::io::Write as _;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use courier_pipeline::kafka::perf;
use courier_pipeline::producer::{publish, to_record};
use courier_pipeline::replay::{Replay, ReplaySpec};
use courier_pipeline::{ConsumerEvent, EventLog, KafkaLog, Position, testing};
use courier_schemas::json;
use courier_topics::{CONVERSATIONS, Catalog};

// The courier binary's allocator (see src/main.rs): measure what it runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn events(n: usize) -> Vec<courier_schemas::Event> {
    (0..n)
        .map(|i| {
            json::parse_line(&format!(
                r#"{{"type":"message_sent","event_id":"e{i}","conversation_id":"c{}","message_id":"m{i}","sender_id":"u{}","text":"see you at the station at {} o'clock","at_ms":{}}}"#,
                i % 10_000,
                i % 7919,
                i % 24,
                1_764_000_000_000i64 + i as i64
            ))
            .expect("valid event")
        })
        .collect()
}

/// Rates of courier and of the reference tool, one pair per round.
#[derive(Default)]
struct Pairs {
    courier: Vec<f64>,
    reference: Vec<f64>,
}

impl Pairs {
    fn push(&mut self, what: &str, round: usize, courier: f64, reference: f64) {
        println!(
            "round {round} {what}: courier {courier:.0}/s, reference {reference:.0}/s, ratio {:.2}",
            courier / reference
        );
        self.courier.push(courier);
        self.reference.push(reference);
    }

    fn report(&self, courier: &str, reference: &str) {
        let (c, r) = (median(&self.courier), median(&self.reference));
        println!("{courier:<44} {c:>12.0} records/s");
        println!("{reference:<44} {r:>12.0} records/s");
        println!("{:<44} {:>12.2}", "ratio (of medians)", c / r);
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `cargo bench` passes `--bench`; `cargo test` (which also builds and runs bench
/// targets) does not: then this is a quick smoke run that the harness works, skipped
/// like every real-server test when no broker answers (`testing::KAFKA`).
fn smoke() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

fn main() {
    courier_pipeline::alloc::tune();
    let brokers = testing::KAFKA.address();
    let n = if smoke() {
        2_000
    } else {
        arg("--records", 500_000)
    };
    if smoke() && testing::KAFKA.reachable().is_none() {
        return;
    }
    let ns = format!("bench-{}", std::process::id());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Logged in as compose/local's courier.env says (none for a plaintext broker).
    let settings = testing::kafka_settings(&brokers);
    let tools = perf::Tools::new(&settings).expect("Kafka's tools");
    let log = rt
        .block_on(KafkaLog::connect(
            settings.clone().with_namespace(ns.clone()),
            Catalog::builtin(),
        ))
        .expect("connect to Kafka (compose/local/up.sh kafka)");
    let log: Arc<dyn EventLog> = Arc::new(log);
    let evs = events(n);
    let size = evs.iter().map(|e| to_record(e).value.len()).sum::<usize>() / n;
    println!(
        "records: {n}; courier event payload {size} B avg (the perf tools use --record-size {size}); broker {brokers}"
    );

    let rounds = if smoke() { 1 } else { arg("--rounds", 3) };
    let perf_topic = format!("{ns}.perf");
    tools
        .create_topic(&perf_topic, 12)
        .expect("create the perf tools' topic");
    // Each pair runs back to back, `rounds` times: the cores are shared with the
    // broker and the JVM, and a single pair swings by 2-3x between runs; medians of
    // alternating pairs are what the ratios use.
    let mut produce = Pairs::default();
    let mut consume = Pairs::default();
    let mut replay = Pairs::default();
    for round in 0..rounds {
        // Each round's events are later than the last round's, as in a real
        // topic: the replay merges partitions by event time, and repeating one
        // round's times would make it drain one partition's rounds at a time
        // (one reader working instead of twelve). Made before the clock starts:
        // the perf tool's records are ready-made too.
        let shift = (round * n) as i64;
        let round_evs: Vec<_> = evs
            .iter()
            .map(|e| courier_schemas::Event {
                at_ms: e.at_ms + shift,
                ..e.clone()
            })
            .collect();
        // courier produce
        let started = Instant::now();
        rt.block_on(async {
            for chunk in round_evs.chunks(5000) {
                publish(&*log, chunk).await.expect("publish");
            }
        });
        let courier = n as f64 / started.elapsed().as_secs_f64();
        // Kafka's producer perf tool, same size, same durability and compression.
        let reference = tools
            .produce(&perf_topic, n as u64, size)
            .expect("producer perf tool");
        produce.push("produce", round, courier, reference);
    }
    for round in 0..rounds {
        // courier consume: one member of a fresh group reading n records. The timer
        // stops at the last record, before leaving the group (~100 ms), as the perf
        // tool's does.
        let (courier, c) = rt.block_on(async {
            let started = Instant::now();
            let mut c = log
                .subscribe(&format!("bench-{round}"), &[CONVERSATIONS.to_string()])
                .await
                .expect("subscribe");
            let mut got = 0;
            while got < n {
                if let ConsumerEvent::Records(r) = c
                    .poll(1000, Duration::from_millis(500))
                    .await
                    .expect("poll")
                {
                    got += r.len();
                }
            }
            (n as f64 / started.elapsed().as_secs_f64(), c)
        });
        rt.block_on(c.close()).expect("close");
        let reference = tools
            .consume(&perf_topic, n as u64)
            .expect("consumer perf tool");
        consume.push("consume", round, courier, reference);
    }
    // courier replay --format json vs kcat -C -e of the same topic (all rounds'
    // records: both read everything).
    let total = n * rounds;
    // kcat is librdkafka too: the same properties, from a private file (they hold
    // the password).
    let mut kcat_config = tempfile::NamedTempFile::new().expect("kcat config");
    for (k, v) in &settings.properties {
        writeln!(kcat_config, "{k}={v}").expect("kcat config");
    }
    for round in 0..rounds {
        let started = Instant::now();
        let replayed = rt.block_on(async {
            let spec = ReplaySpec {
                topic: CONVERSATIONS.into(),
                from: Position::Earliest,
                to: None,
                conversation: None,
                user: None,
            };
            let mut r = Replay::start(log.clone(), spec).await.expect("replay");
            let mut sink = std::io::BufWriter::new(std::io::sink());
            let mut k = 0;
            while let Some((_, e)) = r.next().await.expect("next") {
                sink.write_all(json::to_line(&e).as_bytes()).expect("write");
                sink.write_all(b"\n").expect("write");
                k += 1;
            }
            k
        });
        let courier = replayed as f64 / started.elapsed().as_secs_f64();
        assert_eq!(replayed, total);
        let started = Instant::now();
        let out = Command::new("kcat")
            .arg("-F")
            .arg(kcat_config.path())
            .args([
                "-C",
                "-e",
                "-q",
                "-b",
                &brokers,
                "-t",
                &format!("{ns}.{CONVERSATIONS}"),
                "-f",
                "%s\n",
            ])
            .output()
            .expect("run kcat (apt-get install kcat)");
        let kcat = total as f64 / started.elapsed().as_secs_f64();
        assert!(out.status.success(), "kcat failed");
        replay.push("replay", round, courier, kcat);
    }

    println!("medians of {rounds} round(s), records/s:");
    produce.report(
        "courier produce (publish, chunks of 5,000)",
        "kafka-producer-perf-test (same size)",
    );
    consume.report("courier consume (group member)", "kafka-consumer-perf-test");
    replay.report("courier replay --format json path", "kcat -C -e (raw)");

    let kafka = KafkaLog::new(settings.with_namespace(ns), Catalog::builtin()).expect("log");
    rt.block_on(kafka.delete_namespace())
        .expect("delete namespace topics");
    tools
        .delete_topic(&perf_topic)
        .expect("delete the perf tools' topic");
}
