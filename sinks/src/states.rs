//! Conversation states as the local stores keep them (the RocksDB inbox and
//! notify stores, the search shards): written in the binary encoding of
//! `processors::inbox::codec`, read in it or in the JSON that builds before it
//! wrote. So a store written by an older build needs no migration: each of its
//! states is rewritten in binary the next time it changes.
//!
//! Why binary: these stores rewrite a conversation's whole state whenever a
//! batch changes it, and a state holds every message of its conversation. As
//! JSON, encoding states was a third of the inbox and notify processors' time at
//! 11,600 messages/s, and their bytes most of what RocksDB checksummed and wrote
//! to its log (BENCHMARKS.md, "End to end").

use courier_processors::inbox::ConversationState;
use courier_processors::store::StoreError;
use rocksdb::{DB, WriteBatch};

/// Appends the stored form of `s` to `out`.
pub(crate) fn encode(s: &ConversationState, out: &mut Vec<u8>) {
    s.encode_into(out);
}

/// Reads a state written by [`encode`], or as JSON by an older build; `store`
/// and `conversation` name it in the error.
pub(crate) fn decode(
    bytes: &[u8],
    store: &'static str,
    conversation: &str,
) -> Result<ConversationState, StoreError> {
    let decoded = if bytes.first() == Some(&b'{') {
        serde_json::from_slice(bytes).map_err(|e| format!("{e} (JSON)"))
    } else {
        ConversationState::decode(bytes)
    };
    decoded.map_err(|e| corrupt(store, conversation, &e))
}

/// Where a RocksDB store keeps states in parts: the key of a conversation's
/// head, and of its chunk `k`.
pub(crate) struct PartKeys {
    pub head: fn(&str) -> Vec<u8>,
    pub chunk: fn(&str, u32) -> Vec<u8>,
}

/// Adds to `batch` the head of `s` and the chunks of its messages that changed
/// since it was last stored ([`ConversationState::encode_parts`]): a busy
/// conversation's state holds thousands of messages, and a batch that adds one
/// rewrites one chunk instead of all of them.
pub(crate) fn put_parts(batch: &mut WriteBatch, keys: &PartKeys, s: &ConversationState) {
    let mut head = Vec::with_capacity(256);
    let chunks = s.encode_parts(&mut head);
    let c = s.conversation_id();
    batch.put((keys.head)(c), head);
    for (k, bytes) in chunks {
        batch.put((keys.chunk)(c, k), bytes);
    }
}

/// The states of `ids` (`None` for one never stored), whether stored in parts
/// by [`put_parts`] or whole by an older build.
pub(crate) fn load_parts(
    db: &DB,
    store: &'static str,
    keys: &PartKeys,
    ids: &[String],
) -> Result<Vec<Option<ConversationState>>, StoreError> {
    let heads = db.multi_get(ids.iter().map(|c| (keys.head)(c)));
    let mut heads_and_chunks = Vec::with_capacity(ids.len());
    let mut chunk_keys = Vec::new();
    for (c, head) in ids.iter().zip(heads) {
        let head = head.map_err(|e| StoreError::retryable(store, e))?;
        let chunks = match &head {
            Some(h) => ConversationState::chunks_of(h).map_err(|e| corrupt(store, c, &e))?,
            None => None,
        };
        for k in 0..chunks.unwrap_or(0) {
            chunk_keys.push((keys.chunk)(c, k));
        }
        heads_and_chunks.push((head, chunks));
    }
    let mut found = db.multi_get(&chunk_keys).into_iter();
    ids.iter()
        .zip(heads_and_chunks)
        .map(|(c, (head, chunks))| {
            let Some(head) = head else {
                return Ok(None);
            };
            let Some(n) = chunks else {
                return decode(&head, store, c).map(Some);
            };
            let mut all = Vec::with_capacity(n as usize);
            for k in 0..n {
                let chunk = found
                    .next()
                    .expect("a result per chunk key")
                    .map_err(|e| StoreError::retryable(store, e))?
                    .ok_or_else(|| corrupt(store, c, &format!("chunk {k} of {n} is missing")))?;
                all.push(chunk);
            }
            ConversationState::decode_parts(&head, &all)
                .map(Some)
                .map_err(|e| corrupt(store, c, &e))
        })
        .collect()
}

fn corrupt(store: &'static str, conversation: &str, e: &str) -> StoreError {
    StoreError::fatal(
        store,
        format!("the state of conversation {conversation} is corrupt: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_reads_back_from_binary_and_from_the_json_of_older_builds() {
        let s = ConversationState::new("c1");
        let json = serde_json::to_vec(&s).unwrap();
        let mut binary = Vec::new();
        encode(&s, &mut binary);
        for bytes in [binary, json] {
            let back = decode(&bytes, "test", "c1").unwrap();
            assert_eq!(back.conversation_id(), "c1");
            assert_eq!(back.format(), s.format());
        }
        let e = decode(b"{\"format\":", "test", "c1").unwrap_err();
        assert!(
            e.to_string()
                .contains("the state of conversation c1 is corrupt"),
            "{e}"
        );
        let e = decode(&[0xC5], "test", "c1").unwrap_err();
        assert!(e.to_string().contains("at byte 1 of 1"), "{e}");
    }
}
