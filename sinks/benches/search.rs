//! Search view benchmark: indexing throughput through the whole pipeline beside raw
//! tantivy indexing of the same documents, in the same run, then query latency.
//!
//! `cargo bench -p courier-sinks --bench search -- --bench [--messages N]
//! [--conversations C] [--batch B] [--queries Q]`
//!
//! Without `--bench` (as under `cargo test`) it does a tiny smoke run.
//! - raw tantivy: the very documents the pipeline indexes (same schema, one index
//!   per partition, the same writer memory and threads), added and committed once
//!   per shard — the ceiling;
//! - pipeline: the events in an embedded log, `courier run search
//!   --until-caught-up`'s code path (runner → fold → documents → one commit per
//!   shard per batch, with conversation states and the commit payload);
//! - queries: `SearchShards::search` over the pipeline's shards, single words of
//!   every frequency and two-word queries, for users who see messages; p50/p99.

// The courier binary's allocator (see src/main.rs): measure what it runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::Instant;

use courier_pipeline::config::RunnerConfig;
use courier_pipeline::runner::{RunOptions, run};
use courier_pipeline::shutdown::Shutdown;
use courier_pipeline::{EmbeddedLog, EventLog, producer};
use courier_processors::inbox::Position;
use courier_processors::search::{SearchDoc, SearchProcessor};
use courier_schemas::json;
use courier_sinks::search::{SearchShards, TantivySearchIndex, baseline};
use courier_topics::{CONVERSATIONS, Catalog, partition_for_key};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A deterministic LCG.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    /// Roughly Zipf-distributed word ranks: a few words are everywhere, most rare.
    fn word(&mut self, vocabulary: usize) -> usize {
        let u = (self.next() % 1_000_000) as f64 / 1_000_000.0;
        ((vocabulary as f64).powf(u) as usize).saturating_sub(1)
    }
}

fn word(rank: usize) -> String {
    format!("w{rank}x")
}

const USERS: usize = 20_000;
const VOCABULARY: usize = 50_000;

struct Conversation {
    id: String,
    members: Vec<String>,
}

fn conversations(n: usize) -> Vec<Conversation> {
    (0..n)
        .map(|c| Conversation {
            id: format!("c{c}"),
            members: (0..4)
                .map(|j| format!("u{}", (c * 7 + j * 13) % USERS))
                .collect(),
        })
        .collect()
}

/// The messages: (conversation index, message id, sender, text).
fn messages(n: usize, convs: &[Conversation]) -> Vec<(usize, String, String, String)> {
    let mut rng = Rng(42);
    (0..n)
        .map(|i| {
            let c = i % convs.len();
            let words: Vec<String> = (0..8).map(|_| word(rng.word(VOCABULARY))).collect();
            let sender = convs[c].members[i % 4].clone();
            (c, format!("m{i}"), sender, words.join(" "))
        })
        .collect()
}

/// CPU seconds this process has used so far, all threads (Linux): on a shared
/// machine the wall time of a phase depends on the neighbours, its CPU time much
/// less, so both are printed.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat(5): 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    courier_pipeline::alloc::tune();
    let full = std::env::args().any(|a| a == "--bench");
    let n = arg("--messages", if full { 1_000_000 } else { 2_000 });
    let nc = arg("--conversations", if full { 100_000 } else { 200 });
    let batch = arg("--batch", 1000);
    let nq = arg("--queries", if full { 2_000 } else { 50 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let partitions = Catalog::builtin()
        .get(CONVERSATIONS)
        .expect("catalog has conversations")
        .partitions;

    let convs = conversations(nc);
    let msgs = messages(n, &convs);

    // The same documents the pipeline makes (visibility: the members at the send).
    let docs: Vec<(u32, SearchDoc)> = msgs
        .iter()
        .map(|(c, mid, sender, text)| {
            let conv = &convs[*c];
            (
                partition_for_key(conv.id.as_bytes(), partitions),
                SearchDoc {
                    conversation_id: conv.id.clone(),
                    message_id: mid.clone(),
                    sender_id: sender.clone(),
                    text: text.clone(),
                    sent_at_ms: 1_764_000_000_000,
                    visible_to: conv.members.clone(),
                    position: Position::new(0, 0),
                },
            )
        })
        .collect();
    let cpu = cpu_secs();
    let raw_secs = baseline::index(&tmp.path().join("raw"), &docs, partitions)
        .unwrap()
        .as_secs_f64();
    let raw_cpu = cpu_secs() - cpu;
    drop(docs);

    // The events, in an embedded log (not timed).
    let log: Arc<dyn EventLog> = Arc::new(
        EmbeddedLog::open(
            &tmp.path().join("log"),
            Catalog::builtin(),
            Default::default(),
        )
        .unwrap(),
    );
    let mut events = Vec::with_capacity(nc + n);
    for conv in &convs {
        let members: Vec<String> = conv.members.iter().map(|m| format!("\"{m}\"")).collect();
        events.push(
            json::parse_line(&format!(
                r#"{{"type":"conversation_created","event_id":"cc-{}","conversation_id":"{}","kind":"group","creator_id":"{}","member_ids":[{}],"title":"","at_ms":1764000000000}}"#,
                conv.id,
                conv.id,
                conv.members[0],
                members.join(",")
            ))
            .unwrap(),
        );
    }
    for (c, mid, sender, text) in &msgs {
        events.push(
            json::parse_line(&format!(
                r#"{{"type":"message_sent","event_id":"e-{mid}","conversation_id":"{}","message_id":"{mid}","sender_id":"{sender}","text":"{text}","at_ms":1764000000000}}"#,
                convs[*c].id
            ))
            .unwrap(),
        );
    }
    rt.block_on(async {
        for chunk in events.chunks(50_000) {
            producer::publish(&*log, chunk).await.unwrap();
        }
    });
    drop(events);

    let root = tmp.path().join("pipeline");
    let cpu = cpu_secs();
    let started = Instant::now();
    let stats = rt.block_on(async {
        let mut p = SearchProcessor::new(TantivySearchIndex::new(&root), log.clone());
        let opts = RunOptions {
            processor: "search-bench".into(),
            group: "bench".into(),
            topics: vec![CONVERSATIONS.into()],
            until_caught_up: true,
            runner: RunnerConfig {
                max_batch: batch,
                poll_timeout_ms: 50,
                max_attempts: 3,
            },
        };
        run(log.clone(), &mut p, opts, Shutdown::never())
            .await
            .unwrap()
    });
    let pipeline_secs = started.elapsed().as_secs_f64();
    let pipeline_cpu = cpu_secs() - cpu;
    assert_eq!(stats.records as usize, nc + n, "every record applied");

    // Queries over the pipeline's shards.
    let shards = SearchShards::open(&root).unwrap();
    let mut rng = Rng(7);
    let mut lat = Vec::with_capacity(nq);
    let mut total_hits = 0usize;
    for i in 0..nq {
        let conv = &convs[(rng.next() as usize) % convs.len()];
        let user = &conv.members[(rng.next() as usize) % 4];
        let q = if i % 4 == 3 {
            format!("{} {}", word(rng.word(200)), word(rng.word(200)))
        } else {
            word(rng.word(VOCABULARY))
        };
        let t = Instant::now();
        let hits = shards.search(user, &q, 20, None).unwrap();
        lat.push(t.elapsed().as_secs_f64());
        total_hits += hits.len();
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] * 1e3;

    let rate = |secs: f64| n as f64 / secs;
    println!(
        "search indexing, {n} messages in {nc} conversations, {partitions} shards, batch {batch}:"
    );
    println!(
        "  raw tantivy: {:>10.0} messages/s ({raw_secs:.2} s, {raw_cpu:.2} s of CPU)",
        rate(raw_secs)
    );
    println!(
        "  pipeline:    {:>10.0} messages/s ({pipeline_secs:.2} s, {pipeline_cpu:.2} s of CPU; {} records incl. conversation_created)",
        rate(pipeline_secs),
        stats.records
    );
    println!(
        "  ratio pipeline/raw: {:.2} (of CPU time: {:.2})",
        raw_secs / pipeline_secs,
        raw_cpu / pipeline_cpu
    );
    println!(
        "search queries over {n} messages, {nq} queries (3/4 one word, 1/4 two words, limit 20, {total_hits} hits): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        pct(0.5),
        pct(0.99),
        lat[lat.len() - 1] * 1e3
    );
}
