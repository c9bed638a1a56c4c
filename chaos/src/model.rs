//! The reference fold: what every view must hold after a log, written from
//! docs/DESIGN.md ("Semantics of the views") and nothing else. It shares no code
//! with `processors/`: it keeps plain per-conversation records (members, spans
//! as event positions, messages, watermarks) and answers each query by scanning
//! them, so it is slow and obviously right rather than fast and clever.
//!
//! Where DESIGN.md is silent, docs/ARCHITECTURE.md's decisions are followed and
//! named where they are used: the order of the checks (which only decides whether
//! an event that is not applied is "ignored" or "rejected"), a deleted message
//! keeping its `edited` flag, the preview being the first 100 characters, and a
//! word being a run of letters and digits of at most 40 bytes.
//!
//! Positions are per conversation: the index of the event among the
//! conversation's events in log order. Every event of a conversation is on one
//! partition, so that order is the log's, and "member when it was sent, judged
//! at the message's position" only compares positions within a conversation.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use courier_schemas::Event;
use courier_schemas::proto::event::Body;
use courier_schemas::proto::message_sent::Content;
use courier_schemas::proto::{ConversationKind, PresenceStatus, ReceiptStatus};
use serde_json::{Value, json};

/// How many characters of a text an inbox row previews (ARCHITECTURE: "The
/// preview is the first 100 Unicode scalar values").
pub const PREVIEW_CHARS: usize = 100;
/// Longest indexed word, in bytes (ARCHITECTURE, "Word").
pub const MAX_WORD_BYTES: usize = 40;

/// What applying one event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It changed the views.
    Applied,
    /// It repeats something already applied: no change, no dead letter.
    Ignored,
    /// It breaks a rule: no change, a dead letter with this reason.
    Rejected(String),
}

/// A member's time in a conversation: from the position of the event that
/// added them to the one that removed them (open while they are a member).
#[derive(Debug, Clone, Copy)]
struct Span {
    from: u64,
    to: Option<u64>,
}

impl Span {
    fn contains(&self, pos: u64) -> bool {
        self.from < pos && self.to.is_none_or(|to| pos < to)
    }
}

/// Someone who is or was a member.
#[derive(Debug, Clone, Default)]
struct Participant {
    spans: Vec<Span>,
    /// `at_ms` of their latest joining.
    joined_at_ms: i64,
    /// Receipt watermarks: positions of messages.
    delivered: Option<u64>,
    read: Option<u64>,
}

impl Participant {
    fn is_member(&self) -> bool {
        self.spans.last().is_some_and(|s| s.to.is_none())
    }

    fn sees(&self, pos: u64) -> bool {
        self.spans.iter().any(|s| s.contains(pos))
    }
}

#[derive(Debug, Clone)]
enum Body2 {
    Text(String),
    Ciphertext(Vec<u8>),
    Media(Value),
}

#[derive(Debug, Clone)]
struct Message {
    id: String,
    sender: String,
    pos: u64,
    at_ms: i64,
    body: Body2,
    edited: bool,
    deleted: bool,
}

impl Message {
    /// The current text, if it has one and is not deleted.
    fn text(&self) -> Option<&str> {
        match (&self.body, self.deleted) {
            (Body2::Text(t), false) => Some(t),
            _ => None,
        }
    }
}

/// One conversation as the log has made it so far.
#[derive(Debug, Clone, Default)]
struct Conversation {
    created: bool,
    direct: bool,
    /// Events seen so far (the next event's position is `events + 1`).
    events: u64,
    /// Everyone who is or was a member.
    people: BTreeMap<String, Participant>,
    /// Applied sends, in log order.
    messages: Vec<Message>,
    /// `event_id`s seen in this conversation: a repeated event changes nothing.
    seen: BTreeSet<String>,
}

impl Conversation {
    fn is_member(&self, user: &str) -> bool {
        self.people.get(user).is_some_and(Participant::is_member)
    }

    fn message(&self, id: &str) -> Option<usize> {
        self.messages.iter().position(|m| m.id == id)
    }

    fn join(&mut self, user: &str, pos: u64, at_ms: i64) {
        let p = self.people.entry(user.to_string()).or_default();
        p.spans.push(Span {
            from: pos,
            to: None,
        });
        p.joined_at_ms = at_ms;
    }

    /// The members at position `pos` (when a message there was sent).
    fn members_at(&self, pos: u64) -> impl Iterator<Item = &String> {
        self.people
            .iter()
            .filter(move |(_, p)| p.sees(pos))
            .map(|(u, _)| u)
    }
}

/// An applied send, for the push jobs it should cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    pub conversation_id: String,
    pub message_id: String,
    pub sender_id: String,
    pub event_id: String,
    /// The members when it was sent, minus the sender.
    pub recipients: Vec<String>,
    /// What a push job previews: the first 100 characters of its text as sent,
    /// `""` for ciphertext and media (DESIGN, "Notify"; ARCHITECTURE, "Jobs").
    pub preview: String,
}

/// The reference views of a log.
#[derive(Debug, Clone, Default)]
pub struct Model {
    conversations: BTreeMap<String, Conversation>,
    /// Latest presence per user: online, and its `at_ms`.
    presence: BTreeMap<String, (bool, i64)>,
    sends: Vec<Send>,
    /// Outcomes so far, for the report.
    pub applied: u64,
    pub ignored: u64,
    pub rejected: Vec<(String, String)>,
}

impl Model {
    pub fn new() -> Model {
        Model::default()
    }

    /// Applies the next event of the log (its topic's order; a conversation's
    /// events in their partition's order).
    pub fn apply(&mut self, event: &Event) -> Outcome {
        let outcome = match &event.body {
            Some(Body::Presence(p)) => {
                let online = p.status == PresenceStatus::Online as i32;
                self.presence
                    .insert(p.user_id.clone(), (online, event.at_ms));
                Outcome::Applied
            }
            Some(body) => match body.conversation_id() {
                Some(c) => {
                    let conv = self.conversations.entry(c.to_string()).or_default();
                    conv.events += 1;
                    let pos = conv.events;
                    if !conv.seen.insert(event.event_id.clone()) {
                        Outcome::Ignored
                    } else {
                        let outcome = apply_to(conv, pos, event.at_ms, body);
                        if outcome == Outcome::Applied
                            && let Body::MessageSent(s) = body
                        {
                            let mut recipients: Vec<String> = conv
                                .members_at(pos)
                                .filter(|u| **u != s.sender_id)
                                .cloned()
                                .collect();
                            recipients.sort();
                            let preview = match &s.content {
                                Some(Content::Text(t)) => preview(t),
                                _ => String::new(),
                            };
                            self.sends.push(Send {
                                preview,
                                conversation_id: c.to_string(),
                                message_id: s.message_id.clone(),
                                sender_id: s.sender_id.clone(),
                                event_id: event.event_id.clone(),
                                recipients,
                            });
                        }
                        outcome
                    }
                }
                None => Outcome::Rejected("not a conversation or presence event".into()),
            },
            None => Outcome::Rejected("no body".into()),
        };
        match &outcome {
            Outcome::Applied => self.applied += 1,
            Outcome::Ignored => self.ignored += 1,
            Outcome::Rejected(why) => self.rejected.push((event.event_id.clone(), why.clone())),
        }
        outcome
    }

    /// Every conversation id the log named (created or not).
    pub fn conversation_ids(&self) -> impl Iterator<Item = &String> {
        self.conversations.keys()
    }

    /// Whether the conversation exists.
    pub fn exists(&self, conversation: &str) -> bool {
        self.conversations
            .get(conversation)
            .is_some_and(|c| c.created)
    }

    /// Whether `user` is a member of `conversation` now.
    pub fn is_member(&self, conversation: &str, user: &str) -> bool {
        self.conversations
            .get(conversation)
            .is_some_and(|c| c.created && c.is_member(user))
    }

    /// Everyone who is or was a member of `conversation`.
    pub fn people(&self, conversation: &str) -> Vec<String> {
        self.conversations
            .get(conversation)
            .map(|c| c.people.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The current members of `conversation`.
    pub fn members(&self, conversation: &str) -> Vec<String> {
        self.conversations
            .get(conversation)
            .map(|c| {
                c.people
                    .iter()
                    .filter(|(_, p)| p.is_member())
                    .map(|(u, _)| u.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every applied send, in log order per conversation.
    pub fn sends(&self) -> &[Send] {
        &self.sends
    }

    /// Whether a message was sent (applied) in the conversation.
    pub fn has_message(&self, conversation: &str, message: &str) -> bool {
        self.conversations
            .get(conversation)
            .is_some_and(|c| c.message(message).is_some())
    }

    /// Users whose latest presence says online.
    pub fn online(&self) -> BTreeSet<String> {
        self.presence
            .iter()
            .filter(|(_, (on, _))| *on)
            .map(|(u, _)| u.clone())
            .collect()
    }

    /// `courier inbox USER --json` (DESIGN, "Inbox of u"): one row per
    /// conversation the user is or was a member of, newest activity first, ties
    /// by conversation id.
    pub fn inbox(&self, user: &str) -> Value {
        let mut rows: Vec<(i64, &str, Value)> = Vec::new();
        for (id, c) in &self.conversations {
            let Some(me) = c.people.get(user) else {
                continue;
            };
            let visible = || c.messages.iter().filter(|m| me.sees(m.pos));
            let last = visible().next_back();
            // Unread: visible, not the user's own, not deleted, after their read
            // watermark.
            let unread = visible()
                .filter(|m| m.sender != user && !m.deleted)
                .filter(|m| me.read.is_none_or(|r| m.pos > r))
                .count();
            let activity = last.map_or(me.joined_at_ms, |m| m.at_ms.max(me.joined_at_ms));
            let row = json!({
                "conversation_id": id,
                "last_message_id": last.map(|m| m.id.clone()),
                "last_message_preview": last.map(|m| preview(m.text().unwrap_or(""))),
                "last_message_deleted": last.map(|m| m.deleted),
                "last_activity_ms": activity,
                "unread_count": unread,
            });
            rows.push((activity, id, row));
        }
        rows.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        Value::Array(rows.into_iter().map(|(_, _, r)| r).collect())
    }

    /// `courier messages CONVERSATION --as USER --json` (DESIGN, "Visibility",
    /// "Receipts"): the messages the user sees, oldest first; `None` when the
    /// user never was a member (the command fails).
    pub fn messages(&self, conversation: &str, user: &str) -> Option<Value> {
        let c = self.conversations.get(conversation)?;
        let me = c.people.get(user)?;
        let list = c
            .messages
            .iter()
            .filter(|m| me.sees(m.pos))
            .map(|m| {
                // Recipients: the members when it was sent, minus the sender.
                let reached = |mark: fn(&Participant) -> Option<u64>| -> Vec<String> {
                    c.people
                        .iter()
                        .filter(|(u, p)| **u != m.sender && p.sees(m.pos))
                        .filter(|(_, p)| mark(p).is_some_and(|w| w >= m.pos))
                        .map(|(u, _)| u.clone())
                        .collect()
                };
                let mut v = json!({
                    "message_id": m.id,
                    "sender_id": m.sender,
                    "text": m.text(),
                    "sent_at_ms": m.at_ms,
                    "edited": m.edited,
                    "deleted": m.deleted,
                    "delivered_to": reached(|p| p.delivered),
                    "read_by": reached(|p| p.read),
                });
                // A tombstone keeps no content (DESIGN, "Edits and deletes").
                if !m.deleted {
                    match &m.body {
                        Body2::Ciphertext(b) => v["ciphertext"] = json!(BASE64.encode(b)),
                        Body2::Media(media) => v["media"] = media.clone(),
                        Body2::Text(_) => {}
                    }
                }
                v
            })
            .collect();
        Some(Value::Array(list))
    }

    /// The messages `courier search USER WORD` must find (DESIGN, "Search for
    /// u"): visible to the user, not deleted, text (never ciphertext) whose
    /// current version contains the word. As `(conversation_id, message_id)`
    /// with the fields a hit shows.
    pub fn search(&self, user: &str, word: &str) -> BTreeMap<(String, String), Value> {
        let word = word.to_lowercase();
        let mut out = BTreeMap::new();
        for (id, c) in &self.conversations {
            let Some(me) = c.people.get(user) else {
                continue;
            };
            for m in c.messages.iter().filter(|m| me.sees(m.pos)) {
                let Some(text) = m.text() else { continue };
                if words(text).any(|w| w.to_lowercase() == word) {
                    out.insert(
                        (id.clone(), m.id.clone()),
                        json!({
                            "conversation_id": id,
                            "message_id": m.id,
                            "sender_id": m.sender,
                            "text": text,
                            "sent_at_ms": m.at_ms,
                        }),
                    );
                }
            }
        }
        out
    }

    /// `courier presence USER --json` (DESIGN, "Presence"; ARCHITECTURE:
    /// `last_seen_ms` is the latest event's `at_ms`, null for a user never seen).
    pub fn presence(&self, user: &str) -> Value {
        match self.presence.get(user) {
            Some((online, at)) => json!({
                "user_id": user,
                "status": if *online { "online" } else { "offline" },
                "last_seen_ms": at,
            }),
            None => json!({"user_id": user, "status": "offline", "last_seen_ms": null}),
        }
    }

    /// Every word of every visible, current text: what to sample searches from.
    pub fn vocabulary(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for c in self.conversations.values() {
            for m in &c.messages {
                if let Some(t) = m.text() {
                    out.extend(words(t).map(str::to_lowercase));
                }
            }
        }
        out
    }
}

/// The first [`PREVIEW_CHARS`] characters.
fn preview(text: &str) -> String {
    text.chars().take(PREVIEW_CHARS).collect()
}

/// The words of a text: maximal runs of letters and digits, lowercased, at most
/// [`MAX_WORD_BYTES`] long.
pub fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && w.len() <= MAX_WORD_BYTES)
}

/// Applies one conversation event at `pos` to a conversation that has not seen
/// its `event_id`. The checks run in the order ARCHITECTURE.md fixes (the
/// conversation exists; membership: not direct, actor a member; edits and
/// deletes: the message exists, the actor sent it, not deleted, still a member;
/// receipts: the message exists, the user ever a member, the message visible to
/// them, the watermark, a current member).
fn apply_to(c: &mut Conversation, pos: u64, at_ms: i64, body: &Body) -> Outcome {
    use Outcome::{Applied, Ignored, Rejected};
    let reject = |why: String| Rejected(why);
    match body {
        Body::ConversationCreated(b) => {
            if c.created {
                return reject(format!("{} already exists", b.conversation_id));
            }
            if !b.member_ids.contains(&b.creator_id) {
                return reject(format!("creator {} is not among the members", b.creator_id));
            }
            let direct = b.kind == ConversationKind::Direct as i32;
            let distinct: BTreeSet<&String> = b.member_ids.iter().collect();
            if direct && distinct.len() != 2 {
                return reject("a direct conversation has exactly two members".into());
            }
            c.created = true;
            c.direct = direct;
            for u in distinct {
                c.join(u, pos, at_ms);
            }
            Applied
        }
        Body::MembersAdded(b) => {
            if let Some(r) = membership_check(c, &b.actor_id) {
                return r;
            }
            let new: BTreeSet<&String> = b.user_ids.iter().filter(|u| !c.is_member(u)).collect();
            if new.is_empty() {
                return Ignored;
            }
            for u in new {
                c.join(u, pos, at_ms);
            }
            Applied
        }
        Body::MembersRemoved(b) => {
            if let Some(r) = membership_check(c, &b.actor_id) {
                return r;
            }
            let gone: BTreeSet<&String> = b.user_ids.iter().filter(|u| c.is_member(u)).collect();
            if gone.is_empty() {
                return Ignored;
            }
            for u in gone {
                let p = c.people.get_mut(u).expect("a member is a participant");
                if let Some(s) = p.spans.last_mut() {
                    s.to = Some(pos);
                }
            }
            Applied
        }
        Body::MessageSent(b) => {
            if !c.created {
                return reject("no such conversation".into());
            }
            // A used id changes nothing, whatever its text (the first one wins).
            if c.message(&b.message_id).is_some() {
                return Ignored;
            }
            if !c.is_member(&b.sender_id) {
                return reject(format!("sender {} is not a member", b.sender_id));
            }
            let body = match &b.content {
                Some(Content::Text(t)) => Body2::Text(t.clone()),
                Some(Content::Ciphertext(x)) => Body2::Ciphertext(x.clone()),
                Some(Content::Media(m)) => {
                    let mut v = json!({
                        "url": m.url, "mime_type": m.mime_type, "size_bytes": m.size_bytes,
                    });
                    if let Some(h) = &m.sha256 {
                        v["sha256"] = json!(h);
                    }
                    Body2::Media(v)
                }
                None => return reject("no content".into()),
            };
            c.messages.push(Message {
                id: b.message_id.clone(),
                sender: b.sender_id.clone(),
                pos,
                at_ms,
                body,
                edited: false,
                deleted: false,
            });
            Applied
        }
        Body::MessageEdited(b) => {
            let i = match own_message(c, &b.message_id, &b.editor_id) {
                Ok(i) => i,
                Err(r) => return r,
            };
            if c.messages[i].deleted {
                return reject("a deleted message cannot be edited".into());
            }
            if !c.is_member(&b.editor_id) {
                return reject(format!("{} is no longer a member", b.editor_id));
            }
            let m = &mut c.messages[i];
            m.body = Body2::Text(b.text.clone());
            m.edited = true;
            Applied
        }
        Body::MessageDeleted(b) => {
            let i = match own_message(c, &b.message_id, &b.actor_id) {
                Ok(i) => i,
                Err(r) => return r,
            };
            if c.messages[i].deleted {
                return Ignored;
            }
            if !c.is_member(&b.actor_id) {
                return reject(format!("{} is no longer a member", b.actor_id));
            }
            // ARCHITECTURE: the tombstone keeps its `edited` flag.
            c.messages[i].deleted = true;
            Applied
        }
        Body::Receipt(b) => {
            if !c.created {
                return reject("no such conversation".into());
            }
            let read = match b.status {
                s if s == ReceiptStatus::Read as i32 => true,
                s if s == ReceiptStatus::Delivered as i32 => false,
                _ => return reject("unknown status".into()),
            };
            let Some(i) = c.message(&b.message_id) else {
                return reject(format!("there is no message {}", b.message_id));
            };
            let at = c.messages[i].pos;
            let member = c.is_member(&b.user_id);
            let Some(p) = c.people.get_mut(&b.user_id) else {
                return reject(format!("{} never was a member", b.user_id));
            };
            if !p.sees(at) {
                return reject(format!("{} cannot see {}", b.user_id, b.message_id));
            }
            let mark = if read { p.read } else { p.delivered };
            if mark.is_some_and(|w| w >= at) {
                return Ignored;
            }
            if !member {
                return reject(format!("{} is no longer a member", b.user_id));
            }
            // A watermark never moves back, and read implies delivered.
            p.delivered = Some(p.delivered.map_or(at, |w| w.max(at)));
            if read {
                p.read = Some(p.read.map_or(at, |w| w.max(at)));
            }
            Applied
        }
        Body::Presence(_) | Body::PushJob(_) | Body::DeadLetter(_) => {
            reject("not a conversation event".into())
        }
    }
}

/// The checks of a membership change: the conversation exists, is not direct,
/// and the actor is a current member.
fn membership_check(c: &Conversation, actor: &str) -> Option<Outcome> {
    if !c.created {
        return Some(Outcome::Rejected("no such conversation".into()));
    }
    if c.direct {
        return Some(Outcome::Rejected(
            "a direct conversation's membership never changes".into(),
        ));
    }
    if !c.is_member(actor) {
        return Some(Outcome::Rejected(format!("{actor} is not a member")));
    }
    None
}

/// The index of message `id` if it exists and `actor` sent it.
fn own_message(c: &Conversation, id: &str, actor: &str) -> Result<usize, Outcome> {
    if !c.created {
        return Err(Outcome::Rejected("no such conversation".into()));
    }
    let Some(i) = c.message(id) else {
        return Err(Outcome::Rejected(format!("there is no message {id}")));
    };
    if c.messages[i].sender != actor {
        return Err(Outcome::Rejected(format!("{actor} is not its sender")));
    }
    Ok(i)
}

#[cfg(test)]
mod tests;
