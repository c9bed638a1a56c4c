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

/// A user's presence as `courier presence USER --json` prints it and
/// `GET /v1/presence/{user_id}` answers: `{user_id, status, last_seen_ms}`. A user
/// never seen is offline (docs/DESIGN.md: "last presence says offline, or none
/// seen"), with no last-seen time.
///
/// The fields are in alphabetical order: serialized directly (the gateway) it
/// is then byte for byte the JSON object [`answer`] gives (the CLI).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserPresence {
    /// `at_ms` of the latest presence event; null (and offline) for a user
    /// never seen.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub last_seen_ms: Option<i64>,
    /// The latest status reported.
    pub status: Status,
    /// Whose presence.
    pub user_id: String,
}

/// [`UserPresence`] of a user, from their row (`None`: never seen).
pub fn presence(user_id: &str, row: Option<&PresenceRow>) -> UserPresence {
    UserPresence {
        last_seen_ms: row.map(|r| r.last_seen_ms),
        status: row.map_or(Status::Offline, |r| r.status),
        user_id: user_id.to_string(),
    }
}

/// [`presence`] as a JSON value, as `courier presence USER --json` prints it.
pub fn answer(user_id: &str, row: Option<&PresenceRow>) -> serde_json::Value {
    serde_json::to_value(presence(user_id, row)).unwrap_or_default()
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The gateway serializes [`UserPresence`] itself, the CLI prints
    /// [`answer`]: the same bytes, as before the type existed.
    #[test]
    fn the_typed_presence_prints_as_the_cli_s_json() {
        let row = PresenceRow {
            user_id: "bob".into(),
            status: Status::Online,
            last_seen_ms: 42,
        };
        for row in [Some(&row), None] {
            let typed = serde_json::to_string(&presence("bob", row)).unwrap();
            assert_eq!(typed, answer("bob", row).to_string());
        }
        assert_eq!(
            answer("bob", None).to_string(),
            r#"{"last_seen_ms":null,"status":"offline","user_id":"bob"}"#
        );
    }
}
