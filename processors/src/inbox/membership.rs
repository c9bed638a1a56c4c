//! Conversations and their members: `conversation_created`, `members_added`,
//! `members_removed`. Membership is kept as spans of offsets so that visibility
//! ("a member when the message was sent") is a property of positions.

use std::collections::BTreeSet;

use courier_schemas::proto::{ConversationCreated, ConversationKind, MembersAdded, MembersRemoved};

use super::effects::Ignored;
use super::fold::{Change, Step, StepResult};
use super::state::Kind;

impl Step<'_> {
    pub(super) fn conversation_created(&mut self, b: &ConversationCreated) -> StepResult {
        let c = &b.conversation_id;
        let what = format!("conversation_created {c}");
        if self.state.exists() {
            return Err(format!("{what}: conversation {c} already exists"));
        }
        let kind = match ConversationKind::try_from(b.kind) {
            Ok(ConversationKind::Direct) => Kind::Direct,
            Ok(ConversationKind::Group) => Kind::Group,
            _ => {
                return Err(format!(
                    "{what}: kind {} is neither direct nor group",
                    b.kind
                ));
            }
        };
        let members = distinct_ids(&what, "member_ids", &b.member_ids)?;
        if !members.contains(b.creator_id.as_str()) {
            return Err(format!(
                "{what}: creator {} is not among member_ids",
                b.creator_id
            ));
        }
        if kind == Kind::Direct && members.len() != 2 {
            return Err(format!(
                "{what}: a direct conversation has exactly two distinct members, got {}",
                members.len()
            ));
        }
        self.state.kind = Some(kind);
        self.state.title = b.title.clone();
        self.state.created_by = Some(b.creator_id.clone());
        self.state.created_at_ms = Some(self.at_ms);
        for m in members {
            self.join(m);
        }
        Ok(Change::Applied)
    }

    pub(super) fn members_added(&mut self, b: &MembersAdded) -> StepResult {
        let what = format!("members_added to {} by {}", b.conversation_id, b.actor_id);
        self.may_change_members(&what, &b.actor_id)?;
        let joining: Vec<&str> = distinct_ids(&what, "user_ids", &b.user_ids)?
            .into_iter()
            .filter(|u| !self.state.is_member(u))
            .collect();
        if joining.is_empty() {
            return Ok(Change::Ignored(Ignored::MembershipUnchanged));
        }
        for u in joining {
            self.join(u);
        }
        Ok(Change::Applied)
    }

    pub(super) fn members_removed(&mut self, b: &MembersRemoved) -> StepResult {
        let what = format!(
            "members_removed from {} by {}",
            b.conversation_id, b.actor_id
        );
        self.may_change_members(&what, &b.actor_id)?;
        let leaving: Vec<usize> = distinct_ids(&what, "user_ids", &b.user_ids)?
            .into_iter()
            .filter(|u| self.state.is_member(u))
            .filter_map(|u| self.state.user(u))
            .collect();
        if leaving.is_empty() {
            return Ok(Change::Ignored(Ignored::MembershipUnchanged));
        }
        for u in leaving {
            if let Some(span) = self.state.users[u].spans.last_mut() {
                span.to = Some(self.at.offset);
            }
            // Their inbox row does not change: they keep what they had.
            self.emit_participant(u);
        }
        Ok(Change::Applied)
    }

    /// The reason `actor` may not add or remove members, if any.
    fn may_change_members(&self, what: &dyn std::fmt::Display, actor: &str) -> Result<(), String> {
        self.require_exists(what)?;
        if self.state.kind == Some(Kind::Direct) {
            return Err(format!(
                "{what}: {} is a direct conversation, whose membership never changes",
                self.state.conversation_id
            ));
        }
        if !self.state.is_member(actor) {
            return Err(format!("{what}: {actor} is not a member"));
        }
        Ok(())
    }

    /// Makes user `id` (not a current member) a member from this event on.
    fn join(&mut self, id: &str) {
        let u = self.state.user_or_insert(id);
        self.state.users[u].open_span(self.at.offset, self.at_ms);
        self.emit_participant(u);
        self.emit_inbox(u);
    }
}

/// The ids of a list, sorted and without repeats (a repeat means nothing more);
/// an empty id is a broken event.
fn distinct_ids<'a>(
    what: &str,
    field: &str,
    ids: &'a [String],
) -> Result<BTreeSet<&'a str>, String> {
    if ids.iter().any(String::is_empty) {
        return Err(format!("{what}: {field} holds an empty id"));
    }
    Ok(ids.iter().map(String::as_str).collect())
}
