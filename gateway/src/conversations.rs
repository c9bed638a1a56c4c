//! What the gateway knows about conversations, so it can judge a request before
//! publishing it, and fan live events out to the right users.
//!
//! The views lag the log, so they alone cannot answer "may u1 send to c7?" right
//! after u1 created c7. Instead the gateway keeps, per partition of
//! `courier.conversations.v1`, the fold's own [`ConversationState`] of the
//! conversations it has been asked about, and keeps them current by tailing the
//! partition (one group-less tail per gateway: every gateway sees everything).
//! A state enters the cache from the views (its stored state, then the records
//! between the views' checkpoint and the tail's position, read from the log);
//! from then on the tail applies every record to it with the fold. So the cache
//! is exactly what one clean pass of the log up to the tail's position gives.
//!
//! A write request answers only once the tail has applied the event it
//! published, so the client's next request is judged with its own effects.
//!
//! Judging: sends are checked directly (the conversation exists, the sender is a
//! current member, the `message_id` is unused); every other event is applied by
//! the fold to a copy of the state, and its verdict decides. The fold stays the
//! authority: two gateways racing can still publish an event the processors
//! reject (it goes to dead letters); the gateway only keeps honest clients from
//! getting a 2xx for something that will never apply.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use courier_pipeline::EventLog;
use courier_pipeline::shutdown::Shutdown;
use courier_processors::inbox::store::InboxStore;
use courier_processors::inbox::{self, ConversationState, Position, Verdict};
use courier_schemas::Event;
use courier_schemas::proto::event::Body;
use courier_topics::CONVERSATIONS;
use tokio::sync::{Mutex, watch};

use crate::error::ApiError;
use crate::live::{Hub, Live};
use crate::resume::Topic;
use crate::tail::TailReads;

/// More cached states than this in one partition and the cache is emptied:
/// states come back from the views on demand, so this bounds memory, not
/// correctness.
const MAX_CACHED_PER_PARTITION: usize = 10_000;

/// How long a write waits for the tail to apply its own event before answering
/// anyway (the event is durable; only read-your-writes is at stake).
const APPLY_WAIT: Duration = Duration::from_secs(5);

struct PartState {
    /// Next offset the tail will apply: the cache is exact up to here.
    next: u64,
    states: HashMap<String, ConversationState>,
}

struct Partition {
    inner: Mutex<PartState>,
    applied: watch::Sender<u64>,
}

/// The conversation cache and its tails.
pub struct Conversations {
    log: Arc<dyn EventLog>,
    views: Arc<dyn InboxStore>,
    parts: Vec<Partition>,
    hub: Arc<Hub>,
}

/// What publishing a judged event would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// It applies: publish it.
    Applies {
        /// Current members after it.
        members: Vec<String>,
    },
    /// Valid, but it would change nothing (a repeated receipt, adding a current
    /// member): nothing is published.
    Unchanged,
    /// A retry of a write with a client-chosen id that is already in the log
    /// (a send: same sender, conversation, `message_id` and content; a creation:
    /// the same `conversation_created`): nothing is published, and the client
    /// gets the first answer again.
    AlreadySent,
}

/// What judging found under the conversation's lock, before any log read.
enum Found {
    Done(Result<Judgement, ApiError>),
    /// The id is taken by an event at this offset that this actor may have
    /// published: a retry if its content is the same.
    SentBefore {
        offset: u64,
    },
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "{what}");
    ApiError::unavailable(format!("{what}: {e}"))
}

impl Conversations {
    /// Starts tailing every partition at its current end.
    pub async fn start(
        log: Arc<dyn EventLog>,
        views: Arc<dyn InboxStore>,
        hub: Arc<Hub>,
        stop: Shutdown,
    ) -> Result<Arc<Self>, courier_pipeline::LogError> {
        let n = log.partitions(CONVERSATIONS)?;
        let mut parts = Vec::new();
        for p in 0..n {
            let (_, high) = log.watermarks(CONVERSATIONS, p).await?;
            hub.start_tail(Topic::Conversations, p, high);
            parts.push(Partition {
                inner: Mutex::new(PartState {
                    next: high,
                    states: HashMap::new(),
                }),
                applied: watch::Sender::new(high),
            });
        }
        let me = Arc::new(Conversations {
            log,
            views,
            parts,
            hub,
        });
        for p in 0..n {
            tokio::spawn(me.clone().tail(p, stop.clone()));
        }
        Ok(me)
    }

    /// The partition of a conversation.
    pub fn partition(&self, conversation: &str) -> u32 {
        courier_topics::partition_for_key(conversation.as_bytes(), self.parts.len() as u32)
    }

    async fn tail(self: Arc<Self>, p: u32, mut stop: Shutdown) {
        let mut reads = TailReads::new(CONVERSATIONS, p);
        loop {
            let next = self.parts[p as usize].inner.lock().await.next;
            let Some(records) = reads.next(&*self.log, next, &mut stop).await else {
                return;
            };
            if records.is_empty() {
                continue;
            }
            let mut st = self.parts[p as usize].inner.lock().await;
            for r in records {
                if r.offset < st.next {
                    continue;
                }
                self.hub.claim(Topic::Conversations, p, r.offset + 1);
                let Ok(event) = courier_schemas::decode(&r.value) else {
                    st.next = r.offset + 1;
                    self.hub.delivered(Topic::Conversations, p, st.next);
                    continue;
                };
                let conv = event.conversation_id().unwrap_or_default().to_string();
                // Audiences need the state even of conversations nobody asked
                // about yet, but only while someone is listening.
                if !self.hub.is_empty()
                    && let Err(e) = self.load(p, &mut st, &conv).await
                {
                    tracing::warn!(error = %e.message, conversation = %conv, "gateway tail: loading a conversation failed; its live event is not delivered");
                }
                if let Some(state) = st.states.get_mut(&conv) {
                    let before: Vec<String> =
                        state.members().iter().map(|m| m.to_string()).collect();
                    let outcome = inbox::apply(state, &event, Position::new(p, r.offset));
                    if outcome.verdict == Verdict::Applied && !self.hub.is_empty() {
                        let audience = audience(state, &before, &event);
                        self.hub.deliver(
                            audience.iter().map(String::as_str),
                            Live::new(Topic::Conversations, p, r.offset, &event),
                        );
                    }
                }
                st.next = r.offset + 1;
                self.hub.delivered(Topic::Conversations, p, st.next);
            }
            let next = st.next;
            drop(st);
            self.parts[p as usize].applied.send_replace(next);
        }
    }

    /// Brings `conversation` into the cache (from the views, then the log up to
    /// the tail's position). Called with the partition locked.
    async fn load(&self, p: u32, st: &mut PartState, conversation: &str) -> Result<(), ApiError> {
        if st.states.contains_key(conversation) {
            return Ok(());
        }
        if st.states.len() >= MAX_CACHED_PER_PARTITION {
            st.states.clear();
        }
        let (checkpoint, mut states) = self
            .views
            .states_at_checkpoint(p, &[conversation.to_string()])
            .await
            .map_err(|e| unavailable("reading the inbox views", e))?;
        let checkpoint = checkpoint.unwrap_or(0);
        let mut state = states
            .pop()
            .flatten()
            .unwrap_or_else(|| ConversationState::new(conversation));
        let mut from = checkpoint;
        while from < st.next {
            let records = self
                .log
                .read(CONVERSATIONS, p, from, 1000, Duration::from_secs(1))
                .await
                .map_err(|e| unavailable("reading the log", e))?;
            if records.is_empty() {
                return Err(ApiError::unavailable(format!(
                    "the log returned nothing at partition {p} offset {from}, below its end {}",
                    st.next
                )));
            }
            for r in records {
                if r.offset >= st.next {
                    from = st.next;
                    break;
                }
                from = r.offset + 1;
                if r.key.as_ref() != conversation.as_bytes() {
                    continue;
                }
                if let Ok(event) = courier_schemas::decode(&r.value) {
                    inbox::apply(&mut state, &event, Position::new(p, r.offset));
                }
            }
        }
        st.states.insert(conversation.to_string(), state);
        Ok(())
    }

    /// Runs `f` on the current state of a conversation (a fresh, non-existent one
    /// if nothing is known).
    pub async fn with_state<T>(
        &self,
        conversation: &str,
        f: impl FnOnce(&ConversationState, Position) -> T,
    ) -> Result<T, ApiError> {
        let p = self.partition(conversation);
        let mut st = self.parts[p as usize].inner.lock().await;
        self.load(p, &mut st, conversation).await?;
        let state = &st.states[conversation];
        // Where the event would land at the earliest: after everything seen.
        let at = Position::new(p, st.next.max(state.applied_offset().map_or(0, |a| a + 1)));
        Ok(f(state, at))
    }

    /// Judges a conversation event `actor` wants to publish.
    pub async fn judge(&self, actor: &str, event: &Event) -> Result<Judgement, ApiError> {
        let conversation = event.conversation_id().unwrap_or_default().to_string();
        let found = self
            .with_state(&conversation, |state, at| {
                judge_state(actor, event, &conversation, state, at)
            })
            .await?;
        match found {
            Found::Done(judgement) => judgement,
            Found::SentBefore { offset } => self.retried_send(event, &conversation, offset).await,
        }
    }

    /// Whether the `message_sent` at `offset` of the conversation's partition is
    /// the one `event` sends again. The state keeps no texts, so the first send is
    /// read back from the log: a client that retries after a restart (its first
    /// answer lost) must get that answer again, never a 409 (docs/ARCHITECTURE.md,
    /// "Idempotency"). Only another sender or other content under the id is a 409.
    async fn retried_send(
        &self,
        event: &Event,
        conversation: &str,
        offset: u64,
    ) -> Result<Judgement, ApiError> {
        let taken = match &event.body {
            Some(Body::MessageSent(m)) => format!(
                "message_id {} is already used in conversation {conversation}",
                m.message_id
            ),
            _ => format!("conversation {conversation} already exists"),
        };
        let used = |why: &str| {
            Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                format!("{taken}{why}"),
            ))
        };
        let p = self.partition(conversation);
        let records = self
            .log
            .read(CONVERSATIONS, p, offset, 1, Duration::from_secs(5))
            .await
            .map_err(|e| unavailable("reading the log", e))?;
        let first = records
            .into_iter()
            .find(|r| r.offset == offset)
            .and_then(|r| courier_schemas::decode(&r.value).ok());
        match (first.and_then(|e| e.body), &event.body) {
            (Some(first), Some(again)) if first == *again => Ok(Judgement::AlreadySent),
            (Some(Body::MessageSent(_)), _) => used(" by a message with other content"),
            (Some(Body::ConversationCreated(_)), _) => used(" with other members or title"),
            _ => used(" (its first write is no longer in the log to compare with)"),
        }
    }

    /// Whether `user` got `event`, at `offset` of its conversation's partition,
    /// live (or would have, had they been connected): judged by the
    /// conversation's state now, whose membership spans and messages tell who
    /// was a member and who saw which message at any offset. A resume delivers
    /// what this accepts. Call only for offsets the tail has passed.
    pub async fn saw(&self, user: &str, event: &Event, offset: u64) -> Result<bool, ApiError> {
        let conversation = event.conversation_id().unwrap_or_default();
        self.with_state(conversation, |state, _| saw(state, event, offset, user))
            .await
    }

    /// Waits until the tail has applied `offset` of partition `p`.
    pub async fn applied(&self, p: u32, offset: u64) {
        let mut rx = self.parts[p as usize].applied.subscribe();
        let _ = tokio::time::timeout(APPLY_WAIT, rx.wait_for(|next| *next > offset)).await;
    }
}

/// Judges `event` against the conversation's state (see the module doc).
fn judge_state(
    actor: &str,
    event: &Event,
    conversation: &str,
    state: &ConversationState,
    at: Position,
) -> Found {
    let sent = match &event.body {
        Some(Body::MessageSent(m)) => Some(m),
        _ => None,
    };
    if let Some(Body::ConversationCreated(c)) = &event.body {
        // An id this actor chose (derived from an Idempotency-Key) that already
        // exists: a retry if the creation is the same, read back from the log.
        if c.creator_id == actor
            && let Some(offset) = state.created_offset()
        {
            return Found::SentBefore { offset };
        }
        if state.exists() || state.applied_offset().is_some() {
            return Found::Done(Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                format!("conversation {conversation} already exists"),
            )));
        }
    } else {
        // A conversation that does not exist and one the actor is not in get the
        // same answer, as reads give: a write must not tell them apart either.
        if !state.exists() {
            return Found::Done(Err(ApiError::conversation_not_found(conversation)));
        }
        // Before the membership check: a sender who left since their first send
        // still gets its answer again.
        if let Some(m) = sent
            && let Some((sender, offset)) = state.message_origin(&m.message_id)
            && sender == actor
        {
            return Found::SentBefore { offset };
        }
        if !state.members().contains(&actor) {
            return Found::Done(Err(ApiError::conversation_not_found(conversation)));
        }
        // Likewise a message the actor cannot see (sent before they joined, or
        // while they were out) and one that does not exist.
        let named = match &event.body {
            Some(Body::MessageEdited(m)) => Some(&m.message_id),
            Some(Body::MessageDeleted(m)) => Some(&m.message_id),
            Some(Body::Receipt(r)) => Some(&r.message_id),
            _ => None,
        };
        if let Some(m) = named
            && !state
                .message_origin(m)
                .is_some_and(|(_, offset)| state.visible_to(offset).contains(&actor))
        {
            return Found::Done(Err(ApiError::message_not_found(conversation, m)));
        }
    }
    if let Some(m) = sent {
        return Found::Done(if state.message_sender(&m.message_id).is_some() {
            Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                format!(
                    "message_id {} is already used in conversation {conversation}",
                    m.message_id
                ),
            ))
        } else {
            Ok(Judgement::Applies {
                members: state.members().iter().map(|m| m.to_string()).collect(),
            })
        });
    }
    let mut copy = state.clone();
    Found::Done(match inbox::apply(&mut copy, event, at).verdict {
        Verdict::Applied => Ok(Judgement::Applies {
            members: copy.members().iter().map(|m| m.to_string()).collect(),
        }),
        Verdict::Ignored(_) | Verdict::Redelivered => Ok(Judgement::Unchanged),
        Verdict::Rejected(reason) => Err(ApiError::invalid(reason)),
    })
}

/// Who gets an applied event live. A message's own events (its sending, edit,
/// delete and receipts) go only to current members who see the message, i.e.
/// were members when it was sent (docs/DESIGN.md, "Visibility"), as history and
/// search already judge: a user added later, or out of the group when it was
/// sent, gets none of its frames. A receipt goes further only to the user who
/// sent it and to the message's sender. Membership changes go to the members
/// (and, for a removal, to those removed).
fn audience(state: &ConversationState, before: &[String], event: &Event) -> Vec<String> {
    let seers = |message_id: &str| -> Vec<String> {
        let Some((_, offset)) = state.message_origin(message_id) else {
            return Vec::new();
        };
        let members = state.members();
        state
            .visible_to(offset)
            .into_iter()
            .filter(|u| members.contains(u))
            .map(str::to_string)
            .collect()
    };
    let mut users: Vec<String> = match &event.body {
        Some(Body::Receipt(r)) => {
            let sender = state.message_sender(&r.message_id);
            seers(&r.message_id)
                .into_iter()
                .filter(|u| *u == r.user_id || Some(u.as_str()) == sender)
                .collect()
        }
        Some(Body::MessageSent(m)) => seers(&m.message_id),
        Some(Body::MessageEdited(m)) => seers(&m.message_id),
        Some(Body::MessageDeleted(m)) => seers(&m.message_id),
        Some(Body::MembersRemoved(_)) => before.to_vec(),
        _ => state.members().iter().map(|m| m.to_string()).collect(),
    };
    users.sort();
    users.dedup();
    users
}

/// [`audience`] of the event at `offset`, judged afterwards from a later state:
/// whether it contains `user`. Events that changed nothing (a membership change
/// whose members are the same before and after, a message event naming a
/// message sent later or never) reached nobody live, and reach nobody here.
fn saw(state: &ConversationState, event: &Event, offset: u64, user: &str) -> bool {
    // A message's own event: to members at `offset` who saw the message sent.
    let seer = |message_id: &str| {
        state.message_origin(message_id).is_some_and(|(_, sent)| {
            sent <= offset
                && state.visible_to(sent).contains(&user)
                && state.members_after(offset).contains(&user)
        })
    };
    let changed = || state.members_before(offset) != state.members_after(offset);
    match &event.body {
        Some(Body::MessageSent(m)) => {
            state.message_origin(&m.message_id).map(|(_, at)| at) == Some(offset)
                && seer(&m.message_id)
        }
        Some(Body::MessageEdited(m)) => seer(&m.message_id),
        Some(Body::MessageDeleted(m)) => seer(&m.message_id),
        Some(Body::Receipt(r)) => {
            (r.user_id == user || state.message_sender(&r.message_id) == Some(user))
                && seer(&r.message_id)
        }
        Some(Body::ConversationCreated(_)) => {
            state.created_offset() == Some(offset) && state.members_after(offset).contains(&user)
        }
        Some(Body::MembersAdded(_)) => changed() && state.members_after(offset).contains(&user),
        Some(Body::MembersRemoved(_)) => changed() && state.members_before(offset).contains(&user),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(state: &mut ConversationState, offset: u64, line: serde_json::Value) -> Event {
        let mut line = line;
        line["event_id"] = serde_json::json!(format!("e{offset}"));
        line["at_ms"] = serde_json::json!(1_000 + offset as i64);
        let event = courier_schemas::json::parse_line(&line.to_string()).unwrap();
        let outcome = inbox::apply(state, &event, Position::new(0, offset));
        assert_eq!(outcome.verdict, Verdict::Applied, "{line}");
        event
    }

    /// Issue 16: an edit went to every current member, including carol (added
    /// after the message) and dave (out of the group when it was sent, back
    /// since); so did a delete.
    #[test]
    fn a_message_s_edit_delete_and_receipts_go_only_to_members_who_see_it() {
        use serde_json::json;
        let mut s = ConversationState::new("c");
        let c = "c";
        apply(
            &mut s,
            0,
            json!({"type": "conversation_created", "conversation_id": c, "kind": "group",
                   "creator_id": "alice", "member_ids": ["alice", "bob", "dave"]}),
        );
        apply(
            &mut s,
            1,
            json!({"type": "members_removed", "conversation_id": c, "actor_id": "alice", "user_ids": ["dave"]}),
        );
        let sent = apply(
            &mut s,
            2,
            json!({"type": "message_sent", "conversation_id": c, "message_id": "m1",
                   "sender_id": "alice", "text": "before carol"}),
        );
        assert_eq!(audience(&s, &[], &sent), ["alice", "bob"]);
        apply(
            &mut s,
            3,
            json!({"type": "members_added", "conversation_id": c, "actor_id": "alice", "user_ids": ["carol", "dave"]}),
        );
        let edited = apply(
            &mut s,
            4,
            json!({"type": "message_edited", "conversation_id": c, "message_id": "m1",
                   "editor_id": "alice", "text": "edited"}),
        );
        assert_eq!(audience(&s, &[], &edited), ["alice", "bob"]);
        let read = apply(
            &mut s,
            5,
            json!({"type": "receipt", "conversation_id": c, "message_id": "m1",
                   "user_id": "bob", "status": "read"}),
        );
        assert_eq!(audience(&s, &[], &read), ["alice", "bob"]);
        let deleted = apply(
            &mut s,
            6,
            json!({"type": "message_deleted", "conversation_id": c, "message_id": "m1", "actor_id": "alice"}),
        );
        assert_eq!(audience(&s, &[], &deleted), ["alice", "bob"]);
        // A message sent now is everyone's.
        let later = apply(
            &mut s,
            7,
            json!({"type": "message_sent", "conversation_id": c, "message_id": "m2",
                   "sender_id": "carol", "text": "hi all"}),
        );
        assert_eq!(audience(&s, &[], &later), ["alice", "bob", "carol", "dave"]);
    }

    /// A resume judges missed events from the state of later: for every event
    /// of a conversation's life, `saw` with the final state must name exactly
    /// the users `audience` sent it to live.
    #[test]
    fn judged_later_each_event_reaches_whom_it_reached_live() {
        use serde_json::json;
        let c = "c";
        let events = [
            json!({"type": "conversation_created", "conversation_id": c, "kind": "group",
                   "creator_id": "alice", "member_ids": ["alice", "bob", "dave"]}),
            json!({"type": "message_sent", "conversation_id": c, "message_id": "m1",
                   "sender_id": "alice", "text": "all three"}),
            json!({"type": "members_removed", "conversation_id": c, "actor_id": "alice", "user_ids": ["dave"]}),
            json!({"type": "message_sent", "conversation_id": c, "message_id": "m2",
                   "sender_id": "bob", "text": "without dave"}),
            json!({"type": "members_added", "conversation_id": c, "actor_id": "alice", "user_ids": ["carol", "dave"]}),
            json!({"type": "message_edited", "conversation_id": c, "message_id": "m1",
                   "editor_id": "alice", "text": "edited"}),
            json!({"type": "receipt", "conversation_id": c, "message_id": "m2",
                   "user_id": "alice", "status": "read"}),
            json!({"type": "message_deleted", "conversation_id": c, "message_id": "m2", "actor_id": "bob"}),
            json!({"type": "members_removed", "conversation_id": c, "actor_id": "alice", "user_ids": ["bob"]}),
            json!({"type": "message_sent", "conversation_id": c, "message_id": "m3",
                   "sender_id": "carol", "text": "after bob"}),
        ];
        let mut s = ConversationState::new(c);
        let mut live = Vec::new();
        for (offset, line) in events.into_iter().enumerate() {
            let before: Vec<String> = s.members().iter().map(|m| m.to_string()).collect();
            let event = apply(&mut s, offset as u64, line);
            live.push((offset as u64, audience(&s, &before, &event), event));
        }
        // A send under an id already used, and a removal of a non-member: they
        // applied nowhere and reach nobody.
        let mut again = live[1].2.clone();
        again.event_id = "again".into();
        let mut nobody = live[8].2.clone();
        nobody.event_id = "nobody".into();
        for (offset, audience, event) in live
            .into_iter()
            .chain([(20, Vec::new(), again), (21, Vec::new(), nobody)])
        {
            let later: Vec<&str> = ["alice", "bob", "carol", "dave"]
                .into_iter()
                .filter(|u| saw(&s, &event, offset, u))
                .collect();
            assert_eq!(later, audience, "offset {offset}: {event:?}");
        }
    }

    fn verdict(actor: &str, state: &ConversationState, line: serde_json::Value) -> (u16, String) {
        let mut line = line;
        line["event_id"] = serde_json::json!("judged");
        line["at_ms"] = serde_json::json!(9_999);
        let event = courier_schemas::json::parse_line(&line.to_string()).unwrap();
        let c = event.conversation_id().unwrap().to_string();
        match judge_state(actor, &event, &c, state, Position::new(0, 100)) {
            Found::Done(Err(e)) => (e.status.as_u16(), e.message),
            Found::Done(Ok(j)) => (200, format!("{j:?}")),
            Found::SentBefore { .. } => (201, "sent before".into()),
        }
    }

    /// Issue 16: writes answered 404 "does not exist" for an unknown conversation
    /// but 403 "not a member" for one the writer is not in, and a receipt for a
    /// message sent while its writer was out said so, where reads hide both.
    #[test]
    fn writes_answer_alike_for_what_does_not_exist_and_what_the_writer_may_not_see() {
        use serde_json::json;
        let mut s = ConversationState::new("c");
        apply(
            &mut s,
            0,
            json!({"type": "conversation_created", "conversation_id": "c", "kind": "group",
                   "creator_id": "alice", "member_ids": ["alice", "bob"]}),
        );
        apply(
            &mut s,
            1,
            json!({"type": "message_sent", "conversation_id": "c", "message_id": "m1",
                   "sender_id": "alice", "text": "before carol"}),
        );
        apply(
            &mut s,
            2,
            json!({"type": "members_added", "conversation_id": "c", "actor_id": "alice", "user_ids": ["carol"]}),
        );
        let nowhere = ConversationState::new("c");
        let writes = [
            json!({"type": "message_sent", "conversation_id": "c", "message_id": "x", "sender_id": "eve", "text": "hi"}),
            json!({"type": "message_edited", "conversation_id": "c", "message_id": "m1", "editor_id": "eve", "text": "hi"}),
            json!({"type": "message_deleted", "conversation_id": "c", "message_id": "m1", "actor_id": "eve"}),
            json!({"type": "receipt", "conversation_id": "c", "message_id": "m1", "user_id": "eve", "status": "read"}),
            json!({"type": "members_added", "conversation_id": "c", "actor_id": "eve", "user_ids": ["mallory"]}),
        ];
        for w in writes {
            let missing = verdict("eve", &nowhere, w.clone());
            assert_eq!(missing.0, 404, "{w}");
            assert_eq!(verdict("eve", &s, w.clone()), missing, "{w}");
        }
        // carol, a member since after m1, reads it: as if there were no m1.
        let receipt = |m: &str| json!({"type": "receipt", "conversation_id": "c", "message_id": m, "user_id": "carol", "status": "read"});
        let (status, body) = verdict("carol", &s, receipt("m1"));
        assert_eq!((status, body.replace("m1", "M")), {
            let (s2, b2) = verdict("carol", &s, receipt("m9"));
            (s2, b2.replace("m9", "M"))
        },);
        assert_eq!(status, 404);
    }
}
