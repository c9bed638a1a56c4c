//! courier's HTTP + WebSocket gateway: producers' front door (validated,
//! idempotent, rate-limited writes of events) and the read API of the views.
//!
//! Architecture invariant: the gateway knows HTTP, the log (`EventLog`), the
//! inbox fold and the view ports; it never knows which backend sits behind them.
//! It publishes through `producer::publish` like any other producer.

pub mod auth;
pub mod config;
pub mod conversations;
pub mod error;
pub mod health;
pub mod idempotency;
pub mod limits;
pub mod live;
pub mod metrics;
pub mod openapi;
pub mod presence;
pub mod resume;
pub mod routes;
pub mod search;
mod tail;
pub mod tls;
pub mod validate;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use courier_pipeline::shutdown::Shutdown;
use courier_pipeline::{EventLog, LogError};
use courier_processors::inbox::store::InboxStore;

pub use auth::Keys;
pub use config::GatewayConfig;
pub use presence::PresenceViews;
pub use search::{SearchFailure, SearchViews};

/// A running gateway's shared state.
pub struct Gateway {
    /// Limits and sizes.
    pub settings: GatewayConfig,
    log: Arc<dyn EventLog>,
    views: Arc<dyn InboxStore>,
    search: Option<Arc<dyn SearchViews>>,
    presence: Option<Arc<dyn PresenceViews>>,
    keys: Keys,
    user_limits: limits::RateLimiter,
    ip_limits: limits::RateLimiter,
    idempotency: idempotency::Idempotency,
    conversations: Arc<conversations::Conversations>,
    hub: Arc<live::Hub>,
    stop: Shutdown,
}

/// What a gateway is built from.
pub struct Parts {
    /// `[gateway]` of the configuration.
    pub settings: GatewayConfig,
    /// The log events are published to and tailed from.
    pub log: Arc<dyn EventLog>,
    /// The inbox views (queries and the states validation starts from).
    pub views: Arc<dyn InboxStore>,
    /// The search view, once one is wired; `None` answers 503.
    pub search: Option<Arc<dyn SearchViews>>,
    /// The presence view, once one is wired; `None` answers 503.
    pub presence: Option<Arc<dyn PresenceViews>>,
    /// The token keys.
    pub keys: Keys,
}

impl Gateway {
    /// Builds the gateway and starts its tails of the log; they stop with `stop`.
    pub async fn start(parts: Parts, stop: Shutdown) -> Result<Arc<Gateway>, LogError> {
        let s = parts.settings;
        let partitions = [
            parts.log.partitions(courier_topics::CONVERSATIONS)?,
            parts.log.partitions(courier_topics::PRESENCE)?,
        ];
        let hub = Arc::new(live::Hub::new(
            s.ws_queue,
            partitions,
            Duration::from_millis(s.ws_cursor_every_ms),
        ));
        let conversations = conversations::Conversations::start(
            parts.log.clone(),
            parts.views.clone(),
            hub.clone(),
            stop.clone(),
        )
        .await?;
        presence::start_tails(
            parts.log.clone(),
            parts.views.clone(),
            hub.clone(),
            stop.clone(),
        )
        .await?;
        Ok(Arc::new(Gateway {
            user_limits: limits::RateLimiter::new(s.user_rate_per_sec, s.user_burst),
            ip_limits: limits::RateLimiter::new(s.ip_rate_per_sec, s.ip_burst),
            idempotency: idempotency::Idempotency::new(
                Duration::from_secs(s.idempotency_ttl_secs),
                s.idempotency_max_keys,
            ),
            settings: s,
            log: parts.log,
            views: parts.views,
            search: parts.search,
            presence: parts.presence,
            keys: parts.keys,
            conversations,
            hub,
            stop,
        }))
    }

    /// Serves HTTP on `listener` until `stop` fires; in-flight requests finish.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        let mut stop = self.stop.clone();
        let app = routes::router(self);
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { stop.wait().await })
        .await
    }

    /// [`Gateway::serve`] over TLS with `tls` (see [`tls::server_config`]):
    /// HTTPS and WebSockets over wss only; a plaintext request gets its
    /// connection closed.
    pub async fn serve_tls(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        tls: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<()> {
        let mut stop = self.stop.clone();
        let app = routes::router(self).layer(axum::middleware::map_request(tls::peer_address));
        axum::serve(
            tls::TlsListener::new(listener, tls)?,
            app.into_make_service_with_connect_info::<tls::Peer>(),
        )
        .with_graceful_shutdown(async move { stop.wait().await })
        .await
    }
}
