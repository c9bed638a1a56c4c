//! The gateway's section of the configuration, `[gateway]`: where `courier up`
//! listens and the limits it enforces. The application crate puts it together with
//! the other crates' sections.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[gateway]`: where `courier up` listens and the limits it enforces.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address to listen on (`--listen` overrides it).
    #[serde(default = "default_gateway_listen")]
    pub listen: String,
    /// PEM certificate chain (the server's certificate first) to serve HTTPS
    /// and wss with, instead of plain HTTP; with `tls_key_file`, both or
    /// neither (`--tls-cert` overrides it). Without them, a proxy in front is
    /// expected to terminate TLS.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, RSA or EC) of `tls_cert_file` (`--tls-key`
    /// overrides it); readable by its owner only.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// Shorthand for one HS256 key, given inline, for tokens without a `kid`.
    /// Without it and without `jwt_keys`, a development secret is generated
    /// once into `data_dir/gateway/jwt_secret` (mode 0600), so tokens survive a
    /// restart.
    #[serde(default)]
    pub jwt_secret: Option<String>,
    /// The token keys, chosen by a token's `kid`: entries `KID=PATH`, the
    /// current key first (`courier token` signs with it; the others only
    /// verify, so tokens they signed keep working until their entry is
    /// removed). A TOML array, or one comma-separated text (as
    /// `COURIER_GATEWAY__JWT_KEYS` gives). PATH holds the key, never the config:
    /// an Ed25519 private key (PKCS#8 PEM: signs and verifies EdDSA), an Ed25519
    /// public key (PEM: verifies only, for a gateway that mints nothing), or
    /// else an HS256 secret (the file's bytes, at least 32). Key files should
    /// be readable by their owner only.
    #[serde(default, deserialize_with = "key_list")]
    pub jwt_keys: Vec<String>,
    /// `iss` written into tokens and required of them (empty: neither).
    #[serde(default = "default_jwt_name")]
    pub jwt_issuer: String,
    /// `aud` written into tokens and required of them (empty: neither).
    #[serde(default = "default_jwt_name")]
    pub jwt_audience: String,
    /// How far the clock of whoever minted a token may be from this gateway's,
    /// in seconds, when `exp`, `nbf` and `iat` are checked.
    #[serde(default = "default_jwt_leeway")]
    pub jwt_leeway_secs: u64,
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
    /// How often, at most, an idle live connection is sent `{"cursor"}` alone,
    /// when the log moved on without events for it, in ms: keeps a reconnect's
    /// catch-up short.
    #[serde(default = "default_ws_cursor_every")]
    pub ws_cursor_every_ms: u64,
    /// Most missed events a reconnect with `?since=` delivers; more and it is
    /// told to re-read its inbox instead (close code 4410).
    #[serde(default = "default_resume_max_events")]
    pub resume_max_events: usize,
    /// Most log records (everyone's) a reconnect with `?since=` reads to find
    /// its missed events; more and it is told to re-read its inbox.
    #[serde(default = "default_resume_max_records")]
    pub resume_max_records: u64,
    /// How long a write waits for the log to acknowledge its event before it
    /// answers 503 with Retry-After (the log unreachable: a broker down), in ms.
    /// Default 5000: a client learns within that, instead of after the Kafka
    /// producer's own 30 s.
    #[serde(default = "default_publish_timeout")]
    pub publish_timeout_ms: u64,
    /// Development sign-in: `POST /dev/token` mints a token for any user id
    /// (the web client's name box). Set by `courier up --dev` only, which
    /// refuses it on a non-loopback address; never read from a file, so no
    /// deployed configuration can turn it on by mistake.
    #[serde(skip)]
    pub dev_sign_in: bool,
}

fn default_jwt_name() -> String {
    "courier".to_string()
}
fn default_jwt_leeway() -> u64 {
    30
}

/// `jwt_keys` from a TOML array, or from one comma-separated text (an
/// environment variable can only give text).
fn key_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        Text(String),
        Items(Vec<String>),
    }
    let items = match List::deserialize(d)? {
        List::Text(t) => t.split(',').map(str::to_string).collect(),
        List::Items(v) => v,
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
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
fn default_ws_cursor_every() -> u64 {
    10_000
}
fn default_resume_max_events() -> usize {
    1_000
}
fn default_resume_max_records() -> u64 {
    100_000
}

fn default_publish_timeout() -> u64 {
    5_000
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: default_gateway_listen(),
            tls_cert_file: None,
            tls_key_file: None,
            jwt_secret: None,
            jwt_keys: Vec::new(),
            jwt_issuer: default_jwt_name(),
            jwt_audience: default_jwt_name(),
            jwt_leeway_secs: default_jwt_leeway(),
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
            ws_cursor_every_ms: default_ws_cursor_every(),
            resume_max_events: default_resume_max_events(),
            resume_max_records: default_resume_max_records(),
            publish_timeout_ms: default_publish_timeout(),
            dev_sign_in: false,
        }
    }
}
