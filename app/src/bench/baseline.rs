//! `courier bench --baselines`: the ceilings of courier's figures, measured after
//! the run on the same machine over the same traffic (regenerated from the seed),
//! reported as ratios beside the run's own figures (issue 8, "Baselines in the
//! same run").
//!
//! - log: embedded, raw RocksDB `WriteBatch` puts of the same framed records
//!   under the same keys, one batch per append courier made when sending as fast
//!   as it goes, then a raw iterate over them; Kafka, `kafka-producer-perf-test`
//!   and `kafka-consumer-perf-test` on the same broker, the same number of
//!   records of the run's mean encoded size, to a topic of their own;
//! - inbox: the inbox fold's batches for this traffic (`runner.max_batch` records
//!   each, in log order) written straight into a fresh store with the same store
//!   code (RocksDB, or a fresh Cassandra keyspace); the set-up's batches are
//!   written first, untimed;
//! - search: raw tantivy indexing of the documents the search view adds for this
//!   traffic (one per message, visible to the members at the send).
//!
//! Everything a baseline creates (directories, topic, keyspace) is removed
//! afterwards, whatever happened.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::config::Config;
use crate::config::{Backend, ViewsBackend};
use anyhow::Context;
use courier_pipeline::embedded::baseline::{Framed, RawLog, frame};
use courier_pipeline::kafka::perf;
use courier_pipeline::producer::{to_record, topic_for};
use courier_processors::inbox::{BatchFold, Position};
use courier_processors::search::{IndexOp, SearchDoc, index_ops};
use courier_schemas::Event;
use courier_sinks::inbox::baseline::{self as store_baseline, Written};
use courier_sinks::inbox::cassandra::{self, CassandraSettings};
use courier_sinks::inbox::{CassandraInboxStore, RocksInboxStore};
use courier_sinks::search::baseline as search_baseline;
use courier_topics::{CONVERSATIONS, Catalog, partition_for_key};
use tracing::Instrument;

use super::load::{Shape, Workload};
use super::summary::{
    Baselines, Figures, LogCeiling, Ratios, RecordBytes, SearchCeiling, StoreCeiling, Summary,
};
use super::{Args, MAX_BATCH, now_us};

/// With `--baselines`, measures the ceilings after a successful run and adds them
/// to its summary; otherwise passes the outcome through.
pub async fn merge(
    outcome: anyhow::Result<Summary>,
    config: &Config,
    args: &Args,
) -> anyhow::Result<Summary> {
    let mut summary = outcome?;
    if !args.baselines {
        return Ok(summary);
    }
    let dir = config.data_dir.join(&config.namespace).join("baselines");
    let measured = measure(config, args, &summary, &dir)
        .instrument(tracing::info_span!("baselines"))
        .await;
    let removed = match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    };
    let baselines = measured.context("measuring the baselines")?;
    removed?;
    summary.baselines = Some(baselines);
    Ok(summary)
}

/// An event of the regenerated traffic where the run's log put it.
struct Placed {
    topic: &'static str,
    at: Position,
    event: Event,
}

/// The run's traffic again: the set-up, then the load in the chunks of
/// [`MAX_BATCH`] messages the producer publishes when not rate-limited.
struct Traffic {
    setup: Vec<Placed>,
    load: Vec<Placed>,
    /// Where each chunk of the load ends (exclusive).
    chunk_ends: Vec<usize>,
}

impl Traffic {
    /// The traffic of `messages` messages of the population `shape`.
    fn regenerate(shape: Shape, messages: u64) -> anyhow::Result<Self> {
        let mut workload = Workload::new(shape);
        let at_ms = now_us() / 1000;
        let catalog = Catalog::builtin();
        let mut next: HashMap<(&'static str, u32), u64> = HashMap::new();
        let mut place = |event: Event| -> anyhow::Result<Placed> {
            let kind = event
                .kind()
                .with_context(|| format!("event {} has no body", event.event_id))?;
            let topic = topic_for(kind);
            let partitions = catalog
                .get(topic)
                .with_context(|| format!("{topic} is not in the catalog"))?
                .partitions;
            let partition = partition_for_key(event.routing_key().as_bytes(), partitions);
            let offset = next.entry((topic, partition)).or_default();
            let at = Position::new(partition, *offset);
            *offset += 1;
            Ok(Placed { topic, at, event })
        };
        let setup = workload
            .setup(at_ms)
            .into_iter()
            .map(&mut place)
            .collect::<anyhow::Result<_>>()?;
        let (mut load, mut chunk_ends, mut sent) = (Vec::new(), Vec::new(), 0);
        let mut batch = Vec::new();
        while sent < messages {
            batch.clear();
            for _ in 0..MAX_BATCH.min(messages - sent) {
                workload.message(at_ms, &mut batch);
                sent += 1;
            }
            for e in batch.drain(..) {
                load.push(place(e)?);
            }
            chunk_ends.push(load.len());
        }
        Ok(Traffic {
            setup,
            load,
            chunk_ends,
        })
    }

    fn chunks(&self) -> impl Iterator<Item = &[Placed]> {
        let mut start = 0;
        self.chunk_ends.iter().map(move |&end| {
            let c = &self.load[start..end];
            start = end;
            c
        })
    }
}

fn per_s(n: u64, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

async fn measure(
    config: &Config,
    args: &Args,
    run: &Summary,
    dir: &Path,
) -> anyhow::Result<Baselines> {
    let started = Instant::now();
    let messages = run.messages;
    let shape = Shape {
        users: args.users,
        conversations: args.conversations.unwrap_or(args.users).max(1),
        zipf: args.zipf,
        seed: args.seed,
    };
    let traffic = Traffic::regenerate(shape, messages)?;
    // The workload is deterministic per seed: anything else measures other traffic.
    if run.events != traffic.load.len() as u64 {
        anyhow::bail!(
            "the regenerated traffic has {} events where the run sent {}: it is not the same traffic",
            traffic.load.len(),
            run.events
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;

    let kafka = config.log.backend == Backend::Kafka;
    let span = tracing::info_span!("baseline", phase = "log", kafka);
    let log = async {
        if kafka {
            kafka_perf(&traffic, config)
                .await
                .context("Kafka's perf tools")
        } else {
            embedded_log(&traffic, dir, config.log.fsync)
                .await
                .context("raw RocksDB put and iterate")
        }
    }
    .instrument(span)
    .await?;
    let (store, docs) = store_writes(&traffic, config, dir)
        .instrument(tracing::info_span!("baseline", phase = "store"))
        .await
        .context("raw view-store writes")?;
    let search = tantivy(docs, dir)
        .instrument(tracing::info_span!("baseline", phase = "search"))
        .await
        .context("raw tantivy indexing")?;

    let (courier, ratios) = compare(run, &log, &store, &search);
    Ok(Baselines {
        rate_limited: run.offered_rate.is_some(),
        messages,
        events: traffic.load.len() as u64,
        log,
        store,
        search,
        courier,
        ratios,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

/// The run's figures each ceiling bounds, and each over its ceiling; `None`
/// where the run has no figure (`--produce-only`).
fn compare(
    run: &Summary,
    log: &LogCeiling,
    store: &StoreCeiling,
    search: &SearchCeiling,
) -> (Figures, Ratios) {
    // JSON has no infinity or NaN: a figure that was one printed as null, and so
    // was no figure to compare.
    let finite = |x: f64| Some(x).filter(|x| x.is_finite());
    let processor = |p: &str| run.processors.get(p).and_then(|r| finite(r.records_per_s));
    // Of the processors reading the conversations, nearly all of the load: the
    // presence processor's few records trickle in as they are sent, so its rate
    // says nothing about reading the log.
    let slowest = ["inbox", "search", "notify"]
        .into_iter()
        .filter_map(|p| Some((p, processor(p)?)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    // The search processor's message rate, to compare with documents: every
    // message of the load over the time it was busy (its records also count
    // receipts, edits and deletes).
    let search_messages = run
        .processors
        .get("search")
        .map(|r| r.busy_s)
        .filter(|&b| b > 0.0)
        .map(|b| run.messages as f64 / b);
    let producer = finite(run.events_per_s);
    let ratio = |courier: Option<f64>, ceiling: f64| {
        let (c, x) = (courier?, finite(ceiling)?);
        (x > 0.0).then(|| c / x).and_then(finite)
    };
    (
        Figures {
            producer_events_per_s: producer,
            slowest_processor: slowest.map(|s| s.0.to_string()),
            slowest_processor_records_per_s: slowest.map(|s| s.1),
            inbox_records_per_s: processor("inbox"),
            search_messages_per_s: search_messages,
        },
        Ratios {
            producer_vs_log_append: ratio(producer, log.append_events_per_s),
            slowest_processor_vs_log_read: ratio(slowest.map(|s| s.1), log.read_events_per_s),
            inbox_vs_store_writes: ratio(processor("inbox"), store.events_per_s),
            search_vs_tantivy: ratio(search_messages, search.docs_per_s),
        },
    )
}

/// Raw puts of the load's framed records, one `WriteBatch` per topic per chunk
/// (one append each, as `publish` makes), then a raw iterate.
async fn embedded_log(traffic: &Traffic, dir: &Path, fsync: bool) -> anyhow::Result<LogCeiling> {
    let ids: HashMap<&str, u32> = Catalog::builtin()
        .topics()
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i as u32))
        .collect();
    let mut batches: Vec<Vec<Framed>> = Vec::new();
    for chunk in traffic.chunks() {
        let mut by_topic: std::collections::BTreeMap<&str, Vec<Framed>> = Default::default();
        for p in chunk {
            by_topic.entry(p.topic).or_default().push(frame(
                ids.get(p.topic).copied().unwrap_or(0),
                p.at.partition,
                p.at.offset,
                &to_record(&p.event),
            ));
        }
        batches.extend(by_topic.into_values());
    }
    let path = dir.join("log");
    let (put, read) = tokio::task::spawn_blocking(move || {
        let raw = RawLog::open(&path)?;
        let put = raw.put(batches.iter().map(Vec::as_slice), fsync)?;
        let read = raw.iterate(false)?;
        anyhow::Ok((put, read))
    })
    .await??;
    tracing::info!(
        records = put.records,
        append_s = put.secs,
        read_s = read.secs,
        "raw RocksDB"
    );
    Ok(LogCeiling {
        what: "raw RocksDB: WriteBatch puts of the same framed records under the same keys, then an iterate".into(),
        records: put.records,
        record_bytes_mean: RecordBytes::Mean(put.bytes as f64 / put.records.max(1) as f64),
        partitions: None,
        append_events_per_s: put.per_s(),
        read_events_per_s: read.per_s(),
    })
}

/// Kafka's producer and consumer perf tools with as many records as the load
/// has events, of their mean encoded size, to a topic of their own with the
/// conversations topic's partitions, deleted afterwards.
async fn kafka_perf(traffic: &Traffic, config: &Config) -> anyhow::Result<LogCeiling> {
    let records = traffic.load.len() as u64;
    let bytes: usize = traffic
        .load
        .iter()
        .map(|p| to_record(&p.event).value.len())
        .sum();
    let size = (bytes as f64 / records.max(1) as f64).round().max(1.0) as usize;
    let partitions = Catalog::builtin()
        .get(CONVERSATIONS)
        .context("the catalog has no conversations topic")?
        .partitions;
    let tools = perf::Tools::new(&config.kafka_settings()?)?;
    let topic = format!("{}.baselines.perf", config.namespace);
    let (produced, consumed) = tokio::task::spawn_blocking(move || {
        tools.create_topic(&topic, partitions)?;
        let rates = tools
            .produce(&topic, records, size)
            .and_then(|p| Ok((p, tools.consume(&topic, records)?)));
        let deleted = tools.delete_topic(&topic);
        let rates = rates?;
        deleted?;
        anyhow::Ok(rates)
    })
    .await??;
    tracing::info!(records, size, produced, consumed, "Kafka perf tools");
    Ok(LogCeiling {
        what: "kafka-producer-perf-test (acks=all, idempotence, lz4) and kafka-consumer-perf-test on the same broker".into(),
        records,
        record_bytes_mean: RecordBytes::Whole(size as u64),
        partitions: Some(partitions),
        append_events_per_s: produced,
        read_events_per_s: consumed,
    })
}

/// The inbox fold's batches written into a fresh store of the run's kind; also
/// the documents the search view adds for the load, gathered by the same fold.
async fn store_writes(
    traffic: &Traffic,
    config: &Config,
    dir: &Path,
) -> anyhow::Result<(StoreCeiling, Vec<(u32, SearchDoc)>)> {
    let (setup, load) = (
        conversation_events(&traffic.setup),
        conversation_events(&traffic.load),
    );
    let max_batch = config.runner.max_batch;
    let mut fold = BatchFold::new();
    let setup_batches: Vec<_> = setup
        .chunks(max_batch)
        .map(|c| fold.batch(c.iter().copied(), |_, _| {}))
        .collect();
    let mut docs = Vec::new();
    // Folded lazily, batch by batch as they are written (only the writes are
    // timed), so a long run's batches are never all in memory at once.
    let load_batches = load.chunks(max_batch).map(|c| {
        fold.batch(c.iter().copied(), |state, outcome| {
            for op in index_ops(state, outcome) {
                if let IndexOp::Add(d) = op {
                    docs.push((d.position.partition, d));
                }
            }
        })
    });
    let (what, written) = match config.views.backend {
        ViewsBackend::Rocksdb => {
            let mut store = RocksInboxStore::open(&dir.join("inbox"))?;
            store_baseline::write(&mut store, &setup_batches).await?;
            let written = store_baseline::write(&mut store, load_batches).await?;
            ("RocksInboxStore::write into a fresh store", written)
        }
        ViewsBackend::Cassandra => {
            let settings = fresh_keyspace(config)?;
            let written = cassandra_writes(&settings, &setup_batches, load_batches).await;
            let dropped = cassandra::drop_keyspace(&settings)
                .await
                .with_context(|| format!("dropping keyspace {}", settings.keyspace));
            let written = written?;
            dropped?;
            ("CassandraInboxStore::write into a fresh keyspace", written)
        }
    };
    let Written {
        batches,
        rows,
        elapsed,
    } = written;
    let secs = elapsed.as_secs_f64();
    let events = load.len() as u64;
    tracing::info!(batches, rows, events, secs, "raw view-store writes");
    Ok((
        StoreCeiling {
            what: what.into(),
            events,
            batches,
            rows,
            max_batch,
            events_per_s: per_s(events, secs),
            rows_per_s: per_s(rows, secs),
        },
        docs,
    ))
}

/// The events of `courier.conversations.v1` (what the inbox processor reads).
fn conversation_events(placed: &[Placed]) -> Vec<(Position, &Event)> {
    placed
        .iter()
        .filter(|p| p.topic == CONVERSATIONS)
        .map(|p| (p.at, &p.event))
        .collect()
}

/// The keyspace of the run's namespace with `_raw` added to it (validated like
/// every keyspace name).
fn fresh_keyspace(config: &Config) -> anyhow::Result<CassandraSettings> {
    let mut raw = config.clone();
    raw.namespace = format!("{}_raw", config.namespace);
    crate::views::cassandra_settings(&raw)
}

async fn cassandra_writes(
    settings: &CassandraSettings,
    setup: &[courier_processors::inbox::store::InboxBatch],
    load: impl Iterator<Item = courier_processors::inbox::store::InboxBatch>,
) -> anyhow::Result<Written> {
    cassandra::migrate(settings)
        .await
        .with_context(|| format!("creating keyspace {}", settings.keyspace))?;
    let mut store = CassandraInboxStore::open(settings).await?;
    store_baseline::write(&mut store, setup).await?;
    Ok(store_baseline::write(&mut store, load).await?)
}

/// Raw tantivy indexing of the documents, one shard per partition.
async fn tantivy(docs: Vec<(u32, SearchDoc)>, dir: &Path) -> anyhow::Result<SearchCeiling> {
    let partitions = Catalog::builtin()
        .get(CONVERSATIONS)
        .context("the catalog has no conversations topic")?
        .partitions;
    let root: PathBuf = dir.join("search");
    let n = docs.len() as u64;
    let elapsed =
        tokio::task::spawn_blocking(move || search_baseline::index(&root, &docs, partitions))
            .await??;
    let secs = elapsed.as_secs_f64();
    tracing::info!(docs = n, secs, "raw tantivy");
    Ok(SearchCeiling {
        what:
            "raw tantivy: the same documents added to one index per partition, one commit per shard"
                .into(),
        docs: n,
        shards: partitions,
        docs_per_s: per_s(n, secs),
    })
}

/// The baselines in the human summary, after the run's figures.
pub fn print_human(s: &Summary) {
    let Some(b) = &s.baselines else {
        return;
    };
    // What the JSON printed as null (none, infinite or NaN) is a dash.
    let shown = |v: Option<f64>| v.filter(|x| x.is_finite());
    let rate = |v: Option<f64>| shown(v).map_or("—".to_string(), |x| format!("{x:.0}"));
    let (log, courier, ratios) = (&b.log, &b.courier, &b.ratios);
    let kafka = s.backend.log == "kafka";
    let slowest = courier.slowest_processor.as_deref().unwrap_or("none");
    let views = &s.backend.views;
    // (ceiling, its rate, courier's figure, its rate, ratio)
    let rows = [
        (
            if kafka {
                "log append: kafka-producer-perf-test".to_string()
            } else {
                "log append: raw RocksDB WriteBatch puts".to_string()
            },
            format!("{} events/s", rate(Some(log.append_events_per_s))),
            "producer".to_string(),
            format!("{} events/s", rate(courier.producer_events_per_s)),
            ratios.producer_vs_log_append,
        ),
        (
            if kafka {
                "log read: kafka-consumer-perf-test".to_string()
            } else {
                "log read: raw RocksDB iterate".to_string()
            },
            format!("{} events/s", rate(Some(log.read_events_per_s))),
            format!("slowest processor ({slowest})"),
            format!(
                "{} records/s",
                rate(courier.slowest_processor_records_per_s)
            ),
            ratios.slowest_processor_vs_log_read,
        ),
        (
            format!("inbox: raw {views} store writes"),
            format!("{} events/s", rate(Some(b.store.events_per_s))),
            "inbox processor".to_string(),
            format!("{} records/s", rate(courier.inbox_records_per_s)),
            ratios.inbox_vs_store_writes,
        ),
        (
            "search: raw tantivy indexing".to_string(),
            format!("{} docs/s", rate(Some(b.search.docs_per_s))),
            "search processor".to_string(),
            format!("{} messages/s", rate(courier.search_messages_per_s)),
            ratios.search_vs_tantivy,
        ),
    ];
    println!(
        "  ceilings over the same traffic on this machine (ratio = courier's rate ÷ the ceiling's):"
    );
    for (ceiling, ceiling_rate, courier, courier_rate, ratio) in rows {
        // Two significant digits: a debug build or a rate-limited run gives
        // ratios far below 0.01, which "0.00" would hide.
        let ratio = shown(ratio).map_or("—".to_string(), |x| {
            let digits = if x > 0.0 && x < 0.1 {
                ((-x.log10()).ceil() as usize + 1).min(8)
            } else {
                2
            };
            format!("{x:.digits$}")
        });
        println!(
            "    {ceiling:<40} {ceiling_rate:>18} | {courier:<28} {courier_rate:>18} | ratio {ratio}"
        );
    }
    if b.rate_limited {
        println!(
            "    note: the run was rate-limited (--rate): courier ran below its capacity, so these ratios are not fractions of the ceilings"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use courier_pipeline::producer::publish;
    use courier_pipeline::{EmbeddedLog, EventLog};

    use super::super::summary::{Backends, Population, ProcessorRate, ProcessorsAs};
    use super::*;

    /// Where the embedded log puts the regenerated traffic when it is published
    /// as the run publishes it: every placement must be the log's own, or the
    /// raw baseline writes other keys and the fold other positions.
    #[tokio::test]
    async fn the_regenerated_traffic_is_placed_where_the_log_puts_it() {
        let shape = Shape {
            users: 60,
            conversations: 40,
            zipf: 1.0,
            seed: 3,
        };
        let traffic = Traffic::regenerate(shape, 2500).unwrap();
        assert_eq!(
            traffic.chunk_ends.len(),
            3,
            "chunks of {MAX_BATCH} messages"
        );
        assert_eq!(traffic.chunk_ends.last(), Some(&traffic.load.len()));
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> = Arc::new(
            EmbeddedLog::open(dir.path(), Catalog::builtin(), Default::default()).unwrap(),
        );
        let setup: Vec<Event> = traffic.setup.iter().map(|p| p.event.clone()).collect();
        let mut published = publish(&*log, &setup).await.unwrap();
        for chunk in traffic.chunks() {
            let events: Vec<Event> = chunk.iter().map(|p| p.event.clone()).collect();
            published.extend(publish(&*log, &events).await.unwrap());
        }
        let placed = traffic.setup.iter().chain(&traffic.load);
        assert_eq!(published.len(), traffic.setup.len() + traffic.load.len());
        for (p, want) in placed.zip(&published) {
            assert_eq!(p.topic, want.topic, "{}", p.event.event_id);
            assert_eq!(
                (p.at.partition, p.at.offset),
                (want.at.partition, want.at.offset),
                "{}",
                p.event.event_id
            );
        }
        // The same seed, the same traffic.
        let again = Traffic::regenerate(shape, 2500).unwrap();
        let ids = |t: &Traffic| -> Vec<String> {
            t.load.iter().map(|p| p.event.event_id.clone()).collect()
        };
        assert_eq!(ids(&again), ids(&traffic));
    }

    /// A run of 1000 messages at 5000 events/s whose processors had these
    /// (records/s, busy s); the rest is beside the point.
    fn run_with(processors: &[(&str, f64, f64)]) -> Summary {
        Summary {
            backend: Backends {
                log: "embedded".into(),
                views: "rocksdb".into(),
            },
            namespace: "bench_1".into(),
            population: Population {
                users: 10,
                direct: 8,
                groups: 2,
                group_size_mean: 3.0,
                group_size_max: 3,
            },
            offered_rate: None,
            produce_only: processors.is_empty(),
            processors_as: ProcessorsAs::Threads,
            instances: 1,
            killed: None,
            messages: 1000,
            events: 2500,
            send_s: 0.5,
            messages_per_s: 2000.0,
            events_per_s: 5000.0,
            total_s: 1.0,
            views: Default::default(),
            processors: processors
                .iter()
                .map(|&(p, records_per_s, busy_s)| {
                    let rate = ProcessorRate {
                        records: (records_per_s * busy_s) as u64,
                        busy_s,
                        records_per_s,
                    };
                    (p.to_string(), rate)
                })
                .collect(),
            dead_letters: 0,
            push_jobs: 0,
            timeline: Vec::new(),
            baselines: None,
        }
    }

    #[test]
    fn ratios_put_each_figure_over_its_ceiling() {
        let log = LogCeiling {
            what: "raw".into(),
            records: 2500,
            record_bytes_mean: RecordBytes::Mean(100.0),
            partitions: None,
            append_events_per_s: 10000.0,
            read_events_per_s: 30000.0,
        };
        let store = StoreCeiling {
            what: "raw".into(),
            events: 2400,
            batches: 3,
            rows: 3000,
            max_batch: 1000,
            events_per_s: 8000.0,
            rows_per_s: 10000.0,
        };
        let search = SearchCeiling {
            what: "raw".into(),
            docs: 1000,
            shards: 12,
            docs_per_s: 2000.0,
        };
        let run = run_with(&[
            ("inbox", 2000.0, 1.0),
            ("search", 1500.0, 2.0),
            ("notify", 3000.0, 1.0),
            ("presence", 10.0, 1.0),
        ]);
        let (courier, ratios) = compare(&run, &log, &store, &search);
        assert_eq!(
            courier.slowest_processor.as_deref(),
            Some("search"),
            "presence is not a reader of the load"
        );
        assert_eq!(courier.search_messages_per_s, Some(500.0));
        assert_eq!(
            ratios,
            Ratios {
                producer_vs_log_append: Some(0.5),
                slowest_processor_vs_log_read: Some(0.05),
                inbox_vs_store_writes: Some(0.25),
                search_vs_tantivy: Some(0.25),
            }
        );
        // --produce-only: no processor figure, no ratio of one.
        let (courier, ratios) = compare(&run_with(&[]), &log, &store, &search);
        assert_eq!(courier.slowest_processor, None);
        assert_eq!(ratios.producer_vs_log_append, Some(0.5));
        assert_eq!(ratios.inbox_vs_store_writes, None);
        assert_eq!(ratios.search_vs_tantivy, None);
    }
}
