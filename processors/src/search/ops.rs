//! The pure step of the search view: an outcome of the inbox fold → the index
//! operations it implies.

use crate::inbox::{Content, ConversationState, Outcome, Position, Verdict};

/// One message as the index holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchDoc {
    /// The conversation.
    pub conversation_id: String,
    /// Unique within the conversation (so the document key is the pair).
    pub message_id: String,
    /// Who sent it.
    pub sender_id: String,
    /// Its current text.
    pub text: String,
    /// `at_ms` of the `message_sent`.
    pub sent_at_ms: i64,
    /// The users who were members when it was sent: the only ones it is shown to.
    pub visible_to: Vec<String>,
    /// Where the `message_sent` sits in the log.
    pub position: Position,
}

/// A change to the index, applied in order: a later operation on the same
/// message wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexOp {
    /// Add the document of a message the fold applies for the first time: no
    /// document has its (conversation, message) yet, so there is nothing to
    /// replace. The state that says the message is new is committed with the
    /// shard's documents, so this holds after a crash and a redo too; it saves
    /// the index a delete per message, which costs far more than the add (a
    /// query on every segment).
    Add(SearchDoc),
    /// Add the document, replacing any with the same (conversation, message).
    Upsert(SearchDoc),
    /// Remove the document of (conversation, message), if there is one.
    Delete {
        /// The conversation.
        conversation_id: String,
        /// The message.
        message_id: String,
    },
}

/// The index operations of one applied event. `state` is the conversation's state
/// *after* the event (visibility never changes for a sent message, so any later
/// state gives the same readers).
///
/// Only message rows matter: a send with text adds, an edit with text upserts, a
/// delete removes, and a send of ciphertext or media changes nothing (it has no
/// text to find; an edit of such a message leaves text, and then it is indexed).
/// Membership changes and receipts never touch existing documents: visibility is
/// fixed at the send.
pub fn index_ops(state: &ConversationState, outcome: &Outcome) -> Vec<IndexOp> {
    if outcome.verdict != Verdict::Applied {
        return Vec::new();
    }
    let mut ops = Vec::new();
    for row in &outcome.effects.messages {
        if row.deleted {
            ops.push(IndexOp::Delete {
                conversation_id: row.conversation_id.clone(),
                message_id: row.message_id.clone(),
            });
            continue;
        }
        let Some(Content::Text(text)) = &row.content else {
            continue;
        };
        let doc = SearchDoc {
            conversation_id: row.conversation_id.clone(),
            message_id: row.message_id.clone(),
            sender_id: row.sender_id.clone(),
            text: text.clone(),
            sent_at_ms: row.sent_at_ms,
            visible_to: state
                .visible_to(row.position.offset)
                .into_iter()
                .map(str::to_owned)
                .collect(),
            position: row.position,
        };
        // The row of the send itself (an edit's row keeps the send's position).
        ops.push(if row.position == outcome.position {
            IndexOp::Add(doc)
        } else {
            IndexOp::Upsert(doc)
        });
    }
    ops
}

#[cfg(test)]
mod tests {
    use courier_schemas::json::parse_line;

    use super::*;
    use crate::inbox::apply;

    /// Applies canonical JSON lines (offsets 0, 1, ...) and returns each one's ops.
    fn run(lines: &[&str]) -> Vec<Vec<IndexOp>> {
        let mut state = ConversationState::new("c1");
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let event = parse_line(l).unwrap();
                let outcome = apply(&mut state, &event, Position::new(0, i as u64));
                index_ops(&state, &outcome)
            })
            .collect()
    }

    fn upserted(ops: &[IndexOp]) -> Vec<(&str, &str, Vec<&str>)> {
        ops.iter()
            .filter_map(|op| match op {
                IndexOp::Add(d) | IndexOp::Upsert(d) => Some((
                    d.message_id.as_str(),
                    d.text.as_str(),
                    d.visible_to.iter().map(String::as_str).collect(),
                )),
                IndexOp::Delete { .. } => None,
            })
            .collect()
    }

    #[test]
    fn sends_edits_and_deletes_map_to_upserts_and_deletes_with_members_as_of_the_send() {
        let ops = run(&[
            r#"{"type":"conversation_created","event_id":"e1","conversation_id":"c1","kind":"group","creator_id":"u1","member_ids":["u1","u2"],"title":"","at_ms":1}"#,
            r#"{"type":"message_sent","event_id":"e2","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"Hello there","at_ms":2}"#,
            r#"{"type":"members_added","event_id":"e3","conversation_id":"c1","actor_id":"u1","user_ids":["u3"],"at_ms":3}"#,
            r#"{"type":"members_removed","event_id":"e4","conversation_id":"c1","actor_id":"u1","user_ids":["u2"],"at_ms":4}"#,
            r#"{"type":"message_sent","event_id":"e5","conversation_id":"c1","message_id":"m2","sender_id":"u3","text":"after","at_ms":5}"#,
            r#"{"type":"message_edited","event_id":"e6","conversation_id":"c1","message_id":"m1","editor_id":"u1","text":"edited","at_ms":6}"#,
            r#"{"type":"message_sent","event_id":"e7","conversation_id":"c1","message_id":"m3","sender_id":"u1","ciphertext":"AAEC","at_ms":7}"#,
            r#"{"type":"message_sent","event_id":"e8","conversation_id":"c1","message_id":"m4","sender_id":"u1","media":{"url":"https://x/y","mime_type":"image/png","size_bytes":3},"at_ms":8}"#,
            r#"{"type":"message_deleted","event_id":"e9","conversation_id":"c1","message_id":"m2","actor_id":"u3","at_ms":9}"#,
            r#"{"type":"message_sent","event_id":"e2","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"Hello there","at_ms":2}"#,
            r#"{"type":"message_edited","event_id":"e10","conversation_id":"c1","message_id":"m1","editor_id":"u2","text":"not the sender","at_ms":10}"#,
        ]);
        assert_eq!(
            upserted(&ops[1]),
            vec![("m1", "Hello there", vec!["u1", "u2"])]
        );
        assert!(
            ops[2].is_empty() && ops[3].is_empty(),
            "membership never reindexes"
        );
        assert_eq!(upserted(&ops[4]), vec![("m2", "after", vec!["u1", "u3"])]);
        // The edit keeps the readers of the send, though u2 has left since.
        assert_eq!(upserted(&ops[5]), vec![("m1", "edited", vec!["u1", "u2"])]);
        // Only the edit replaces: a send adds a document no other has the key of.
        assert!(matches!(ops[1][..], [IndexOp::Add(_)]));
        assert!(matches!(ops[5][..], [IndexOp::Upsert(_)]));
        assert!(ops[6].is_empty(), "ciphertext is never indexed");
        assert!(ops[7].is_empty(), "media-only is never indexed");
        assert_eq!(
            ops[8],
            vec![IndexOp::Delete {
                conversation_id: "c1".into(),
                message_id: "m2".into()
            }]
        );
        assert!(ops[9].is_empty(), "a duplicate send changes nothing");
        assert!(ops[10].is_empty(), "a rejected edit changes nothing");
    }
}
