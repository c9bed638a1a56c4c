//! The search view behind the gateway: a small port, so the query library of the
//! search processor plugs in at wiring time (`courier up` wires the local tantivy
//! shards). With none wired, `GET /v1/search` answers 503.

use async_trait::async_trait;

/// Why a search gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchFailure {
    /// The query itself is wrong (malformed syntax): the client's mistake, a 400
    /// that says where.
    BadQuery(String),
    /// The view could not answer (index unreadable): a 503.
    Unavailable(String),
}

/// Answers `GET /v1/search` for a user.
#[async_trait]
pub trait SearchViews: Send + Sync {
    /// The hits for `query` visible to `user`, at most `limit`, as exactly the
    /// JSON text `courier search --json` prints (text, not a `Value`: a `Value`
    /// would reorder the fields and widen the f32 scores).
    async fn search(&self, user: &str, query: &str, limit: usize) -> Result<String, SearchFailure>;
}
