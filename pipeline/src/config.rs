//! courier's configuration: a TOML file (`--config`), environment overrides, and
//! defaults that run everything embedded under `--data DIR`.
//!
//! Precedence, strongest first: command-line flags, `COURIER_*` environment
//! variables, the file, defaults. Unknown keys are errors, so a typo never silently
//! falls back to a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

#[cfg(feature = "embedded")]
use crate::embedded::{EmbeddedLog, EmbeddedOptions};
#[cfg(feature = "kafka")]
use crate::kafka::{KafkaLog, KafkaSettings};
use crate::log::{EventLog, LogError};

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory for everything courier keeps on local disk (the embedded log, view
    /// stores, secrets). Default `./data`.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Prefix of every Kafka topic (`{ns}.courier.conversations.v1`) and consumer
    /// group (`{ns}.courier.inbox`) courier uses, and subdirectory of `data_dir` for
    /// the embedded log and views, so environments can share one cluster or disk.
    /// Commands keep taking logical names. Default empty: no prefix.
    #[serde(default)]
    pub namespace: String,
    /// Which log to use and how.
    #[serde(default)]
    pub log: LogConfig,
    /// How to reach Kafka when `log.backend = "kafka"`.
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// How processors consume.
    #[serde(default)]
    pub runner: RunnerConfig,
    /// Where `/metrics` is served while a processor runs.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Which store holds the materialized views (inbox and history).
    #[serde(default)]
    pub views: ViewsConfig,
    /// How to reach Cassandra when `views.backend = "cassandra"`.
    #[serde(default)]
    pub cassandra: CassandraConfig,
    /// Push delivery (`courier run push`).
    #[serde(default)]
    pub push: PushConfig,
    /// The HTTP/WebSocket gateway of `courier up`.
    #[serde(default)]
    pub gateway: GatewayConfig,
}

/// The view store (`[views]`).
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ViewsConfig {
    /// `rocksdb` (embedded, under `data_dir/views`, with generations for
    /// `courier rebuild`) or `cassandra` (see `[cassandra]`; schema applied by
    /// `courier migrate`). Default `rocksdb`.
    #[serde(default)]
    pub backend: ViewsBackend,
}

/// View store backends.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ViewsBackend {
    /// RocksDB inside the process.
    #[default]
    Rocksdb,
    /// Apache Cassandra or ScyllaDB, through the `scylla` driver.
    Cassandra,
}

/// The Cassandra cluster (`[cassandra]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CassandraConfig {
    /// Nodes to contact first, comma-separated `host:port`. Default
    /// `127.0.0.1:9042` (compose/local/up.sh cassandra).
    #[serde(default = "default_contact_points")]
    pub contact_points: String,
    /// Keyspace of the views; prefixed by the namespace (`{ns}_courier`, with
    /// '.' and '-' turned into '_'). Default `courier`.
    #[serde(default = "default_keyspace")]
    pub keyspace: String,
    /// Replication factor of the keyspace `courier migrate` creates. Default 1.
    #[serde(default = "default_cassandra_replication_factor")]
    pub replication_factor: u32,
    /// Datacenter to send requests to; when set, the keyspace is created with
    /// `NetworkTopologyStrategy` in it (otherwise `SimpleStrategy`). Default none.
    #[serde(default)]
    pub local_datacenter: Option<String>,
}

impl Default for CassandraConfig {
    fn default() -> Self {
        CassandraConfig {
            contact_points: default_contact_points(),
            keyspace: default_keyspace(),
            replication_factor: default_cassandra_replication_factor(),
            local_datacenter: None,
        }
    }
}

fn default_contact_points() -> String {
    "127.0.0.1:9042".to_string()
}
fn default_keyspace() -> String {
    "courier".to_string()
}
fn default_cassandra_replication_factor() -> u32 {
    1
}

/// Where a local broker listens (compose/local/up.sh).
pub const DEFAULT_BROKERS: &str = "127.0.0.1:9092";

/// Longest keyspace name Cassandra accepts.
const MAX_KEYSPACE_LEN: usize = 48;

/// The log backend.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
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
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The RocksDB log inside the process.
    #[default]
    Embedded,
    /// Apache Kafka, through librdkafka.
    Kafka,
}

/// The Kafka cluster (`[kafka]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
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
#[derive(Debug, Clone, Deserialize, PartialEq)]
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
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address to serve `/metrics` on while a processor runs, e.g. `127.0.0.1:9898`.
    /// None: not served.
    #[serde(default)]
    pub listen: Option<String>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
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

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: default_data_dir(),
            namespace: String::new(),
            log: LogConfig::default(),
            kafka: KafkaConfig::default(),
            runner: RunnerConfig::default(),
            metrics: MetricsConfig::default(),
            views: ViewsConfig::default(),
            cassandra: CassandraConfig::default(),
            push: PushConfig::default(),
            gateway: GatewayConfig::default(),
        }
    }
}

/// Push delivery (`[push]`): where jobs go and how hard to try.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PushConfig {
    /// The push provider endpoint each job is POSTed to as JSON, e.g.
    /// `http://127.0.0.1:8088/push` (plain HTTP). Required by `courier run push`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Jobs in flight at once.
    #[serde(default = "default_push_concurrency")]
    pub concurrency: usize,
    /// One request's deadline, in ms; a request that takes longer is retried.
    #[serde(default = "default_push_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts per job on 5xx, 429 and timeouts before it is dead-lettered.
    #[serde(default = "default_push_attempts")]
    pub max_attempts: u32,
    /// Consecutive failures (5xx, timeouts, connection errors) that open the
    /// endpoint's circuit breaker.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long an open breaker waits before one probe request, in ms.
    #[serde(default = "default_breaker_cooldown_ms")]
    pub breaker_cooldown_ms: u64,
    /// How long a sent job id is remembered, in ms. Longer than the push-jobs
    /// topic's retention (7 days), so no job on the topic outlives its id.
    #[serde(default = "default_sent_ttl_ms")]
    pub sent_ttl_ms: u64,
}

fn default_push_concurrency() -> usize {
    16
}
fn default_push_timeout_ms() -> u64 {
    5_000
}
fn default_push_attempts() -> u32 {
    8
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_cooldown_ms() -> u64 {
    1_000
}
fn default_sent_ttl_ms() -> u64 {
    8 * 24 * 3600 * 1000
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            endpoint: None,
            concurrency: default_push_concurrency(),
            timeout_ms: default_push_timeout_ms(),
            max_attempts: default_push_attempts(),
            breaker_failures: default_breaker_failures(),
            breaker_cooldown_ms: default_breaker_cooldown_ms(),
            sent_ttl_ms: default_sent_ttl_ms(),
        }
    }
}

/// `[gateway]`: where `courier up` listens and the limits it enforces. Plain data:
/// the gateway crate turns it into its settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address to listen on (`--listen` overrides it).
    #[serde(default = "default_gateway_listen")]
    pub listen: String,
    /// HS256 secret for bearer tokens; without one, a development secret is
    /// generated once into `data_dir/gateway/jwt_secret`.
    #[serde(default)]
    pub jwt_secret: Option<String>,
    /// Lifetime of tokens minted by `courier token`, in seconds.
    #[serde(default = "default_token_ttl")]
    pub token_ttl_secs: u64,
    /// Longest message text, in bytes of UTF-8.
    #[serde(default = "default_max_text_bytes")]
    pub max_text_bytes: usize,
    /// Most members a conversation may be created with or given at once.
    #[serde(default = "default_max_members")]
    pub max_members: usize,
    /// Sustained requests per second per user (token bucket refill rate).
    #[serde(default = "default_user_rate")]
    pub user_rate_per_sec: f64,
    /// Burst of requests per user (token bucket size).
    #[serde(default = "default_user_burst")]
    pub user_burst: u32,
    /// Sustained requests per second per client IP.
    #[serde(default = "default_ip_rate")]
    pub ip_rate_per_sec: f64,
    /// Burst of requests per client IP.
    #[serde(default = "default_ip_burst")]
    pub ip_burst: u32,
    /// How long an `Idempotency-Key` is remembered, in seconds.
    #[serde(default = "default_idempotency_ttl")]
    pub idempotency_ttl_secs: u64,
    /// Most idempotency keys remembered at once (oldest forgotten first).
    #[serde(default = "default_idempotency_keys")]
    pub idempotency_max_keys: usize,
    /// Live events queued per WebSocket connection before it is cut off as too slow.
    #[serde(default = "default_ws_queue")]
    pub ws_queue: usize,
    /// How long a write waits for the log to acknowledge its event before it
    /// answers 503 with Retry-After (the log unreachable: a broker down), in ms.
    /// Default 5000: a client learns within that, instead of after the Kafka
    /// producer's own 30 s.
    #[serde(default = "default_publish_timeout")]
    pub publish_timeout_ms: u64,
}

fn default_gateway_listen() -> String {
    "127.0.0.1:8080".to_string()
}
fn default_token_ttl() -> u64 {
    30 * 24 * 3600
}
fn default_max_text_bytes() -> usize {
    16 * 1024
}
fn default_max_members() -> usize {
    1024
}
fn default_user_rate() -> f64 {
    50.0
}
fn default_user_burst() -> u32 {
    100
}
fn default_ip_rate() -> f64 {
    200.0
}
fn default_ip_burst() -> u32 {
    400
}
fn default_idempotency_ttl() -> u64 {
    24 * 3600
}
fn default_idempotency_keys() -> usize {
    100_000
}
fn default_ws_queue() -> usize {
    256
}

fn default_publish_timeout() -> u64 {
    5_000
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: default_gateway_listen(),
            jwt_secret: None,
            token_ttl_secs: default_token_ttl(),
            max_text_bytes: default_max_text_bytes(),
            max_members: default_max_members(),
            user_rate_per_sec: default_user_rate(),
            user_burst: default_user_burst(),
            ip_rate_per_sec: default_ip_rate(),
            ip_burst: default_ip_burst(),
            idempotency_ttl_secs: default_idempotency_ttl(),
            idempotency_max_keys: default_idempotency_keys(),
            ws_queue: default_ws_queue(),
            publish_timeout_ms: default_publish_timeout(),
        }
    }
}

/// A configuration that cannot be used, with the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config {path}: {source}")]
    Read {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("config {path}: {source}")]
    Parse {
        /// Which file.
        path: PathBuf,
        /// What is wrong and where.
        source: Box<toml::de::Error>,
    },
    /// An environment variable with a value that does not fit.
    #[error("environment variable {var}={value}: {reason}")]
    Env {
        /// Its name.
        var: &'static str,
        /// Its value.
        value: String,
        /// What was expected.
        reason: &'static str,
    },
    /// A value outside its range.
    #[error("config: {0}")]
    Invalid(String),
}

/// Longest namespace: Kafka topic names are at most 249 characters, and the
/// namespace is followed by the longest catalog name.
const MAX_NAMESPACE_LEN: usize = 100;

/// The environment variables courier reads, and what each overrides.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("COURIER_DATA_DIR", "data_dir"),
    ("COURIER_NAMESPACE", "namespace"),
    ("COURIER_LOG_BACKEND", "log.backend"),
    ("COURIER_KAFKA_BROKERS", "kafka.brokers"),
    ("COURIER_LOG_FSYNC", "log.fsync"),
    ("COURIER_METRICS_LISTEN", "metrics.listen"),
    ("COURIER_VIEWS_BACKEND", "views.backend"),
    (
        "COURIER_CASSANDRA_CONTACT_POINTS",
        "cassandra.contact_points",
    ),
    ("COURIER_PUSH_ENDPOINT", "push.endpoint"),
    // Per instance, so not a key of the shared file (see `KafkaConfig::instance_id`).
    ("COURIER_INSTANCE_ID", "kafka.instance_id"),
];

impl Config {
    /// Reads the file if given (defaults otherwise), then applies environment
    /// overrides from `env` (pass `std::env::vars()`), then validates.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut config = match path {
            None => Config::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                Config::parse(&text).map_err(|source| ConfigError::Parse {
                    path: p.to_path_buf(),
                    source: Box::new(source),
                })?
            }
        };
        for (var, value) in env {
            config.apply_env(&var, value)?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    fn apply_env(&mut self, var: &str, value: String) -> Result<(), ConfigError> {
        match var {
            "COURIER_DATA_DIR" => self.data_dir = PathBuf::from(value),
            "COURIER_NAMESPACE" => self.namespace = value,
            "COURIER_KAFKA_BROKERS" => self.kafka.brokers = value,
            "COURIER_INSTANCE_ID" => self.set_instance_id(value)?,
            "COURIER_CASSANDRA_CONTACT_POINTS" => self.cassandra.contact_points = value,
            "COURIER_VIEWS_BACKEND" => {
                self.views.backend = match value.as_str() {
                    "rocksdb" => ViewsBackend::Rocksdb,
                    "cassandra" => ViewsBackend::Cassandra,
                    _ => {
                        return Err(ConfigError::Env {
                            var: "COURIER_VIEWS_BACKEND",
                            value,
                            reason: "expected `rocksdb` or `cassandra`",
                        });
                    }
                }
            }
            "COURIER_LOG_BACKEND" => {
                self.log.backend = match value.as_str() {
                    "embedded" => Backend::Embedded,
                    "kafka" => Backend::Kafka,
                    _ => {
                        return Err(ConfigError::Env {
                            var: "COURIER_LOG_BACKEND",
                            value,
                            reason: "expected `embedded` or `kafka`",
                        });
                    }
                }
            }
            "COURIER_LOG_FSYNC" => {
                self.log.fsync = match value.as_str() {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => {
                        return Err(ConfigError::Env {
                            var: "COURIER_LOG_FSYNC",
                            value,
                            reason: "expected true or false",
                        });
                    }
                }
            }
            "COURIER_METRICS_LISTEN" => {
                self.metrics.listen = (!value.is_empty()).then_some(value);
            }
            "COURIER_PUSH_ENDPOINT" => {
                self.push.endpoint = (!value.is_empty()).then_some(value);
            }
            _ => {}
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.runner.max_batch == 0 {
            return Err(ConfigError::Invalid(
                "runner.max_batch must be at least 1".into(),
            ));
        }
        if self.runner.max_attempts == 0 {
            return Err(ConfigError::Invalid(
                "runner.max_attempts must be at least 1".into(),
            ));
        }
        if self.push.concurrency == 0
            || self.push.max_attempts == 0
            || self.push.breaker_failures == 0
            || self.push.timeout_ms == 0
        {
            return Err(ConfigError::Invalid(
                "push.concurrency, push.max_attempts, push.breaker_failures and \
                 push.timeout_ms must each be at least 1"
                    .into(),
            ));
        }
        let ns = &self.namespace;
        if !ns.is_empty()
            && (ns.len() > MAX_NAMESPACE_LEN
                || ns.starts_with('.')
                || ns == ".."
                || !ns
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')))
        {
            return Err(ConfigError::Invalid(format!(
                "namespace `{ns}`: use at most {MAX_NAMESPACE_LEN} letters, digits, '.', '_' or '-', not starting with '.' \
                 (it prefixes Kafka topic names and names a directory)"
            )));
        }
        if self.kafka.brokers.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "kafka.brokers is empty; expected host:port[,host:port...]".into(),
            ));
        }
        if self.kafka.replication_factor < 1 {
            return Err(ConfigError::Invalid(format!(
                "kafka.replication_factor must be at least 1, not {}",
                self.kafka.replication_factor
            )));
        }
        if self.cassandra.contact_points.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "cassandra.contact_points is empty; expected host:port[,host:port...]".into(),
            ));
        }
        if self.cassandra.replication_factor < 1 {
            return Err(ConfigError::Invalid(
                "cassandra.replication_factor must be at least 1, not 0".into(),
            ));
        }
        self.cassandra_keyspace()?;
        Ok(())
    }

    /// The keyspace of the views: `cassandra.keyspace`, prefixed by the namespace
    /// (`{ns}_{keyspace}`), with '.' and '-' turned into '_' and lowercased (an
    /// unquoted Cassandra name is case-insensitive). Errors when the result is not
    /// a valid Cassandra name (letters, digits, '_', at most 48).
    pub fn cassandra_keyspace(&self) -> Result<String, ConfigError> {
        let (ns, base) = (&self.namespace, &self.cassandra.keyspace);
        let raw = if ns.is_empty() {
            base.clone()
        } else {
            format!("{ns}_{base}")
        };
        let name: String = raw
            .chars()
            .map(|c| match c {
                '.' | '-' => '_',
                c => c.to_ascii_lowercase(),
            })
            .collect();
        let valid = name.len() <= MAX_KEYSPACE_LEN
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric());
        if valid {
            Ok(name)
        } else {
            Err(ConfigError::Invalid(format!(
                "cassandra keyspace `{name}` (namespace `{ns}`, keyspace `{base}`): use at most \
                 {MAX_KEYSPACE_LEN} letters, digits or '_', starting with a letter or digit"
            )))
        }
    }

    /// `data_dir`, under the namespace when there is one.
    fn local_root(&self) -> PathBuf {
        if self.namespace.is_empty() {
            self.data_dir.clone()
        } else {
            self.data_dir.join(&self.namespace)
        }
    }

    /// Sets this instance's `group.instance.id` (static group membership), as
    /// Kafka accepts it: 1 to 249 of `A-Z a-z 0-9 . _ -`.
    pub fn set_instance_id(&mut self, id: String) -> Result<(), ConfigError> {
        if id.is_empty()
            || id.len() > 249
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(ConfigError::Env {
                var: "COURIER_INSTANCE_ID",
                value: id,
                reason: "an instance id is 1 to 249 of A-Z a-z 0-9 . _ -",
            });
        }
        self.kafka.instance_id = Some(id);
        Ok(())
    }

    /// Where `courier produce` keeps the journals of runs that failed midway
    /// (`data_dir[/namespace]/produce`).
    pub fn produce_dir(&self) -> PathBuf {
        self.local_root().join("produce")
    }

    /// Names the configured log (its backend and where it is), so state kept
    /// about one log is never applied to another.
    pub fn log_identity(&self) -> String {
        match self.log.backend {
            Backend::Embedded => format!("embedded:{}", self.log_dir().display()),
            Backend::Kafka => format!("kafka:{}/{}", self.kafka.brokers, self.namespace),
        }
    }

    /// Where the embedded log lives (`data_dir[/namespace]/log`).
    pub fn log_dir(&self) -> PathBuf {
        self.local_root().join("log")
    }

    /// Where a named view store lives (`data_dir[/namespace]/views/NAME`).
    pub fn view_dir(&self, name: &str) -> PathBuf {
        self.local_root().join("views").join(name)
    }

    /// The Kafka settings of this configuration (brokers, namespace, properties).
    #[cfg(feature = "kafka")]
    pub fn kafka_settings(&self) -> KafkaSettings {
        KafkaSettings {
            brokers: self.kafka.brokers.clone(),
            namespace: self.namespace.clone(),
            replication_factor: self.kafka.replication_factor,
            properties: self.kafka.properties.clone(),
            instance_id: self.kafka.instance_id.clone(),
        }
    }

    /// Opens the configured log; an error if this build lacks its backend
    /// (the features `embedded` and `kafka` of this crate).
    pub fn open_log(&self) -> Result<Arc<dyn EventLog>, LogError> {
        match self.log.backend {
            #[cfg(feature = "embedded")]
            Backend::Embedded => {
                let log = EmbeddedLog::open(
                    &self.log_dir(),
                    courier_topics::Catalog::builtin(),
                    EmbeddedOptions {
                        fsync: self.log.fsync,
                    },
                )?;
                Ok(Arc::new(log))
            }
            // No network yet: the catalog's topics are created or checked on the
            // log's first use (`KafkaLog::connect` does it at once).
            #[cfg(feature = "kafka")]
            Backend::Kafka => Ok(Arc::new(KafkaLog::new(
                self.kafka_settings(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_embedded_under_data() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.log.backend, Backend::Embedded);
        assert_eq!(c.runner.max_batch, 1000);
    }

    #[test]
    fn file_then_environment_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "data_dir = \"/x\"\n[log]\nfsync = false\n[runner]\nmax_batch = 10\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&path),
            env(&[("COURIER_LOG_FSYNC", "true"), ("OTHER", "1")]),
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/x"));
        assert!(c.log.fsync);
        assert_eq!(c.runner.max_batch, 10);
        let c = Config::load(Some(&path), env(&[("COURIER_DATA_DIR", "/y")])).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/y"));
    }

    #[test]
    fn mistakes_are_reported_with_where() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[log]\nbackend = \"embeded\"\n").unwrap();
        let e = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(e.contains("c.toml") && e.contains("embeded"), "{e}");
        std::fs::write(&path, "[runner]\nmax_bacth = 3\n").unwrap();
        let e = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(e.contains("max_bacth"), "{e}");
        let e = Config::load(None, env(&[("COURIER_LOG_FSYNC", "yes")]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "environment variable COURIER_LOG_FSYNC=yes: expected true or false"
        );
        std::fs::write(&path, "[runner]\nmax_batch = 0\n").unwrap();
        let e = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
        assert_eq!(e, "config: runner.max_batch must be at least 1");
    }

    #[test]
    fn kafka_backend_from_file_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "namespace = \"staging\"\n[log]\nbackend = \"kafka\"\n[kafka]\nbrokers = \"k1:9092,k2:9092\"\nreplication_factor = 3\n[kafka.properties]\n\"security.protocol\" = \"SSL\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&path), env(&[])).unwrap();
        assert_eq!(c.log.backend, Backend::Kafka);
        assert_eq!(c.namespace, "staging");
        let k = c.kafka_settings();
        assert_eq!(k.brokers, "k1:9092,k2:9092");
        assert_eq!(k.namespace, "staging");
        assert_eq!(k.replication_factor, 3);
        assert_eq!(
            k.properties.get("security.protocol").map(String::as_str),
            Some("SSL")
        );

        let c = Config::load(
            None,
            env(&[
                ("COURIER_LOG_BACKEND", "kafka"),
                ("COURIER_KAFKA_BROKERS", "b:1"),
                ("COURIER_NAMESPACE", "t1"),
            ]),
        )
        .unwrap();
        assert_eq!(c.log.backend, Backend::Kafka);
        assert_eq!(c.kafka.brokers, "b:1");
        assert_eq!(c.kafka.replication_factor, 1);
        assert_eq!(c.namespace, "t1");
        // Defaults: the local broker of compose/local, no namespace.
        let d = Config::load(None, env(&[])).unwrap();
        assert_eq!(d.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(d.namespace, "");
    }

    #[test]
    fn views_default_to_rocksdb_and_cassandra_to_the_local_node() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.views.backend, ViewsBackend::Rocksdb);
        assert_eq!(c.cassandra.contact_points, "127.0.0.1:9042");
        assert_eq!(c.cassandra.keyspace, "courier");
        assert_eq!(c.cassandra.replication_factor, 1);
        assert_eq!(c.cassandra.local_datacenter, None);
        assert_eq!(c.cassandra_keyspace().unwrap(), "courier");
    }

    #[test]
    fn cassandra_views_from_file_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "namespace = \"ci-7.a\"\n[views]\nbackend = \"cassandra\"\n[cassandra]\ncontact_points = \"n1:9042,n2:9042\"\nkeyspace = \"Views\"\nreplication_factor = 3\nlocal_datacenter = \"dc1\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&path), env(&[])).unwrap();
        assert_eq!(c.views.backend, ViewsBackend::Cassandra);
        assert_eq!(c.cassandra.contact_points, "n1:9042,n2:9042");
        assert_eq!(c.cassandra.replication_factor, 3);
        assert_eq!(c.cassandra.local_datacenter.as_deref(), Some("dc1"));
        assert_eq!(c.cassandra_keyspace().unwrap(), "ci_7_a_views");

        let c = Config::load(
            Some(&path),
            env(&[
                ("COURIER_VIEWS_BACKEND", "rocksdb"),
                ("COURIER_CASSANDRA_CONTACT_POINTS", "c:1"),
                ("COURIER_NAMESPACE", ""),
            ]),
        )
        .unwrap();
        assert_eq!(c.views.backend, ViewsBackend::Rocksdb);
        assert_eq!(c.cassandra.contact_points, "c:1");
        assert_eq!(c.cassandra_keyspace().unwrap(), "views");
        let c = Config::load(None, env(&[("COURIER_VIEWS_BACKEND", "cassandra")])).unwrap();
        assert_eq!(c.views.backend, ViewsBackend::Cassandra);
    }

    #[test]
    fn cassandra_mistakes_are_reported_with_where() {
        let e = Config::load(None, env(&[("COURIER_VIEWS_BACKEND", "cassandr")]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "environment variable COURIER_VIEWS_BACKEND=cassandr: expected `rocksdb` or `cassandra`"
        );
        let e = Config::load(None, env(&[("COURIER_CASSANDRA_CONTACT_POINTS", "")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cassandra.contact_points is empty"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[views]\nbackend = \"scylla\"\n").unwrap();
        let e = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(e.contains("c.toml") && e.contains("scylla"), "{e}");
        std::fs::write(&path, "[cassandra]\ncontact_point = \"x:1\"\n").unwrap();
        let e = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(e.contains("c.toml") && e.contains("contact_point"), "{e}");
        std::fs::write(&path, "[cassandra]\nreplication_factor = 0\n").unwrap();
        let e = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
        assert_eq!(
            e,
            "config: cassandra.replication_factor must be at least 1, not 0"
        );
        std::fs::write(&path, "[cassandra]\nkeyspace = \"a b\"\n").unwrap();
        let e = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(e.starts_with("config: cassandra keyspace `a b`"), "{e}");
        let long = "n".repeat(45);
        let e = Config::load(None, env(&[("COURIER_NAMESPACE", long.as_str())]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most 48"), "{e}");
    }

    #[test]
    fn namespace_prefixes_local_directories() {
        let c = Config::load(None, env(&[("COURIER_DATA_DIR", "/d")])).unwrap();
        assert_eq!(c.log_dir(), PathBuf::from("/d/log"));
        assert_eq!(c.view_dir("presence"), PathBuf::from("/d/views/presence"));
        let c = Config::load(
            None,
            env(&[("COURIER_DATA_DIR", "/d"), ("COURIER_NAMESPACE", "ci-7")]),
        )
        .unwrap();
        assert_eq!(c.log_dir(), PathBuf::from("/d/ci-7/log"));
        assert_eq!(
            c.view_dir("presence"),
            PathBuf::from("/d/ci-7/views/presence")
        );
    }

    #[test]
    fn kafka_mistakes_are_reported_with_where() {
        let e = Config::load(None, env(&[("COURIER_LOG_BACKEND", "kafak")]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "environment variable COURIER_LOG_BACKEND=kafak: expected `embedded` or `kafka`"
        );
        let e = Config::load(None, env(&[("COURIER_NAMESPACE", "a/b")]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("config: namespace `a/b`"), "{e}");
        let e = Config::load(None, env(&[("COURIER_NAMESPACE", "..")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("namespace `..`"), "{e}");
        let e = Config::load(None, env(&[("COURIER_KAFKA_BROKERS", " ")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("kafka.brokers is empty"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[kafka]\nbroker = \"x:1\"\n").unwrap();
        let e = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(e.contains("c.toml") && e.contains("broker"), "{e}");
        std::fs::write(&path, "[kafka]\nreplication_factor = 0\n").unwrap();
        let e = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
        assert_eq!(
            e,
            "config: kafka.replication_factor must be at least 1, not 0"
        );
        std::fs::write(&path, "[kafka.properties]\n\"linger.ms\" = 5\n").unwrap();
        let e = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(e.contains("c.toml") && e.contains("linger.ms"), "{e}");
    }

    #[test]
    fn push_endpoint_comes_from_the_file_or_the_environment_and_limits_are_checked() {
        let c = Config::parse("[push]\nendpoint = \"http://f/push\"\nconcurrency = 4\n").unwrap();
        assert_eq!(c.push.endpoint.as_deref(), Some("http://f/push"));
        assert_eq!((c.push.concurrency, c.push.max_attempts), (4, 8));
        let c = Config::load(None, env(&[("COURIER_PUSH_ENDPOINT", "http://e/p")])).unwrap();
        assert_eq!(c.push.endpoint.as_deref(), Some("http://e/p"));
        assert!(
            Config::parse("[push]\nendpont = \"x\"\n").is_err(),
            "unknown keys are refused"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[push]\nconcurrency = 0\n").unwrap();
        let e = Config::load(Some(&path), Vec::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("push.concurrency"), "{e}");
    }

    #[test]
    fn the_instance_id_comes_from_the_environment_only_and_is_checked() {
        let c = Config::load(None, env(&[("COURIER_INSTANCE_ID", "inbox-1")])).unwrap();
        assert_eq!(c.kafka.instance_id.as_deref(), Some("inbox-1"));
        assert_eq!(c.kafka_settings().instance_id.as_deref(), Some("inbox-1"));
        for bad in ["", "a b", "a/b", &"x".repeat(250)] {
            let e = Config::load(None, env(&[("COURIER_INSTANCE_ID", bad)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains("COURIER_INSTANCE_ID"), "{bad:?}: {e}");
        }
        assert!(
            Config::parse("[kafka]\ninstance_id = \"shared\"\n").is_err(),
            "not a key of the shared file"
        );
    }
}
