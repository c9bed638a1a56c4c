//! Prometheus metrics of the tantivy sink, in the registry of
//! `courier_pipeline::metrics` (names listed in docs/metrics.md).

use std::sync::OnceLock;

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};

/// The search sink's metrics.
pub struct SearchMetrics {
    /// Document operations committed, by `op` (`upsert`, `delete`).
    pub documents: IntCounterVec,
    /// Time to apply and commit one shard's part of a batch.
    pub commit_seconds: HistogramVec,
    /// Query latency over all shards, by `outcome` (`ok`, `bad_query`, `error`).
    pub query_seconds: HistogramVec,
    /// Shards opened on assignment, by `partition` and `source`: `local` (this
    /// instance's own commit), `snapshot` (restored from the shared store),
    /// `reindex` (neither: from the partition's start).
    pub restores: IntCounterVec,
    /// Time to restore one shard from a snapshot (copying it in).
    pub restore_seconds: Histogram,
    /// Snapshots written, by `partition` and `outcome` (`ok`, `error`).
    pub snapshots: IntCounterVec,
    /// Time to capture and write one snapshot.
    pub snapshot_seconds: Histogram,
    /// The offset the newest snapshot this instance wrote covers, by `partition`.
    pub snapshot_offset: IntGaugeVec,
    /// 1 for each partition whose shard this instance has open (owns), 0 once
    /// revoked: which instance answers for which partition.
    pub owned: IntGaugeVec,
}

/// Snapshot copies take from milliseconds (segments linked) to minutes (a large
/// shard copied whole).
const COPY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0,
];

const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

/// The process-wide search metrics, registered on first use.
pub fn metrics() -> &'static SearchMetrics {
    static M: OnceLock<SearchMetrics> = OnceLock::new();
    M.get_or_init(|| {
        let documents = IntCounterVec::new(
            Opts::new(
                "courier_search_documents_total",
                "Search document operations committed.",
            ),
            &["op"],
        )
        .expect("valid metric");
        let commit_seconds = HistogramVec::new(
            HistogramOpts::new(
                "courier_search_commit_seconds",
                "Time to apply and commit one shard's part of a batch.",
            )
            .buckets(BUCKETS.to_vec()),
            &["partition"],
        )
        .expect("valid metric");
        let query_seconds = HistogramVec::new(
            HistogramOpts::new(
                "courier_search_query_seconds",
                "Latency of one search over every shard.",
            )
            .buckets(BUCKETS.to_vec()),
            &["outcome"],
        )
        .expect("valid metric");
        let restores = IntCounterVec::new(
            Opts::new(
                "courier_search_shard_restores_total",
                "Search shards opened on assignment, by where their contents came from.",
            ),
            &["partition", "source"],
        )
        .expect("valid metric");
        let restore_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "courier_search_shard_restore_seconds",
                "Time to restore one search shard from a snapshot.",
            )
            .buckets(COPY_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let snapshots = IntCounterVec::new(
            Opts::new(
                "courier_search_snapshots_total",
                "Search shard snapshots written to the shared store.",
            ),
            &["partition", "outcome"],
        )
        .expect("valid metric");
        let snapshot_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "courier_search_snapshot_seconds",
                "Time to capture and write one search shard snapshot.",
            )
            .buckets(COPY_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let snapshot_offset = IntGaugeVec::new(
            Opts::new(
                "courier_search_snapshot_next_offset",
                "The next offset of the newest search snapshot this instance wrote.",
            ),
            &["partition"],
        )
        .expect("valid metric");
        let owned = IntGaugeVec::new(
            Opts::new(
                "courier_search_shard_owned",
                "1 for each partition whose search shard this instance owns, 0 once revoked.",
            ),
            &["partition"],
        )
        .expect("valid metric");
        // Registration fails only for a duplicate name: these are registered once.
        let _ = courier_pipeline::metrics::register(Box::new(documents.clone()));
        let _ = courier_pipeline::metrics::register(Box::new(commit_seconds.clone()));
        let _ = courier_pipeline::metrics::register(Box::new(query_seconds.clone()));
        let _ = courier_pipeline::metrics::register(Box::new(restores.clone()));
        let _ = courier_pipeline::metrics::register(Box::new(restore_seconds.clone()));
        let _ = courier_pipeline::metrics::register(Box::new(snapshots.clone()));
        let _ = courier_pipeline::metrics::register(Box::new(snapshot_seconds.clone()));
        let _ = courier_pipeline::metrics::register(Box::new(snapshot_offset.clone()));
        let _ = courier_pipeline::metrics::register(Box::new(owned.clone()));
        SearchMetrics {
            documents,
            commit_seconds,
            query_seconds,
            restores,
            restore_seconds,
            snapshots,
            snapshot_seconds,
            snapshot_offset,
            owned,
        }
    })
}
