//! Presence: the latest status of every user, folded from `courier.presence.v1`.
//!
//! The fold is last-writer-wins in log order: a user's presence events share one
//! partition (keyed by user), so log order is the order the gateway accepted them.
//! `last_seen_ms` is the `at_ms` of that latest event.

pub mod conformance;
mod fold;
mod handler;

pub use fold::{PresenceRow, Status, fold};
pub use handler::PresenceProcessor;

use crate::store::StoreError;

/// What the presence processor needs from storage.
pub trait PresenceStore: Send {
    /// The next offset to apply for a partition of the presence topic, as stored
    /// with the rows (None: nothing applied yet).
    fn checkpoint(&self, partition: u32) -> Result<Option<u64>, StoreError>;

    /// Writes rows and the partitions' next offsets atomically: after a crash either
    /// both are there or neither.
    fn write(&mut self, rows: &[PresenceRow], checkpoints: &[(u32, u64)])
    -> Result<(), StoreError>;

    /// A user's latest presence.
    fn get(&self, user_id: &str) -> Result<Option<PresenceRow>, StoreError>;
}
