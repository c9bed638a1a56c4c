//! The gateway's Prometheus metrics, registered in the pipeline's registry so one
//! `/metrics` shows the log, the processors and the gateway.

use std::sync::OnceLock;

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts};

/// Every metric the gateway exports.
pub struct Metrics {
    /// Requests answered, by route template, method and status.
    pub requests: IntCounterVec,
    /// Request latency by route template.
    pub request_seconds: HistogramVec,
    /// Events published, by event type.
    pub published: IntCounterVec,
    /// Open live (WebSocket) connections.
    pub ws_connections: IntGauge,
    /// Live connections cut off for being too slow.
    pub ws_slow_disconnects: IntCounter,
    /// Reconnects with `?since=`, by outcome (`resumed`, `resync`: told to
    /// re-read the inbox, `failed`: the log could not be read).
    pub ws_resumes: IntCounterVec,
    /// Missed events delivered by resumes.
    pub ws_resumed_events: IntCounter,
}

fn build() -> Result<Metrics, prometheus::Error> {
    let requests = IntCounterVec::new(
        Opts::new(
            "courier_gateway_requests_total",
            "HTTP requests answered by the gateway.",
        ),
        &["route", "method", "status"],
    )?;
    courier_pipeline::metrics::register(Box::new(requests.clone()))?;
    let request_seconds = HistogramVec::new(
        HistogramOpts::new(
            "courier_gateway_request_seconds",
            "Latency of gateway HTTP requests.",
        )
        .buckets(vec![
            0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0,
        ]),
        &["route"],
    )?;
    courier_pipeline::metrics::register(Box::new(request_seconds.clone()))?;
    let published = IntCounterVec::new(
        Opts::new(
            "courier_gateway_published_events_total",
            "Events the gateway published to the log.",
        ),
        &["type"],
    )?;
    courier_pipeline::metrics::register(Box::new(published.clone()))?;
    let ws_connections = IntGauge::new(
        "courier_gateway_ws_connections",
        "Open live (WebSocket) connections.",
    )?;
    courier_pipeline::metrics::register(Box::new(ws_connections.clone()))?;
    let ws_slow_disconnects = IntCounter::new(
        "courier_gateway_ws_slow_disconnects_total",
        "Live connections cut off because their queue was full.",
    )?;
    courier_pipeline::metrics::register(Box::new(ws_slow_disconnects.clone()))?;
    let ws_resumes = IntCounterVec::new(
        Opts::new(
            "courier_gateway_ws_resumes_total",
            "Live connections that asked to resume from a cursor, by outcome.",
        ),
        &["outcome"],
    )?;
    courier_pipeline::metrics::register(Box::new(ws_resumes.clone()))?;
    let ws_resumed_events = IntCounter::new(
        "courier_gateway_ws_resumed_events_total",
        "Missed events delivered to resuming live connections.",
    )?;
    courier_pipeline::metrics::register(Box::new(ws_resumed_events.clone()))?;
    Ok(Metrics {
        requests,
        request_seconds,
        published,
        ws_connections,
        ws_slow_disconnects,
        ws_resumes,
        ws_resumed_events,
    })
}

/// The process-wide gateway metrics.
pub fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    // Registration fails only on duplicate or malformed names: constants above.
    M.get_or_init(|| build().expect("gateway metric definitions are valid"))
}
