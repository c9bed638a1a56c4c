//! The pipeline's sections of the configuration: `[log]`, `[kafka]`, `[runner]`
//! and `[metrics]`. Each crate owns its sections (the view store's and push's are
//! in courier-sinks, the gateway's in courier-gateway); the application crate puts
//! them together, reads the file and the environment, and validates. Unknown keys
//! are errors, so a typo never silently falls back to a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

#[cfg(feature = "embedded")]
use crate::embedded::{EmbeddedLog, EmbeddedOptions};
#[cfg(feature = "kafka")]
use crate::kafka::{KafkaLog, KafkaSettings};
use crate::log::{EventLog, LogError};
use crate::secret;

/// Where a local broker listens (compose/local/up.sh).
pub const DEFAULT_BROKERS: &str = "127.0.0.1:9092";

/// How often librdkafka reports its statistics by default (`[kafka]
/// statistics_interval_ms`): as often as Prometheus scrapes by default, so each
/// scrape sees a fresh report.
pub const DEFAULT_STATISTICS_INTERVAL_MS: u64 = 15_000;

/// The log backend.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `embedded` (RocksDB under `data_dir/log`) or `kafka` (see `[kafka]`).
    #[serde(default)]
    pub backend: Backend,
    /// fsync every append of the embedded log (survive power loss, not only a
    /// killed process). Default false.
    #[serde(default)]
    pub fsync: bool,
}

/// Log backends.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The RocksDB log inside the process.
    #[default]
    Embedded,
    /// Apache Kafka, through librdkafka.
    Kafka,
}

/// The Kafka cluster (`[kafka]`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma-separated `host:port`. Default `127.0.0.1:9092`
    /// (compose/local/up.sh).
    #[serde(default = "default_brokers")]
    pub brokers: String,
    /// Replication factor of the topics courier creates. Default 1 (one broker).
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i32,
    /// TLS to the brokers (librdkafka's `security.protocol` SSL, or SASL_SSL with
    /// `username`). Default false.
    #[serde(default)]
    pub tls: bool,
    /// PEM file of the CA certificates that verify the brokers when `tls` is on
    /// (`ssl.ca.location`), in place of the system's. A leading `~/` is the home
    /// directory. Default none.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// SASL user (`sasl.username`), with `password` or `password_file` and
    /// `sasl_mechanism`. Default none: no SASL.
    #[serde(default)]
    pub username: Option<String>,
    /// The user's password. Better kept out of the file: `COURIER_KAFKA__PASSWORD`
    /// or `password_file`. Masked by `courier config`.
    #[serde(default)]
    pub password: Option<String>,
    /// A file holding the user's password alone (one trailing newline ignored),
    /// read when courier connects; e.g. a secret mounted by the container runtime.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// SASL mechanism with `username` (`sasl.mechanism`): `SCRAM-SHA-512`,
    /// `SCRAM-SHA-256` or `PLAIN` (PLAIN only over TLS). Default `SCRAM-SHA-512`.
    #[serde(default = "default_sasl_mechanism")]
    pub sasl_mechanism: String,
    /// Extra librdkafka properties for every Kafka client (e.g.
    /// `"ssl.certificate.location"`); they override courier's own defaults and the
    /// properties the keys above set.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// This instance's `group.instance.id` (static membership). Never read from
    /// the file, which every instance shares (Kafka fences a duplicate id):
    /// `COURIER_INSTANCE_ID` or `--instance-id`, per instance.
    #[serde(skip)]
    pub instance_id: Option<String>,
    /// How often the producer and each group member report librdkafka's
    /// statistics, exported as the `courier_kafka_*` gauges
    /// (`statistics.interval.ms`); 0 turns them off. Default 15000.
    #[serde(default = "default_statistics_interval_ms")]
    pub statistics_interval_ms: u64,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: default_brokers(),
            replication_factor: default_replication_factor(),
            tls: false,
            ca_file: None,
            username: None,
            password: None,
            password_file: None,
            sasl_mechanism: default_sasl_mechanism(),
            properties: BTreeMap::new(),
            instance_id: None,
            statistics_interval_ms: DEFAULT_STATISTICS_INTERVAL_MS,
        }
    }
}

/// Consumer settings shared by every processor.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunnerConfig {
    /// Most records handed to a processor at once.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// How long a poll waits for records before the runner checks for shutdown
    /// and caught-up state, in ms.
    #[serde(default = "default_poll_ms")]
    pub poll_timeout_ms: u64,
    /// Attempts at a failing batch (sink down) before the processor reports
    /// itself stalled (`courier_processor_stalled` = 1, error logs). It keeps
    /// retrying, with exponential backoff and jitter (at most 10 s apart), until
    /// the sink answers or it is stopped: an outage is ridden out, not fatal.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
}

/// Metrics endpoint.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address to serve `/metrics` on while a processor runs, e.g. `127.0.0.1:9898`.
    /// None: not served.
    #[serde(default)]
    pub listen: Option<String>,
}

fn default_brokers() -> String {
    DEFAULT_BROKERS.to_string()
}
fn default_statistics_interval_ms() -> u64 {
    DEFAULT_STATISTICS_INTERVAL_MS
}
fn default_replication_factor() -> i32 {
    1
}
fn default_sasl_mechanism() -> String {
    "SCRAM-SHA-512".to_string()
}
fn default_max_batch() -> usize {
    1000
}
fn default_poll_ms() -> u64 {
    200
}
fn default_attempts() -> u32 {
    8
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            max_batch: default_max_batch(),
            poll_timeout_ms: default_poll_ms(),
            max_attempts: default_attempts(),
        }
    }
}

impl LogConfig {
    /// Opens the configured log, the embedded one under `dir`; an error if this
    /// build lacks its backend (the features `embedded` and `kafka` of this crate).
    /// `namespace` prefixes Kafka topics and groups.
    pub fn open(
        &self,
        kafka: &KafkaConfig,
        namespace: &str,
        dir: &Path,
    ) -> Result<Arc<dyn EventLog>, LogError> {
        let _ = (kafka, namespace, dir);
        match self.backend {
            #[cfg(feature = "embedded")]
            Backend::Embedded => {
                let log = EmbeddedLog::open(
                    dir,
                    courier_topics::Catalog::builtin(),
                    EmbeddedOptions { fsync: self.fsync },
                )?;
                Ok(Arc::new(log))
            }
            // No network yet: the catalog's topics are created or checked on the
            // log's first use (`KafkaLog::connect` does it at once).
            #[cfg(feature = "kafka")]
            Backend::Kafka => Ok(Arc::new(KafkaLog::new(
                kafka
                    .settings(namespace)
                    .map_err(|e| LogError::backend("configure Kafka", e))?,
                courier_topics::Catalog::builtin(),
            )?)),
            #[allow(unreachable_patterns)]
            other => Err(LogError::backend(
                "open the log",
                format!("this build has no {other:?} log backend (a feature of courier-pipeline)"),
            )),
        }
    }
}

impl KafkaConfig {
    /// What is wrong with it, as `kafka.KEY: ...`.
    pub fn validate(&self) -> Result<(), String> {
        if self.brokers.trim().is_empty() {
            return Err("kafka.brokers is empty; expected host:port[,host:port...]".into());
        }
        if self.replication_factor < 1 {
            return Err(format!(
                "kafka.replication_factor must be at least 1, not {}",
                self.replication_factor
            ));
        }
        if self.ca_file.is_some() && !self.tls {
            return Err(
                "kafka.ca_file is set but kafka.tls is false: set tls = true \
                        (COURIER_KAFKA__TLS=true) or unset ca_file"
                    .into(),
            );
        }
        // The password file is read when courier connects, not here: a config
        // names it before the server that makes it has started.
        secret::at_most_one(
            "kafka",
            self.password.is_some(),
            self.password_file.is_some(),
        )?;
        let has_password = self.password.is_some() || self.password_file.is_some();
        match (&self.username, has_password) {
            (Some(_), false) => Err("kafka.username is set without a password: set \
                                     kafka.password (COURIER_KAFKA__PASSWORD) or \
                                     kafka.password_file"
                .into()),
            (None, true) => Err("kafka has a password but no username".into()),
            (Some(_), true)
                if !matches!(
                    self.sasl_mechanism.as_str(),
                    "SCRAM-SHA-512" | "SCRAM-SHA-256" | "PLAIN"
                ) =>
            {
                Err(format!(
                    "kafka.sasl_mechanism `{}`: expected SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN",
                    self.sasl_mechanism
                ))
            }
            // PLAIN sends the password as it is: only inside TLS.
            (Some(_), true) if self.sasl_mechanism == "PLAIN" && !self.tls => Err(
                "kafka.sasl_mechanism PLAIN sends the password in clear: only with tls = true"
                    .into(),
            ),
            _ => Ok(()),
        }
    }

    /// The `security.protocol` that `tls` and `username` stand for (SSL, SASL_SSL,
    /// SASL_PLAINTEXT); `None` for plaintext. `properties` may still override it.
    pub fn security_protocol(&self) -> Option<&'static str> {
        match (self.tls, &self.username) {
            (false, None) => None,
            (true, None) => Some("SSL"),
            (false, Some(_)) => Some("SASL_PLAINTEXT"),
            (true, Some(_)) => Some("SASL_SSL"),
        }
    }

    /// The librdkafka properties the security keys stand for (`security.protocol`,
    /// `ssl.ca.location`, `sasl.*`), the password read from its file if it is
    /// there. Before `properties`, which override them.
    pub fn security_properties(&self) -> Result<BTreeMap<String, String>, String> {
        self.validate()?;
        let mut p = BTreeMap::new();
        let password = secret::password(
            "kafka",
            self.password.as_deref(),
            self.password_file.as_deref(),
        )?;
        if let Some(protocol) = self.security_protocol() {
            p.insert("security.protocol".into(), protocol.into());
        }
        if let Some(ca) = &self.ca_file {
            p.insert(
                "ssl.ca.location".into(),
                secret::expand_home(ca).display().to_string(),
            );
        }
        if let (Some(user), Some(password)) = (&self.username, password) {
            p.insert("sasl.mechanism".into(), self.sasl_mechanism.clone());
            p.insert("sasl.username".into(), user.clone());
            p.insert("sasl.password".into(), password.expose().to_string());
        }
        Ok(p)
    }

    /// Sets this instance's `group.instance.id` (static group membership), as
    /// Kafka accepts it: 1 to 249 of `A-Z a-z 0-9 . _ -`.
    pub fn set_instance_id(&mut self, id: String) -> Result<(), String> {
        if id.is_empty()
            || id.len() > 249
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(format!(
                "instance id `{id}`: an instance id is 1 to 249 of A-Z a-z 0-9 . _ -"
            ));
        }
        self.instance_id = Some(id);
        Ok(())
    }

    /// The client settings (brokers, security and other properties, instance id)
    /// for `namespace`; an error when the password file cannot be read.
    #[cfg(feature = "kafka")]
    pub fn settings(&self, namespace: &str) -> Result<KafkaSettings, String> {
        let mut properties = self.security_properties()?;
        properties.extend(self.properties.clone());
        Ok(KafkaSettings {
            brokers: self.brokers.clone(),
            namespace: namespace.to_string(),
            replication_factor: self.replication_factor,
            properties,
            instance_id: self.instance_id.clone(),
            statistics_interval_ms: self.statistics_interval_ms,
        })
    }
}

impl RunnerConfig {
    /// What is wrong with it, as `runner.KEY: ...`.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_batch == 0 {
            return Err("runner.max_batch must be at least 1".into());
        }
        if self.max_attempts == 0 {
            return Err("runner.max_attempts must be at least 1".into());
        }
        Ok(())
    }
}
