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
use serde::Serialize;
use utoipa::ToSchema;

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

// Fields in alphabetical order, as the JSON object this replaced printed them.
/// The answer of `/healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// The log.
    pub log: Dependency,
    /// Each processor running in this process, by name.
    pub processors: BTreeMap<String, ProcessorHealth>,
    /// `ok`, `degraded` (200) or `unavailable` (503).
    #[schema(value_type = HealthStatus)]
    pub status: &'static str,
    /// The view store.
    pub views: Dependency,
}

/// How the gateway is.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Everything answers.
    Ok,
    /// The views are unreachable or a processor is stalled.
    Degraded,
    /// The log is unreachable.
    Unavailable,
}

/// One dependency, probed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Dependency {
    /// The log's backend (`embedded` or `kafka`); absent for the views.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<&'static str>,
    /// Why it is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether it answered.
    pub ok: bool,
}

/// One processor of this process.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct ProcessorHealth {
    /// Records behind, summed over its partitions.
    pub lag: i64,
    /// Whether it is stalled.
    pub stalled: bool,
}

fn part(result: Result<(), String>, backend: Option<&'static str>) -> Dependency {
    Dependency {
        backend,
        ok: result.is_ok(),
        error: result.err(),
    }
}

/// Lag (summed over partitions) and stall of each processor of this process,
/// from the process's metrics.
fn processors() -> BTreeMap<String, ProcessorHealth> {
    let mut out: BTreeMap<String, ProcessorHealth> = BTreeMap::new();
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
            let entry = out.entry(name).or_default();
            let v = m.get_gauge().get_value();
            match field {
                "lag" => entry.lag += v as i64,
                _ => entry.stalled = v > 0.0,
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
    let stalled = processors.values().any(|p| p.stalled);
    let (status, code) = if log.is_err() {
        ("unavailable", StatusCode::SERVICE_UNAVAILABLE)
    } else if views.is_err() || stalled {
        ("degraded", StatusCode::OK)
    } else {
        ("ok", StatusCode::OK)
    };
    let body = Health {
        log: part(log, Some(gw.log.backend())),
        processors,
        status,
        views: part(views, None),
    };
    let mut r = (code, axum::Json(body)).into_response();
    if code == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Serialized directly, the typed answer is the bytes of the `json!`
    /// object it replaced (whose keys serde_json sorted).
    #[test]
    fn the_typed_health_prints_as_the_json_object_did() {
        let health = Health {
            log: part(Err("down".into()), Some("kafka")),
            processors: BTreeMap::from([(
                "inbox".to_string(),
                ProcessorHealth {
                    lag: 3,
                    stalled: true,
                },
            )]),
            status: "unavailable",
            views: part(Ok(()), None),
        };
        let before = json!({
            "status": "unavailable",
            "log": {"backend": "kafka", "ok": false, "error": "down"},
            "views": {"ok": true},
            "processors": {"inbox": {"lag": 3, "stalled": true}},
        });
        assert_eq!(serde_json::to_string(&health).unwrap(), before.to_string());
    }
}
