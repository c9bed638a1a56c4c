//! The pure half of the tantivy sink: index operations and conversation states
//! → tantivy documents of the shard schema, and the commit payload. No I/O here.

use courier_processors::inbox::ConversationState;
use courier_processors::search::SearchDoc;
use courier_processors::store::StoreError;
use serde::{Deserialize, Serialize};
use tantivy::TantivyDocument;

use super::STORE;

/// Bumped when the layout of a shard changes; a shard of a newer layout is
/// refused. 2: states in the binary encoding (`crate::states`); a shard of
/// layout 1 (JSON states) is read as it is, and its next commit says 2.
pub const LAYOUT: u32 = 2;

pub use courier_search_query::Fields;

/// The documents of the shard schema ([`Fields`], which the query side shares and
/// so lives in courier-search-query): an extension of it, as the documents need
/// the processors' types and the state encoding, which the query side must not link.
pub trait Documents {
    /// The document of a message.
    fn message_doc(&self, d: &SearchDoc) -> TantivyDocument;

    /// The document holding a conversation's state, in the binary encoding
    /// (`crate::states`); `buf` is scratch space, reused across the states of
    /// a commit.
    fn state_doc(&self, s: &ConversationState, buf: &mut Vec<u8>) -> TantivyDocument;
}

impl Documents for Fields {
    fn message_doc(&self, d: &SearchDoc) -> TantivyDocument {
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

    fn state_doc(&self, s: &ConversationState, buf: &mut Vec<u8>) -> TantivyDocument {
        buf.clear();
        crate::states::encode(s, buf);
        let mut doc = TantivyDocument::default();
        doc.add_text(self.key, format!("s\u{1f}{}", s.conversation_id()));
        doc.add_bytes(self.state, buf.as_slice());
        doc
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
