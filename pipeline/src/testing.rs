//! Support for tests and benchmarks that talk to real servers (Kafka, Cassandra)
//! started by `compose/local/up.sh`: one rule for every such test.
//!
//! A server that answers is used. One that does not fails the caller under
//! `CI=true` (CI must never skip silently) and otherwise is skipped with a message
//! naming the command that starts it — written straight to stderr, because the test
//! harness captures `eprintln!` of passing tests.

use std::io::Write as _;
use std::net::{TcpStream, ToSocketAddrs};
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
