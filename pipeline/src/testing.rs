//! Support for tests and benchmarks that talk to real servers (Kafka, Cassandra)
//! started by `compose/local/up.sh`: one rule for every such test.
//!
//! A server that answers is used. One that does not fails the caller under
//! `CI=true` (CI must never skip silently) and otherwise is skipped with a message
//! naming the command that starts it — written straight to stderr, because the test
//! harness captures `eprintln!` of passing tests.
//!
//! How to reach a secured server (TLS, user and password) is what up.sh wrote into
//! its state directory, `courier.env` ([`Server::client_env`]): every test gets its
//! credentials from there, one place, and a server started with
//! `COURIER_LOCAL_PLAINTEXT=1` has none. Point `COURIER_LOCAL_STATE` at the state
//! directory of the servers `COURIER_TEST_KAFKA` and `COURIER_TEST_CASSANDRA` name,
//! as up.sh takes it.

use std::io::Write as _;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A real server a test needs.
#[derive(Debug, Clone, Copy)]
pub struct Server {
    /// Its name in messages ("Kafka").
    pub name: &'static str,
    /// Environment variable overriding the address (`COURIER_TEST_KAFKA`).
    pub env: &'static str,
    /// Default comma-separated `host:port` list.
    pub default: &'static str,
    /// The compose/local service that starts it (`kafka`).
    pub service: &'static str,
}

/// Kafka of compose/local.
pub const KAFKA: Server = Server {
    name: "Kafka",
    env: "COURIER_TEST_KAFKA",
    default: "127.0.0.1:9092",
    service: "kafka",
};

/// Cassandra of compose/local.
pub const CASSANDRA: Server = Server {
    name: "Cassandra",
    env: "COURIER_TEST_CASSANDRA",
    default: "127.0.0.1:9042",
    service: "cassandra",
};

impl Server {
    /// The address to use (the override or the default).
    pub fn address(&self) -> String {
        std::env::var(self.env).unwrap_or_else(|_| self.default.to_string())
    }

    /// Where compose/local/up.sh keeps this server's state, as it decides it:
    /// `$COURIER_LOCAL_STATE/SERVICE`, by default `$COURIER_CACHE/local/SERVICE`,
    /// `~/.cache/courier/local/SERVICE`.
    pub fn state_dir(&self) -> PathBuf {
        let local = std::env::var_os("COURIER_LOCAL_STATE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::var_os("COURIER_CACHE")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| {
                        PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                            .join(".cache/courier")
                    })
                    .join("local")
            });
        local.join(self.service)
    }

    /// The `COURIER_*` variables that let courier reach this server (its
    /// `courier.env`: TLS, CA file, user, password file); none for a plaintext
    /// server.
    pub fn client_env(&self) -> Vec<(String, String)> {
        client_env_in(&self.state_dir())
    }

    /// The address if some host of it accepts a TCP connection; `None` after a
    /// visible skip message; a panic under `CI=true`.
    pub fn reachable(&self) -> Option<String> {
        let addr = self.address();
        let answers = addr.split(',').any(|hp| {
            hp.trim()
                .to_socket_addrs()
                .ok()
                .into_iter()
                .flatten()
                .any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
        });
        if answers {
            return Some(addr);
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{} not reachable at {addr} and CI=true: start it with compose/local/up.sh {}",
            self.name,
            self.service
        );
        let _ = writeln!(
            std::io::stderr(),
            "skipping: {} not reachable at {addr}; run compose/local/up.sh {} ({} overrides the address)",
            self.name,
            self.service,
            self.env
        );
        None
    }
}

/// The variables of `DIR/courier.env` (`KEY=VALUE` lines, `#` comments), which
/// compose/local/up.sh writes for a secured server; none when there is no such file.
pub fn client_env_in(dir: &Path) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(dir.join("courier.env")) else {
        return Vec::new();
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Settings for the Kafka at `brokers` with the TLS and login of compose/local's
/// (its `courier.env`; none for a plaintext broker).
#[cfg(feature = "kafka")]
pub fn kafka_settings(brokers: &str) -> crate::KafkaSettings {
    kafka_settings_by(&KAFKA.client_env(), brokers)
}

/// Settings for the Kafka at `brokers` with the TLS and login that the
/// `COURIER_KAFKA__*` variables of `env` describe (a `courier.env`). Panics on a
/// variable it does not know or settings that do not hold together: a test must
/// not silently run with less security than its broker asks for.
#[cfg(feature = "kafka")]
pub fn kafka_settings_by(env: &[(String, String)], brokers: &str) -> crate::KafkaSettings {
    let mut c = crate::config::KafkaConfig {
        brokers: brokers.to_string(),
        ..Default::default()
    };
    for (var, value) in env {
        match var.strip_prefix("COURIER_KAFKA__") {
            Some("TLS") => c.tls = value == "true",
            Some("CA_FILE") => c.ca_file = Some(value.into()),
            Some("USERNAME") => c.username = Some(value.clone()),
            Some("PASSWORD") => c.password = Some(value.clone()),
            Some("PASSWORD_FILE") => c.password_file = Some(value.into()),
            Some("SASL_MECHANISM") => c.sasl_mechanism = value.clone(),
            _ => panic!("{var}: not a Kafka client setting this helper knows"),
        }
    }
    c.settings("")
        .unwrap_or_else(|e| panic!("the local Kafka's client settings: {e}"))
}
