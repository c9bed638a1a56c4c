//! Kafka's own perf tools (`ProducerPerformance`, `ConsumerPerformance`,
//! `TopicCommand`) run through `compose/local/kafka-perf.sh`: the ceiling courier's
//! Kafka paths are compared with, on the same broker.
//!
//! Shared by the Kafka benchmark (`pipeline/benches/kafka.rs`) and `courier bench
//! --baselines`. The producer runs with courier's producer settings (`acks=all`,
//! idempotence, lz4, `linger.ms=5`, see [`super::KafkaLog`]).

use std::path::PathBuf;
use std::process::Command;

use crate::log::LogError;

/// Overrides where `kafka-perf.sh` is (a courier binary run outside its source tree).
pub const SCRIPT_ENV: &str = "COURIER_KAFKA_PERF";

/// The script: `$COURIER_KAFKA_PERF`, or compose/local's in this source tree.
pub fn script() -> PathBuf {
    std::env::var_os(SCRIPT_ENV).map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../compose/local/kafka-perf.sh"
            ))
        },
        PathBuf::from,
    )
}

fn err(op: &'static str, e: impl std::fmt::Display) -> LogError {
    LogError::backend(op, e)
}

/// Runs `kafka-perf.sh ARGS…` and returns its standard output.
pub fn run(args: &[&str]) -> Result<String, LogError> {
    let script = script();
    if !script.exists() {
        return Err(err(
            "run Kafka's perf tools",
            format!(
                "{} not found: set {SCRIPT_ENV} to compose/local/kafka-perf.sh of a courier source tree",
                script.display()
            ),
        ));
    }
    let out = Command::new(&script).args(args).output().map_err(|e| {
        err(
            "run Kafka's perf tools",
            format!("{}: {e}", script.display()),
        )
    })?;
    if !out.status.success() {
        return Err(err(
            "run Kafka's perf tools",
            format!(
                "kafka-perf.sh {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Creates `topic` (a full, namespaced name) with `partitions` partitions.
pub fn create_topic(brokers: &str, topic: &str, partitions: u32) -> Result<(), LogError> {
    run(&[
        "topics",
        "--bootstrap-server",
        brokers,
        "--create",
        "--topic",
        topic,
        "--partitions",
        &partitions.to_string(),
        "--replication-factor",
        "1",
    ])
    .map(drop)
}

/// Deletes `topic` (a full, namespaced name).
pub fn delete_topic(brokers: &str, topic: &str) -> Result<(), LogError> {
    run(&[
        "topics",
        "--bootstrap-server",
        brokers,
        "--delete",
        "--topic",
        topic,
    ])
    .map(drop)
}

/// `kafka-producer-perf-test`: `records` records of `size` bytes to `topic` as
/// fast as it goes, with courier's producer settings; records/s.
pub fn produce(brokers: &str, topic: &str, records: u64, size: usize) -> Result<f64, LogError> {
    let out = run(&[
        "producer",
        "--topic",
        topic,
        "--num-records",
        &records.to_string(),
        "--record-size",
        &size.to_string(),
        "--throughput",
        "-1",
        "--producer-props",
        &format!("bootstrap.servers={brokers}"),
        "acks=all",
        "enable.idempotence=true",
        "compression.type=lz4",
        "linger.ms=5",
    ])?;
    producer_rate(&out).map_err(|e| err("read kafka-producer-perf-test's summary", e))
}

/// `kafka-consumer-perf-test`: reads `records` records of `topic`; records/s.
pub fn consume(brokers: &str, topic: &str, records: u64) -> Result<f64, LogError> {
    let out = run(&[
        "consumer",
        "--bootstrap-server",
        brokers,
        "--topic",
        topic,
        "--num-records",
        &records.to_string(),
        "--timeout",
        "60000",
    ])?;
    consumer_rate(&out).map_err(|e| err("read kafka-consumer-perf-test's summary", e))
}

/// `… records sent, 123456.7 records/sec (…)` → 123456.7
pub fn producer_rate(out: &str) -> Result<f64, String> {
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains("records sent"))
        .ok_or_else(|| format!("no `records sent` line in {out:?}"))?;
    line.split(" records/sec")
        .next()
        .and_then(|before| before.rsplit(", ").next())
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no rate in {line:?}"))
}

/// The CSV line after the header; column `nMsg.sec`.
pub fn consumer_rate(out: &str) -> Result<f64, String> {
    let mut lines = out.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .find(|l| l.contains("nMsg.sec"))
        .ok_or_else(|| format!("no header with nMsg.sec in {out:?}"))?
        .split(',')
        .map(str::trim)
        .collect();
    let values: Vec<&str> = lines
        .next()
        .ok_or_else(|| format!("no values after the header in {out:?}"))?
        .split(',')
        .map(str::trim)
        .collect();
    header
        .iter()
        .position(|h| *h == "nMsg.sec")
        .and_then(|i| values.get(i))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no nMsg.sec value in {values:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_read_from_the_tools_summaries() {
        let produced = "50000 records sent, 10000.0 records/sec (0.95 MB/sec), 3.2 ms avg latency\n\
                        200000 records sent, 123456.7 records/sec (11.77 MB/sec), 2.0 ms avg latency, 30.0 ms max latency.\n";
        assert_eq!(producer_rate(produced), Ok(123456.7));
        let consumed = "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms\n\
                        2026-11-28 06:00:00:000, 2026-11-28 06:00:01:000, 9.5, 9.5, 100000, 99000.5, 300\n";
        assert_eq!(consumer_rate(consumed), Ok(99000.5));
        assert!(producer_rate("nothing").is_err());
        assert!(consumer_rate("nMsg.sec\n").is_err());
    }
}
