//! The pure half of the tantivy sink: the schema, and index operations and
//! conversation states → tantivy documents and terms. No I/O here.

use courier_processors::inbox::ConversationState;
use courier_processors::search::SearchDoc;
use courier_processors::store::StoreError;
use serde::{Deserialize, Serialize};
use tantivy::schema::{Field, INDEXED, STORED, STRING, Schema, TEXT};
use tantivy::{TantivyDocument, Term};

use super::STORE;

/// Bumped when the layout of a shard changes; a shard of a newer layout is
/// refused. 2: states in the binary encoding (`crate::states`); a shard of
/// layout 1 (JSON states) is read as it is, and its next commit says 2.
pub const LAYOUT: u32 = 2;

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

    /// The document of a message.
    pub fn message_doc(&self, d: &SearchDoc) -> TantivyDocument {
        let mut doc = TantivyDocument::default();
        doc.add_text(
            self.key,
            format!("m\u{1f}{}\u{1f}{}", d.conversation_id, d.message_id),
        );
        doc.add_text(self.conversation_id, &d.conversation_id);
        doc.add_text(self.message_id, &d.message_id);
        doc.add_text(self.sender_id, &d.sender_id);
        doc.add_text(self.text, &d.text);
        doc.add_i64(self.sent_at_ms, d.sent_at_ms);
        for u in &d.visible_to {
            doc.add_text(self.visible, u);
        }
        doc
    }

    /// The document holding a conversation's state, in the binary encoding
    /// (`crate::states`); `buf` is scratch space, reused across the states of
    /// a commit.
    pub fn state_doc(&self, s: &ConversationState, buf: &mut Vec<u8>) -> TantivyDocument {
        buf.clear();
        crate::states::encode(s, buf);
        let mut doc = TantivyDocument::default();
        doc.add_text(self.key, format!("s\u{1f}{}", s.conversation_id()));
        doc.add_bytes(self.state, buf.as_slice());
        doc
    }
}

impl Default for Fields {
    fn default() -> Self {
        Fields::new()
    }
}

/// What each shard commit carries besides its documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    /// [`LAYOUT`] of the writer.
    pub layout: u32,
    /// The partition this shard indexes.
    pub partition: u32,
    /// The offset to resume from: everything below it is in this commit.
    pub next_offset: u64,
}

impl Payload {
    /// The offset a commit payload says to resume from, whatever the layout of
    /// its shard: what a rebuild needs of the generation it replaces, which an
    /// older build may have written.
    pub fn next_offset_of(text: &str, partition: u32) -> Result<u64, StoreError> {
        #[derive(Deserialize)]
        struct Any {
            next_offset: u64,
        }
        serde_json::from_str::<Any>(text)
            .map(|a| a.next_offset)
            .map_err(|e| {
                StoreError::fatal(
                    STORE,
                    format!(
                        "shard p{partition}: the commit payload {text:?} is not courier's: {e}"
                    ),
                )
            })
    }

    /// Parses a commit payload, refusing a layout this build cannot read or
    /// another partition.
    pub fn parse(text: &str, partition: u32) -> Result<Payload, StoreError> {
        let p: Payload = serde_json::from_str(text).map_err(|e| {
            StoreError::fatal(
                STORE,
                format!("shard p{partition}: the commit payload {text:?} is not courier's: {e}"),
            )
        })?;
        if !(1..=LAYOUT).contains(&p.layout) {
            return Err(StoreError::fatal(
                STORE,
                format!(
                    "shard p{partition} has layout {}, this build reads layouts 1 to {LAYOUT}: \
                     run a newer courier, or rebuild search",
                    p.layout
                ),
            ));
        }
        if p.partition != partition {
            return Err(StoreError::fatal(
                STORE,
                format!(
                    "shard p{partition} holds partition {} (a moved directory?)",
                    p.partition
                ),
            ));
        }
        Ok(p)
    }
}
