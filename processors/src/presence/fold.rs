//! The pure part: a presence event in, the user's new row (or a rejection) out.

use courier_schemas::Event;
use courier_schemas::proto::{PresenceStatus, event::Body};

/// Online or offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Status {
    /// Connected.
    Online,
    /// Not connected.
    Offline,
}

impl Status {
    /// As in the canonical JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Online => "online",
            Status::Offline => "offline",
        }
    }
}

/// The latest presence of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceRow {
    /// Who.
    pub user_id: String,
    /// Their last reported status.
    pub status: Status,
    /// `at_ms` of the event that reported it.
    pub last_seen_ms: i64,
}

/// The row a presence event sets, or why it cannot be applied.
pub fn fold(event: &Event) -> Result<PresenceRow, String> {
    match &event.body {
        Some(Body::Presence(p)) => {
            let status = match PresenceStatus::try_from(p.status) {
                Ok(PresenceStatus::Online) => Status::Online,
                Ok(PresenceStatus::Offline) => Status::Offline,
                _ => {
                    return Err(format!(
                        "presence `{}`: status {} is neither online nor offline",
                        event.event_id, p.status
                    ));
                }
            };
            if p.user_id.is_empty() {
                return Err(format!(
                    "presence `{}` has an empty user_id",
                    event.event_id
                ));
            }
            Ok(PresenceRow {
                user_id: p.user_id.clone(),
                status,
                last_seen_ms: event.at_ms,
            })
        }
        Some(other) => Err(format!(
            "courier.presence.v1 holds only presence events; `{}` is {}",
            event.event_id,
            other.kind()
        )),
        None => Err(format!(
            "`{}` has an event type this build does not know",
            event.event_id
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_schemas::json::parse_line;

    #[test]
    fn presence_events_become_rows_and_others_are_rejected() {
        let e = parse_line(
            r#"{"type":"presence","event_id":"p1","user_id":"u1","status":"offline","at_ms":42}"#,
        )
        .unwrap();
        assert_eq!(
            fold(&e),
            Ok(PresenceRow {
                user_id: "u1".into(),
                status: Status::Offline,
                last_seen_ms: 42
            })
        );
        let e = parse_line(r#"{"type":"message_deleted","event_id":"d1","conversation_id":"c","message_id":"m","actor_id":"u","at_ms":1}"#).unwrap();
        assert_eq!(
            fold(&e).unwrap_err(),
            "courier.presence.v1 holds only presence events; `d1` is message_deleted"
        );
    }
}
