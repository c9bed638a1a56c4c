//! The search view behind the gateway: a small port, so the query library of the
//! search processor plugs in at wiring time. Until one is wired, `GET /v1/search`
//! answers 503.

use async_trait::async_trait;

/// Answers `GET /v1/search` for a user.
#[async_trait]
pub trait SearchViews: Send + Sync {
    /// The hits for `query` visible to `user`, at most `limit`, as exactly the
    /// JSON `courier search --json` prints. `Err` is a message for a 503.
    async fn search(
        &self,
        user: &str,
        query: &str,
        limit: usize,
    ) -> Result<serde_json::Value, String>;
}
