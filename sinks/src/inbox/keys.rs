//! The key layout and value encoding of the inbox store in RocksDB.
//!
//! One keyspace, one tag byte per table. Variable-length ids are prefixed with
//! their length (u32, big-endian), so the key of `c1` is never a prefix of the key
//! of `c10`, and every query is a scan of one exact prefix:
//!
//! | table        | key                                       | value                      |
//! | ------------ | ----------------------------------------- | -------------------------- |
//! | layout       | `L`                                       | layout version, u32 BE     |
//! | checkpoint   | `K` partition:u32                         | next offset, u64 BE        |
//! | state        | `S` conversation                          | head of a `ConversationState` stored in parts (`crate::states`) |
//! | state chunk  | `C` len conversation, chunk:u32           | 256 messages of that state |
//! | message      | `M` len conversation, send offset:u64     | version + `MessageRow`     |
//! | participant  | `P` len conversation, user                | version + `ParticipantRow` |
//! | inbox        | `I` len user, conversation                | version + `InboxRow`       |
//!
//! Messages are keyed by the offset of their `message_sent` (which never changes
//! for a message) rather than by id, so a conversation's history scans in log
//! order. A version is the (partition u32, offset u64) of the event that wrote the
//! row, big-endian, before the row's JSON: the same event always writes the same
//! bytes.

use courier_processors::inbox::Position;
use courier_processors::store::StoreError;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::STORE;

/// Bumped when the layout changes; a store of a newer layout refuses to open.
/// 2: states in the binary encoding, in parts (`crate::states`); a store of
/// layout 1 (JSON states) is read as it is and marked 2 when a processor opens
/// it.
pub const LAYOUT: u32 = 2;

const CHECKPOINT: u8 = b'K';
const STATE: u8 = b'S';
const STATE_CHUNK: u8 = b'C';
const MESSAGE: u8 = b'M';
const PARTICIPANT: u8 = b'P';
const INBOX: u8 = b'I';

fn with_len(tag: u8, id: &str, extra: usize) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + 4 + id.len() + extra);
    k.push(tag);
    k.extend_from_slice(&(id.len() as u32).to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

pub fn checkpoint(partition: u32) -> Vec<u8> {
    let mut k = vec![CHECKPOINT];
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

pub fn state(conversation: &str) -> Vec<u8> {
    let mut k = vec![STATE];
    k.extend_from_slice(conversation.as_bytes());
    k
}

/// Chunk `chunk` of a conversation's state stored in parts.
pub fn state_chunk(conversation: &str, chunk: u32) -> Vec<u8> {
    let mut k = with_len(STATE_CHUNK, conversation, 4);
    k.extend_from_slice(&chunk.to_be_bytes());
    k
}

/// Where the inbox store keeps states, in parts (`crate::states`).
pub const STATE_PARTS: crate::states::PartKeys = crate::states::PartKeys {
    head: state,
    chunk: state_chunk,
};

/// Prefix of every message row of a conversation.
pub fn messages_of(conversation: &str) -> Vec<u8> {
    with_len(MESSAGE, conversation, 8)
}

pub fn message(conversation: &str, sent_at_offset: u64) -> Vec<u8> {
    let mut k = messages_of(conversation);
    k.extend_from_slice(&sent_at_offset.to_be_bytes());
    k
}

/// Prefix of every participant row of a conversation.
pub fn participants_of(conversation: &str) -> Vec<u8> {
    with_len(PARTICIPANT, conversation, 0)
}

pub fn participant(conversation: &str, user: &str) -> Vec<u8> {
    let mut k = with_len(PARTICIPANT, conversation, user.len());
    k.extend_from_slice(user.as_bytes());
    k
}

/// Prefix of every inbox row of a user.
pub fn inbox_of(user: &str) -> Vec<u8> {
    with_len(INBOX, user, 0)
}

pub fn inbox(user: &str, conversation: &str) -> Vec<u8> {
    let mut k = with_len(INBOX, user, conversation.len());
    k.extend_from_slice(conversation.as_bytes());
    k
}

pub fn u64_value(v: &[u8], what: impl Fn() -> String) -> Result<u64, StoreError> {
    v.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::fatal(STORE, format!("{} is corrupt", what())))
}

/// A row's value: its version, then the row as JSON.
pub fn versioned<T: Serialize>(version: Position, row: &T) -> Result<Vec<u8>, StoreError> {
    let mut v = Vec::with_capacity(128);
    v.extend_from_slice(&version.partition.to_be_bytes());
    v.extend_from_slice(&version.offset.to_be_bytes());
    serde_json::to_writer(&mut v, row)
        .map_err(|e| StoreError::fatal(STORE, format!("encoding a row: {e}")))?;
    Ok(v)
}

/// The row of a value written by [`versioned`] (queries do not need the version).
pub fn row<T: DeserializeOwned>(key: &[u8], v: &[u8]) -> Result<T, StoreError> {
    let corrupt = |detail: String| {
        StoreError::fatal(
            STORE,
            format!("row {} is corrupt: {detail}", String::from_utf8_lossy(key)),
        )
    };
    let json = v
        .get(12..)
        .ok_or_else(|| corrupt("shorter than its version".into()))?;
    serde_json::from_slice(json).map_err(|e| corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_never_the_prefix_of_another_ids_rows() {
        assert!(!message("c10", 1).starts_with(&messages_of("c1")));
        assert!(message("c1", 1).starts_with(&messages_of("c1")));
        assert!(!inbox("u1", "c").starts_with(&inbox_of("u")));
        assert!(!participant("c1", "0u").starts_with(&participants_of("c10")));
        // Messages of a conversation sort by the offset they were sent at.
        assert!(message("c", 9) < message("c", 10));
        assert!(message("c", 255) < message("c", 256));
    }
}
