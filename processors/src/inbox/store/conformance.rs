//! The contract every [`InboxStore`] must meet, as checks each backend runs
//! through [`inbox_store_conformance!`](crate::inbox_store_conformance) (RocksDB
//! and Cassandra in `sinks`, the in-memory store of the handler's tests), so they
//! are held to the same answers: the in-memory [`ViewModel`] fed by the same fold.
//!
//! The checks come in two lists, following the port's durability contract
//! ([`super`]): every store runs the first; a store that writes a batch's rows
//! apart from its states (`writes = rows_then_states`: Cassandra) also runs the
//! second, which writes older versions after newer ones — a stale owner, or
//! the replay after a crash that left rows ahead of their states — and checks
//! that none of them replaces a newer row, state or checkpoint. An atomic store
//! (`writes = atomic`: RocksDB, memory) is exempt from that list by the same
//! contract: its rows never get ahead of its states, and the fold writes nothing
//! for an event at or below a state's applied offset, so it is never handed an
//! older version.

use std::collections::BTreeMap;

use async_trait::async_trait;
use courier_schemas::json::parse_line;

use super::super::effects::{
    Content, InboxRow, InboxUpdate, MessageRow, ParticipantRow, Position, Span,
};
use super::super::fold::{apply, route};
use super::super::state::ConversationState;
use super::super::view::ViewModel;
use super::{InboxBatch, InboxStore, Versioned, inbox, messages};

/// Hands out stores for the checks: each check takes a new place, opens a store
/// there, and may drop it and open the place again, as a restarted process would.
#[async_trait]
pub trait InboxStoreFactory: Send + Sync {
    /// Where one store keeps its data (a directory, a keyspace).
    type Place: Send + Sync;
    /// The store under test.
    type Store: InboxStore;

    /// A new, empty place (migrated, where the store needs it).
    async fn place(&self) -> Self::Place;

    /// Opens the store at `place`: after the previous store there was dropped,
    /// this is a restart.
    async fn open(&self, place: &Self::Place) -> Self::Store;

    /// Removes a place once its check passed (a failed check leaves it to look
    /// at); by default, drops it.
    async fn remove(&self, place: Self::Place) {
        drop(place);
    }
}

/// One test per check for an [`InboxStore`] backend, in a module
/// `inbox_store_conformance` that sees the invoking module's items. `$factory`
/// (an [`InboxStoreFactory`]) is evaluated afresh in each test. `writes =
/// atomic` or `writes = rows_then_states` says which half of the durability
/// contract the store implements (the second runs the stale-version checks
/// too); with `skip_unless = EXPR`, each test returns at once when `EXPR` is
/// false (a server that is not reachable).
///
/// ```ignore
/// courier_processors::inbox_store_conformance!(RocksFactory, writes = atomic);
/// courier_processors::inbox_store_conformance!(
///     CassandraFactory, writes = rows_then_states, skip_unless = cassandra_available()
/// );
/// ```
///
/// The invoking crate needs `tokio` with its `macros`.
#[macro_export]
macro_rules! inbox_store_conformance {
    // The checks every store runs, then the extra ones.
    (@every $factory:expr, $available:expr; $($extra:ident),* $(,)?) => {
        mod inbox_store_conformance {
            // The factory and the availability test are the invoking module's.
            #[allow(unused_imports)]
            use super::*;

            $crate::inbox_store_conformance!(@tests $factory, $available;
                a_new_store_knows_nothing,
                batches_read_back_as_the_reference_view,
                one_event_per_batch_gives_the_same_views,
                what_was_written_survives_a_reopen,
                a_redelivered_stream_changes_nothing,
                a_newer_version_replaces_a_row_and_the_same_one_changes_nothing,
                $($extra,)*
            );
        }
    };
    (@tests $factory:expr, $available:expr; $($check:ident),+ $(,)?) => {
        $(
            #[::tokio::test]
            async fn $check() {
                if !$available {
                    return;
                }
                $crate::inbox::store::conformance::$check(&$factory).await;
            }
        )+
    };
    ($factory:expr, writes = atomic, skip_unless = $available:expr $(,)?) => {
        $crate::inbox_store_conformance!(@every $factory, $available;);
    };
    ($factory:expr, writes = rows_then_states, skip_unless = $available:expr $(,)?) => {
        // Only for a store whose rows can be ahead of its states.
        $crate::inbox_store_conformance!(@every $factory, $available;
            an_older_version_never_replaces_a_newer_one,
            an_earlier_batch_written_again_changes_nothing,
            rows_ahead_of_their_states_never_go_back,
        );
    };
    ($factory:expr, writes = $writes:ident $(,)?) => {
        $crate::inbox_store_conformance!($factory, writes = $writes, skip_unless = true);
    };
}

/// Every event type, membership churn, a rule break, on two partitions.
const STREAM: &[(u32, &str)] = &[
    (
        0,
        r#"{"type":"conversation_created","event_id":"e1","conversation_id":"c1","kind":"group","creator_id":"u1","member_ids":["u1","u2","u3"],"title":"t","at_ms":10}"#,
    ),
    (
        1,
        r#"{"type":"conversation_created","event_id":"e2","conversation_id":"c10","kind":"direct","creator_id":"u1","member_ids":["u1","u2"],"title":"","at_ms":11}"#,
    ),
    (
        0,
        r#"{"type":"message_sent","event_id":"e3","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"hello","at_ms":12}"#,
    ),
    (
        1,
        r#"{"type":"message_sent","event_id":"e4","conversation_id":"c10","message_id":"m1","sender_id":"u2","ciphertext":"AAEC","at_ms":13}"#,
    ),
    (
        0,
        r#"{"type":"receipt","event_id":"e5","conversation_id":"c1","message_id":"m1","user_id":"u2","status":"read","at_ms":14}"#,
    ),
    (
        0,
        r#"{"type":"members_removed","event_id":"e6","conversation_id":"c1","actor_id":"u1","user_ids":["u3"],"at_ms":15}"#,
    ),
    (
        0,
        r#"{"type":"message_sent","event_id":"e7","conversation_id":"c1","message_id":"m2","sender_id":"u3","text":"not a member","at_ms":16}"#,
    ),
    (
        0,
        r#"{"type":"message_sent","event_id":"e8","conversation_id":"c1","message_id":"m3","sender_id":"u2","text":"bye","at_ms":17}"#,
    ),
    (
        0,
        r#"{"type":"members_added","event_id":"e9","conversation_id":"c1","actor_id":"u2","user_ids":["u3","u4"],"at_ms":18}"#,
    ),
    (
        0,
        r#"{"type":"message_edited","event_id":"e10","conversation_id":"c1","message_id":"m3","editor_id":"u2","text":"welcome back","at_ms":19}"#,
    ),
    (
        0,
        r#"{"type":"message_sent","event_id":"e11","conversation_id":"c1","message_id":"m4","sender_id":"u4","text":"hi","at_ms":20}"#,
    ),
    (
        0,
        r#"{"type":"message_deleted","event_id":"e12","conversation_id":"c1","message_id":"m1","actor_id":"u1","at_ms":21}"#,
    ),
    (
        0,
        r#"{"type":"receipt","event_id":"e13","conversation_id":"c1","message_id":"m4","user_id":"u3","status":"delivered","at_ms":22}"#,
    ),
];

/// The users and conversations the checks read back ("u5" and "c2" never
/// appear; "c10" must not be confused with "c1").
const USERS: [&str; 5] = ["u1", "u2", "u3", "u4", "u5"];
const CONVERSATIONS: [&str; 3] = ["c1", "c10", "c2"];

/// Folds [`STREAM`] into batches of `per_batch` events the way the handler
/// does (coalesced rows, changed states, checkpoints), and the reference view.
fn batches(per_batch: usize) -> (Vec<InboxBatch>, ViewModel) {
    let mut states: BTreeMap<String, ConversationState> = BTreeMap::new();
    let mut next: BTreeMap<u32, u64> = BTreeMap::new();
    let mut view = ViewModel::new();
    let mut out = Vec::new();
    for chunk in STREAM.chunks(per_batch) {
        let mut batch = InboxBatch::default();
        let mut touched = Vec::new();
        for (partition, line) in chunk {
            let event = parse_line(line).expect("a valid line");
            let offset = *next.entry(*partition).or_insert(0);
            next.insert(*partition, offset + 1);
            let c = route(&event).expect("a conversation event").to_owned();
            let state = states
                .entry(c.clone())
                .or_insert_with(|| ConversationState::new(c.clone()));
            let outcome = apply(state, &event, Position::new(*partition, offset));
            view.apply(&outcome);
            let version = outcome.position;
            // Later rows of the same key replace earlier ones, as in the handler.
            for row in outcome.effects.messages {
                batch.messages.retain(|m| {
                    (&m.row.conversation_id, &m.row.message_id)
                        != (&row.conversation_id, &row.message_id)
                });
                batch.messages.push(Versioned { version, row });
            }
            for row in outcome.effects.participants {
                batch.participants.retain(|p| {
                    (&p.row.conversation_id, &p.row.user_id) != (&row.conversation_id, &row.user_id)
                });
                batch.participants.push(Versioned { version, row });
            }
            for row in outcome.effects.inbox {
                batch.inbox.retain(|i| {
                    (&i.row.user_id, &i.row.row.conversation_id)
                        != (&row.user_id, &row.row.conversation_id)
                });
                batch.inbox.push(Versioned { version, row });
            }
            if !touched.contains(&c) {
                touched.push(c);
            }
        }
        batch.states = touched.iter().map(|c| states[c].clone()).collect();
        batch.checkpoints = next.iter().map(|(p, n)| (*p, *n)).collect();
        out.push(batch);
    }
    (out, view)
}

/// Asserts that a store nothing was written to knows nothing.
pub async fn assert_empty<S: InboxStore>(store: &S) {
    assert_eq!(store.checkpoint(0).await.unwrap(), None);
    let states = store.load_states(&["c1".to_owned()]).await.unwrap();
    assert!(states[0].is_none());
    assert!(inbox(store, "u1").await.unwrap().is_empty());
    let e = messages(store, "c1", "u1").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "u1 is not and never was a member of conversation c1"
    );
}

/// Writes the stream's batches, `per_batch` events each.
pub async fn write_stream<S: InboxStore>(store: &mut S, per_batch: usize) {
    for b in batches(per_batch).0 {
        store.write(&b).await.unwrap();
    }
}

/// Asserts that what [`write_stream`] wrote reads back as the reference view
/// answers, with its states and checkpoints; `c1` is not confused with `c10`.
pub async fn reads_back<S: InboxStore>(store: &S) {
    let (_, view) = batches(1);
    for u in USERS {
        assert_eq!(
            inbox(store, u).await.unwrap(),
            view.inbox(u),
            "inbox of {u}"
        );
        for c in CONVERSATIONS {
            let got = messages(store, c, u).await.map_err(|e| e.to_string());
            let want = view.messages(c, u).map_err(|e| e.to_string());
            assert_eq!(got, want, "messages of {c} as {u}");
        }
    }
    assert_eq!(store.checkpoint(0).await.unwrap(), Some(11));
    assert_eq!(store.checkpoint(1).await.unwrap(), Some(2));
    assert_eq!(store.checkpoint(2).await.unwrap(), None);
    let ids = ["c10".to_owned(), "nope".to_owned(), "c1".to_owned()];
    let states = store.load_states(&ids).await.unwrap();
    assert!(states[1].is_none());
    let c1 = states[2].as_ref().expect("c1 has a state");
    assert_eq!(
        (c1.conversation_id(), c1.applied_offset()),
        ("c1", Some(10))
    );
    assert_eq!(c1.members(), ["u1", "u2", "u3", "u4"]);
    assert_eq!(c1.message_count(), 3);
    let c10 = states[0].as_ref().expect("c10 has a state");
    assert_eq!(c10.applied_offset(), Some(1));
}

/// A store nothing was written to knows nothing.
pub async fn a_new_store_knows_nothing<F: InboxStoreFactory>(f: &F) {
    let place = f.place().await;
    assert_empty(&f.open(&place).await).await;
    f.remove(place).await;
}

/// The stream in batches of four reads back as the reference view.
pub async fn batches_read_back_as_the_reference_view<F: InboxStoreFactory>(f: &F) {
    let place = f.place().await;
    let mut store = f.open(&place).await;
    write_stream(&mut store, 4).await;
    reads_back(&store).await;
    drop(store);
    f.remove(place).await;
}

/// Batch by batch, one event at a time, gives the same views.
pub async fn one_event_per_batch_gives_the_same_views<F: InboxStoreFactory>(f: &F) {
    let place = f.place().await;
    let mut store = f.open(&place).await;
    write_stream(&mut store, 1).await;
    reads_back(&store).await;
    drop(store);
    f.remove(place).await;
}

/// Closed and opened again (a restart, another connection), the store holds
/// everything it acknowledged.
pub async fn what_was_written_survives_a_reopen<F: InboxStoreFactory>(f: &F) {
    let place = f.place().await;
    let mut store = f.open(&place).await;
    write_stream(&mut store, 4).await;
    drop(store);
    let store = f.open(&place).await;
    reads_back(&store).await;
    drop(store);
    f.remove(place).await;
}

/// The whole stream written again after it was written (a redelivery after a
/// crash, cut into other batches) ends in the same views.
pub async fn a_redelivered_stream_changes_nothing<F: InboxStoreFactory>(f: &F) {
    let place = f.place().await;
    let mut store = f.open(&place).await;
    write_stream(&mut store, 4).await;
    write_stream(&mut store, 3).await;
    reads_back(&store).await;
    drop(store);
    f.remove(place).await;
}

/// A participant row of u2 in c1 at offset `version` of partition 0.
fn participant(version: u64, delivered: u64) -> Versioned<ParticipantRow> {
    Versioned {
        version: Position::new(0, version),
        row: ParticipantRow {
            conversation_id: "c1".into(),
            user_id: "u2".into(),
            spans: vec![Span { from: 0, to: None }],
            delivered_up_to: Some(delivered),
            read_up_to: None,
        },
    }
}

/// The row of message m1 of c1 (sent at offset 2) as of `version`.
fn message(version: u64, text: &str) -> Versioned<MessageRow> {
    Versioned {
        version: Position::new(0, version),
        row: MessageRow {
            conversation_id: "c1".into(),
            message_id: "m1".into(),
            sender_id: "u1".into(),
            content: Some(Content::Text(text.into())),
            // Two days after the epoch: a history bucket of its own where a
            // store buckets by day.
            sent_at_ms: 2 * 86_400_000 + 5,
            edited: version > 2,
            deleted: false,
            position: Position::new(0, 2),
        },
    }
}

/// u2's inbox row of c1 as of `version`.
fn inbox_row(version: u64, text: &str) -> Versioned<InboxUpdate> {
    Versioned {
        version: Position::new(0, version),
        row: InboxUpdate {
            user_id: "u2".into(),
            row: InboxRow {
                conversation_id: "c1".into(),
                last_message_id: Some("m1".into()),
                last_message_preview: Some(text.into()),
                last_message_deleted: Some(false),
                last_activity_ms: 2 * 86_400_000 + 5,
                unread_count: version,
            },
        },
    }
}

/// Rows of c1, and u2's inbox, at `version` (and checkpoint `version + 1`).
fn rows_at(version: u64, text: &str) -> InboxBatch {
    InboxBatch {
        messages: vec![message(version, text)],
        participants: vec![participant(version, version)],
        inbox: vec![inbox_row(version, text)],
        checkpoints: vec![(0, version + 1)],
        ..InboxBatch::default()
    }
}

/// Asserts that the store holds exactly the rows of [`rows_at`] `version`.
async fn assert_rows_at<S: InboxStore>(store: &S, version: u64, text: &str, what: &str) {
    let rows = store.conversation_rows("c1").await.unwrap();
    assert_eq!(
        rows.participants,
        [participant(version, version).row],
        "participant rows {what}"
    );
    assert_eq!(
        rows.messages,
        [message(version, text).row],
        "message rows {what}"
    );
    assert_eq!(
        store.inbox_rows("u2").await.unwrap(),
        [inbox_row(version, text).row.row],
        "inbox rows {what}"
    );
    assert_eq!(
        store.checkpoint(0).await.unwrap(),
        Some(version + 1),
        "checkpoint {what}"
    );
}

/// The same batch twice is one row per key, as written; a newer version
/// replaces it.
pub async fn a_newer_version_replaces_a_row_and_the_same_one_changes_nothing<
    F: InboxStoreFactory,
>(
    f: &F,
) {
    let place = f.place().await;
    let mut store = f.open(&place).await;
    store.write(&rows_at(7, "edited")).await.unwrap();
    store.write(&rows_at(7, "edited")).await.unwrap();
    assert_rows_at(&store, 7, "edited", "after the same batch twice").await;
    store.write(&rows_at(9, "edited again")).await.unwrap();
    assert_rows_at(&store, 9, "edited again", "after a newer version").await;
    drop(store);
    f.remove(place).await;
}

/// (rows_then_states) Older versions of rows and checkpoints written after
/// newer ones (a stale owner, a replay) are ignored; a newer one still wins.
pub async fn an_older_version_never_replaces_a_newer_one<F: InboxStoreFactory>(f: &F) {
    let place = f.place().await;
    let mut store = f.open(&place).await;
    store.write(&rows_at(7, "edited")).await.unwrap();
    store.write(&rows_at(3, "original")).await.unwrap();
    assert_rows_at(&store, 7, "edited", "after an older version").await;
    // Older than what is stored but newer than the stale write: still ignored.
    store.write(&rows_at(6, "earlier edit")).await.unwrap();
    assert_rows_at(&store, 7, "edited", "after another older version").await;
    store.write(&rows_at(9, "edited again")).await.unwrap();
    assert_rows_at(&store, 9, "edited again", "after a newer version").await;
    drop(store);
    f.remove(place).await;
}

/// (rows_then_states) After the whole stream, each of its earlier batches
/// written again — rows, states and checkpoints all older than the stored ones
/// — changes nothing that reads back.
pub async fn an_earlier_batch_written_again_changes_nothing<F: InboxStoreFactory>(f: &F) {
    let place = f.place().await;
    let mut store = f.open(&place).await;
    write_stream(&mut store, 1).await;
    let (all, _) = batches(1);
    // Newest first, so each one is older than everything written after it.
    for (i, b) in all.iter().enumerate().rev().skip(1) {
        store.write(b).await.unwrap();
        let states = store.load_states(&["c1".to_owned()]).await.unwrap();
        assert_eq!(
            states[0].as_ref().and_then(|s| s.applied_offset()),
            Some(10),
            "the state of c1 after batch {i} was written again"
        );
        assert_eq!(
            store.checkpoint(0).await.unwrap(),
            Some(11),
            "the checkpoint after batch {i} was written again"
        );
    }
    reads_back(&store).await;
    drop(store);
    f.remove(place).await;
}

/// What each key holds once every row written so far is applied with the
/// newest version winning: what a store must read back at any moment.
#[derive(Default)]
struct NewestRows {
    messages: BTreeMap<(String, String), Versioned<MessageRow>>,
    participants: BTreeMap<(String, String), Versioned<ParticipantRow>>,
    inbox: BTreeMap<(String, String), Versioned<InboxUpdate>>,
}

fn keep_newest<T: Clone>(
    map: &mut BTreeMap<(String, String), Versioned<T>>,
    key: (String, String),
    v: &Versioned<T>,
) {
    if map.get(&key).is_none_or(|old| old.version <= v.version) {
        map.insert(key, v.clone());
    }
}

impl NewestRows {
    fn add(&mut self, b: &InboxBatch) {
        for m in &b.messages {
            let key = (m.row.conversation_id.clone(), m.row.message_id.clone());
            keep_newest(&mut self.messages, key, m);
        }
        for p in &b.participants {
            let key = (p.row.conversation_id.clone(), p.row.user_id.clone());
            keep_newest(&mut self.participants, key, p);
        }
        for i in &b.inbox {
            let key = (i.row.user_id.clone(), i.row.row.conversation_id.clone());
            keep_newest(&mut self.inbox, key, i);
        }
    }

    /// Asserts that `store` reads back exactly these rows.
    async fn assert_in<S: InboxStore>(&self, store: &S, what: &str) {
        for u in USERS {
            let mut got = store.inbox_rows(u).await.unwrap();
            got.sort_by(|a, b| a.conversation_id.cmp(&b.conversation_id));
            let want: Vec<InboxRow> = self
                .inbox
                .values()
                .filter(|v| v.row.user_id == u)
                .map(|v| v.row.row.clone())
                .collect();
            assert_eq!(got, want, "inbox rows of {u} {what}");
        }
        for c in CONVERSATIONS {
            let mut got = store.conversation_rows(c).await.unwrap();
            got.participants.sort_by(|a, b| a.user_id.cmp(&b.user_id));
            got.messages.sort_by(|a, b| a.message_id.cmp(&b.message_id));
            let participants: Vec<ParticipantRow> = self
                .participants
                .values()
                .filter(|v| v.row.conversation_id == c)
                .map(|v| v.row.clone())
                .collect();
            let messages: Vec<MessageRow> = self
                .messages
                .values()
                .filter(|v| v.row.conversation_id == c)
                .map(|v| v.row.clone())
                .collect();
            assert_eq!(got.participants, participants, "participants of {c} {what}");
            assert_eq!(got.messages, messages, "messages of {c} {what}");
        }
    }
}

/// (rows_then_states) A crash after a batch's rows and before its states leaves
/// rows ahead of the states; replaying from the stored states, in other
/// batches, writes older versions of those rows first. No row ever goes back,
/// and the replay ends in the views of one clean pass.
pub async fn rows_ahead_of_their_states_never_go_back<F: InboxStoreFactory>(f: &F) {
    let place = f.place().await;
    let mut store = f.open(&place).await;
    let (fours, _) = batches(4);
    let mut newest = NewestRows::default();
    store.write(&fours[0]).await.unwrap();
    newest.add(&fours[0]);
    // The crash: the second batch's rows are durable, its states and
    // checkpoints never came.
    let rows_only = InboxBatch {
        states: Vec::new(),
        checkpoints: Vec::new(),
        ..fours[1].clone()
    };
    store.write(&rows_only).await.unwrap();
    newest.add(&rows_only);
    newest.assert_in(&store, "after the crash").await;
    assert_eq!(
        store.checkpoint(0).await.unwrap(),
        Some(2),
        "the checkpoint is the first batch's"
    );
    let states = store.load_states(&["c1".to_owned()]).await.unwrap();
    assert_eq!(
        states[0].as_ref().and_then(|s| s.applied_offset()),
        Some(1),
        "the state of c1 is the first batch's"
    );
    // The restart replays from event 4 (the first batch's end), one event per
    // batch: until it passes the crashed batch, its rows are older.
    let (ones, _) = batches(1);
    for (i, b) in ones.iter().enumerate().skip(4) {
        store.write(b).await.unwrap();
        newest.add(b);
        newest
            .assert_in(&store, &format!("after replaying event {i}"))
            .await;
    }
    reads_back(&store).await;
    drop(store);
    f.remove(place).await;
}
