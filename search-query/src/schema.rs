//! The fields of every search shard: what the writer (courier-sinks) fills and
//! what a query may name (the text only, see `parse`).

use tantivy::Term;
use tantivy::schema::{Field, INDEXED, STORED, STRING, Schema, TEXT};

/// The fields of every shard.
///
/// Message documents and state documents share one index so one commit covers
/// both; they are told apart by `key`'s prefix, and only message documents have
/// `visible` terms, so no query ever matches a state.
#[derive(Debug, Clone)]
pub struct Fields {
    pub schema: Schema,
    /// `m␟conversation␟message` or `s␟conversation`: what upserts replace.
    pub key: Field,
    /// Stored, and indexed raw for `--conversation`.
    pub conversation_id: Field,
    pub message_id: Field,
    pub sender_id: Field,
    /// The current text: the default tokenizer (runs of alphanumeric characters,
    /// lowercased, tokens over 40 bytes dropped), with positions for phrases.
    pub text: Field,
    pub sent_at_ms: Field,
    /// One raw term per user who sees the message.
    pub visible: Field,
    /// A conversation state, binary encoded (state documents only).
    pub state: Field,
}

impl Fields {
    pub fn new() -> Self {
        let mut b = Schema::builder();
        let key = b.add_text_field("key", STRING);
        let conversation_id = b.add_text_field("conversation_id", STRING | STORED);
        let message_id = b.add_text_field("message_id", STORED);
        let sender_id = b.add_text_field("sender_id", STORED);
        let text = b.add_text_field("text", TEXT | STORED);
        let sent_at_ms = b.add_i64_field("sent_at_ms", STORED | INDEXED);
        let visible = b.add_text_field("visible", STRING);
        let state = b.add_bytes_field("state", STORED);
        Fields {
            schema: b.build(),
            key,
            conversation_id,
            message_id,
            sender_id,
            text,
            sent_at_ms,
            visible,
            state,
        }
    }

    /// The key term of a message document.
    pub fn message_key(&self, conversation_id: &str, message_id: &str) -> Term {
        Term::from_field_text(
            self.key,
            &format!("m\u{1f}{conversation_id}\u{1f}{message_id}"),
        )
    }

    /// The key term of a conversation's state document.
    pub fn state_key(&self, conversation_id: &str) -> Term {
        Term::from_field_text(self.key, &format!("s\u{1f}{conversation_id}"))
    }
}

impl Default for Fields {
    fn default() -> Self {
        Fields::new()
    }
}
