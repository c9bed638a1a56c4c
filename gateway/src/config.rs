//! The gateway's section of the configuration, `[gateway]`: where `courier up`
//! listens and the limits it enforces. The application crate puts it together with
//! the other crates' sections.

use serde::{Deserialize, Serialize};

/// `[gateway]`: where `courier up` listens and the limits it enforces.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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
