//! Prometheus metrics of the log and of every processor, in one registry.
//!
//! Names follow `courier_<component>_<what>_<unit>`; labels are `topic`,
//! `partition` and `processor`. docs/ARCHITECTURE.md lists them.

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};

use prometheus::core::Collector;
use prometheus::{
    Encoder, HistogramOpts, HistogramTimer, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Seconds; from 1 ms to about a minute, so end-to-end latencies of a healthy
/// pipeline and of one catching up after an outage both land in a bucket.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
];

/// Every metric courier exports.
pub struct Metrics {
    registry: Registry,
    /// Records appended, per topic.
    pub log_appended: IntCounterVec,
    /// Append call latency, per topic.
    pub log_append_seconds: HistogramVec,
    /// Records a processor applied, per topic and partition.
    pub events: IntCounterVec,
    /// Time to apply a batch and have the sink acknowledge it.
    pub batch_seconds: HistogramVec,
    /// Records between a processor's position and the end of the partition.
    pub lag: IntGaugeVec,
    /// Now minus the record's event time when the processor has applied it.
    pub e2e_seconds: HistogramVec,
    /// Failures, by kind (`handler`, `commit`, `poll`).
    pub errors: IntCounterVec,
    /// Records sent to dead letters, per processor.
    pub dead_letters: IntCounterVec,
    /// 1 while a processor retries a failing sink past `runner.max_attempts`.
    pub stalled: IntGaugeVec,
}

/// The names of every metric registered so far, with or without samples yet (a
/// labelled metric shows in `/metrics` only once it has a sample; dashboards and
/// alert rules are checked against these names).
static NAMES: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn register_in(registry: &Registry, c: Box<dyn Collector>) -> Result<(), prometheus::Error> {
    let new: Vec<String> = c.desc().iter().map(|d| d.fq_name.clone()).collect();
    registry.register(c)?;
    NAMES.lock().unwrap_or_else(|e| e.into_inner()).extend(new);
    Ok(())
}

/// Registers a component's metric in the process-wide registry (sinks, the
/// gateway and the processors add theirs this way).
pub fn register(c: Box<dyn Collector>) -> Result<(), prometheus::Error> {
    register_in(registry(), c)
}

/// Every metric name registered so far (see [`register`]).
pub fn registered_names() -> BTreeSet<String> {
    NAMES.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new();
    let counter =
        |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            register_in(&registry, Box::new(c.clone()))?;
            Ok(c)
        };
    let histogram =
        |name: &str, help: &str, labels: &[&str]| -> Result<HistogramVec, prometheus::Error> {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                labels,
            )?;
            register_in(&registry, Box::new(h.clone()))?;
            Ok(h)
        };
    let log_appended = counter(
        "courier_log_appended_records_total",
        "Records appended to the log.",
        &["topic"],
    )?;
    let log_append_seconds = histogram(
        "courier_log_append_seconds",
        "Latency of one append call.",
        &["topic"],
    )?;
    let events = counter(
        "courier_processor_events_total",
        "Records applied by a processor and acknowledged by its sink.",
        &["processor", "topic", "partition"],
    )?;
    let batch_seconds = histogram(
        "courier_processor_batch_seconds",
        "Time to apply one batch and have the sink acknowledge it.",
        &["processor"],
    )?;
    let lag = IntGaugeVec::new(
        Opts::new(
            "courier_processor_lag_records",
            "Records between the processor's position and the end of the partition.",
        ),
        &["processor", "topic", "partition"],
    )?;
    register_in(&registry, Box::new(lag.clone()))?;
    let e2e_seconds = histogram(
        "courier_processor_e2e_latency_seconds",
        "From the event's at_ms to applied by the processor.",
        &["processor"],
    )?;
    let errors = counter(
        "courier_processor_errors_total",
        "Processor failures by kind.",
        &["processor", "kind"],
    )?;
    let dead_letters = counter(
        "courier_processor_dead_letters_total",
        "Records a processor could not apply and sent to dead letters.",
        &["processor"],
    )?;
    let stalled = IntGaugeVec::new(
        Opts::new(
            "courier_processor_stalled",
            "1 while the processor has retried a failing batch more than runner.max_attempts times (it keeps retrying).",
        ),
        &["processor"],
    )?;
    register_in(&registry, Box::new(stalled.clone()))?;
    Ok(Metrics {
        registry,
        stalled,
        log_appended,
        log_append_seconds,
        events,
        batch_seconds,
        lag,
        e2e_seconds,
        errors,
        dead_letters,
    })
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    // Registration fails only on duplicate or malformed names, which are constants
    // above and covered by a unit test.
    M.get_or_init(|| build().expect("metric definitions are valid"))
}

/// The registry, for components (sinks, gateway) that add their own metrics.
pub fn registry() -> &'static Registry {
    &metrics().registry
}

/// Everything in the Prometheus text exposition format.
pub fn gather() -> String {
    let mut buf = Vec::new();
    // Encoding into a Vec cannot fail for the text format.
    let _ = TextEncoder::new().encode(&registry().gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

/// Counts records a backend appended.
#[cfg_attr(not(any(feature = "embedded", feature = "kafka")), allow(dead_code))] // for the backends
pub(crate) fn log_appended(topic: &str, n: usize) {
    metrics()
        .log_appended
        .with_label_values(&[topic])
        .inc_by(n as u64);
}

/// Times one append call of a backend.
#[cfg_attr(not(any(feature = "embedded", feature = "kafka")), allow(dead_code))] // for the backends
pub(crate) fn log_append_timer(topic: &str) -> HistogramTimer {
    metrics()
        .log_append_seconds
        .with_label_values(&[topic])
        .start_timer()
}

#[cfg(test)]
mod tests {
    #[test]
    fn metrics_register_and_render() {
        super::log_appended("t", 3);
        let text = super::gather();
        assert!(
            text.contains("courier_log_appended_records_total{topic=\"t\"} 3"),
            "{text}"
        );
    }
}
