//! Messages: `message_sent`, `message_edited`, `message_deleted`, and what they do
//! to the inbox rows (last message, preview, unread counts) of those who see them.

use std::collections::BTreeSet;
use std::fmt;

use courier_schemas::proto::{MessageDeleted, MessageEdited, MessageSent, message_sent};

use super::effects::{Content, Ignored, Media};
use super::fold::{Change, Step, StepResult, What};
use super::state::{MessageMeta, UserState};
use super::view::preview;

impl Step<'_> {
    pub(super) fn message_sent(&mut self, b: &MessageSent) -> StepResult {
        let what = What(|f: &mut fmt::Formatter<'_>| {
            write!(f, "message_sent {} in {}", b.message_id, b.conversation_id)
        });
        self.require_exists(&what)?;
        if b.message_id.is_empty() {
            return Err(format!("{what}: message_id is empty"));
        }
        // Before the sender check: a retry of an applied message is a duplicate,
        // whatever happened to its sender since.
        if self.state.message(&b.message_id).is_some() {
            return Ok(Change::Ignored(Ignored::DuplicateMessageId));
        }
        if !self.state.is_member(&b.sender_id) {
            return Err(format!("{what}: sender {} is not a member", b.sender_id));
        }
        let content = match &b.content {
            Some(message_sent::Content::Text(t)) => Content::Text(t.clone()),
            Some(message_sent::Content::Ciphertext(c)) => Content::Ciphertext(c.clone()),
            Some(message_sent::Content::Media(m)) => Content::Media(Media {
                url: m.url.clone(),
                mime_type: m.mime_type.clone(),
                size_bytes: m.size_bytes,
                sha256: m.sha256.clone(),
            }),
            None => return Err(format!("{what}: it has no text, ciphertext or media")),
        };

        let sender = self.state.user(&b.sender_id).expect("a member is a user");
        let i = self.state.push_message(MessageMeta {
            id: b.message_id.clone(),
            sender: sender as u32,
            offset: self.at.offset,
            at_ms: self.at_ms,
            edited: false,
            deleted: false,
        });
        // Previews only serve inbox rows: a view without them keeps none.
        if self.inbox_rows {
            self.state
                .previews
                .insert(i as u32, content_preview(Some(&content)));
        }
        // The recipients are exactly the current members: this is where
        // "membership as of the message's position" is decided.
        let members: Vec<usize> = (0..self.state.users.len())
            .filter(|&u| self.state.users[u].is_member())
            .collect();
        for &u in &members {
            let user = &mut self.state.users[u];
            user.last = Some(i as u32);
            if u != sender {
                user.unread += 1;
            }
        }
        // Keep only previews someone still shows, or they would pile up.
        if !self.state.previews.is_empty() {
            let shown: BTreeSet<u32> = self.state.users.iter().filter_map(|u| u.last).collect();
            self.state.previews.retain(|k, _| shown.contains(k));
        }

        self.emit_message(i, Some(content));
        for u in members {
            self.emit_inbox(u);
        }
        Ok(Change::Applied)
    }

    pub(super) fn message_edited(&mut self, b: &MessageEdited) -> StepResult {
        let what = What(|f: &mut fmt::Formatter<'_>| {
            write!(
                f,
                "message_edited {} in {}",
                b.message_id, b.conversation_id
            )
        });
        let i = self.own_message(&what, &b.message_id, &b.editor_id)?;
        if self.state.messages[i].deleted {
            return Err(format!("{what}: the message is deleted"));
        }
        self.require_still_member(&what, &b.editor_id)?;

        self.state.flag_message(i, true, false);
        let content = Content::Text(b.text.clone());
        if let Some(p) = self.state.previews.get_mut(&(i as u32)) {
            *p = content_preview(Some(&content));
        }
        self.emit_message(i, Some(content));
        for u in 0..self.state.users.len() {
            if self.state.users[u].last == Some(i as u32) {
                self.emit_inbox(u);
            }
        }
        Ok(Change::Applied)
    }

    pub(super) fn message_deleted(&mut self, b: &MessageDeleted) -> StepResult {
        let what = What(|f: &mut fmt::Formatter<'_>| {
            write!(
                f,
                "message_deleted {} in {}",
                b.message_id, b.conversation_id
            )
        });
        let i = self.own_message(&what, &b.message_id, &b.actor_id)?;
        // Before the membership check: a retry of an applied delete is harmless
        // even after its sender left (deletes' ids are not remembered).
        if self.state.messages[i].deleted {
            return Ok(Change::Ignored(Ignored::AlreadyDeleted));
        }
        self.require_still_member(&what, &b.actor_id)?;

        self.state.flag_message(i, false, true);
        let meta = &self.state.messages[i];
        let (offset, sender) = (meta.offset, meta.sender as usize);
        if let Some(p) = self.state.previews.get_mut(&(i as u32)) {
            *p = content_preview(None);
        }
        self.emit_message(i, None);
        for u in 0..self.state.users.len() {
            let user = &mut self.state.users[u];
            // A deleted message leaves the unread count of whoever had it unread.
            let was_unread =
                u != sender && user.sees(offset) && !UserState::reached(user.read, offset);
            if was_unread {
                user.unread -= 1;
            }
            if was_unread || user.last == Some(i as u32) {
                self.emit_inbox(u);
            }
        }
        Ok(Change::Applied)
    }

    /// The index of message `id`, if it exists and `actor` sent it; else why not.
    fn own_message(&self, what: &dyn fmt::Display, id: &str, actor: &str) -> Result<usize, String> {
        self.require_exists(what)?;
        let Some(i) = self.state.message(id) else {
            return Err(format!("{what}: there is no message {id}"));
        };
        let sender = &self.state.users[self.state.messages[i].sender as usize].id;
        if sender != actor {
            return Err(format!("{what}: {actor} is not its sender ({sender})"));
        }
        Ok(i)
    }

    fn require_still_member(&self, what: &dyn fmt::Display, actor: &str) -> Result<(), String> {
        if self.state.is_member(actor) {
            Ok(())
        } else {
            Err(format!("{what}: {actor} is no longer a member"))
        }
    }
}

/// The inbox preview of a message's content: text is cut, everything else
/// (ciphertext, media, a tombstone) has none to show.
fn content_preview(content: Option<&Content>) -> String {
    match content {
        Some(Content::Text(t)) => preview(t),
        _ => String::new(),
    }
}
