//! Push delivery: each job of `courier.push-jobs.v1` POSTed once to the push
//! provider, or dead-lettered with the provider's answer.
//!
//! The pure parts are [`policy`] (what an answer means: delivered, retry after how
//! long, or permanent failure; the circuit breaker as a state machine over explicit
//! instants) and [`body`] (the JSON a provider receives). [`PushProcessor`] drives
//! them over two ports: [`PushProvider`] (the HTTP call, implemented in sinks) and
//! [`SentStore`] (the ids of jobs already sent, so a restart, a redelivery or a
//! replay of the topic never sends a job twice).

pub mod body;
pub mod conformance;
mod handler;
pub mod policy;

use std::time::Duration;

use async_trait::async_trait;

pub use handler::{PushOptions, PushProcessor};

use crate::store::StoreError;

/// What the provider answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// `Retry-After` in seconds, when present and numeric.
    pub retry_after: Option<Duration>,
    /// The body, for dead letters (truncated by the provider adapter).
    pub body: String,
}

/// A request that got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoAnswer {
    /// The deadline passed.
    pub timeout: bool,
    /// What happened.
    pub message: String,
}

/// The push provider: one POST of a JSON body.
#[async_trait]
pub trait PushProvider: Send + Sync {
    /// A name for metrics and logs (the endpoint URL).
    fn endpoint(&self) -> &str;

    /// POSTs `body` for job `job_id` (sent as the `Idempotency-Key` header too).
    async fn post(&self, job_id: &str, body: Vec<u8>) -> Result<Answer, NoAnswer>;
}

/// How a job ended, as the sent store remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// The provider accepted it.
    Sent,
    /// It went to dead letters.
    DeadLettered,
}

/// The ids of jobs that are done, with expiry. Shared by concurrent deliveries.
pub trait SentStore: Send + Sync {
    /// How the job ended, if it did.
    fn get(&self, job_id: &str) -> Result<Option<Done>, StoreError>;

    /// Durably records that a job is done, at `now_ms`.
    fn put(&self, job_id: &str, done: Done, now_ms: i64) -> Result<(), StoreError>;

    /// Forgets ids recorded before `before_ms`; returns how many.
    fn expire(&self, before_ms: i64) -> Result<u64, StoreError>;
}
