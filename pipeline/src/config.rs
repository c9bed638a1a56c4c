//! The pipeline's sections of the configuration: `[log]`, `[kafka]`, `[runner]`
//! and `[metrics]`. Each crate owns its sections (the view store's and push's are
//! in courier-sinks, the gateway's in courier-gateway); the application crate puts
//! them together, reads the file and the environment, and validates. Unknown keys
//! are errors, so a typo never silently falls back to a default.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

#[cfg(feature = "embedded")]
use crate::embedded::{EmbeddedLog, EmbeddedOptions};
#[cfg(feature = "kafka")]
use crate::kafka::{KafkaLog, KafkaSettings};
use crate::log::{EventLog, LogError};

/// Where a local broker listens (compose/local/up.sh).
pub const DEFAULT_BROKERS: &str = "127.0.0.1:9092";

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
    /// Extra librdkafka properties for every Kafka client (e.g.
    /// `"security.protocol" = "SSL"`); they override courier's own defaults.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// This instance's `group.instance.id` (static membership). Never read from
    /// the file, which every instance shares (Kafka fences a duplicate id):
    /// `COURIER_INSTANCE_ID` or `--instance-id`, per instance.
    #[serde(skip)]
    pub instance_id: Option<String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: default_brokers(),
            replication_factor: default_replication_factor(),
            properties: BTreeMap::new(),
            instance_id: None,
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
fn default_replication_factor() -> i32 {
    1
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
                kafka.settings(namespace),
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
        Ok(())
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

    /// The client settings (brokers, properties, instance id) for `namespace`.
    #[cfg(feature = "kafka")]
    pub fn settings(&self, namespace: &str) -> KafkaSettings {
        KafkaSettings {
            brokers: self.brokers.clone(),
            namespace: namespace.to_string(),
            replication_factor: self.replication_factor,
            properties: self.properties.clone(),
            instance_id: self.instance_id.clone(),
        }
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
