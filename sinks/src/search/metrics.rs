//! Prometheus metrics of the tantivy sink, in the registry of
//! `courier_pipeline::metrics` (names listed in docs/ARCHITECTURE.md).

use std::sync::OnceLock;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};

/// The search sink's metrics.
pub struct SearchMetrics {
    /// Document operations committed, by `op` (`upsert`, `delete`).
    pub documents: IntCounterVec,
    /// Time to apply and commit one shard's part of a batch.
    pub commit_seconds: HistogramVec,
    /// Query latency over all shards, by `outcome` (`ok`, `bad_query`, `error`).
    pub query_seconds: HistogramVec,
}

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
        // Registration fails only for a duplicate name: these are registered once.
        let _ = courier_pipeline::metrics::register(Box::new(documents.clone()));
        let _ = courier_pipeline::metrics::register(Box::new(commit_seconds.clone()));
        let _ = courier_pipeline::metrics::register(Box::new(query_seconds.clone()));
        SearchMetrics {
            documents,
            commit_seconds,
            query_seconds,
        }
    })
}
