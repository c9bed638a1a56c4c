//! The query side: how the two queries of the inbox view are derived from the rows
//! the fold emits, as pure functions stores reuse, and [`ViewModel`], an in-memory
//! store that applies effects and answers them (the reference the real stores are
//! tested against).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use super::effects::{Content, InboxRow, Media, MessageRow, Outcome, ParticipantRow, Position};

/// How many characters of a message's text an inbox row shows.
pub const PREVIEW_CHARS: usize = 100;

/// The first [`PREVIEW_CHARS`] characters (Unicode scalar values, never a cut
/// inside one) of a text.
pub fn preview(text: &str) -> String {
    text.chars().take(PREVIEW_CHARS).collect()
}

/// A message as `courier messages CONVERSATION --as USER --json` shows it.
/// `ciphertext` (base64) and `media` appear only on messages that carry them.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageView {
    /// Unique within the conversation.
    pub message_id: String,
    /// Who sent it.
    pub sender_id: String,
    /// Current text; null when deleted or not a text message.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub text: Option<String>,
    /// Encrypted content, standard base64 as in the canonical JSON of events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphertext: Option<String>,
    /// A media reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<Media>,
    /// `at_ms` of the `message_sent`.
    pub sent_at_ms: i64,
    /// Whether an edit replaced the text.
    pub edited: bool,
    /// Deleted for everyone (a tombstone).
    pub deleted: bool,
    /// Recipients whose delivered watermark reached it, sorted.
    pub delivered_to: Vec<String>,
    /// Recipients whose read watermark reached it, sorted.
    pub read_by: Vec<String>,
}

/// Asked for the messages of a conversation as someone who never belonged to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{user} is not and never was a member of conversation {conversation}")]
pub struct NotAMember {
    /// Who asked.
    pub user: String,
    /// Which conversation.
    pub conversation: String,
}

/// Whether someone with these membership spans sees the message at `position`.
pub fn is_visible(spans: &[super::effects::Span], position: Position) -> bool {
    spans.iter().any(|s| s.contains(position.offset))
}

/// A message's recipients: the participants who were members when it was sent,
/// minus its sender.
pub fn recipients<'a>(
    message: &'a MessageRow,
    participants: impl IntoIterator<Item = &'a ParticipantRow>,
) -> impl Iterator<Item = &'a ParticipantRow> {
    participants
        .into_iter()
        .filter(move |p| p.user_id != message.sender_id && is_visible(&p.spans, message.position))
}

/// Recipients whose delivered watermark reached the message, sorted.
pub fn delivered_to<'a>(
    message: &'a MessageRow,
    participants: impl IntoIterator<Item = &'a ParticipantRow>,
) -> Vec<String> {
    reached_by(message, participants, |p| p.delivered_up_to)
}

/// Recipients whose read watermark reached the message, sorted.
pub fn read_by<'a>(
    message: &'a MessageRow,
    participants: impl IntoIterator<Item = &'a ParticipantRow>,
) -> Vec<String> {
    reached_by(message, participants, |p| p.read_up_to)
}

fn reached_by<'a>(
    message: &'a MessageRow,
    participants: impl IntoIterator<Item = &'a ParticipantRow>,
    mark: impl Fn(&ParticipantRow) -> Option<u64>,
) -> Vec<String> {
    let mut users: Vec<String> = recipients(message, participants)
        .filter(|p| mark(p).is_some_and(|m| m >= message.position.offset))
        .map(|p| p.user_id.clone())
        .collect();
    users.sort_unstable();
    users
}

/// A message row as the messages query shows it, given the conversation's
/// participant rows.
pub fn message_view(message: &MessageRow, participants: &[ParticipantRow]) -> MessageView {
    let (ciphertext, media) = match &message.content {
        Some(Content::Ciphertext(c)) => (Some(BASE64.encode(c)), None),
        Some(Content::Media(m)) => (None, Some(m.clone())),
        Some(Content::Text(_)) | None => (None, None),
    };
    MessageView {
        message_id: message.message_id.clone(),
        sender_id: message.sender_id.clone(),
        text: message.text().map(str::to_owned),
        ciphertext,
        media,
        sent_at_ms: message.sent_at_ms,
        edited: message.edited,
        deleted: message.deleted,
        delivered_to: delivered_to(message, participants),
        read_by: read_by(message, participants),
    }
}

/// The messages query: the messages of a conversation visible to `as_user`,
/// oldest first, from the conversation's participant rows and message rows (in
/// any order). Someone without a participant row never belonged to it.
pub fn visible_messages<'a>(
    conversation: &str,
    as_user: &str,
    participants: &[ParticipantRow],
    messages: impl IntoIterator<Item = &'a MessageRow>,
) -> Result<Vec<MessageView>, NotAMember> {
    let Some(me) = participants.iter().find(|p| p.user_id == as_user) else {
        return Err(NotAMember {
            user: as_user.to_owned(),
            conversation: conversation.to_owned(),
        });
    };
    let mut mine: Vec<&MessageRow> = messages
        .into_iter()
        .filter(|m| is_visible(&me.spans, m.position))
        .collect();
    mine.sort_by_key(|m| m.position);
    Ok(mine
        .into_iter()
        .map(|m| message_view(m, participants))
        .collect())
}

/// Puts inbox rows in query order: newest activity first, ties by
/// `conversation_id` ascending.
pub fn sort_inbox(rows: &mut [InboxRow]) {
    rows.sort_by(|a, b| {
        b.last_activity_ms
            .cmp(&a.last_activity_ms)
            .then_with(|| a.conversation_id.cmp(&b.conversation_id))
    });
}

/// A row with the position of the event that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Versioned<T> {
    version: Position,
    row: T,
}

/// Upserts `row` unless the stored one was written by a later event: what
/// Cassandra's `USING TIMESTAMP` does, so replaying an older suffix after newer
/// rows landed (a crash between the views and the state) changes nothing.
fn upsert<K: Ord, T>(map: &mut BTreeMap<K, Versioned<T>>, key: K, version: Position, row: T) {
    match map.get(&key) {
        Some(old) if old.version > version => {}
        _ => {
            map.insert(key, Versioned { version, row });
        }
    }
}

/// The inbox and history views in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewModel {
    /// Keyed by (conversation, message).
    messages: BTreeMap<(String, String), Versioned<MessageRow>>,
    /// Keyed by (conversation, user).
    participants: BTreeMap<(String, String), Versioned<ParticipantRow>>,
    /// Keyed by (user, conversation).
    inbox: BTreeMap<(String, String), Versioned<InboxRow>>,
}

impl ViewModel {
    /// An empty view.
    pub fn new() -> Self {
        ViewModel::default()
    }

    /// Writes an outcome's effects. Idempotent, and indifferent to an older
    /// outcome arriving after a newer one.
    pub fn apply(&mut self, outcome: &Outcome) {
        let v = outcome.position;
        for m in &outcome.effects.messages {
            let key = (m.conversation_id.clone(), m.message_id.clone());
            upsert(&mut self.messages, key, v, m.clone());
        }
        for p in &outcome.effects.participants {
            let key = (p.conversation_id.clone(), p.user_id.clone());
            upsert(&mut self.participants, key, v, p.clone());
        }
        for i in &outcome.effects.inbox {
            let key = (i.user_id.clone(), i.row.conversation_id.clone());
            upsert(&mut self.inbox, key, v, i.row.clone());
        }
    }

    /// The inbox query: one row per conversation `user` is or was a member of.
    pub fn inbox(&self, user: &str) -> Vec<InboxRow> {
        let mut rows: Vec<InboxRow> = self
            .inbox
            .range((user.to_owned(), String::new())..)
            .take_while(|((u, _), _)| u == user)
            .map(|(_, v)| v.row.clone())
            .collect();
        sort_inbox(&mut rows);
        rows
    }

    /// The messages query (see [`visible_messages`]).
    pub fn messages(
        &self,
        conversation: &str,
        as_user: &str,
    ) -> Result<Vec<MessageView>, NotAMember> {
        let participants: Vec<ParticipantRow> = in_conversation(&self.participants, conversation)
            .cloned()
            .collect();
        visible_messages(
            conversation,
            as_user,
            &participants,
            in_conversation(&self.messages, conversation),
        )
    }

    /// Every user with an inbox row, sorted (for tests that look at everything).
    pub fn users(&self) -> Vec<&str> {
        let mut users: Vec<&str> = self.inbox.keys().map(|(u, _)| u.as_str()).collect();
        users.dedup();
        users
    }

    /// Every conversation with a participant, sorted.
    pub fn conversations(&self) -> Vec<&str> {
        let mut cs: Vec<&str> = self.participants.keys().map(|(c, _)| c.as_str()).collect();
        cs.dedup();
        cs
    }

    /// The participant row of a user in a conversation.
    pub fn participant(&self, conversation: &str, user: &str) -> Option<&ParticipantRow> {
        self.participants
            .get(&(conversation.to_owned(), user.to_owned()))
            .map(|v| &v.row)
    }
}

/// The rows of one conversation in a map keyed by (conversation, ...).
fn in_conversation<'a, T>(
    map: &'a BTreeMap<(String, String), Versioned<T>>,
    conversation: &'a str,
) -> impl Iterator<Item = &'a T> {
    map.range((conversation.to_owned(), String::new())..)
        .take_while(move |((c, _), _)| c == conversation)
        .map(|(_, v)| &v.row)
}
