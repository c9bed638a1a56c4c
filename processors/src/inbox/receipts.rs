//! Receipts: cumulative delivered/read watermarks per (conversation, user) that
//! never move back, and the unread count a moving read watermark lowers.

use std::fmt;

use courier_schemas::proto::{Receipt, ReceiptStatus};

use super::effects::Ignored;
use super::fold::{Change, Step, StepResult, What};
use super::state::UserState;

impl Step<'_> {
    pub(super) fn receipt(&mut self, b: &Receipt) -> StepResult {
        let (m, user_id) = (&b.message_id, &b.user_id);
        let what = What(|f: &mut fmt::Formatter<'_>| {
            write!(f, "receipt for {m} in {} by {user_id}", b.conversation_id)
        });
        self.require_exists(&what)?;
        let read = match ReceiptStatus::try_from(b.status) {
            Ok(ReceiptStatus::Delivered) => false,
            Ok(ReceiptStatus::Read) => true,
            _ => {
                return Err(format!(
                    "{what}: status {} is neither delivered nor read",
                    b.status
                ));
            }
        };
        let Some(i) = self.state.message(m) else {
            return Err(format!("{what}: there is no message {m}"));
        };
        let Some(u) = self.state.user(user_id) else {
            return Err(format!("{what}: {user_id} is not a member"));
        };
        let offset = self.state.messages[i].offset;
        let user = &self.state.users[u];
        if !user.sees(offset) {
            return Err(format!(
                "{what}: {m} is not visible to {user_id} (not a member when it was sent)"
            ));
        }
        // Checked before current membership, and after the checks whose answer
        // never changes (the message, its visibility): so a retry of an applied
        // receipt is a no-op even after the user left, without remembering the
        // ids of receipts, the most numerous events of all.
        let mark = if read { user.read } else { user.delivered };
        if UserState::reached(mark, offset) {
            return Ok(Change::Ignored(Ignored::WatermarkAlreadyThere));
        }
        if !user.is_member() {
            return Err(format!("{what}: {user_id} is not a member"));
        }

        if read {
            let newly_read = self.unread_between(u, user.read, offset);
            let user = &mut self.state.users[u];
            user.unread -= newly_read;
            user.read = Some(offset);
            // Read implies delivered.
            user.delivered = user.delivered.max(Some(offset));
            self.emit_participant(u);
            self.emit_inbox(u);
        } else {
            self.state.users[u].delivered = Some(offset);
            self.emit_participant(u);
        }
        Ok(Change::Applied)
    }

    /// How many of user `u`'s unread messages lie after `from` (exclusive) and up
    /// to `to` (inclusive): what a read watermark moving from `from` to `to` reads.
    /// Proportional to the messages passed over, not to the conversation.
    fn unread_between(&self, u: usize, from: Option<u64>, to: u64) -> u64 {
        let messages = &self.state.messages;
        let start = from.map_or(0, |f| messages.partition_point(|m| m.offset <= f));
        let user = &self.state.users[u];
        messages[start..]
            .iter()
            .take_while(|m| m.offset <= to)
            .filter(|m| m.sender as usize != u && !m.deleted && user.sees(m.offset))
            .count() as u64
    }
}
