//! The per-conversation state of the inbox fold: exactly what judging and applying
//! the next event needs, persisted by stores after every batch (written last).
//!
//! What grows, and why it must:
//! - one [`MessageMeta`] per applied message (id, sender, offset, `at_ms`, flags,
//!   about 40 bytes as JSON): duplicate `message_id`s must be recognised forever,
//!   edits and deletes need the sender, receipts need the message's offset, and a
//!   moving read watermark needs the senders and tombstones it passes over to keep
//!   unread counts exact without a store read. Texts are *not* kept;
//! - one [`UserState`] per user who was ever a member, whose spans grow by one per
//!   re-join;
//! - one preview (at most 100 characters) per message that is some user's last
//!   visible message: usually one, at most one per user;
//! - the `event_id`s of events that are not idempotent by content
//!   (`conversation_created`, membership changes, edits) and of rejected events.
//!   Messages, deletes and receipts — the bulk of the log — are recognised as
//!   duplicates by their content instead (see `fold`), so their ids are not kept.

use std::collections::{BTreeMap, BTreeSet};

use foldhash::{HashMap, HashMapExt};

use serde::{Deserialize, Serialize};

use super::codec::EncodedMessages;
use super::effects::{ParticipantRow, Span};

/// Bumped when a stored state can no longer be read by this code. 2 added the
/// title, creator and creation time, and the `at_ms` of every join (so a former
/// member sees the conversation as it was when they left); a state of format 1
/// is still read, with those unknown (docs/decisions/2026-12-07-conversation-details.md).
pub const STATE_FORMAT: u32 = 2;

/// Everything the fold remembers about one conversation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConversationState {
    /// [`STATE_FORMAT`] at the time it was written.
    pub(super) format: u32,
    /// The conversation this state belongs to.
    pub(super) conversation_id: String,
    /// Offset of the last event applied (or rejected, or ignored): anything at or
    /// below it is a redelivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) applied: Option<u64>,
    /// `None` until a valid `conversation_created`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) kind: Option<Kind>,
    /// The `conversation_created`'s title, creator and `at_ms` (it never
    /// changes); `None` before it, or when a state of format 1 did not keep them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) created_at_ms: Option<i64>,
    /// Every user who was ever a member; messages refer to senders by index.
    #[serde(default)]
    pub(super) users: Vec<UserState>,
    /// Applied messages in log order.
    #[serde(default)]
    pub(super) messages: Vec<MessageMeta>,
    /// Preview of each message that is some user's `last` (index → preview).
    #[serde(default)]
    pub(super) previews: BTreeMap<u32, String>,
    /// `event_id`s whose second coming must change nothing (see the module doc).
    #[serde(default)]
    pub(super) seen_event_ids: BTreeSet<String>,
    /// `message_id` → index in `messages`; rebuilt after deserialization. Hashed
    /// with foldhash (seeded per process), not SipHash: looking ids up was a
    /// tenth of the fold's time, and the seed still keeps crafted ids from
    /// colliding on purpose.
    #[serde(skip)]
    pub(super) message_index: HashMap<String, u32>,
    /// `user_id` → index in `users`; rebuilt after deserialization.
    #[serde(skip)]
    pub(super) user_index: HashMap<String, u32>,
    /// The binary encoding of the first messages, kept up to date as they
    /// change (see `codec`); caught up by `ensure_indexes`.
    #[serde(skip)]
    pub(super) encoded: EncodedMessages,
}

/// Direct or group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Exactly two members, for ever.
    Direct,
    /// Members come and go.
    Group,
}

/// A conversation as one member sees it ([`ConversationState::seen_by`]), in the
/// JSON shape of `GET /v1/conversations/{id}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(
        description = "A conversation as you see it: as it is while you are a member, as it was when you left once you are not."
    )
)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConversationView {
    /// The conversation.
    pub conversation_id: String,
    /// Direct or group.
    pub kind: Kind,
    /// Its title, if it was given one (null also when a state of format 1 did
    /// not keep it: until the views are rebuilt).
    #[cfg_attr(feature = "openapi", schema(required))]
    pub title: Option<String>,
    /// Who created it (null when a state of format 1 did not keep it).
    #[cfg_attr(feature = "openapi", schema(required))]
    pub created_by: Option<String>,
    /// When it was created (null when a state of format 1 did not keep it).
    #[cfg_attr(feature = "openapi", schema(required))]
    pub created_at_ms: Option<i64>,
    /// The members, by user id.
    pub members: Vec<MemberView>,
}

/// One member of a conversation, as a member sees it ([`ConversationView`]).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberView {
    /// The member.
    pub user_id: String,
    /// When their membership (the one current at the moment seen) began; null
    /// for an earlier membership a state of format 1 did not keep the time of.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub joined_at_ms: Option<i64>,
}

/// One user who is or was a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct UserState {
    pub(super) id: String,
    /// Membership spans in log order; only the last may be open.
    pub(super) spans: Vec<Span>,
    /// `at_ms` of the event that most recently made them a member.
    pub(super) joined_at_ms: i64,
    /// `at_ms` of the event that opened each span, beside `spans`; empty in a
    /// state of format 1, which kept only `joined_at_ms` (see [`Self::joined_ms`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) joins_ms: Vec<Option<i64>>,
    /// Delivered watermark (a message offset); never below `read`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) delivered: Option<u64>,
    /// Read watermark (a message offset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) read: Option<u64>,
    /// Kept up to date incrementally so a store never counts.
    pub(super) unread: u64,
    /// Index of the last message visible to them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) last: Option<u32>,
}

impl UserState {
    pub(super) fn is_member(&self) -> bool {
        self.spans.last().is_some_and(|s| s.to.is_none())
    }

    pub(super) fn sees(&self, offset: u64) -> bool {
        self.spans.iter().any(|s| s.contains(offset))
    }

    /// `at_ms` of the join that opened span `i`, if known: a state of format 1
    /// knew only the latest join's.
    pub(super) fn joined_ms(&self, i: usize) -> Option<i64> {
        if self.joins_ms.len() == self.spans.len() {
            return self.joins_ms.get(i).copied().flatten();
        }
        (i + 1 == self.spans.len()).then_some(self.joined_at_ms)
    }

    /// Opens a span at `from` by an event of `at_ms`.
    pub(super) fn open_span(&mut self, from: u64, at_ms: i64) {
        if self.joins_ms.len() != self.spans.len() {
            self.joins_ms = (0..self.spans.len()).map(|i| self.joined_ms(i)).collect();
        }
        self.spans.push(Span { from, to: None });
        self.joins_ms.push(Some(at_ms));
        self.joined_at_ms = at_ms;
    }

    /// Whether a watermark at `mark` covers the message at `offset`.
    pub(super) fn reached(mark: Option<u64>, offset: u64) -> bool {
        mark.is_some_and(|m| m >= offset)
    }
}

/// One applied message. Field names are one letter because there is one of these
/// per message in every persisted state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct MessageMeta {
    #[serde(rename = "i")]
    pub(super) id: String,
    /// Index of the sender in `users`.
    #[serde(rename = "s")]
    pub(super) sender: u32,
    #[serde(rename = "o")]
    pub(super) offset: u64,
    #[serde(rename = "t")]
    pub(super) at_ms: i64,
    #[serde(rename = "e", default, skip_serializing_if = "is_false")]
    pub(super) edited: bool,
    #[serde(rename = "d", default, skip_serializing_if = "is_false")]
    pub(super) deleted: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl ConversationState {
    /// The state of a conversation nothing is known about yet.
    pub fn new(conversation_id: impl Into<String>) -> Self {
        ConversationState {
            format: STATE_FORMAT,
            conversation_id: conversation_id.into(),
            applied: None,
            kind: None,
            title: None,
            created_by: None,
            created_at_ms: None,
            users: Vec::new(),
            messages: Vec::new(),
            previews: BTreeMap::new(),
            seen_event_ids: BTreeSet::new(),
            message_index: HashMap::new(),
            user_index: HashMap::new(),
            encoded: EncodedMessages::default(),
        }
    }

    /// The [`STATE_FORMAT`] this state was written with; a store refuses a newer one.
    pub fn format(&self) -> u32 {
        self.format
    }

    /// The conversation.
    pub fn conversation_id(&self) -> &str {
        &self.conversation_id
    }

    /// Offset of the last event this state has seen (the store's checkpoint for it).
    pub fn applied_offset(&self) -> Option<u64> {
        self.applied
    }

    /// Whether a valid `conversation_created` was applied.
    pub fn exists(&self) -> bool {
        self.kind.is_some()
    }

    /// Direct or group, once created.
    pub fn kind(&self) -> Option<Kind> {
        self.kind
    }

    /// The conversation as `user` sees it: as it is, to a current member; as it
    /// was just before they left, to a former one; `None` to anyone who was never
    /// a member, or when it does not exist.
    pub fn seen_by(&self, user: &str) -> Option<ConversationView> {
        let kind = self.kind?;
        let me = self.users.iter().find(|u| u.id == user)?;
        let left = match me.spans.last()? {
            Span { to: None, .. } => None,
            Span { to: Some(to), .. } => Some(*to),
        };
        let mut members: Vec<MemberView> = self
            .users
            .iter()
            .filter_map(|u| {
                // The span open at the moment seen: now, or just before `left`
                // (everyone removed by that same event was still in).
                let i = match left {
                    None => u.is_member().then(|| u.spans.len() - 1)?,
                    Some(l) => u
                        .spans
                        .iter()
                        .position(|s| s.from < l && s.to.is_none_or(|to| to >= l))?,
                };
                Some(MemberView {
                    user_id: u.id.clone(),
                    joined_at_ms: u.joined_ms(i),
                })
            })
            .collect();
        members.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        Some(ConversationView {
            conversation_id: self.conversation_id.clone(),
            kind,
            title: self.title.clone(),
            created_by: self.created_by.clone(),
            created_at_ms: self.created_at_ms,
            members,
        })
    }

    /// Current members, sorted.
    pub fn members(&self) -> Vec<&str> {
        let mut m: Vec<&str> = self
            .users
            .iter()
            .filter(|u| u.is_member())
            .map(|u| u.id.as_str())
            .collect();
        m.sort_unstable();
        m
    }

    /// The users who see a message sent at `offset`: those who were members then
    /// (docs/DESIGN.md, "Visibility"), in the order they first joined. The search view
    /// records them on each document.
    pub fn visible_to(&self, offset: u64) -> Vec<&str> {
        self.users
            .iter()
            .filter(|u| u.sees(offset))
            .map(|u| u.id.as_str())
            .collect()
    }

    /// The members just after the event at `offset` was applied (those it added
    /// are in, those it removed are out), sorted: whom a membership change at
    /// `offset` went to live. The gateway's resume judges old events by it.
    pub fn members_after(&self, offset: u64) -> Vec<&str> {
        self.members_where(|s| s.from <= offset && s.to.is_none_or(|to| offset < to))
    }

    /// The members just before the event at `offset` (those it removed are in),
    /// sorted: whom a removal at `offset` went to live.
    pub fn members_before(&self, offset: u64) -> Vec<&str> {
        self.members_where(|s| s.from < offset && s.to.is_none_or(|to| offset <= to))
    }

    fn members_where(&self, open: impl Fn(&Span) -> bool) -> Vec<&str> {
        let mut m: Vec<&str> = self
            .users
            .iter()
            .filter(|u| u.spans.iter().any(&open))
            .map(|u| u.id.as_str())
            .collect();
        m.sort_unstable();
        m
    }

    /// The sender of an applied message, if there is one with that id. Scans from
    /// the newest message: callers (the gateway's live fan-out of receipts) mostly
    /// name recent ones, and the index may not be built on a state fresh from a store.
    pub fn message_sender(&self, message_id: &str) -> Option<&str> {
        let m = self.messages.iter().rev().find(|m| m.id == message_id)?;
        self.users.get(m.sender as usize).map(|u| u.id.as_str())
    }

    /// The sender and log offset of an applied message, if there is one with that
    /// id: where to read its `message_sent` back from the log (texts are not kept),
    /// e.g. to tell a client's retry of a send from a reuse of its id.
    pub fn message_origin(&self, message_id: &str) -> Option<(&str, u64)> {
        let m = self.messages.iter().rev().find(|m| m.id == message_id)?;
        let sender = self.users.get(m.sender as usize)?;
        Some((sender.id.as_str(), m.offset))
    }

    /// The log offset of the `conversation_created` that made this conversation
    /// exist (every first member's first span starts there), if it does.
    pub fn created_offset(&self) -> Option<u64> {
        self.kind?;
        self.users
            .iter()
            .filter_map(|u| u.spans.first().map(|s| s.from))
            .min()
    }

    /// How many messages the state remembers (it grows by one per applied message).
    pub fn message_count(&self) -> usize {
        self.messages.len()
    }

    /// The participant row of every user who is or was a member, as stores hold
    /// them. Lets a store (re)build or check its rows from a state alone.
    pub fn participants(&self) -> Vec<ParticipantRow> {
        (0..self.users.len()).map(|u| self.participant(u)).collect()
    }

    pub(super) fn participant(&self, u: usize) -> ParticipantRow {
        let user = &self.users[u];
        ParticipantRow {
            conversation_id: self.conversation_id.clone(),
            user_id: user.id.clone(),
            spans: user.spans.clone(),
            delivered_up_to: user.delivered,
            read_up_to: user.read,
        }
    }

    /// Rebuilds the lookup maps and the messages' encoding that serialization
    /// leaves out. Cheap when they are in step: the collections only ever grow,
    /// so equal lengths mean up to date.
    pub(super) fn ensure_indexes(&mut self) {
        if self.message_index.len() != self.messages.len() {
            self.message_index = self
                .messages
                .iter()
                .enumerate()
                .map(|(i, m)| (m.id.clone(), i as u32))
                .collect();
        }
        if self.user_index.len() != self.users.len() {
            self.user_index = self
                .users
                .iter()
                .enumerate()
                .map(|(i, u)| (u.id.clone(), i as u32))
                .collect();
        }
        self.encode_new_messages();
    }

    pub(super) fn user(&self, id: &str) -> Option<usize> {
        self.user_index.get(id).map(|&i| i as usize)
    }

    pub(super) fn is_member(&self, id: &str) -> bool {
        self.user(id).is_some_and(|u| self.users[u].is_member())
    }

    pub(super) fn message(&self, id: &str) -> Option<usize> {
        self.message_index.get(id).map(|&i| i as usize)
    }

    /// The user's index, adding them (no spans yet) if they were never a member.
    pub(super) fn user_or_insert(&mut self, id: &str) -> usize {
        if let Some(u) = self.user(id) {
            return u;
        }
        let u = self.users.len();
        self.users.push(UserState {
            id: id.to_owned(),
            spans: Vec::new(),
            joined_at_ms: 0,
            joins_ms: Vec::new(),
            delivered: None,
            read: None,
            unread: 0,
            last: None,
        });
        self.user_index.insert(id.to_owned(), u as u32);
        u
    }

    pub(super) fn push_message(&mut self, meta: MessageMeta) -> usize {
        let i = self.messages.len();
        self.message_index.insert(meta.id.clone(), i as u32);
        self.messages.push(meta);
        self.encode_new_messages();
        i
    }

    /// Marks message `i` edited or deleted, in the state and its encoding.
    pub(super) fn flag_message(&mut self, i: usize, edited: bool, deleted: bool) {
        let m = &mut self.messages[i];
        m.edited |= edited;
        m.deleted |= deleted;
        self.encoded.reflag(i, m);
    }
}
