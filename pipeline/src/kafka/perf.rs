//! Kafka's own perf tools (`ProducerPerformance`, `ConsumerPerformance`,
//! `TopicCommand`) run through `compose/local/kafka-perf.sh`: the ceiling courier's
//! Kafka paths are compared with, on the same broker.
//!
//! Shared by the Kafka benchmark (`pipeline/benches/kafka.rs`) and `courier bench
//! --baselines`. The producer runs with courier's producer settings (`acks=all`,
//! idempotence, lz4, `linger.ms=5`, see [`super::KafkaLog`]); every tool logs in
//! as courier does ([`Tools`]).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use super::KafkaSettings;
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

/// Kafka's tools pointed at the brokers of some client settings and logged in as
/// those settings say: their security properties, in the Java clients' terms, go
/// into a private client config file (removed on drop) that every tool gets as
/// `--command-config`.
pub struct Tools {
    brokers: String,
    config: Option<PathBuf>,
}

impl Tools {
    /// Tools for `settings` (its brokers and security properties; librdkafka's
    /// other properties tune librdkafka and are not passed on).
    pub fn new(settings: &KafkaSettings) -> Result<Tools, LogError> {
        let config = match java_properties(&settings.properties)
            .map_err(|e| err("configure Kafka's tools", e))?
        {
            None => None,
            Some(text) => {
                static N: AtomicU32 = AtomicU32::new(0);
                let path = std::env::temp_dir().join(format!(
                    "courier-kafka-tools-{}-{}.properties",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                // It holds the password: readable by its owner only.
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .and_then(|mut f| f.write_all(text.as_bytes()))
                    .map_err(|e| {
                        err(
                            "configure Kafka's tools",
                            format!("{}: {e}", path.display()),
                        )
                    })?;
                Some(path)
            }
        };
        Ok(Tools {
            brokers: settings.brokers.clone(),
            config,
        })
    }

    /// The brokers.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// `--command-config FILE` for a secured cluster, nothing for a plaintext one:
    /// what a tool's command line needs to reach it.
    pub fn config_args(&self) -> Vec<String> {
        match &self.config {
            Some(path) => vec!["--command-config".into(), path.display().to_string()],
            None => Vec::new(),
        }
    }

    /// Runs `kafka-perf.sh TOOL ARGS… [--command-config FILE]`; its standard output.
    pub fn run(&self, args: &[&str]) -> Result<String, LogError> {
        let extra = self.config_args();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(extra.iter().map(String::as_str));
        run(&all)
    }

    /// Creates `topic` (a full, namespaced name) with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), LogError> {
        self.run(&[
            "topics",
            "--bootstrap-server",
            &self.brokers,
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
    pub fn delete_topic(&self, topic: &str) -> Result<(), LogError> {
        self.run(&[
            "topics",
            "--bootstrap-server",
            &self.brokers,
            "--delete",
            "--topic",
            topic,
        ])
        .map(drop)
    }

    /// `kafka-producer-perf-test`: `records` records of `size` bytes to `topic` as
    /// fast as it goes, with courier's producer settings; records/s.
    pub fn produce(&self, topic: &str, records: u64, size: usize) -> Result<f64, LogError> {
        let out = self.run(&[
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
            &format!("bootstrap.servers={}", self.brokers),
            "acks=all",
            "enable.idempotence=true",
            "compression.type=lz4",
            "linger.ms=5",
        ])?;
        producer_rate(&out).map_err(|e| err("read kafka-producer-perf-test's summary", e))
    }

    /// `kafka-consumer-perf-test`: reads `records` records of `topic`; records/s.
    pub fn consume(&self, topic: &str, records: u64) -> Result<f64, LogError> {
        let out = self.run(&[
            "consumer",
            "--bootstrap-server",
            &self.brokers,
            "--topic",
            topic,
            "--num-records",
            &records.to_string(),
            "--timeout",
            "60000",
        ])?;
        consumer_rate(&out).map_err(|e| err("read kafka-consumer-perf-test's summary", e))
    }
}

impl Drop for Tools {
    fn drop(&mut self) {
        if let Some(path) = &self.config {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The Java clients' config for librdkafka's security properties, or `None` when
/// there are none (plaintext). A security property it cannot translate is an
/// error, not a tool that silently connects otherwise.
fn java_properties(rd: &BTreeMap<String, String>) -> Result<Option<String>, String> {
    let mut out = Vec::new();
    let get = |k: &str| rd.get(k).map(String::as_str);
    if let Some(protocol) = get("security.protocol") {
        out.push(format!(
            "security.protocol={}",
            protocol.to_ascii_uppercase()
        ));
    }
    if let Some(ca) = get("ssl.ca.location") {
        out.push("ssl.truststore.type=PEM".into());
        out.push(format!("ssl.truststore.location={ca}"));
    }
    let mechanism = get("sasl.mechanism").or(get("sasl.mechanisms"));
    if let (Some(user), Some(password)) = (get("sasl.username"), get("sasl.password")) {
        let mechanism = mechanism.unwrap_or("GSSAPI");
        let module = match mechanism {
            "SCRAM-SHA-256" | "SCRAM-SHA-512" => {
                "org.apache.kafka.common.security.scram.ScramLoginModule"
            }
            "PLAIN" => "org.apache.kafka.common.security.plain.PlainLoginModule",
            other => {
                return Err(format!(
                    "sasl.mechanism {other}: no Java login module known"
                ));
            }
        };
        let quoted = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        out.push(format!("sasl.mechanism={mechanism}"));
        out.push(format!(
            "sasl.jaas.config={module} required username=\"{}\" password=\"{}\";",
            quoted(user),
            quoted(password)
        ));
    }
    let known = [
        "security.protocol",
        "ssl.ca.location",
        "sasl.mechanism",
        "sasl.mechanisms",
        "sasl.username",
        "sasl.password",
    ];
    if let Some(k) = rd
        .keys()
        .find(|k| (k.starts_with("ssl.") || k.starts_with("sasl.")) && !known.contains(&k.as_str()))
    {
        return Err(format!(
            "{k}: Kafka's tools are not told about it (only {known:?})"
        ));
    }
    Ok((!out.is_empty()).then(|| out.join("\n") + "\n"))
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
    fn security_properties_become_the_java_clients_config() {
        let rd = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(java_properties(&rd(&[("linger.ms", "5")])), Ok(None));
        let java = java_properties(&rd(&[
            ("security.protocol", "sasl_ssl"),
            ("ssl.ca.location", "/s/ca.pem"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "courier"),
            ("sasl.password", "p\"w"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            java,
            "security.protocol=SASL_SSL\nssl.truststore.type=PEM\nssl.truststore.location=/s/ca.pem\n\
             sasl.mechanism=SCRAM-SHA-512\nsasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule \
             required username=\"courier\" password=\"p\\\"w\";\n"
        );
        let e = java_properties(&rd(&[("ssl.certificate.location", "/c.pem")])).unwrap_err();
        assert!(e.starts_with("ssl.certificate.location"), "{e}");
    }

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
