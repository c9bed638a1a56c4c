//! Notify: one push job on `courier.push-jobs.v1` for every recipient of an applied
//! message who is not online (docs/DESIGN.md, "Notify").
//!
//! The notifier runs the inbox fold ([`crate::inbox::apply`]) over its own copy of
//! every conversation's state, so "who receives a message" follows exactly the
//! inbox's membership-as-of-send, validity and duplicate rules: a message the inbox
//! rejects or ignores (a repeated `event_id`, a reused `message_id`) yields no job.
//! [`jobs_for`] turns one applied `message_sent` into jobs; it is pure. The
//! [`NotifyProcessor`] drives it: it keeps the presence table itself (a global
//! table read over every partition of `courier.presence.v1`, caught up to the end
//! before each batch of conversation events), publishes the jobs, then writes the
//! conversation states with their per-partition checkpoints atomically.

pub mod conformance;
mod handler;
mod jobs;

pub use handler::NotifyProcessor;
pub use jobs::{job_id, jobs_for};

use crate::inbox::ConversationState;
use crate::store::StoreError;

/// What the notifier needs from storage: its own per-conversation fold state and
/// where it stands on each partition of `courier.conversations.v1`.
pub trait NotifyStore: Send {
    /// The next offset to apply for a partition, as stored with the states (None:
    /// nothing applied yet).
    fn checkpoint(&self, partition: u32) -> Result<Option<u64>, StoreError>;

    /// The stored states of these conversations, in the same order (None: never
    /// written).
    fn load_states(&self, ids: &[String]) -> Result<Vec<Option<ConversationState>>, StoreError>;

    /// Writes states and the partitions' next offsets atomically: after a crash
    /// either all of them are there or none.
    fn write(
        &mut self,
        states: &[ConversationState],
        checkpoints: &[(u32, u64)],
    ) -> Result<(), StoreError>;
}
