//! The closed set of event types, so consumers can dispatch with a `match` that the
//! compiler checks for completeness.

use std::fmt;

/// Which `body` an [`crate::Event`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    ConversationCreated,
    MembersAdded,
    MembersRemoved,
    MessageSent,
    MessageEdited,
    MessageDeleted,
    Receipt,
    Presence,
    PushJob,
    DeadLetter,
}

impl EventKind {
    /// Every kind, in protobuf field-number order (also the Avro union order).
    pub const ALL: [EventKind; 10] = [
        EventKind::ConversationCreated,
        EventKind::MembersAdded,
        EventKind::MembersRemoved,
        EventKind::MessageSent,
        EventKind::MessageEdited,
        EventKind::MessageDeleted,
        EventKind::Receipt,
        EventKind::Presence,
        EventKind::PushJob,
        EventKind::DeadLetter,
    ];

    /// The canonical JSON `type` (also the `courier-event-type` header value).
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::ConversationCreated => "conversation_created",
            EventKind::MembersAdded => "members_added",
            EventKind::MembersRemoved => "members_removed",
            EventKind::MessageSent => "message_sent",
            EventKind::MessageEdited => "message_edited",
            EventKind::MessageDeleted => "message_deleted",
            EventKind::Receipt => "receipt",
            EventKind::Presence => "presence",
            EventKind::PushJob => "push_job",
            EventKind::DeadLetter => "dead_letter",
        }
    }

    /// The inverse of [`EventKind::as_str`].
    pub fn from_type(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The protobuf message (and Avro record) name, e.g. `MessageSent`.
    pub const fn record_name(self) -> &'static str {
        match self {
            EventKind::ConversationCreated => "ConversationCreated",
            EventKind::MembersAdded => "MembersAdded",
            EventKind::MembersRemoved => "MembersRemoved",
            EventKind::MessageSent => "MessageSent",
            EventKind::MessageEdited => "MessageEdited",
            EventKind::MessageDeleted => "MessageDeleted",
            EventKind::Receipt => "Receipt",
            EventKind::Presence => "Presence",
            EventKind::PushJob => "PushJob",
            EventKind::DeadLetter => "DeadLetter",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::EventKind;

    #[test]
    fn type_strings_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::from_type(k.as_str()), Some(k));
            assert_eq!(k.to_string(), k.as_str());
        }
        assert_eq!(EventKind::from_type("MessageSent"), None);
    }
}
