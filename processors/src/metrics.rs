//! Prometheus metrics of notify and push delivery, registered in the pipeline's
//! registry so `/metrics` serves them with the runner's. Names follow the
//! `courier_<component>_<what>_<unit>` scheme; docs/ARCHITECTURE.md lists them.

use std::sync::OnceLock;

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts};

/// The metrics of this crate's processors.
pub struct Metrics {
    /// Push jobs the notifier published.
    pub notify_jobs: IntCounter,
    /// Jobs the provider accepted.
    pub push_sent: IntCounter,
    /// Jobs skipped because the sent-id store already had them.
    pub push_already_sent: IntCounter,
    /// Attempts that are retried, by cause (`5xx`, `429`, `timeout`, `transport`).
    pub push_retried: IntCounterVec,
    /// Jobs dead-lettered, by cause (`permanent`, `exhausted`, `invalid`).
    pub push_failed: IntCounterVec,
    /// Circuit breaker per endpoint: 0 closed, 1 half-open, 2 open.
    pub push_breaker: IntGaugeVec,
    /// From a job's first attempt to the provider's acceptance, retries included.
    pub push_delivery_seconds: HistogramVec,
}

fn build() -> Result<Metrics, prometheus::Error> {
    let notify_jobs = IntCounter::new(
        "courier_notify_jobs_total",
        "Push jobs published by the notifier.",
    )?;
    courier_pipeline::metrics::register(Box::new(notify_jobs.clone()))?;
    let push_sent = IntCounter::new(
        "courier_push_sent_total",
        "Push jobs the provider accepted.",
    )?;
    courier_pipeline::metrics::register(Box::new(push_sent.clone()))?;
    let push_already_sent = IntCounter::new(
        "courier_push_already_sent_total",
        "Push jobs skipped because they were sent before (redelivery, restart, replay).",
    )?;
    courier_pipeline::metrics::register(Box::new(push_already_sent.clone()))?;
    let push_retried = IntCounterVec::new(
        Opts::new(
            "courier_push_retried_total",
            "Push attempts that failed and are retried, by cause.",
        ),
        &["cause"],
    )?;
    courier_pipeline::metrics::register(Box::new(push_retried.clone()))?;
    let push_failed = IntCounterVec::new(
        Opts::new(
            "courier_push_failed_total",
            "Push jobs dead-lettered, by cause.",
        ),
        &["cause"],
    )?;
    courier_pipeline::metrics::register(Box::new(push_failed.clone()))?;
    let push_breaker = IntGaugeVec::new(
        Opts::new(
            "courier_push_breaker_state",
            "Circuit breaker of a push endpoint: 0 closed, 1 half-open, 2 open.",
        ),
        &["endpoint"],
    )?;
    courier_pipeline::metrics::register(Box::new(push_breaker.clone()))?;
    let push_delivery_seconds = HistogramVec::new(
        HistogramOpts::new(
            "courier_push_delivery_seconds",
            "From a push job's first attempt to the provider's acceptance.",
        )
        .buckets(vec![
            0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
        ]),
        &["endpoint"],
    )?;
    courier_pipeline::metrics::register(Box::new(push_delivery_seconds.clone()))?;
    Ok(Metrics {
        notify_jobs,
        push_sent,
        push_already_sent,
        push_retried,
        push_failed,
        push_breaker,
        push_delivery_seconds,
    })
}

/// The process-wide metrics of this crate.
pub fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    // Registration fails only on duplicate or malformed names, constants above.
    M.get_or_init(|| build().expect("metric definitions are valid"))
}

pub(crate) fn notify_jobs(n: usize) {
    metrics().notify_jobs.inc_by(n as u64);
}
