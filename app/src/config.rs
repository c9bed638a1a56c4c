//! courier's configuration, put together from the sections each crate owns: a TOML
//! file (`--config`), environment overrides, and defaults that run everything
//! embedded under `--data DIR`.
//!
//! Precedence, strongest first: command-line flags, `COURIER_*` environment
//! variables, the file, defaults. Every key can be set from the environment:
//! `COURIER_SECTION__KEY` (two underscores between section and key, e.g.
//! `COURIER_GATEWAY__MAX_TEXT_BYTES=4096`, `COURIER_KAFKA__PROPERTIES__SASL_MECHANISM`
//! for the librdkafka property `sasl.mechanism`), and top-level keys as
//! `COURIER_DATA_DIR` and `COURIER_NAMESPACE`. The short names of [`ENV_ALIASES`]
//! keep working. Unknown keys are errors, in the file and in the environment, so a
//! typo never silently falls back to a default.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use courier_gateway::GatewayConfig;
use courier_pipeline::config::{KafkaConfig, LogConfig, MetricsConfig, RunnerConfig};
use courier_pipeline::kafka::KafkaSettings;
use courier_pipeline::{EventLog, LogError};
use courier_sinks::config::{CassandraConfig, PushConfig, SearchConfig, ViewsConfig};
use courier_sinks::inbox::CassandraSettings;
use serde::{Deserialize, Serialize};

pub use courier_pipeline::config::Backend;
pub use courier_sinks::config::ViewsBackend;

/// The whole configuration: each section is the owning crate's type.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory for everything courier keeps on local disk (the embedded log, view
    /// stores, secrets). Default `./data`.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Prefix of every Kafka topic (`{ns}.courier.conversations.v1`) and consumer
    /// group (`{ns}.courier.inbox`) courier uses, of the Cassandra keyspace, and
    /// subdirectory of `data_dir` for the embedded log and views, so environments
    /// can share one cluster or disk. Commands keep taking logical names. Default
    /// empty: no prefix.
    #[serde(default)]
    pub namespace: String,
    /// Which log to use and how (courier-pipeline).
    #[serde(default)]
    pub log: LogConfig,
    /// How to reach Kafka when `log.backend = "kafka"` (courier-pipeline).
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// How processors consume (courier-pipeline).
    #[serde(default)]
    pub runner: RunnerConfig,
    /// Where `/metrics` is served while a processor runs (courier-pipeline).
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Which store holds the materialized views (courier-sinks).
    #[serde(default)]
    pub views: ViewsConfig,
    /// How to reach Cassandra when `views.backend = "cassandra"` (courier-sinks).
    #[serde(default)]
    pub cassandra: CassandraConfig,
    /// Push delivery, `courier run push` (courier-sinks).
    #[serde(default)]
    pub push: PushConfig,
    /// The search view's shard snapshots (courier-sinks).
    #[serde(default)]
    pub search: SearchConfig,
    /// The HTTP/WebSocket gateway of `courier up` (courier-gateway).
    #[serde(default)]
    pub gateway: GatewayConfig,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
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
            search: SearchConfig::default(),
            gateway: GatewayConfig::default(),
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
    /// An environment variable with a value or a name that does not fit.
    #[error("environment variable {var}={value}: {reason}")]
    Env {
        /// Its name.
        var: String,
        /// Its value.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// A value outside its range.
    #[error("config: {0}")]
    Invalid(String),
}

/// Longest namespace: Kafka topic names are at most 249 characters, and the
/// namespace is followed by the longest catalog name.
const MAX_NAMESPACE_LEN: usize = 100;

/// Short names for the keys operators set most, each the same as its
/// `COURIER_SECTION__KEY`.
pub const ENV_ALIASES: &[(&str, &str)] = &[
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
];

/// Per instance, so not a key of the shared file (see `KafkaConfig::instance_id`).
pub const INSTANCE_ID_VAR: &str = "COURIER_INSTANCE_ID";

/// Keys whose values `courier config` masks: any text key whose name contains one
/// of these (`gateway.jwt_secret`, `kafka.properties."sasl.password"`, ...; not
/// `gateway.token_ttl_secs`, a number), except a key ending in `_file`, whose value
/// is where a secret is, not the secret (`cassandra.password_file`).
const SECRET_WORDS: &[&str] = &["secret", "password", "token", "credential"];

impl Config {
    /// Reads the file if given (defaults otherwise), then applies environment
    /// overrides from `env` (pass `std::env::vars()`), then validates.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = match path {
            None => String::new(),
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?,
        };
        let file_error = |source| ConfigError::Parse {
            path: path.map(Path::to_path_buf).unwrap_or_default(),
            source: Box::new(source),
        };
        // The file alone first, so its mistakes are reported against it.
        let mut config = Config::parse(&text).map_err(file_error)?;
        let mut instance_id = None;
        for (var, value) in env {
            if var == INSTANCE_ID_VAR {
                instance_id = Some(value);
            } else if let Some(path) = env_key(&var) {
                // One variable at a time, so a value that does not fit is
                // reported against its variable.
                let mut tree = to_table(&config);
                set_from_env(&mut tree, &var, &path, &value)?;
                config = toml::Value::Table(tree)
                    .try_into()
                    .map_err(|e: toml::de::Error| ConfigError::Env {
                        var: var.clone(),
                        value: value.clone(),
                        reason: e.message().to_string(),
                    })?;
            }
        }
        // Empty optional text means unset, from a file or the environment.
        for opt in [
            &mut config.push.endpoint,
            &mut config.metrics.listen,
            &mut config.cassandra.local_datacenter,
            &mut config.cassandra.username,
            &mut config.cassandra.password,
            &mut config.kafka.username,
            &mut config.kafka.password,
            &mut config.gateway.jwt_secret,
        ] {
            if opt.as_deref() == Some("") {
                *opt = None;
            }
        }
        for opt in [
            &mut config.push.ca_file,
            &mut config.push.client_cert_file,
            &mut config.push.client_key_file,
            &mut config.cassandra.ca_file,
            &mut config.cassandra.password_file,
            &mut config.kafka.ca_file,
            &mut config.kafka.password_file,
            &mut config.search.snapshot_dir,
        ] {
            if opt.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                *opt = None;
            }
        }
        if let Some(id) = instance_id {
            config
                .kafka
                .set_instance_id(id.clone())
                .map_err(|reason| ConfigError::Env {
                    var: INSTANCE_ID_VAR.into(),
                    value: id,
                    reason,
                })?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.runner.validate().map_err(ConfigError::Invalid)?;
        self.push.validate().map_err(ConfigError::Invalid)?;
        self.search.validate().map_err(ConfigError::Invalid)?;
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
        self.kafka.validate().map_err(ConfigError::Invalid)?;
        self.cassandra.validate().map_err(ConfigError::Invalid)?;
        self.cassandra_keyspace()?;
        Ok(())
    }

    /// The configuration as `courier config` prints it: TOML, every key with its
    /// effective value, secrets masked.
    pub fn to_masked_toml(&self) -> String {
        let mut tree = to_table(self);
        mask(&mut tree);
        toml::to_string(&tree).expect("a TOML table prints")
    }

    /// The keyspace of the views: `cassandra.keyspace` prefixed by the namespace.
    pub fn cassandra_keyspace(&self) -> Result<String, ConfigError> {
        self.cassandra
            .keyspace_in(&self.namespace)
            .map_err(ConfigError::Invalid)
    }

    /// The Cassandra driver settings (keyspace prefixed by the namespace).
    pub fn cassandra_settings(&self) -> Result<CassandraSettings, ConfigError> {
        self.cassandra
            .settings_in(&self.namespace)
            .map_err(ConfigError::Invalid)
    }

    /// Sets this instance's `group.instance.id` (static group membership).
    pub fn set_instance_id(&mut self, id: String) -> Result<(), ConfigError> {
        self.kafka.set_instance_id(id).map_err(ConfigError::Invalid)
    }

    /// `data_dir`, under the namespace when there is one.
    fn local_root(&self) -> PathBuf {
        if self.namespace.is_empty() {
            self.data_dir.clone()
        } else {
            self.data_dir.join(&self.namespace)
        }
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

    /// The shared store of search generation `g`'s shard snapshots
    /// (`search.snapshot_dir[/namespace]/search/gN`), if one is configured.
    pub fn search_snapshots(&self, g: u64) -> Option<courier_sinks::search::SnapshotStore> {
        let mut root = self.search.snapshot_dir.clone()?;
        if !self.namespace.is_empty() {
            root.push(&self.namespace);
        }
        Some(courier_sinks::search::SnapshotStore::new(
            root.join("search").join(format!("g{g}")),
            std::time::Duration::from_millis(self.search.snapshot_interval_ms),
        ))
    }

    /// The Kafka client settings of this configuration (the password read from
    /// its file, if it is there).
    pub fn kafka_settings(&self) -> Result<KafkaSettings, ConfigError> {
        self.kafka
            .settings(&self.namespace)
            .map_err(ConfigError::Invalid)
    }

    /// Opens the configured log.
    pub fn open_log(&self) -> Result<Arc<dyn EventLog>, LogError> {
        self.log.open(&self.kafka, &self.namespace, &self.log_dir())
    }
}

/// The key an environment variable sets, as a path of TOML keys; `None` for a
/// variable that is not a config key (COURIER_CONFIG, COURIER_LOG, ...).
pub fn env_key(var: &str) -> Option<Vec<String>> {
    if let Some((_, key)) = ENV_ALIASES.iter().find(|(v, _)| *v == var) {
        return Some(key.split('.').map(str::to_string).collect());
    }
    let rest = var.strip_prefix("COURIER_")?;
    if !rest.contains("__") {
        return None;
    }
    let mut path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    // librdkafka property names are dotted, which a variable name cannot be.
    if path.len() == 3 && path[0] == "kafka" && path[1] == "properties" {
        path[2] = path[2].replace('_', ".");
    }
    Some(path)
}

/// Sets `path` in `tree` to `raw`, typed as the key's current value is (the file's
/// or the default): a number, a boolean, or text.
fn set_from_env(
    tree: &mut toml::Table,
    var: &str,
    path: &[String],
    raw: &str,
) -> Result<(), ConfigError> {
    let fail = |reason: String| ConfigError::Env {
        var: var.to_string(),
        value: raw.to_string(),
        reason,
    };
    let (last, sections) = path.split_last().expect("a key path is not empty");
    let mut table = tree;
    for (i, section) in sections.iter().enumerate() {
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry.as_table_mut().ok_or_else(|| {
            fail(format!(
                "`{}` is a value, not a section",
                sections[..=i].join(".")
            ))
        })?;
    }
    let value = match table.get(last) {
        Some(toml::Value::Integer(_)) => toml::Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| fail("expected a whole number".into()))?,
        ),
        Some(toml::Value::Float(_)) => toml::Value::Float(
            raw.trim()
                .parse()
                .map_err(|_| fail("expected a number".into()))?,
        ),
        Some(toml::Value::Boolean(_)) => toml::Value::Boolean(match raw.trim() {
            "1" | "true" => true,
            "0" | "false" => false,
            _ => return Err(fail("expected true or false".into())),
        }),
        Some(toml::Value::Table(_)) => {
            return Err(fail(format!(
                "`{}` is a section; set its keys",
                path.join(".")
            )));
        }
        _ => toml::Value::String(raw.to_string()),
    };
    table.insert(last.clone(), value);
    Ok(())
}

/// The configuration as a TOML table (unset optional keys left out).
fn to_table(config: &Config) -> toml::Table {
    match toml::Value::try_from(config) {
        Ok(toml::Value::Table(t)) => t,
        other => unreachable!("a config serializes to a TOML table, not {other:?}"),
    }
}

/// Replaces the value of every secret key below `table` with `"********"`.
fn mask(table: &mut toml::Table) {
    for (key, value) in table.iter_mut() {
        let lower = key.to_ascii_lowercase();
        if let toml::Value::Table(t) = value {
            mask(t);
        } else if value.is_str()
            && !lower.ends_with("_file")
            && SECRET_WORDS.iter().any(|w| lower.contains(w))
        {
            *value = toml::Value::String("********".into());
        }
    }
}

#[cfg(test)]
mod tests;
