//! Kafka's default partitioner for keyed records (`Utils.murmur2` + `toPositive`).

/// Kafka's 32-bit murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), as the
/// signed value the Java client computes.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    let mut h: u32 = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    // Java's switch falls through from case 3 to case 1; the bytes are sign-extended
    // there too, but `& 0xff` undoes it, so plain u8 → u32 matches.
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for a non-empty key.
///
/// # Panics
/// If `partitions` is zero: a topic always has at least one partition, and the
/// catalog refuses zero when it loads.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    // Utils.toPositive: clear the sign bit rather than abs(), so i32::MIN maps to 0.
    ((murmur2(key) as u32) & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Apache Kafka's own vectors (`UtilsTest.testMurmur2`).
    #[test]
    fn murmur2_matches_kafka_utils_test() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, hash) in cases {
            assert_eq!(
                murmur2(key),
                hash,
                "murmur2({})",
                String::from_utf8_lossy(key)
            );
        }
    }

    /// Key → partition results of the Java client's `BuiltInPartitioner`
    /// (`toPositive(murmur2(key)) % n`), including a table over 12 partitions checked
    /// against kafkajs' Java-compatible partitioner.
    #[test]
    fn partitions_match_the_java_client() {
        let cases: [(&str, u32, u32); 12] = [
            ("foobar", 10, 6),
            ("foobar", 50, 16),
            ("1039-36302-36840-2-9f138052", 12, 4),
            ("1182-07205-22440-2-0ad4507d", 12, 9),
            ("1388-20023-36900-2-c9985f66", 12, 0),
            ("1010-98110-23700-2-295bfb4c", 12, 10),
            ("1175-03505-36600-2-126dd9ca", 12, 1),
            ("1137-01302-23820-2-d560d49a", 12, 4),
            ("1011-98208-36480-2-9eef750a", 12, 8),
            ("599999", 12, 3),
            ("233-75504-36900-2-609151bd", 12, 10),
            ("21", 1, 0),
        ];
        for (key, n, want) in cases {
            assert_eq!(partition_for_key(key.as_bytes(), n), want, "{key} over {n}");
        }
    }

    #[test]
    fn every_key_lands_inside_the_topic() {
        for i in 0..10_000u32 {
            let key = format!("c{i}");
            assert!(partition_for_key(key.as_bytes(), 7) < 7);
        }
    }
}
