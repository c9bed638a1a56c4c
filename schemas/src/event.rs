//! Questions every consumer asks of an event (which kind, which key, who is in it),
//! answered once here so processors, the partitioner and replay filters agree.

use crate::EventKind;
use crate::proto::{Event, event::Body};

impl Event {
    /// `None` when the body is absent: a record from a newer writer whose event type
    /// this build does not know. Consumers should dead-letter it, not drop it.
    pub fn kind(&self) -> Option<EventKind> {
        self.body.as_ref().map(Body::kind)
    }

    /// The record key: `conversation_id` for conversation events (so a
    /// conversation's events share a partition and stay ordered), `user_id` for
    /// presence and push jobs, the original key for dead letters, `""` without a body.
    pub fn routing_key(&self) -> &str {
        match &self.body {
            None => "",
            Some(Body::Presence(b)) => &b.user_id,
            Some(Body::PushJob(b)) => &b.user_id,
            Some(Body::DeadLetter(b)) => &b.source_key,
            Some(body) => body.conversation_id().unwrap_or(""),
        }
    }

    /// The conversation the event is about. Push jobs name one too (useful for
    /// `replay --conversation`); presence and dead letters do not.
    pub fn conversation_id(&self) -> Option<&str> {
        self.body.as_ref().and_then(Body::conversation_id)
    }

    /// Whether `user` appears in any user field of the event (creator, members,
    /// actor, affected users, sender, editor, receipt/presence/push user). This is
    /// about the event's text, not about who may see it: membership is the
    /// processors' business.
    pub fn involves_user(&self, user: &str) -> bool {
        let is = |id: &String| id == user;
        match &self.body {
            None | Some(Body::DeadLetter(_)) => false,
            Some(Body::ConversationCreated(b)) => is(&b.creator_id) || b.member_ids.iter().any(is),
            Some(Body::MembersAdded(b)) => is(&b.actor_id) || b.user_ids.iter().any(is),
            Some(Body::MembersRemoved(b)) => is(&b.actor_id) || b.user_ids.iter().any(is),
            Some(Body::MessageSent(b)) => is(&b.sender_id),
            Some(Body::MessageEdited(b)) => is(&b.editor_id),
            Some(Body::MessageDeleted(b)) => is(&b.actor_id),
            Some(Body::Receipt(b)) => is(&b.user_id),
            Some(Body::Presence(b)) => is(&b.user_id),
            Some(Body::PushJob(b)) => is(&b.user_id) || is(&b.sender_id),
        }
    }
}

impl Body {
    /// Which kind of event this body is.
    pub fn kind(&self) -> EventKind {
        match self {
            Body::ConversationCreated(_) => EventKind::ConversationCreated,
            Body::MembersAdded(_) => EventKind::MembersAdded,
            Body::MembersRemoved(_) => EventKind::MembersRemoved,
            Body::MessageSent(_) => EventKind::MessageSent,
            Body::MessageEdited(_) => EventKind::MessageEdited,
            Body::MessageDeleted(_) => EventKind::MessageDeleted,
            Body::Receipt(_) => EventKind::Receipt,
            Body::Presence(_) => EventKind::Presence,
            Body::PushJob(_) => EventKind::PushJob,
            Body::DeadLetter(_) => EventKind::DeadLetter,
        }
    }

    /// See [`Event::conversation_id`].
    pub fn conversation_id(&self) -> Option<&str> {
        match self {
            Body::ConversationCreated(b) => Some(&b.conversation_id),
            Body::MembersAdded(b) => Some(&b.conversation_id),
            Body::MembersRemoved(b) => Some(&b.conversation_id),
            Body::MessageSent(b) => Some(&b.conversation_id),
            Body::MessageEdited(b) => Some(&b.conversation_id),
            Body::MessageDeleted(b) => Some(&b.conversation_id),
            Body::Receipt(b) => Some(&b.conversation_id),
            Body::PushJob(b) => Some(&b.conversation_id),
            Body::Presence(_) | Body::DeadLetter(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{EventKind, json::parse_line};

    #[test]
    fn keys_and_users() {
        let e = parse_line(r#"{"type":"members_added","event_id":"e","conversation_id":"c1","actor_id":"u1","user_ids":["u4"],"at_ms":1}"#).expect("valid");
        assert_eq!(e.kind(), Some(EventKind::MembersAdded));
        assert_eq!(e.routing_key(), "c1");
        assert_eq!(e.conversation_id(), Some("c1"));
        assert!(e.involves_user("u1") && e.involves_user("u4"));
        assert!(!e.involves_user("u2"));

        let p = parse_line(
            r#"{"type":"presence","event_id":"e","user_id":"u2","status":"online","at_ms":1}"#,
        )
        .expect("valid");
        assert_eq!((p.routing_key(), p.conversation_id()), ("u2", None));

        let empty = crate::Event::default();
        assert_eq!(
            (empty.kind(), empty.routing_key(), empty.involves_user("")),
            (None, "", false)
        );
    }
}
