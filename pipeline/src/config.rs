//! courier's configuration: a TOML file (`--config`), environment overrides, and
//! defaults that run everything embedded under `--data DIR`.
//!
//! Precedence, strongest first: command-line flags, `COURIER_*` environment
//! variables, the file, defaults. Unknown keys are errors, so a typo never silently
//! falls back to a default.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::embedded::{EmbeddedLog, EmbeddedOptions};
use crate::log::{EventLog, LogError};

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory for everything courier keeps on local disk (the embedded log, view
    /// stores, secrets). Default `./data`.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Which log to use and how.
    #[serde(default)]
    pub log: LogConfig,
    /// How processors consume.
    #[serde(default)]
    pub runner: RunnerConfig,
    /// Where `/metrics` is served while a processor runs.
    #[serde(default)]
    pub metrics: MetricsConfig,
}

/// The log backend.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `embedded` (RocksDB under `data_dir/log`).
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
    /// Attempts at a failing batch (sink down) before the processor gives up and
    /// exits non-zero, with exponential backoff and jitter between them.
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
            log: LogConfig::default(),
            runner: RunnerConfig::default(),
            metrics: MetricsConfig::default(),
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

/// The environment variables courier reads, and what each overrides.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("COURIER_DATA_DIR", "data_dir"),
    ("COURIER_LOG_BACKEND", "log.backend"),
    ("COURIER_LOG_FSYNC", "log.fsync"),
    ("COURIER_METRICS_LISTEN", "metrics.listen"),
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
            "COURIER_LOG_BACKEND" => {
                self.log.backend = match value.as_str() {
                    "embedded" => Backend::Embedded,
                    _ => {
                        return Err(ConfigError::Env {
                            var: "COURIER_LOG_BACKEND",
                            value,
                            reason: "expected `embedded`",
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
            _ => {}
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.runner.max_batch == 0 {
            return Err(ConfigError::Invalid("runner.max_batch must be at least 1".into()));
        }
        if self.runner.max_attempts == 0 {
            return Err(ConfigError::Invalid("runner.max_attempts must be at least 1".into()));
        }
        Ok(())
    }

    /// Where the embedded log lives.
    pub fn log_dir(&self) -> PathBuf {
        self.data_dir.join("log")
    }

    /// Where a named view store lives.
    pub fn view_dir(&self, name: &str) -> PathBuf {
        self.data_dir.join("views").join(name)
    }

    /// Opens the configured log.
    pub fn open_log(&self) -> Result<Arc<dyn EventLog>, LogError> {
        match self.log.backend {
            Backend::Embedded => {
                let log = EmbeddedLog::open(
                    &self.log_dir(),
                    courier_topics::Catalog::builtin(),
                    EmbeddedOptions { fsync: self.log.fsync },
                )?;
                Ok(Arc::new(log))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
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
        std::fs::write(&path, "data_dir = \"/x\"\n[log]\nfsync = false\n[runner]\nmax_batch = 10\n").unwrap();
        let c = Config::load(Some(&path), env(&[("COURIER_LOG_FSYNC", "true"), ("OTHER", "1")])).unwrap();
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
        let e = Config::load(None, env(&[("COURIER_LOG_FSYNC", "yes")])).unwrap_err().to_string();
        assert_eq!(e, "environment variable COURIER_LOG_FSYNC=yes: expected true or false");
        std::fs::write(&path, "[runner]\nmax_batch = 0\n").unwrap();
        let e = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
        assert_eq!(e, "config: runner.max_batch must be at least 1");
    }
}
