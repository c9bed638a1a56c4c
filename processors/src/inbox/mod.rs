//! Inbox and history: the pure fold of `courier.conversations.v1` into message
//! history, inbox rows and receipt watermarks (docs/DESIGN.md, "Semantics of the views").
//!
//! The core is [`apply`]: (per-conversation [`ConversationState`], event,
//! [`Position`]) → [`Outcome`] — a [`Verdict`] and the [`Effects`] to upsert. No I/O
//! happens here; a handler loads the state of each conversation in a batch, applies
//! the batch's events in order, writes the effects, then the states (last).
//!
//! How the views are cut, so that a store never reads before writing and the work
//! of an event is proportional to what it changes:
//! - [`MessageRow`] per message: content, flags, the position it was sent at. It is
//!   rewritten only by its own send, edit and delete.
//! - [`ParticipantRow`] per (conversation, user who is or was a member): membership
//!   [`Span`]s (offsets) and the delivered/read watermarks (offsets of messages).
//!   Visibility, recipients, `delivered_to` and `read_by` are derived from these
//!   at query time ([`view::visible_messages`]), so a receipt rewrites one small
//!   row, never the messages it covers.
//! - [`InboxRow`] per (user, conversation), complete with its unread count, which
//!   the fold keeps exact incrementally. A message rewrites the rows of the
//!   current members (that fan-out *is* the change).
//!
//! Decisions where docs/DESIGN.md is silent or ambiguous (tested in `tests`):
//! - Duplicates are not dead letters: a repeated `event_id`, a second
//!   `message_sent` for a used `message_id` (first wins, even with another text),
//!   adding only current members, removing only non-members, re-deleting, and a
//!   receipt at or below its watermark are [`Verdict::Ignored`]. Only rule
//!   breaks are [`Verdict::Rejected`] (and so dead letters). A list mixing new
//!   and current members applies to the new ones.
//! - `event_id` deduplication is exact for every event whose repetition could
//!   change a view (creation, membership, edits, rejected events): those ids are
//!   remembered. Sends, deletes and receipts are idempotent by content (message
//!   id, tombstone, monotone watermark), so their ids are not kept; the only
//!   visible difference is that a receipt at or below the watermark from a former
//!   member, or a re-delete by a sender who left, is ignored instead of
//!   dead-lettered. An empty `event_id` is never deduplicated.
//! - A `message_id` is claimed only by an applied send: after a rejected send,
//!   a valid one with the same id applies.
//! - Check order is fixed, so each rejection has one reason: the conversation
//!   exists; then for membership changes: not direct, actor a current member; for
//!   edits/deletes: the message exists, the actor is its sender, (edit) not
//!   deleted, the actor still a member; for receipts: status, message exists,
//!   the user was ever a member, the message is visible to them, then (after the
//!   watermark check) a current member.
//! - A receipt may name a deleted message (it is still in the reader's history).
//! - Ciphertext and media messages have preview `""` (there is no text to show)
//!   and `text: null`; the messages query adds `ciphertext` (base64) or `media`
//!   only to such messages. An edit always leaves text.
//! - Preview = the first 100 Unicode scalar values (`char`s), not graphemes.
//! - A message is visible to a user iff its offset lies strictly inside one of
//!   their spans: after the event that made them a member, before the one that
//!   removed them. `last_activity_ms` uses `max`, so a producer clock that puts a
//!   message before the join does not make the row older than the join.
//! - Events that are not conversation events (presence, push jobs, dead letters,
//!   unknown types) are rejected; [`route`] says so before any state is loaded.

mod batch;
mod codec;
mod effects;
mod fold;
mod handler;
mod membership;
mod messages;
mod receipts;
mod state;
pub mod store;
pub mod view;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use batch::BatchFold;
pub use effects::{
    Content, Effects, Ignored, InboxRow, InboxUpdate, Media, MessageRow, Outcome, ParticipantRow,
    Position, Span, Verdict,
};
pub use fold::{apply, apply_without_inbox_rows, route};
pub use handler::InboxProcessor;
pub(crate) use handler::{Triage, triage};
pub use state::{ConversationState, ConversationView, Kind, MemberView, STATE_FORMAT};
pub use view::{MessageView, NotAMember, ViewModel};
