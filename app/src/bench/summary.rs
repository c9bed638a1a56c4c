//! What `courier bench` reports: the run's summary as types, printed by `--json`
//! and read back by the human summary and the baselines.
//!
//! The JSON keeps the shape it had when it was built by hand, since scripts and
//! tests read it by key: a key is absent only where it always was (`baselines`
//! without `--baselines`, the log ceiling's `partitions` off Kafka, the views
//! and processors of `--produce-only`); a figure a run does not have is `null`.
//! Key order is not the fields' order: `run` prints through a
//! `serde_json::Value`, whose maps sort their keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The summary of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub backend: Backends,
    pub namespace: String,
    pub population: Population,
    /// `--rate`; `null` when sending as fast as the producer goes.
    pub offered_rate: Option<f64>,
    pub produce_only: bool,
    pub processors_as: ProcessorsAs,
    /// Of each processor (1 unless `--instances`).
    pub instances: usize,
    /// `--kill-at`'s kill; `null` when none happened.
    pub killed: Option<Killed>,
    /// Messages of the load (the set-up not included).
    pub messages: u64,
    /// Every event of the load: messages, receipts, edits, deletes, presence.
    pub events: u64,
    /// How long sending took.
    pub send_s: f64,
    pub messages_per_s: f64,
    pub events_per_s: f64,
    /// From the first message to the last view catching up.
    pub total_s: f64,
    /// Latency to each view by name (`inbox`, `search`, `push`); empty with
    /// `--produce-only`.
    pub views: BTreeMap<String, Percentiles>,
    /// Each processor of `courier up` by name; empty with `--produce-only`.
    pub processors: BTreeMap<String, ProcessorRate>,
    pub dead_letters: u64,
    /// Push jobs notify wrote, the set-up's (none) included.
    pub push_jobs: u64,
    /// One sample per second of the load.
    pub timeline: Vec<Sample>,
    /// With `--baselines` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baselines: Option<Baselines>,
}

/// The run's backends, as their names.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Backends {
    /// `embedded` or `kafka`.
    pub log: String,
    /// `rocksdb` or `cassandra`.
    pub views: String,
}

/// What the simulated population looks like.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Population {
    pub users: usize,
    pub direct: usize,
    pub groups: usize,
    pub group_size_mean: f64,
    pub group_size_max: usize,
}

/// Where the processors ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessorsAs {
    /// Each on a thread of its own in this process, as `courier up` runs them.
    Threads,
    /// Tasks of this process's runtime (`--tasks`).
    Tasks,
    /// Child processes (`--instances`).
    Processes,
}

impl ProcessorsAs {
    pub fn name(self) -> &'static str {
        match self {
            ProcessorsAs::Threads => "threads",
            ProcessorsAs::Tasks => "tasks",
            ProcessorsAs::Processes => "processes",
        }
    }
}

/// The instances `--kill-at` killed, and when.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Killed {
    /// Seconds into the load.
    pub at_s: f64,
    pub instances: Vec<String>,
}

/// Exact latency percentiles (nearest rank) in milliseconds; `null` when there
/// is no latency to rank.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// What one processor committed of the load.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessorRate {
    pub records: u64,
    /// From the start of the load to its last commit.
    pub busy_s: f64,
    /// 0 when it committed nothing.
    pub records_per_s: f64,
}

/// One second of the load: messages sent and visible in each view so far, and
/// the p99 of those each view showed during that second (`null`: none).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    pub t_s: u64,
    pub sent: u64,
    pub inbox: u64,
    pub search: u64,
    pub push: u64,
    pub inbox_p99_ms: Option<f64>,
    pub search_p99_ms: Option<f64>,
    pub push_p99_ms: Option<f64>,
}

/// `--baselines`: the ceilings over the same traffic and the run's figures as
/// ratios of them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Baselines {
    /// The run had `--rate`: its ratios are not fractions of its capacity.
    pub rate_limited: bool,
    pub messages: u64,
    pub events: u64,
    pub log: LogCeiling,
    pub store: StoreCeiling,
    pub search: SearchCeiling,
    pub courier: Figures,
    pub ratios: Ratios,
    /// How long measuring them took.
    pub elapsed_s: f64,
}

/// Raw log append and read: RocksDB on the embedded log, Kafka's perf tools on
/// Kafka.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogCeiling {
    pub what: String,
    pub records: u64,
    pub record_bytes_mean: RecordBytes,
    /// Kafka only: the perf tools' topic's partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<u32>,
    pub append_events_per_s: f64,
    pub read_events_per_s: f64,
}

/// A record's mean encoded size: measured over the framed records on the
/// embedded log; on Kafka the whole number of bytes the perf tools were given,
/// which the JSON has always printed as an integer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RecordBytes {
    Whole(u64),
    Mean(f64),
}

/// Raw inbox-store writes of the inbox fold's batches.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreCeiling {
    pub what: String,
    pub events: u64,
    pub batches: u64,
    pub rows: u64,
    pub max_batch: usize,
    pub events_per_s: f64,
    pub rows_per_s: f64,
}

/// Raw tantivy indexing of the search view's documents.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchCeiling {
    pub what: String,
    pub docs: u64,
    pub shards: u32,
    pub docs_per_s: f64,
}

/// The run's figures each ceiling bounds; `null` where the run has none
/// (`--produce-only`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub producer_events_per_s: Option<f64>,
    /// Of the processors reading the conversations.
    pub slowest_processor: Option<String>,
    pub slowest_processor_records_per_s: Option<f64>,
    pub inbox_records_per_s: Option<f64>,
    /// Messages over the time the search processor was busy.
    pub search_messages_per_s: Option<f64>,
}

/// Each of [`Figures`] over its ceiling; `null` without the figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ratios {
    pub producer_vs_log_append: Option<f64>,
    pub slowest_processor_vs_log_read: Option<f64>,
    pub inbox_vs_store_writes: Option<f64>,
    pub search_vs_tantivy: Option<f64>,
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// `--json` output as it was when built by hand (values shortened), read
    /// into the types and written out again: nothing added, lost, renamed, or
    /// turned from null to absent or integer to float.
    fn round_trips(v: Value) {
        let summary: Summary = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&summary).unwrap(), v);
    }

    /// A run's `--json` summary (values shortened).
    pub(crate) fn example() -> Value {
        json!({
            "backend": {"log": "embedded", "views": "rocksdb"},
            "dead_letters": 0,
            "events": 4747,
            "events_per_s": 9531.3,
            "instances": 1,
            "killed": null,
            "messages": 2000,
            "messages_per_s": 4015.7,
            "namespace": "bench_1",
            "offered_rate": null,
            "population": {
                "direct": 7463, "group_size_max": 245, "group_size_mean": 11.8,
                "groups": 2537, "users": 10000,
            },
            "processors": {
                "inbox": {"busy_s": 0.5, "records": 4512, "records_per_s": 9024.0},
                "notify": {"busy_s": 0.5, "records": 4512, "records_per_s": 9024.0},
                "presence": {"busy_s": 0.4, "records": 235, "records_per_s": 587.5},
                "search": {"busy_s": 1.2, "records": 4512, "records_per_s": 3760.0},
            },
            "processors_as": "threads",
            "produce_only": false,
            "push_jobs": 5031,
            "send_s": 0.498,
            "timeline": [
                {"inbox": 2000, "inbox_p99_ms": 12.5, "push": 2000, "push_p99_ms": 11.0,
                 "search": 1000, "search_p99_ms": null, "sent": 2000, "t_s": 1},
            ],
            "total_s": 1.3,
            "views": {
                "inbox": {"count": 2000, "max_ms": 40.0, "p50_ms": 3.0, "p999_ms": 39.0, "p99_ms": 37.0},
                "push": {"count": 2000, "max_ms": 40.0, "p50_ms": 3.0, "p999_ms": 39.0, "p99_ms": 37.0},
                "search": {"count": 2000, "max_ms": 900.0, "p50_ms": 350.0, "p999_ms": 899.0, "p99_ms": 800.0},
            },
        })
    }

    #[test]
    fn a_summary_keeps_its_json() {
        let run = example();
        round_trips(run.clone());

        let mut with = run.clone();
        with["baselines"] = json!({
            "courier": {
                "inbox_records_per_s": 9024.0, "producer_events_per_s": 9531.3,
                "search_messages_per_s": 1666.6, "slowest_processor": "search",
                "slowest_processor_records_per_s": 3760.0,
            },
            "elapsed_s": 3.2,
            "events": 4747,
            "log": {
                "append_events_per_s": 1023810.0, "read_events_per_s": 490415.5,
                "record_bytes_mean": 151.25, "records": 4747,
                "what": "raw RocksDB: WriteBatch puts of the same framed records under the same keys, then an iterate",
            },
            "messages": 2000,
            "rate_limited": false,
            "ratios": {
                "inbox_vs_store_writes": 0.027, "producer_vs_log_append": 0.0093,
                "search_vs_tantivy": 1.7, "slowest_processor_vs_log_read": 0.0077,
            },
            "search": {"docs": 2000, "docs_per_s": 958.0, "shards": 12, "what": "raw tantivy"},
            "store": {
                "batches": 5, "events": 4512, "events_per_s": 332440.0, "max_batch": 1000,
                "rows": 6100, "rows_per_s": 449000.0, "what": "RocksInboxStore::write into a fresh store",
            },
        });
        round_trips(with.clone());
        // Kafka's ceiling: its partitions, and a whole record size.
        with["baselines"]["log"] = json!({
            "append_events_per_s": 3219.6, "partitions": 12, "read_events_per_s": 2871.0,
            "record_bytes_mean": 51, "records": 4747, "what": "kafka-producer-perf-test",
        });
        round_trips(with);

        // --produce-only, killed instances, --rate: empty maps, the nulls filled.
        let mut other = run;
        other["views"] = json!({});
        other["processors"] = json!({});
        other["processors_as"] = json!("processes");
        other["killed"] = json!({"at_s": 1.05, "instances": ["inbox-2", "search-2"]});
        other["offered_rate"] = json!(500.0);
        round_trips(other);
    }
}
