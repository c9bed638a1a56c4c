//! The stored encodings of a conversation state (whole, and in parts): bytes read
//! back from a view store decode or are refused with the byte that is wrong,
//! never a panic; a state that decodes encodes back to bytes that decode to the
//! same encoding.
#![no_main]

use courier_processors::inbox::ConversationState;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = ConversationState::decode(data) {
        let mut bytes = Vec::new();
        state.encode_into(&mut bytes);
        let again = ConversationState::decode(&bytes).expect("an encoded state decodes");
        let mut twice = Vec::new();
        again.encode_into(&mut twice);
        assert_eq!(twice, bytes, "the encoding is stable");
    }
    // In parts: the first byte says how many chunks follow, each of equal share.
    if let Some((&n, rest)) = data.split_first() {
        let n = usize::from(n % 8);
        let size = rest.len() / (n + 1);
        let (head, chunks) = rest.split_at(size);
        let chunks: Vec<Vec<u8>> = chunks
            .chunks(size.max(1))
            .take(n)
            .map(<[u8]>::to_vec)
            .collect();
        let _ = ConversationState::decode_parts(head, &chunks);
    }
});
