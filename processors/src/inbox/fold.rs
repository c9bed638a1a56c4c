//! The step of the fold: redelivery and duplicate checks, dispatch by event kind
//! (one file per concern: `membership`, `messages`, `receipts`), and the row
//! builders those share.
//!
//! Every rule first validates and only then mutates, so a rejected or ignored
//! event leaves the state as it was (but for the applied offset and, for the
//! events listed in `state`, the remembered `event_id`).

use std::fmt;

use courier_schemas::proto::event::Body;
use courier_schemas::{Event, EventKind};

use super::effects::{
    Content, Effects, Ignored, InboxRow, InboxUpdate, MessageRow, Outcome, Position, Verdict,
};
use super::state::ConversationState;

/// Names an event in its rejection reasons ("message_sent m1 in c1"), formatted
/// only when one is rejected: formatting it for every event was a visible part
/// of the fold's time, and nearly every event is applied.
pub(super) struct What<F>(pub(super) F);

impl<F: Fn(&mut fmt::Formatter<'_>) -> fmt::Result> fmt::Display for What<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (self.0)(f)
    }
}

/// Applies one event of `courier.conversations.v1` at `position` to the state of
/// its conversation. Pure and deterministic: the same state and event give the
/// same outcome and the same new state.
pub fn apply(state: &mut ConversationState, event: &Event, position: Position) -> Outcome {
    apply_with(state, event, position, true)
}

/// [`apply`] for a view that has no inbox: the same outcome but without inbox
/// rows (`effects.inbox` stays empty), and the same state but without
/// previews, which only inbox rows show. Building a row per member per message
/// and a preview per message is work the search view would throw away.
pub fn apply_without_inbox_rows(
    state: &mut ConversationState,
    event: &Event,
    position: Position,
) -> Outcome {
    apply_with(state, event, position, false)
}

fn apply_with(
    state: &mut ConversationState,
    event: &Event,
    position: Position,
    inbox_rows: bool,
) -> Outcome {
    let outcome = |verdict, effects| Outcome {
        position,
        verdict,
        effects,
    };
    if state.applied.is_some_and(|a| position.offset <= a) {
        return outcome(Verdict::Redelivered, Effects::default());
    }
    state.applied = Some(position.offset);
    state.ensure_indexes();
    // An empty id names no event in particular: deduplicating on it would make
    // every id-less event after the first a "duplicate".
    let has_id = !event.event_id.is_empty();
    if has_id && state.seen_event_ids.contains(&event.event_id) {
        return outcome(
            Verdict::Ignored(Ignored::DuplicateEventId),
            Effects::default(),
        );
    }
    let mut step = Step {
        state,
        at: position,
        at_ms: event.at_ms,
        effects: Effects::default(),
        inbox_rows,
    };
    let result = step.dispatch(event);
    let Step { state, effects, .. } = step;
    // Only events whose repetition is not harmless by content are remembered
    // (see `state`); a rejected event is, so that a retry of it does not apply
    // once the state has changed in between.
    let remember = result.is_err()
        || matches!(
            event.kind(),
            Some(
                EventKind::ConversationCreated
                    | EventKind::MembersAdded
                    | EventKind::MembersRemoved
                    | EventKind::MessageEdited
            )
        );
    if remember && has_id {
        state.seen_event_ids.insert(event.event_id.clone());
    }
    match result {
        Ok(Change::Applied) => outcome(Verdict::Applied, effects),
        Ok(Change::Ignored(why)) => {
            debug_assert!(effects.is_empty(), "{why:?} produced effects");
            outcome(Verdict::Ignored(why), Effects::default())
        }
        Err(reason) => {
            debug_assert!(effects.is_empty(), "a rejection produced effects");
            outcome(Verdict::Rejected(reason), Effects::default())
        }
    }
}

/// The conversation whose state an event of `courier.conversations.v1` must be
/// applied to, or why the event does not belong on that topic at all (a dead
/// letter, with no conversation to charge it to).
pub fn route(event: &Event) -> Result<&str, String> {
    if let Some(reason) = misplaced(event) {
        return Err(reason);
    }
    Ok(event.conversation_id().unwrap_or_default())
}

fn misplaced(event: &Event) -> Option<String> {
    match event.kind() {
        None => Some(format!(
            "event {} has an event type this build does not know",
            event.event_id
        )),
        Some(k @ (EventKind::Presence | EventKind::PushJob | EventKind::DeadLetter)) => {
            Some(format!(
                "{k} {} does not belong on courier.conversations.v1",
                event.event_id
            ))
        }
        Some(_) => None,
    }
}

/// What a valid event did.
pub(super) enum Change {
    Applied,
    Ignored(Ignored),
}

/// A rule's verdict: a change, or the reason for a dead letter.
pub(super) type StepResult = Result<Change, String>;

/// One event being applied: the state, where the event is, and the rows so far.
pub(super) struct Step<'a> {
    pub(super) state: &'a mut ConversationState,
    pub(super) at: Position,
    pub(super) at_ms: i64,
    pub(super) effects: Effects,
    /// Whether to build inbox rows (not for the search view).
    pub(super) inbox_rows: bool,
}

impl Step<'_> {
    fn dispatch(&mut self, event: &Event) -> StepResult {
        if let Some(reason) = misplaced(event) {
            return Err(reason);
        }
        let Some(body) = &event.body else {
            unreachable!("misplaced() rejects events without a body")
        };
        let conversation = body.conversation_id().unwrap_or_default();
        if conversation != self.state.conversation_id {
            return Err(format!(
                "{} {} is about conversation {conversation} but was applied to the state of {} \
                 (a processor bug)",
                body.kind(),
                event.event_id,
                self.state.conversation_id
            ));
        }
        match body {
            Body::ConversationCreated(b) => self.conversation_created(b),
            Body::MembersAdded(b) => self.members_added(b),
            Body::MembersRemoved(b) => self.members_removed(b),
            Body::MessageSent(b) => self.message_sent(b),
            Body::MessageEdited(b) => self.message_edited(b),
            Body::MessageDeleted(b) => self.message_deleted(b),
            Body::Receipt(b) => self.receipt(b),
            Body::Presence(_) | Body::PushJob(_) | Body::DeadLetter(_) => {
                unreachable!("misplaced() rejects these")
            }
        }
    }

    /// The reason to reject `what` when the conversation was never created.
    pub(super) fn require_exists(&self, what: &dyn fmt::Display) -> Result<(), String> {
        if self.state.exists() {
            Ok(())
        } else {
            Err(format!(
                "{what}: conversation {} does not exist",
                self.state.conversation_id
            ))
        }
    }

    /// Emits the inbox row of user `u` as the state now has it.
    pub(super) fn emit_inbox(&mut self, u: usize) {
        if !self.inbox_rows {
            return;
        }
        let row = inbox_row(self.state, u);
        self.effects.inbox.push(InboxUpdate {
            user_id: self.state.users[u].id.clone(),
            row,
        });
    }

    /// Emits the participant row of user `u` as the state now has it.
    pub(super) fn emit_participant(&mut self, u: usize) {
        let row = self.state.participant(u);
        self.effects.participants.push(row);
    }

    /// Emits message `i` with its current `content` (the state keeps no texts).
    pub(super) fn emit_message(&mut self, i: usize, content: Option<Content>) {
        let meta = &self.state.messages[i];
        let row = MessageRow {
            conversation_id: self.state.conversation_id.clone(),
            message_id: meta.id.clone(),
            sender_id: self.state.users[meta.sender as usize].id.clone(),
            content,
            sent_at_ms: meta.at_ms,
            edited: meta.edited,
            deleted: meta.deleted,
            // One conversation, one partition: the message's partition is the
            // partition of every event about it.
            position: Position::new(self.at.partition, meta.offset),
        };
        self.effects.messages.push(row);
    }
}

/// The inbox row of user `u` from the state alone.
fn inbox_row(state: &ConversationState, u: usize) -> InboxRow {
    let user = &state.users[u];
    let last = user.last.map(|i| (i, &state.messages[i as usize]));
    InboxRow {
        conversation_id: state.conversation_id.clone(),
        last_message_id: last.map(|(_, m)| m.id.clone()),
        last_message_preview: last
            .map(|(i, _)| state.previews.get(&i).cloned().unwrap_or_default()),
        last_message_deleted: last.map(|(_, m)| m.deleted),
        last_activity_ms: last.map_or(user.joined_at_ms, |(_, m)| m.at_ms.max(user.joined_at_ms)),
        unread_count: user.unread,
    }
}
