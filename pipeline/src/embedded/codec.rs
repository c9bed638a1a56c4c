//! Byte layout of the embedded log: RocksDB keys and the framing of a stored record.
//!
//! Keys sort by (topic id, partition, offset) as big-endian integers so a partition
//! is one contiguous, ordered key range that iterators scan without decoding.

use crate::log::{Headers, encode_header_block, get_slice, header_block_len};

/// Version byte of the stored record framing; bump on any layout change and keep
/// decoding the old one.
const FRAME_V1: u8 = 1;

/// `topic_id | partition` — the prefix of every key of one partition.
pub fn partition_prefix(topic_id: u32, partition: u32) -> [u8; 8] {
    let mut k = [0u8; 8];
    k[..4].copy_from_slice(&topic_id.to_be_bytes());
    k[4..].copy_from_slice(&partition.to_be_bytes());
    k
}

/// `topic_id | partition | offset`.
pub fn record_key(topic_id: u32, partition: u32, offset: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&partition_prefix(topic_id, partition));
    k[8..].copy_from_slice(&offset.to_be_bytes());
    k
}

/// The offset of a record key.
pub fn offset_of(key: &[u8]) -> Option<u64> {
    key.get(8..16)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}

/// Signed timestamps sort as unsigned big-endian once the sign bit is flipped.
fn ts_sortable(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

/// `topic_id | partition | timestamp | offset` — one sparse time-index entry.
pub fn time_key(topic_id: u32, partition: u32, ts: i64, offset: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&partition_prefix(topic_id, partition));
    k[8..16].copy_from_slice(&ts_sortable(ts));
    k[16..].copy_from_slice(&offset.to_be_bytes());
    k
}

/// The offset of a time-index key.
pub fn time_key_offset(key: &[u8]) -> Option<u64> {
    key.get(16..24)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}

/// `group | 0 | topic_id | partition` — a committed group offset.
pub fn group_key(group: &str, topic_id: u32, partition: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(group.len() + 9);
    k.extend_from_slice(group.as_bytes());
    k.push(0);
    k.extend_from_slice(&partition_prefix(topic_id, partition));
    k
}

/// Frames a record: `version | timestamp | key | headers | value`.
pub fn encode_record(
    out: &mut Vec<u8>,
    timestamp_ms: i64,
    key: &[u8],
    headers: &Headers,
    value: &[u8],
) {
    out.reserve(1 + 8 + key.len() + value.len() + 32);
    out.push(FRAME_V1);
    out.extend_from_slice(&timestamp_ms.to_le_bytes());
    crate::log::put_varint(out, key.len() as u64);
    out.extend_from_slice(key);
    encode_header_block(out, headers);
    out.extend_from_slice(value);
}

/// A stored record, borrowed from the buffer it was framed in.
#[derive(Debug)]
pub struct Framed<'a> {
    /// Event time (ms).
    pub timestamp_ms: i64,
    /// Partitioning key.
    pub key: &'a [u8],
    /// The encoded header block, validated (see `RecordHeaders`).
    pub headers: &'a [u8],
    /// Encoded event.
    pub value: &'a [u8],
}

/// Only the timestamp, without touching the rest (used by seek-by-timestamp scans).
pub fn decode_timestamp(buf: &[u8]) -> Result<i64, String> {
    if buf.first() != Some(&FRAME_V1) {
        return Err(format!("unknown record framing version {:?}", buf.first()));
    }
    buf.get(1..9)
        .and_then(|b| b.try_into().ok())
        .map(i64::from_le_bytes)
        .ok_or_else(|| "truncated timestamp".to_string())
}

/// Unframes a record.
pub fn decode_record(buf: &[u8]) -> Result<Framed<'_>, String> {
    let timestamp_ms = decode_timestamp(buf)?;
    let mut pos = 9;
    let key = get_slice(buf, &mut pos)?;
    // Validated here, parsed only when a reader asks for a header: this keeps the
    // read path free of per-header allocations.
    let start = pos;
    pos = header_block_len(buf, pos)?;
    if pos == start {
        return Err("truncated headers".into());
    }
    Ok(Framed {
        timestamp_ms,
        key,
        headers: &buf[start..pos],
        value: &buf[pos..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_framing_round_trips() {
        let headers = vec![("courier-schema".to_string(), b"courier.v1.Event".to_vec())];
        let mut buf = Vec::new();
        encode_record(&mut buf, -5, b"c1", &headers, b"payload");
        let f = decode_record(&buf).unwrap();
        assert_eq!(f.timestamp_ms, -5);
        assert_eq!(f.key, b"c1");
        let block = crate::log::RecordHeaders::from_block(f.headers.to_vec().into()).unwrap();
        assert_eq!(block.to_vec(), headers);
        assert_eq!(f.value, b"payload");
    }

    #[test]
    fn truncated_or_unknown_framing_is_an_error() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 1, b"key", &vec![("h".into(), vec![1; 300])], b"v");
        assert!(decode_record(&buf[..20]).is_err());
        buf[0] = 9;
        assert!(decode_record(&buf).unwrap_err().contains("version"));
    }

    #[test]
    fn keys_sort_by_partition_then_offset_and_time_keys_by_signed_time() {
        assert!(record_key(1, 0, u64::MAX) < record_key(1, 1, 0));
        assert!(record_key(1, 2, 255) < record_key(1, 2, 256));
        assert!(time_key(1, 0, -1, 0) < time_key(1, 0, 0, 0));
        assert!(time_key(1, 0, i64::MIN, 0) < time_key(1, 0, i64::MAX, 0));
        assert_eq!(offset_of(&record_key(3, 4, 77)), Some(77));
        assert_eq!(time_key_offset(&time_key(3, 4, 9, 78)), Some(78));
    }
}
