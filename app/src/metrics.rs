//! The process's metrics as a whole: every crate's metric set registered at start
//! (so `/metrics` lists each one from the first scrape, and the dashboards can be
//! checked against them; the Kafka statistics gauges too, with no sample on the
//! embedded log), `courier_build_info`, and the process collector
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, open fds, ...).

use std::collections::BTreeSet;
use std::sync::Once;

/// Registers everything once; later calls do nothing.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Each metric set registers itself on first use.
        let _ = courier_pipeline::metrics::metrics();
        let _ = courier_pipeline::kafka::stats::metrics();
        let _ = courier_processors::metrics::metrics();
        let _ = courier_sinks::search::metrics::metrics();
        let _ = courier_gateway::metrics::get();
        if let Err(e) = register_build_info() {
            tracing::warn!(error = %e, "cannot register courier_build_info");
        }
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self();
            if let Err(e) = courier_pipeline::metrics::register(Box::new(process)) {
                tracing::warn!(error = %e, "cannot register the process metrics");
            }
        }
    });
}

fn register_build_info() -> Result<(), prometheus::Error> {
    let info = prometheus::IntGaugeVec::new(
        prometheus::Opts::new(
            "courier_build_info",
            "1, labelled with the version of the courier binary.",
        ),
        &["version"],
    )?;
    info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    courier_pipeline::metrics::register(Box::new(info))
}

/// Every metric name this process exports, once [`init`] ran.
pub fn exported_names() -> BTreeSet<String> {
    init();
    courier_pipeline::metrics::registered_names()
}
