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

/// Appends the stored form of `s` to `out`.
pub(crate) fn encode(s: &ConversationState, out: &mut Vec<u8>) {
    s.encode_into(out);
}

/// The stored form of `s`, in a buffer of its own.
pub(crate) fn encoded(s: &ConversationState) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    encode(s, &mut out);
    out
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
    decoded.map_err(|e| {
        StoreError::fatal(
            store,
            format!("the state of conversation {conversation} is corrupt: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_reads_back_from_binary_and_from_the_json_of_older_builds() {
        let s = ConversationState::new("c1");
        let json = serde_json::to_vec(&s).unwrap();
        for bytes in [encoded(&s), json] {
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
