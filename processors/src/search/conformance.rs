//! The contract every [`SearchIndex`] must meet, as checks each backend runs
//! through [`search_index_conformance!`](crate::search_index_conformance)
//! (tantivy in `sinks`).
//!
//! The order an index keeps is the order of the operations it is given: they
//! come in log order, and a later operation on a message wins ([`IndexOp`]) —
//! within one write, across writes whose commit is deferred, and across
//! commits — so an earlier version of a message never outlives a later one, nor
//! an earlier version of a conversation's state the one committed after it.
//! And each shard commits atomically: after a crash it holds, for some prefix
//! of the writes it was given, all their documents, states and last next
//! offset, and nothing of the rest.

use std::collections::BTreeMap;

use async_trait::async_trait;
use courier_schemas::json::parse_line;

use super::{IndexOp, LatestStates, SearchBatch, SearchDoc, SearchIndex, ShardWrite};
use crate::inbox::{ConversationState, Position, apply};

/// A message document as a shard's commit holds it: a [`SearchDoc`] without
/// its position, which an index need not keep.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CommittedDoc {
    /// The conversation.
    pub conversation_id: String,
    /// The message.
    pub message_id: String,
    /// Who sent it.
    pub sender_id: String,
    /// Its text.
    pub text: String,
    /// `at_ms` of the `message_sent`.
    pub sent_at_ms: i64,
    /// Who sees it, sorted.
    pub visible_to: Vec<String>,
}

impl From<&SearchDoc> for CommittedDoc {
    fn from(d: &SearchDoc) -> Self {
        let mut visible_to = d.visible_to.clone();
        visible_to.sort();
        CommittedDoc {
            conversation_id: d.conversation_id.clone(),
            message_id: d.message_id.clone(),
            sender_id: d.sender_id.clone(),
            text: d.text.clone(),
            sent_at_ms: d.sent_at_ms,
            visible_to,
        }
    }
}

/// Hands out indexes for the checks: each check takes a new place, opens an
/// index there, and may drop it (uncommitted work and all, as a crash would)
/// and open the place again.
#[async_trait]
pub trait SearchIndexFactory: Send + Sync {
    /// Where one index keeps its shards (a directory).
    type Place: Send + Sync;
    /// The index under test.
    type Index: SearchIndex;

    /// A new, empty place.
    async fn place(&self) -> Self::Place;

    /// Opens the index at `place`: after the previous index there was dropped,
    /// this is a restart.
    async fn open(&self, place: &Self::Place) -> Self::Index;

    /// Every message document the last commit of `partition`'s shard holds, in
    /// any order, read as the backend's queries would (a shard never committed
    /// holds none).
    async fn committed_documents(&self, place: &Self::Place, partition: u32) -> Vec<CommittedDoc>;

    /// Every conversation state the last commit of `partition`'s shard holds,
    /// in any order: an index keeping an older state beside the newer one would
    /// answer [`SearchIndex::load_states`] with either.
    async fn committed_states(&self, place: &Self::Place, partition: u32)
    -> Vec<ConversationState>;

    /// Removes a place once its check passed; by default, drops it.
    async fn remove(&self, place: Self::Place) {
        drop(place);
    }
}

/// One test per check for a [`SearchIndex`] backend, in a module
/// `search_index_conformance` that sees the invoking module's items;
/// `$factory` (a [`SearchIndexFactory`]) is evaluated afresh in each test.
///
/// ```ignore
/// courier_processors::search_index_conformance!(TantivyFactory);
/// ```
///
/// The invoking crate needs `tokio` with its `macros`.
#[macro_export]
macro_rules! search_index_conformance {
    (@tests $factory:expr; $($check:ident),+ $(,)?) => {
        mod search_index_conformance {
            // The factory is the invoking module's.
            #[allow(unused_imports)]
            use super::*;

            $(
                #[::tokio::test]
                async fn $check() {
                    $crate::search::conformance::$check(&$factory).await;
                }
            )+
        }
    };
    ($factory:expr $(,)?) => {
        // The list of checks: every backend runs exactly these.
        $crate::search_index_conformance!(@tests $factory;
            a_new_shard_has_no_commit,
            a_flushed_write_is_durable_with_its_offset_and_states,
            closing_a_shard_commits_its_pending_work,
            a_crash_keeps_a_prefix_of_the_writes,
            a_later_operation_on_a_message_wins,
            a_later_state_replaces_the_earlier_one,
            shards_are_independent,
        );
    };
}

/// The processor's states as of its last write, by (partition, conversation).
#[derive(Default)]
struct Latest(BTreeMap<(u32, String), ConversationState>);

impl Latest {
    fn set(&mut self, partition: u32, s: &ConversationState) {
        self.0
            .insert((partition, s.conversation_id().to_owned()), s.clone());
    }
}

impl LatestStates for Latest {
    fn latest(&self, partition: u32, conversation: &str) -> Option<&ConversationState> {
        self.0.get(&(partition, conversation.to_owned()))
    }
}

/// The state of `conversation` (members u1, u2) after its creation at
/// `partition`/`created` and `sends` messages right after it.
fn state(partition: u32, conversation: &str, created: u64, sends: u64) -> ConversationState {
    let mut s = ConversationState::new(conversation);
    let mut fold = |offset: u64, line: String| {
        let outcome = apply(
            &mut s,
            &parse_line(&line).expect("a valid line"),
            Position::new(partition, offset),
        );
        assert!(outcome.rejection().is_none(), "{line}");
    };
    fold(
        created,
        format!(
            r#"{{"type":"conversation_created","event_id":"{conversation}-c","conversation_id":"{conversation}","kind":"group","creator_id":"u1","member_ids":["u1","u2"],"title":"","at_ms":1}}"#
        ),
    );
    for i in 1..=sends {
        fold(
            created + i,
            format!(
                r#"{{"type":"message_sent","event_id":"{conversation}-{i}","conversation_id":"{conversation}","message_id":"m{i}","sender_id":"u1","text":"x","at_ms":{i}}}"#
            ),
        );
    }
    s
}

fn encoded(s: &ConversationState) -> Vec<u8> {
    let mut out = Vec::new();
    s.encode_into(&mut out);
    out
}

/// A document of `conversation`/`message` sent at `offset` of `partition`.
fn doc(partition: u32, conversation: &str, message: &str, text: &str, offset: u64) -> SearchDoc {
    SearchDoc {
        conversation_id: conversation.into(),
        message_id: message.into(),
        sender_id: "u1".into(),
        text: text.into(),
        sent_at_ms: 1_000 + offset as i64,
        visible_to: vec!["u2".into(), "u1".into()],
        position: Position::new(partition, offset),
    }
}

fn add(d: &SearchDoc) -> IndexOp {
    IndexOp::Add(d.clone())
}

fn upsert(d: &SearchDoc) -> IndexOp {
    IndexOp::Upsert(d.clone())
}

fn delete(conversation: &str, message: &str) -> IndexOp {
    IndexOp::Delete {
        conversation_id: conversation.into(),
        message_id: message.into(),
    }
}

/// One shard's write. Its newest record is from long ago, so an index that
/// defers commits the further behind the processor is defers this one.
fn shard(partition: u32, ops: Vec<IndexOp>, changed: &[&str], next_offset: u64) -> ShardWrite {
    ShardWrite {
        partition,
        ops,
        changed: changed.iter().map(|c| c.to_string()).collect(),
        next_offset,
        newest_record_ms: 0,
    }
}

fn batch(shards: Vec<ShardWrite>) -> SearchBatch {
    SearchBatch { shards }
}

/// Asserts that `partition`'s last commit holds exactly `docs`.
async fn assert_committed<F: SearchIndexFactory>(
    f: &F,
    place: &F::Place,
    partition: u32,
    docs: &[&SearchDoc],
    what: &str,
) {
    let mut got = f.committed_documents(place, partition).await;
    got.sort();
    let mut want: Vec<CommittedDoc> = docs.iter().map(|d| CommittedDoc::from(*d)).collect();
    want.sort();
    assert_eq!(got, want, "documents of shard p{partition} {what}");
}

/// Asserts that `partition`'s last commit holds exactly these states, one per
/// conversation.
async fn assert_committed_states<F: SearchIndexFactory>(
    f: &F,
    place: &F::Place,
    partition: u32,
    want: &[&ConversationState],
    what: &str,
) {
    // Which versions first (a readable failure), then their bytes.
    let version = |s: &ConversationState| (s.conversation_id().to_owned(), s.applied_offset());
    let mut got = f.committed_states(place, partition).await;
    got.sort_by_key(version);
    let mut want = want.to_vec();
    want.sort_by_key(|s| version(s));
    assert_eq!(
        got.iter().map(version).collect::<Vec<_>>(),
        want.iter().map(|s| version(s)).collect::<Vec<_>>(),
        "states committed in p{partition} {what}"
    );
    for (g, w) in got.iter().zip(want) {
        assert_eq!(
            encoded(g),
            encoded(w),
            "state of {} committed in p{partition} {what}",
            w.conversation_id()
        );
    }
}

/// Asserts that the open shard `partition` holds these states (`None`: none).
async fn assert_states<I: SearchIndex>(
    index: &mut I,
    partition: u32,
    want: &[(&str, Option<&ConversationState>)],
    what: &str,
) {
    let ids: Vec<String> = want.iter().map(|(c, _)| c.to_string()).collect();
    let got = index.load_states(partition, &ids).await.unwrap();
    assert_eq!(got.len(), want.len(), "one answer per conversation {what}");
    for (g, (c, w)) in got.iter().zip(want) {
        assert_eq!(
            g.as_ref().map(encoded),
            w.map(encoded),
            "state of {c} in p{partition} {what}"
        );
    }
}

/// A shard never written has no commit, no state and no document, and stays so
/// across a reopen.
pub async fn a_new_shard_has_no_commit<F: SearchIndexFactory>(f: &F) {
    let place = f.place().await;
    let latest = Latest::default();
    for _reopened in [false, true] {
        let mut index = f.open(&place).await;
        assert_eq!(index.open_shard(3).await.unwrap(), None);
        assert_states(&mut index, 3, &[("c1", None)], "of a new shard").await;
        index.flush(&latest).await.unwrap();
        drop(index);
        assert_committed(f, &place, 3, &[], "of a new shard").await;
    }
    f.remove(place).await;
}

/// A flushed write is committed: its documents, the latest states of the
/// conversations it changed, and its next offset, read back after a restart.
pub async fn a_flushed_write_is_durable_with_its_offset_and_states<F: SearchIndexFactory>(f: &F) {
    let place = f.place().await;
    let (c1, c10) = (state(0, "c1", 0, 2), state(0, "c10", 1, 1));
    let mut latest = Latest::default();
    latest.set(0, &c1);
    latest.set(0, &c10);
    let d1 = doc(0, "c1", "m1", "hello world", 2);
    let d2 = doc(0, "c1", "m2", "second message", 3);
    let d3 = doc(0, "c10", "m1", "hello c10", 4);
    let mut index = f.open(&place).await;
    assert_eq!(index.open_shard(0).await.unwrap(), None);
    let w = shard(0, vec![add(&d1), add(&d2), add(&d3)], &["c1", "c10"], 5);
    index.write(&batch(vec![w]), &latest).await.unwrap();
    index.flush(&latest).await.unwrap();
    assert_committed(f, &place, 0, &[&d1, &d2, &d3], "after a flush").await;
    assert_committed_states(f, &place, 0, &[&c1, &c10], "after a flush").await;
    drop(index);
    let mut index = f.open(&place).await;
    assert_eq!(index.open_shard(0).await.unwrap(), Some(5));
    assert_states(
        &mut index,
        0,
        &[("c10", Some(&c10)), ("nope", None), ("c1", Some(&c1))],
        "after a restart",
    )
    .await;
    drop(index);
    assert_committed(f, &place, 0, &[&d1, &d2, &d3], "after a restart").await;
    f.remove(place).await;
}

/// A shard closed (revoked) commits what it was given first, so that its next
/// owner starts from everything handled.
pub async fn closing_a_shard_commits_its_pending_work<F: SearchIndexFactory>(f: &F) {
    let place = f.place().await;
    let c1 = state(2, "c1", 0, 1);
    let mut latest = Latest::default();
    latest.set(2, &c1);
    let d1 = doc(2, "c1", "m1", "revoked soon", 1);
    let mut index = f.open(&place).await;
    index.open_shard(2).await.unwrap();
    let w = shard(2, vec![add(&d1)], &["c1"], 2);
    index.write(&batch(vec![w]), &latest).await.unwrap();
    index.close_shard(2, &latest).await.unwrap();
    assert_committed(f, &place, 2, &[&d1], "after closing the shard").await;
    // Assigned back to the same instance: it resumes from that commit.
    assert_eq!(index.open_shard(2).await.unwrap(), Some(2));
    assert_states(&mut index, 2, &[("c1", Some(&c1))], "after reopening").await;
    drop(index);
    f.remove(place).await;
}

/// A crash (the index dropped without a flush) after a flushed write and one
/// that was not leaves a prefix of the writes: the first alone, or both —
/// documents, states and next offset agreeing.
pub async fn a_crash_keeps_a_prefix_of_the_writes<F: SearchIndexFactory>(f: &F) {
    let place = f.place().await;
    let (c1_first, c1_second) = (state(0, "c1", 0, 1), state(0, "c1", 0, 3));
    let d1 = doc(0, "c1", "m1", "first", 1);
    let d1_edited = doc(0, "c1", "m1", "first, edited", 1);
    let d2 = doc(0, "c1", "m2", "second", 2);
    let mut latest = Latest::default();
    let mut index = f.open(&place).await;
    index.open_shard(0).await.unwrap();
    latest.set(0, &c1_first);
    let first = shard(0, vec![add(&d1)], &["c1"], 2);
    index.write(&batch(vec![first]), &latest).await.unwrap();
    index.flush(&latest).await.unwrap();
    latest.set(0, &c1_second);
    let second = shard(0, vec![upsert(&d1_edited), add(&d2)], &["c1"], 4);
    index.write(&batch(vec![second]), &latest).await.unwrap();
    drop(index);
    let mut index = f.open(&place).await;
    match index.open_shard(0).await.unwrap() {
        Some(2) => {
            assert_states(&mut index, 0, &[("c1", Some(&c1_first))], "(first)").await;
            drop(index);
            assert_committed(f, &place, 0, &[&d1], "(first write only)").await;
        }
        Some(4) => {
            assert_states(&mut index, 0, &[("c1", Some(&c1_second))], "(both)").await;
            drop(index);
            assert_committed(f, &place, 0, &[&d1_edited, &d2], "(both writes)").await;
        }
        other => panic!("after a crash the shard resumes from {other:?}, not 2 or 4"),
    }
    f.remove(place).await;
}

/// Later operations on a message win over earlier ones — in one write, across
/// writes whose commit is deferred, and across commits — and a message deleted
/// and upserted again is back.
pub async fn a_later_operation_on_a_message_wins<F: SearchIndexFactory>(f: &F) {
    let place = f.place().await;
    let latest = Latest::default();
    let mut index = f.open(&place).await;
    index.open_shard(1).await.unwrap();
    let v = |m: &str, text: &str, offset: u64| doc(1, "c1", m, text, offset);
    let (m1_one, m1_two) = (v("m1", "one", 1), v("m1", "two", 1));
    let (m2, m3) = (v("m2", "gone soon", 2), v("m3", "three", 3));
    let in_one_write = vec![
        add(&m1_one),
        upsert(&m1_two),
        add(&m2),
        delete("c1", "m2"),
        add(&m3),
    ];
    index
        .write(&batch(vec![shard(1, in_one_write, &[], 4)]), &latest)
        .await
        .unwrap();
    index.flush(&latest).await.unwrap();
    assert_committed(f, &place, 1, &[&m1_two, &m3], "after one write").await;

    let (m1_four, m1_five) = (v("m1", "four", 1), v("m1", "five", 1));
    let (m2_back, m3_again) = (v("m2", "back again", 2), v("m3", "three again", 3));
    let deferred = vec![
        upsert(&m3_again),
        delete("c1", "m1"),
        upsert(&m1_four),
        upsert(&m2_back),
    ];
    index
        .write(&batch(vec![shard(1, deferred, &[], 5)]), &latest)
        .await
        .unwrap();
    let last = vec![upsert(&m1_five)];
    index
        .write(&batch(vec![shard(1, last, &[], 6)]), &latest)
        .await
        .unwrap();
    index.flush(&latest).await.unwrap();
    let want = [&m1_five, &m2_back, &m3_again];
    assert_committed(f, &place, 1, &want, "after two deferred writes").await;
    drop(index);
    let mut index = f.open(&place).await;
    assert_eq!(index.open_shard(1).await.unwrap(), Some(6));
    drop(index);
    assert_committed(f, &place, 1, &want, "after a restart").await;
    f.remove(place).await;
}

/// A write of shard 0 that changed only `conversations`' states.
async fn changed<I: SearchIndex>(
    index: &mut I,
    latest: &Latest,
    conversations: &[&str],
    next: u64,
) {
    let w = shard(0, Vec::new(), conversations, next);
    index.write(&batch(vec![w]), latest).await.unwrap();
}

/// A conversation's state committed later replaces the one committed before,
/// also when it changed twice between two commits; a commit that does not
/// change it leaves it.
pub async fn a_later_state_replaces_the_earlier_one<F: SearchIndexFactory>(f: &F) {
    let place = f.place().await;
    let mut latest = Latest::default();
    let mut index = f.open(&place).await;
    index.open_shard(0).await.unwrap();
    let versions: Vec<ConversationState> = (0..4).map(|n| state(0, "c1", 0, n)).collect();
    latest.set(0, &versions[0]);
    changed(&mut index, &latest, &["c1"], 1).await;
    index.flush(&latest).await.unwrap();
    latest.set(0, &versions[1]);
    changed(&mut index, &latest, &["c1"], 2).await;
    index.flush(&latest).await.unwrap();
    assert_states(&mut index, 0, &[("c1", Some(&versions[1]))], "(2nd)").await;
    // Changed twice before the next commit: the commit holds the later one.
    latest.set(0, &versions[2]);
    changed(&mut index, &latest, &["c1"], 3).await;
    latest.set(0, &versions[3]);
    changed(&mut index, &latest, &["c1"], 4).await;
    index.flush(&latest).await.unwrap();
    let c2 = state(0, "c2", 10, 0);
    latest.set(0, &c2);
    changed(&mut index, &latest, &["c2"], 11).await;
    index.flush(&latest).await.unwrap();
    let want = [("c1", Some(&versions[3])), ("c2", Some(&c2))];
    assert_states(&mut index, 0, &want, "(4th)").await;
    let only = [&versions[3], &c2];
    assert_committed_states(f, &place, 0, &only, "(4th)").await;
    drop(index);
    let mut index = f.open(&place).await;
    assert_eq!(index.open_shard(0).await.unwrap(), Some(11));
    assert_states(&mut index, 0, &want, "after a restart").await;
    drop(index);
    f.remove(place).await;
}

/// Each shard keeps its own documents, states and offset: one batch over two
/// shards reads back apart.
pub async fn shards_are_independent<F: SearchIndexFactory>(f: &F) {
    let place = f.place().await;
    let (c1, c2) = (state(0, "c1", 0, 1), state(1, "c2", 5, 1));
    let mut latest = Latest::default();
    latest.set(0, &c1);
    latest.set(1, &c2);
    let (d1, d2) = (
        doc(0, "c1", "m1", "on zero", 1),
        doc(1, "c2", "m1", "on one", 6),
    );
    let mut index = f.open(&place).await;
    index.open_shard(0).await.unwrap();
    index.open_shard(1).await.unwrap();
    let b = batch(vec![
        shard(0, vec![add(&d1)], &["c1"], 2),
        shard(1, vec![add(&d2)], &["c2"], 7),
    ]);
    index.write(&b, &latest).await.unwrap();
    index.flush(&latest).await.unwrap();
    drop(index);
    let mut index = f.open(&place).await;
    assert_eq!(index.open_shard(0).await.unwrap(), Some(2));
    assert_eq!(index.open_shard(1).await.unwrap(), Some(7));
    let want = [("c1", Some(&c1)), ("c2", None)];
    assert_states(&mut index, 0, &want, "of shard 0").await;
    let want = [("c1", None), ("c2", Some(&c2))];
    assert_states(&mut index, 1, &want, "of shard 1").await;
    drop(index);
    assert_committed(f, &place, 0, &[&d1], "of shard 0").await;
    assert_committed(f, &place, 1, &[&d2], "of shard 1").await;
    f.remove(place).await;
}
