//! The `EventLog` conformance suite: behaviour every log backend must show, run
//! unchanged against each (the embedded log in `tests/pipeline.rs`, Kafka in
//! `tests/kafka.rs`).
//!
//! Each check takes a [`LogFactory`] that hands out fresh, empty logs, and panics
//! with a message naming the broken promise. A backend runs the suite with
//! [`event_log_conformance!`](crate::event_log_conformance), which lists every
//! check once: a check added there runs on every backend, none can be left out
//! of one backend's list by accident.
//!
//! Writes from the past are part of the suite too: a member that no longer owns
//! a partition cannot commit an offset for it
//! ([`two_members_split_then_survivor_takes_over`]), so a stale consumer never
//! moves the position of the member that took its partition over.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use courier_topics::partition_for_key;

use crate::log::{
    ConsumedRecord, ConsumerEvent, EventLog, GroupConsumer, Position, Record, TopicPartition,
};

/// The topic the suite writes to (12 partitions in the catalog).
pub const TOPIC: &str = courier_topics::CONVERSATIONS;

/// How long a suite step waits for something that must happen before failing.
const PATIENCE: Duration = Duration::from_secs(60);

/// One log under test, which can be restarted as a new process would see it.
#[async_trait]
pub trait LogHandle: Send {
    /// The log.
    fn log(&self) -> Arc<dyn EventLog>;
    /// Closes and reopens the same log (same data, same groups); every `Arc` from
    /// [`LogHandle::log`] other than the handle's own must have been dropped.
    async fn restart(&mut self);
}

/// Makes fresh, empty logs (a new directory, or a new namespace on a shared broker).
#[async_trait]
pub trait LogFactory: Send + Sync {
    /// A new empty log.
    async fn fresh(&self) -> Box<dyn LogHandle>;

    /// Removes what the logs of this factory left on a shared server, once a check
    /// passed (a failed one leaves them to look at). Nothing by default: a
    /// temporary directory goes by itself.
    async fn cleanup(&self) {}
}

fn rec(key: &str, value: String, ts: i64) -> Record {
    Record {
        key: key.as_bytes().to_vec(),
        value: value.into_bytes(),
        headers: vec![("courier-test".into(), b"1".to_vec())],
        timestamp_ms: ts,
    }
}

/// Polls until `cond` holds on the records gathered so far, answering rebalances.
async fn consume_until(
    c: &mut dyn GroupConsumer,
    got: &mut Vec<ConsumedRecord>,
    mut cond: impl FnMut(&[ConsumedRecord], &dyn GroupConsumer) -> bool,
    what: &str,
) {
    let deadline = Instant::now() + PATIENCE;
    while !cond(got, c) {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        if let ConsumerEvent::Records(r) =
            c.poll(500, Duration::from_millis(200)).await.expect("poll")
        {
            got.extend(r);
        }
    }
}

/// Appending returns the partition murmur2 picks and contiguous, increasing offsets;
/// reading gives every key's records back in append order, headers intact.
pub async fn per_key_order_and_monotonic_offsets(f: &dyn LogFactory) {
    let h = f.fresh().await;
    let log = h.log();
    let n = log.partitions(TOPIC).expect("partitions");
    let mut sent: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut last_offset: BTreeMap<u32, u64> = BTreeMap::new();
    for batch in 0..5 {
        let mut records = Vec::new();
        for i in 0..60 {
            let key = format!("c{}", (i * 7 + batch) % 23);
            let value = format!("{key}:{batch}:{i}");
            sent.entry(key.clone()).or_default().push(value.clone());
            records.push(rec(&key, value, 1_000 + i));
        }
        let keys: Vec<_> = records.iter().map(|r| r.key.clone()).collect();
        let appended = log.append(TOPIC, records).await.expect("append");
        assert_eq!(appended.len(), keys.len(), "one result per record");
        for (key, a) in keys.iter().zip(&appended) {
            assert_eq!(
                a.partition,
                partition_for_key(key, n),
                "murmur2 partition for {key:?}"
            );
            if let Some(prev) = last_offset.insert(a.partition, a.offset) {
                assert_eq!(
                    a.offset,
                    prev + 1,
                    "offsets in partition {} are contiguous",
                    a.partition
                );
            }
        }
    }
    let mut read: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut total = 0;
    for p in 0..n {
        let (low, high) = log.watermarks(TOPIC, p).await.expect("watermarks");
        let mut next = low;
        while next < high {
            let got = log
                .read(TOPIC, p, next, 100, Duration::from_secs(5))
                .await
                .expect("read");
            assert!(
                !got.is_empty(),
                "records below the high watermark are readable"
            );
            for r in got {
                assert_eq!(r.offset, next, "partition {p} reads back in offset order");
                assert_eq!(r.header("courier-test"), Some(&b"1"[..]), "headers survive");
                next += 1;
                total += 1;
                read.entry(String::from_utf8(r.key.to_vec()).expect("utf8"))
                    .or_default()
                    .push(String::from_utf8(r.value.to_vec()).expect("utf8"));
            }
        }
    }
    assert_eq!(total, 300);
    assert_eq!(read, sent, "every key's records come back in append order");
}

/// A group's committed offsets survive a restart, and a new member resumes there.
pub async fn group_offsets_survive_restart(f: &dyn LogFactory) {
    let mut h = f.fresh().await;
    let log = h.log();
    let records: Vec<_> = (0..100)
        .map(|i| rec(&format!("k{i}"), format!("v{i}"), i))
        .collect();
    log.append(TOPIC, records).await.expect("append");
    let group = "conformance-restart";
    let mut c = log
        .subscribe(group, &[TOPIC.to_string()])
        .await
        .expect("subscribe");
    let mut got = Vec::new();
    consume_until(
        &mut *c,
        &mut got,
        |g, _| g.len() >= 100,
        "the first member read 100 records",
    )
    .await;
    // Commit only part of it: the first half of what each partition gave.
    let mut by_p: BTreeMap<u32, Vec<&ConsumedRecord>> = BTreeMap::new();
    for r in &got {
        by_p.entry(r.partition).or_default().push(r);
    }
    let mut expected_rest = BTreeSet::new();
    let mut offsets = Vec::new();
    for (p, rs) in &by_p {
        let half = rs.len() / 2;
        offsets.push((TopicPartition::new(TOPIC, *p), rs[0].offset + half as u64));
        expected_rest.extend(rs[half..].iter().map(|r| (r.partition, r.offset)));
    }
    c.commit(&offsets).await.expect("commit");
    c.close().await.expect("close");
    drop(log);
    h.restart().await;
    let log = h.log();
    let committed = log.committed(group, TOPIC).await.expect("committed");
    for (tp, off) in &offsets {
        assert_eq!(
            committed[tp.partition as usize],
            Some(*off),
            "committed offset of {tp} survives restart"
        );
    }
    let mut c = log
        .subscribe(group, &[TOPIC.to_string()])
        .await
        .expect("subscribe again");
    let mut got = Vec::new();
    let want = expected_rest.len();
    consume_until(
        &mut *c,
        &mut got,
        |g, _| g.len() >= want,
        "the restarted member read the uncommitted rest",
    )
    .await;
    let seen: BTreeSet<_> = got.iter().map(|r| (r.partition, r.offset)).collect();
    assert_eq!(
        seen, expected_rest,
        "a restarted member resumes exactly at the committed offsets"
    );
    c.close().await.expect("close");
}

/// Two members split the partitions without overlap; when one dies, the survivor
/// takes its partitions over from their committed offsets, losing nothing.
pub async fn two_members_split_then_survivor_takes_over(f: &dyn LogFactory) {
    let h = f.fresh().await;
    let log = h.log();
    let n = log.partitions(TOPIC).expect("partitions");
    let records: Vec<_> = (0..240)
        .map(|i| rec(&format!("k{i}"), format!("v{i}"), i))
        .collect();
    log.append(TOPIC, records).await.expect("append");
    let group = "conformance-split";
    let topics = [TOPIC.to_string()];
    let mut a = log.subscribe(group, &topics).await.expect("subscribe a");
    let mut b = log.subscribe(group, &topics).await.expect("subscribe b");
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    // Poll both until every partition is owned by exactly one of them.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let owned_a: BTreeSet<_> = a.assignment().into_iter().collect();
        let owned_b: BTreeSet<_> = b.assignment().into_iter().collect();
        if !owned_a.is_empty() && !owned_b.is_empty() && owned_a.len() + owned_b.len() == n as usize
        {
            assert!(
                owned_a.is_disjoint(&owned_b),
                "a partition is never owned twice"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "two members never split the partitions: a={owned_a:?} b={owned_b:?}"
        );
        if let ConsumerEvent::Records(r) = a
            .poll(50, Duration::from_millis(100))
            .await
            .expect("poll a")
        {
            got_a.extend(r);
        }
        if let ConsumerEvent::Records(r) = b
            .poll(50, Duration::from_millis(100))
            .await
            .expect("poll b")
        {
            got_b.extend(r);
        }
    }
    // b reads what it owns, commits it, then dies without leaving cleanly.
    let b_parts: BTreeSet<_> = b.assignment().into_iter().collect();
    let foreign = b_parts.iter().next().expect("b owns a partition").clone();
    assert!(
        a.commit(&[(foreign.clone(), 1)]).await.is_err(),
        "a commit for a partition another member owns ({foreign}) is refused"
    );
    let b_total: usize = {
        let mut t = 0;
        for tp in &b_parts {
            let (_, high) = log
                .watermarks(TOPIC, tp.partition)
                .await
                .expect("watermarks");
            t += high as usize;
        }
        t
    };
    consume_until(
        &mut *b,
        &mut got_b,
        |g, c| {
            let owned: BTreeSet<_> = c.assignment().into_iter().collect();
            g.iter()
                .filter(|r| owned.contains(&r.topic_partition()))
                .count()
                >= b_total
        },
        "b read its partitions",
    )
    .await;
    // b commits only half of what it read in each partition, as if it crashed
    // before acknowledging the rest.
    let mut offsets = Vec::new();
    for tp in &b_parts {
        let (_, high) = log
            .watermarks(TOPIC, tp.partition)
            .await
            .expect("watermarks");
        offsets.push((tp.clone(), high / 2));
    }
    b.commit(&offsets).await.expect("b commits");
    let committed_b = log.committed(group, TOPIC).await.expect("committed");
    drop(b);
    // a must come to own everything, then read b's partitions from b's commits.
    let mut after = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    let mut idle = 0;
    while a.assignment().len() < n as usize || idle < 3 {
        assert!(
            Instant::now() < deadline,
            "the survivor never took over all partitions: {:?}",
            a.assignment()
        );
        match a
            .poll(500, Duration::from_millis(100))
            .await
            .expect("poll a")
        {
            ConsumerEvent::Records(r) if r.is_empty() => idle += 1,
            ConsumerEvent::Records(r) => after.extend(r),
            _ => idle = 0,
        }
    }
    for tp in &b_parts {
        let from =
            committed_b[tp.partition as usize].expect("b committed every partition it owned");
        let (_, high) = log
            .watermarks(TOPIC, tp.partition)
            .await
            .expect("watermarks");
        let offs: Vec<u64> = after
            .iter()
            .filter(|r| r.topic_partition() == *tp)
            .map(|r| r.offset)
            .collect();
        let want: Vec<u64> = (from..high).collect();
        assert_eq!(
            offs, want,
            "survivor reads {tp} from the departed member's commit to the end"
        );
    }
    assert!(!got_a.is_empty() || !after.is_empty(), "a read records");
    a.close().await.expect("close");
}

/// Seeking by time finds the first record at or after the time.
pub async fn seek_by_timestamp(f: &dyn LogFactory) {
    let h = f.fresh().await;
    let log = h.log();
    let n = log.partitions(TOPIC).expect("partitions");
    // One key, so one partition, with increasing times and one late straggler.
    let key = "seek-key";
    let p = partition_for_key(key.as_bytes(), n);
    let mut records: Vec<_> = (0..300)
        .map(|i| rec(key, format!("{i}"), 10_000 + i * 10))
        .collect();
    records.insert(200, rec(key, "late".into(), 10_005));
    let appended = log.append(TOPIC, records).await.expect("append");
    let base = appended[0].offset;
    let at = |ts| log.resolve(TOPIC, p, Position::Timestamp(ts));
    assert_eq!(
        at(0).await.expect("resolve"),
        base,
        "a time before everything is the first record"
    );
    assert_eq!(
        at(10_000).await.expect("resolve"),
        base,
        "an exact time hits its record"
    );
    assert_eq!(
        at(10_001).await.expect("resolve"),
        base + 1,
        "between two records: the later one"
    );
    assert_eq!(at(10_500).await.expect("resolve"), base + 50);
    // Past the straggler (inserted at index 200): records keep their offsets + 1.
    assert_eq!(at(12_500).await.expect("resolve"), base + 251);
    let (_, high) = log.watermarks(TOPIC, p).await.expect("watermarks");
    assert_eq!(
        at(99_999).await.expect("resolve"),
        high,
        "a time after everything is the end"
    );
    assert_eq!(
        log.resolve(TOPIC, p, Position::Earliest)
            .await
            .expect("resolve"),
        base
    );
    assert_eq!(
        log.resolve(TOPIC, p, Position::Latest)
            .await
            .expect("resolve"),
        high
    );
}

/// Reading from the earliest offset outside the group does not move the group, and
/// the group then continues from its own position; seeking moves a member.
pub async fn replay_keeps_the_group_position(f: &dyn LogFactory) {
    let h = f.fresh().await;
    let log = h.log();
    let key = "replay-key";
    let p = partition_for_key(key.as_bytes(), log.partitions(TOPIC).expect("partitions"));
    let tp = TopicPartition::new(TOPIC, p);
    log.append(
        TOPIC,
        (0..50).map(|i| rec(key, format!("{i}"), i)).collect(),
    )
    .await
    .expect("append");
    let group = "conformance-replay";
    let mut c = log
        .subscribe(group, &[TOPIC.to_string()])
        .await
        .expect("subscribe");
    let mut got = Vec::new();
    consume_until(&mut *c, &mut got, |g, _| g.len() >= 50, "the group read 50").await;
    c.commit(&[(tp.clone(), 30)]).await.expect("commit");
    // A replay from the start, outside the group.
    let all = log
        .read(TOPIC, p, 0, 1000, Duration::from_secs(5))
        .await
        .expect("read");
    assert_eq!(all.len(), 50, "replay reads the whole partition");
    assert_eq!(
        log.committed(group, TOPIC).await.expect("committed")[p as usize],
        Some(30),
        "replay moved no group"
    );
    // New records reach the member after its own position, not after the replay.
    log.append(
        TOPIC,
        (50..60).map(|i| rec(key, format!("{i}"), i)).collect(),
    )
    .await
    .expect("append");
    let mut more = Vec::new();
    consume_until(
        &mut *c,
        &mut more,
        |g, _| g.len() >= 10,
        "the group read the next 10",
    )
    .await;
    assert_eq!(more.first().map(|r| r.offset), Some(50));
    // Seek back inside the group.
    c.seek(&tp, 10).await.expect("seek");
    let mut again = Vec::new();
    consume_until(
        &mut *c,
        &mut again,
        |g, _| g.len() >= 50,
        "the member re-read from offset 10",
    )
    .await;
    assert_eq!(
        again.first().map(|r| r.offset),
        Some(10),
        "seek moves the member"
    );
    c.close().await.expect("close");
}

/// Unknown topics and partitions are clear errors.
pub async fn unknown_topics_are_errors(f: &dyn LogFactory) {
    let h = f.fresh().await;
    let log = h.log();
    let e = log
        .append("courier.nope.v1", vec![rec("k", "v".into(), 0)])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("courier.nope.v1"), "{e}");
    let e = log.watermarks(TOPIC, 999).await.unwrap_err();
    assert!(e.to_string().contains("999"), "{e}");
}

/// One `#[tokio::test]` per check of the suite, in a module
/// `event_log_conformance`, for a backend's [`LogFactory`]: each test evaluates
/// `$factory` afresh, runs its check, then [`LogFactory::cleanup`]. With
/// `skip_unless = EXPR`, a test returns at once when `EXPR` is false (a backend
/// whose server is not reachable; `testing::Server::reachable` decides, and
/// fails under CI). The module sees the invoking module's items.
///
/// ```ignore
/// courier_pipeline::event_log_conformance!(EmbeddedFactory);
/// courier_pipeline::event_log_conformance!(KafkaFactory::default(), skip_unless = kafka_available());
/// ```
///
/// The invoking crate needs `tokio` (with `macros` and `rt-multi-thread`).
#[macro_export]
macro_rules! event_log_conformance {
    ($factory:expr $(,)?) => {
        $crate::event_log_conformance!($factory, skip_unless = true);
    };
    ($factory:expr, skip_unless = $available:expr $(,)?) => {
        // The list of checks: every backend runs exactly these.
        $crate::__event_log_conformance_tests! {
            $factory, $available;
            per_key_order_and_monotonic_offsets,
            group_offsets_survive_restart,
            two_members_split_then_survivor_takes_over,
            seek_by_timestamp,
            replay_keeps_the_group_position,
            unknown_topics_are_errors,
        }
    };
}

/// The expansion of [`event_log_conformance!`](crate::event_log_conformance):
/// one test per check named.
#[doc(hidden)]
#[macro_export]
macro_rules! __event_log_conformance_tests {
    ($factory:expr, $available:expr; $($check:ident),+ $(,)?) => {
        mod event_log_conformance {
            // The factory and the availability test are the invoking module's.
            #[allow(unused_imports)]
            use super::*;

            $(
                // Two workers: the checks run group members side by side.
                #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    if !$available {
                        return;
                    }
                    let factory = $factory;
                    let started = ::std::time::Instant::now();
                    $crate::conformance::$check(&factory).await;
                    eprintln!("{} took {:?}", stringify!($check), started.elapsed());
                    $crate::conformance::LogFactory::cleanup(&factory).await;
                }
            )+
        }
    };
}
