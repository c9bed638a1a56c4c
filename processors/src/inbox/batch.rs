//! What one batch of the inbox processor writes: its rows coalesced by key
//! ([`Coalesced`], used by the handler), and [`BatchFold`], the same batches
//! computed from events alone — no log, no store, no state loading — for
//! baselines that write exactly the rows the processor would.

use std::collections::{BTreeMap, HashMap};

use courier_schemas::Event;

use super::effects::{InboxUpdate, MessageRow, Outcome, ParticipantRow, Position};
use super::fold::{apply, route};
use super::state::ConversationState;
use super::store::{InboxBatch, Versioned};

/// A batch's rows: applying outcomes in log order and overwriting by key leaves
/// the latest position's row. BTreeMaps keep the write order deterministic.
#[derive(Debug, Default)]
pub(crate) struct Coalesced {
    messages: BTreeMap<(String, String), Versioned<MessageRow>>,
    participants: BTreeMap<(String, String), Versioned<ParticipantRow>>,
    inbox: BTreeMap<(String, String), Versioned<InboxUpdate>>,
}

impl Coalesced {
    /// Adds the rows of an outcome, versioned by its position.
    pub(crate) fn add(&mut self, outcome: Outcome) {
        let version = outcome.position;
        for row in outcome.effects.messages {
            let key = (row.conversation_id.clone(), row.message_id.clone());
            self.messages.insert(key, Versioned { version, row });
        }
        for row in outcome.effects.participants {
            let key = (row.conversation_id.clone(), row.user_id.clone());
            self.participants.insert(key, Versioned { version, row });
        }
        for row in outcome.effects.inbox {
            let key = (row.user_id.clone(), row.row.conversation_id.clone());
            self.inbox.insert(key, Versioned { version, row });
        }
    }

    /// The batch to write: these rows, the changed `states`, the `checkpoints`.
    pub(crate) fn into_batch(
        self,
        states: Vec<ConversationState>,
        checkpoints: Vec<(u32, u64)>,
    ) -> InboxBatch {
        InboxBatch {
            messages: self.messages.into_values().collect(),
            participants: self.participants.into_values().collect(),
            inbox: self.inbox.into_values().collect(),
            states,
            checkpoints,
        }
    }
}

/// The inbox processor's batches for a stream of events at known positions,
/// folded in memory: every state stays cached (none is ever loaded), and what
/// the processor would dead-letter is left out.
#[derive(Debug, Default)]
pub struct BatchFold {
    states: HashMap<String, ConversationState>,
}

impl BatchFold {
    /// A fold that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one batch, records in log order, into the [`InboxBatch`] the
    /// handler would write for it. `each` sees every outcome with its
    /// conversation's state after the event (what the search view's
    /// [`index_ops`](crate::search::index_ops) takes).
    pub fn batch<'a>(
        &mut self,
        records: impl IntoIterator<Item = (Position, &'a Event)>,
        mut each: impl FnMut(&ConversationState, &Outcome),
    ) -> InboxBatch {
        let mut rows = Coalesced::default();
        let mut next: BTreeMap<u32, u64> = BTreeMap::new();
        let mut changed: Vec<String> = Vec::new();
        for (at, event) in records {
            next.insert(at.partition, at.offset + 1);
            let Ok(c) = route(event) else { continue };
            let state = self
                .states
                .entry(c.to_owned())
                .or_insert_with(|| ConversationState::new(c));
            let outcome = apply(state, event, at);
            each(state, &outcome);
            if outcome.state_changed() && !changed.iter().any(|x| x == c) {
                changed.push(c.to_owned());
            }
            rows.add(outcome);
        }
        let states = changed
            .iter()
            .filter_map(|c| self.states.get(c).cloned())
            .collect();
        rows.into_batch(states, next.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use courier_schemas::json::parse_line;

    use super::*;

    #[test]
    fn a_batch_coalesces_rows_by_key_and_carries_changed_states_and_checkpoints() {
        let events: Vec<Event> = [
            r#"{"type":"conversation_created","event_id":"e1","conversation_id":"c1","kind":"group","creator_id":"u1","member_ids":["u1","u2","u3"],"title":"t","at_ms":1}"#,
            r#"{"type":"message_sent","event_id":"e2","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"hi","at_ms":2}"#,
            r#"{"type":"message_sent","event_id":"e3","conversation_id":"c1","message_id":"m2","sender_id":"u2","text":"yo","at_ms":3}"#,
            r#"{"type":"presence","event_id":"e4","user_id":"u2","status":"online","at_ms":4}"#,
        ]
        .iter()
        .map(|l| parse_line(l).unwrap())
        .collect();
        let mut fold = BatchFold::new();
        let mut outcomes = 0;
        let batch = fold.batch(
            events
                .iter()
                .enumerate()
                .map(|(i, e)| (Position::new(3, i as u64), e)),
            |_, _| outcomes += 1,
        );
        assert_eq!(outcomes, 3, "the presence event is not the inbox's");
        assert_eq!(batch.messages.len(), 2);
        // Three members, one inbox row each, the latest message's.
        assert_eq!(batch.inbox.len(), 3);
        assert!(batch.inbox.iter().all(|r| r.version == Position::new(3, 2)));
        assert_eq!(batch.states.len(), 1);
        assert_eq!(batch.checkpoints, vec![(3, 4)]);

        // The next batch starts from the states the first one left.
        let again = fold.batch([(Position::new(3, 1), &events[1])], |_, _| {});
        assert!(again.messages.is_empty(), "a redelivery writes nothing");
        assert!(again.states.is_empty());
    }
}
