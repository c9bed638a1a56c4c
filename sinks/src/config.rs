//! The sinks' sections of the configuration: `[views]` and `[cassandra]` (which
//! store holds the views, and how to reach Cassandra) and `[push]` (the push
//! provider and how hard to try), `[search]` (where search shards are
//! snapshotted). The application crate puts every crate's sections together.

use std::path::PathBuf;

use courier_pipeline::secret::{self, Secret};
use serde::{Deserialize, Serialize};

use crate::inbox::CassandraSettings;
use crate::inbox::cassandra::{CassandraTls, Credentials};
use crate::push::ClientTls;

/// The view store (`[views]`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ViewsConfig {
    /// `rocksdb` (embedded, under `data_dir/views`, with generations for
    /// `courier rebuild`) or `cassandra` (see `[cassandra]`; schema applied by
    /// `courier migrate`). Default `rocksdb`.
    #[serde(default)]
    pub backend: ViewsBackend,
}

/// View store backends.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ViewsBackend {
    /// RocksDB inside the process.
    #[default]
    Rocksdb,
    /// Apache Cassandra or ScyllaDB, through the `scylla` driver.
    Cassandra,
}

/// The Cassandra cluster (`[cassandra]`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
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
    /// Client-to-node TLS: every connection is encrypted and the node's certificate
    /// verified (it must name the node's IP address, which is what the driver
    /// checks). Default false.
    #[serde(default)]
    pub tls: bool,
    /// PEM file of the CA certificates that verify the nodes when `tls` is on, in
    /// place of the system's roots. A leading `~/` is the home directory. Default
    /// none.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Role to log in as (PasswordAuthenticator), with `password` or
    /// `password_file`. Default none: no login (AllowAllAuthenticator).
    #[serde(default)]
    pub username: Option<String>,
    /// The role's password. Better kept out of the file: `COURIER_CASSANDRA__PASSWORD`
    /// or `password_file`. Masked by `courier config`.
    #[serde(default)]
    pub password: Option<String>,
    /// A file holding the role's password alone (one trailing newline ignored), read
    /// when courier connects; e.g. a secret mounted by the container runtime.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

impl Default for CassandraConfig {
    fn default() -> Self {
        CassandraConfig {
            contact_points: default_contact_points(),
            keyspace: default_keyspace(),
            replication_factor: default_cassandra_replication_factor(),
            local_datacenter: None,
            tls: false,
            ca_file: None,
            username: None,
            password: None,
            password_file: None,
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

/// Longest keyspace name Cassandra accepts.
const MAX_KEYSPACE_LEN: usize = 48;

impl CassandraConfig {
    /// What is wrong with it, as `cassandra.KEY: ...`.
    pub fn validate(&self) -> Result<(), String> {
        if self.contact_points.trim().is_empty() {
            return Err(
                "cassandra.contact_points is empty; expected host:port[,host:port...]".into(),
            );
        }
        if self.replication_factor < 1 {
            return Err("cassandra.replication_factor must be at least 1, not 0".into());
        }
        if self.ca_file.is_some() && !self.tls {
            return Err(
                "cassandra.ca_file is set but cassandra.tls is false: set tls = true \
                 (COURIER_CASSANDRA__TLS=true) or unset ca_file"
                    .into(),
            );
        }
        // The password file is read when courier connects, not here: a config
        // names it before the server that makes it has started.
        secret::at_most_one(
            "cassandra",
            self.password.is_some(),
            self.password_file.is_some(),
        )?;
        let has_password = self.password.is_some() || self.password_file.is_some();
        match (&self.username, has_password) {
            (Some(_), false) => Err(
                "cassandra.username is set without a password: set cassandra.password \
                 (COURIER_CASSANDRA__PASSWORD) or cassandra.password_file"
                    .into(),
            ),
            (None, true) => Err("cassandra has a password but no username".into()),
            _ => Ok(()),
        }
    }

    /// The password, from `password` or `password_file`.
    fn password(&self) -> Result<Option<Secret>, String> {
        secret::password(
            "cassandra",
            self.password.as_deref(),
            self.password_file.as_deref(),
        )
    }

    /// The keyspace of the views: `keyspace`, prefixed by the namespace
    /// (`{ns}_{keyspace}`), with '.' and '-' turned into '_' and lowercased (an
    /// unquoted Cassandra name is case-insensitive). Errors when the result is not
    /// a valid Cassandra name (letters, digits, '_', at most 48).
    pub fn keyspace_in(&self, namespace: &str) -> Result<String, String> {
        let (ns, base) = (namespace, &self.keyspace);
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
            Err(format!(
                "cassandra keyspace `{name}` (namespace `{ns}`, keyspace `{base}`): use at most \
                 {MAX_KEYSPACE_LEN} letters, digits or '_', starting with a letter or digit"
            ))
        }
    }

    /// The driver settings for `namespace` (keyspace prefixed by it), with the
    /// password read (from its file, if it is there).
    pub fn settings_in(&self, namespace: &str) -> Result<CassandraSettings, String> {
        self.validate()?;
        let mut s = CassandraSettings::new(&self.contact_points, self.keyspace_in(namespace)?);
        s.replication_factor = self.replication_factor;
        s.local_datacenter = self.local_datacenter.clone();
        s.tls = self.tls.then(|| CassandraTls {
            ca_file: self.ca_file.clone(),
        });
        if let (Some(username), Some(password)) = (&self.username, self.password()?) {
            s.credentials = Some(Credentials {
                username: username.clone(),
                password,
            });
        }
        Ok(s)
    }
}

/// Push delivery (`[push]`): where jobs go and how hard to try.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PushConfig {
    /// The push provider endpoint each job is POSTed to as JSON, e.g.
    /// `https://push.example/v1/send` or `http://127.0.0.1:8088/push` (a local
    /// relay). Required by `courier run push`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// PEM file of the CA certificates that verify an `https://` endpoint, in
    /// place of the system's roots (a private provider or relay). Default none:
    /// the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain courier presents to an `https://` endpoint that
    /// asks for one (mutual TLS); set with `client_key_file`. Default none.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file` (PKCS#8, PKCS#1 or SEC1). Default none.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
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
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            concurrency: default_push_concurrency(),
            timeout_ms: default_push_timeout_ms(),
            max_attempts: default_push_attempts(),
            breaker_failures: default_breaker_failures(),
            breaker_cooldown_ms: default_breaker_cooldown_ms(),
            sent_ttl_ms: default_sent_ttl_ms(),
        }
    }
}

impl PushConfig {
    /// What is wrong with it, as `push.KEY: ...`.
    pub fn validate(&self) -> Result<(), String> {
        if self.concurrency == 0
            || self.max_attempts == 0
            || self.breaker_failures == 0
            || self.timeout_ms == 0
        {
            return Err(
                "push.concurrency, push.max_attempts, push.breaker_failures and \
                 push.timeout_ms must each be at least 1"
                    .into(),
            );
        }
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            return Err(
                "push.client_cert_file and push.client_key_file go together: set both or neither"
                    .into(),
            );
        }
        Ok(())
    }

    /// How an `https://` endpoint is trusted and how courier identifies itself.
    pub fn tls(&self) -> ClientTls {
        ClientTls {
            ca_file: self.ca_file.clone(),
            client_cert_file: self.client_cert_file.clone(),
            client_key_file: self.client_key_file.clone(),
        }
    }
}

/// The search view (`[search]`): where shards are snapshotted for their next
/// owners (docs/decisions/2026-12-07-search-hand-over.md).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SearchConfig {
    /// A directory every search instance reaches (in production a shared
    /// volume): each shard's owner copies its committed shard there, and the
    /// next owner of a partition restores from it and replays only the log
    /// after it, instead of re-indexing the partition from its start. Default
    /// none: a moved partition is re-indexed.
    #[serde(default)]
    pub snapshot_dir: Option<PathBuf>,
    /// How often a shard with new commits is snapshotted, in ms; also when it
    /// is revoked. The next owner replays at most about this much of the log
    /// (plus the commit interval).
    #[serde(default = "default_snapshot_interval_ms")]
    pub snapshot_interval_ms: u64,
}

fn default_snapshot_interval_ms() -> u64 {
    60_000
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            snapshot_dir: None,
            snapshot_interval_ms: default_snapshot_interval_ms(),
        }
    }
}

impl SearchConfig {
    /// What is wrong with it, as `search.KEY: ...`.
    pub fn validate(&self) -> Result<(), String> {
        if self.snapshot_interval_ms == 0 {
            return Err("search.snapshot_interval_ms must be at least 1".into());
        }
        Ok(())
    }
}
