//! `GET /healthz`: each dependency on its own line, so an operator sees which
//! part is down instead of a flat `ok`: the log (probed), the view store
//! (probed), and the lag and stall of every processor running in this process.
//!
//! Status: `ok`; `degraded` (200) while the views are unreachable or a processor
//! is stalled: the gateway still serves what it can check; `unavailable` (503,
//! `Retry-After`) while the log is unreachable, since no write can be accepted.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::Gateway;

/// How long each probe may take before its dependency counts as down: a
/// health check must answer even while a dependency hangs.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

async fn probe<T, E: std::fmt::Display>(
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<(), String> {
    match tokio::time::timeout(PROBE_TIMEOUT, f).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} ms", PROBE_TIMEOUT.as_millis())),
    }
}

fn part(result: &Result<(), String>, mut fields: Value) -> Value {
    fields["ok"] = json!(result.is_ok());
    if let Err(e) = result {
        fields["error"] = json!(e);
    }
    fields
}

/// Lag (summed over partitions) and stall of each processor of this process,
/// from the process's metrics.
fn processors() -> BTreeMap<String, Value> {
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    for family in courier_pipeline::metrics::registry().gather() {
        let field = match family.name() {
            "courier_processor_lag_records" => "lag",
            "courier_processor_stalled" => "stalled",
            _ => continue,
        };
        for m in family.get_metric() {
            let Some(name) = m
                .get_label()
                .iter()
                .find(|l| l.name() == "processor")
                .map(|l| l.value().to_string())
            else {
                continue;
            };
            let entry = out
                .entry(name)
                .or_insert_with(|| json!({ "lag": 0, "stalled": false }));
            let v = m.get_gauge().get_value();
            match field {
                "lag" => {
                    entry["lag"] = json!(entry["lag"].as_f64().unwrap_or(0.0) as i64 + v as i64)
                }
                _ => entry["stalled"] = json!(v > 0.0),
            }
        }
    }
    out
}

/// The answer of `/healthz`.
pub async fn report(gw: &Gateway) -> Response {
    let (log, views) = tokio::join!(
        probe(gw.log.watermarks(courier_topics::CONVERSATIONS, 0)),
        probe(gw.views.checkpoint(0)),
    );
    let processors = processors();
    let stalled = processors.values().any(|p| p["stalled"] == true);
    let (status, code) = if log.is_err() {
        ("unavailable", StatusCode::SERVICE_UNAVAILABLE)
    } else if views.is_err() || stalled {
        ("degraded", StatusCode::OK)
    } else {
        ("ok", StatusCode::OK)
    };
    let body = json!({
        "status": status,
        "log": part(&log, json!({ "backend": gw.log.backend() })),
        "views": part(&views, json!({})),
        "processors": processors,
    });
    let mut r = (code, axum::Json(body)).into_response();
    if code == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}
