//! What one step of the fold hands to a store: the verdict on the event and the
//! rows to upsert. Every row is complete (a store never reads before writing) and
//! is versioned by the position of the event that produced it.

use serde::{Deserialize, Serialize};

/// Where an event sits in the log. A conversation lives on one partition of
/// `courier.conversations.v1`, so its events are ordered by `offset` alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    /// Partition of `courier.conversations.v1`.
    pub partition: u32,
    /// Offset in that partition.
    pub offset: u64,
}

impl Position {
    /// A position.
    pub fn new(partition: u32, offset: u64) -> Self {
        Position { partition, offset }
    }
}

/// The result of applying one event to a conversation's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The event's position; every row in `effects` is versioned by it.
    pub position: Position,
    /// What happened to the event.
    pub verdict: Verdict,
    /// Rows to upsert. Empty unless `verdict` is `Applied`.
    pub effects: Effects,
}

impl Outcome {
    /// Whether the conversation state changed and must be written (after the
    /// effects). Everything but a redelivery at least advances the applied offset.
    pub fn state_changed(&self) -> bool {
        self.verdict != Verdict::Redelivered
    }

    /// The reason, when the event must go to dead letters.
    pub fn rejection(&self) -> Option<&str> {
        match &self.verdict {
            Verdict::Rejected(reason) => Some(reason),
            _ => None,
        }
    }
}

/// What happened to an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The event changed the conversation; `effects` says how.
    Applied,
    /// At or below the conversation's applied offset: seen before, nothing happens
    /// and the state is unchanged.
    Redelivered,
    /// A valid event that changes nothing (a duplicate, or a change already made).
    /// Not a dead letter; the applied offset advances.
    Ignored(Ignored),
    /// The event breaks a rule of docs/DESIGN.md: the reason goes to dead letters.
    /// Nothing changes but the applied offset.
    Rejected(String),
}

/// Why a valid event changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Its `event_id` was seen before in this conversation (a producer retry).
    DuplicateEventId,
    /// A `message_sent` whose `message_id` is already used in the conversation:
    /// the first one wins.
    DuplicateMessageId,
    /// A `members_added` naming only current members, or a `members_removed`
    /// naming only non-members.
    MembershipUnchanged,
    /// A receipt at or below the user's watermark for that status.
    WatermarkAlreadyThere,
    /// A delete of a message that is already deleted.
    AlreadyDeleted,
}

/// Rows to upsert, each keyed as documented on its type. Within one `Effects` no
/// key appears twice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// Message history rows, keyed by (`conversation_id`, `message_id`).
    pub messages: Vec<MessageRow>,
    /// Membership spans and receipt watermarks, keyed by (`conversation_id`,
    /// `user_id`).
    pub participants: Vec<ParticipantRow>,
    /// Inbox rows, keyed by (`user_id`, `conversation_id`).
    pub inbox: Vec<InboxUpdate>,
}

impl Effects {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.participants.is_empty() && self.inbox.is_empty()
    }
}

/// One message of the history, as it is now. Who may see it and who received or
/// read it are not here: they follow from the conversation's [`ParticipantRow`]s
/// (see [`super::view`]), so a receipt rewrites one small row instead of every
/// message it covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRow {
    /// The conversation.
    pub conversation_id: String,
    /// Unique within the conversation.
    pub message_id: String,
    /// Who sent it.
    pub sender_id: String,
    /// Current content; `None` once deleted (the tombstone).
    pub content: Option<Content>,
    /// `at_ms` of the `message_sent`.
    pub sent_at_ms: i64,
    /// Whether an edit replaced the text.
    pub edited: bool,
    /// Deleted for everyone.
    pub deleted: bool,
    /// Position of the `message_sent`: orders the history, and a user sees the
    /// message iff this offset is inside one of their membership spans.
    pub position: Position,
}

impl MessageRow {
    /// The current text; `None` when deleted or when the content is not text.
    pub fn text(&self) -> Option<&str> {
        match &self.content {
            Some(Content::Text(t)) => Some(t),
            _ => None,
        }
    }
}

/// What a message carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Content {
    /// Plain text (an edit always leaves text).
    Text(String),
    /// End-to-end encrypted bytes courier never reads.
    Ciphertext(Vec<u8>),
    /// A reference to media stored elsewhere.
    Media(Media),
}

/// A media reference, as in the `MediaRef` of the wire format.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Media {
    /// Where the media is.
    pub url: String,
    /// Its MIME type.
    pub mime_type: String,
    /// Its size.
    pub size_bytes: i64,
    /// Lowercase hex digest, when the uploader gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// A user's membership history and receipt watermarks in one conversation. There
/// is one for every user who is or was a member; none for anyone else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantRow {
    /// The conversation.
    pub conversation_id: String,
    /// The user.
    pub user_id: String,
    /// Membership spans in log order; only the last may be open (a current member).
    pub spans: Vec<Span>,
    /// Offset of the newest message the user's delivered watermark reached
    /// (never below `read_up_to`: read implies delivered).
    pub delivered_up_to: Option<u64>,
    /// Offset of the newest message the user's read watermark reached.
    pub read_up_to: Option<u64>,
}

/// An interval of membership, in offsets of the conversation's partition: from the
/// event that made the user a member to the one that removed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// Offset of the joining event (`conversation_created` or `members_added`).
    pub from: u64,
    /// Offset of the `members_removed` that ended it; `None` while a member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u64>,
}

impl Span {
    /// Whether a message at `offset` was sent while this span was open.
    pub fn contains(&self, offset: u64) -> bool {
        self.from < offset && self.to.is_none_or(|to| offset < to)
    }
}

/// The new inbox row of one user for one conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxUpdate {
    /// Whose inbox.
    pub user_id: String,
    /// The row (it names the conversation).
    pub row: InboxRow,
}

/// A row of a user's inbox, in the exact JSON shape of `courier inbox --json`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxRow {
    /// The conversation.
    pub conversation_id: String,
    /// The last message visible to the user; null when none is.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub last_message_id: Option<String>,
    /// The first 100 characters of its current text; `""` if deleted or not text.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub last_message_preview: Option<String>,
    /// Whether that message is deleted.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub last_message_deleted: Option<bool>,
    /// The later of the user's most recent join and that message's `at_ms`.
    pub last_activity_ms: i64,
    /// Messages visible to the user, not sent by them, not deleted, after their
    /// read watermark.
    pub unread_count: u64,
}
