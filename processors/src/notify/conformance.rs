//! The contract every [`NotifyStore`] must meet, as checks each backend runs
//! through [`notify_store_conformance!`](crate::notify_store_conformance)
//! (RocksDB in `sinks`).
//!
//! What the port promises is an atomic write of states and checkpoints, each
//! read back exactly as written last; the notifier itself never writes an older
//! state (it skips records at or below the stored checkpoint), so the store
//! promises no version order of its own and these checks hold it to none.
//! What they do hold it to: a state reads back byte for byte however it was
//! split for storage — a long conversation stored many times, edited and
//! deleted in messages stored long before — and a newer state replaces all of
//! the older one.

use super::NotifyStore;
use crate::inbox::{ConversationState, Position, apply};
use courier_schemas::json::parse_line;

/// Hands out stores for the checks: each check takes a new place, opens a store
/// there, and may drop it and open the place again, as a restarted process would.
pub trait NotifyStoreFactory {
    /// Where one store keeps its data (a directory).
    type Place;
    /// The store under test.
    type Store: NotifyStore;

    /// A new, empty place.
    fn place(&self) -> Self::Place;

    /// Opens the store at `place`: after the previous store there was dropped,
    /// this is a restart.
    fn open(&self, place: &Self::Place) -> Self::Store;

    /// Removes a place once its check passed; by default, drops it.
    fn remove(&self, place: Self::Place) {
        drop(place);
    }
}

/// One `#[test]` per check for a [`NotifyStore`] backend, in a module
/// `notify_store_conformance` that sees the invoking module's items;
/// `$factory` (a [`NotifyStoreFactory`]) is evaluated afresh in each test.
///
/// ```ignore
/// courier_processors::notify_store_conformance!(RocksFactory);
/// ```
#[macro_export]
macro_rules! notify_store_conformance {
    (@tests $factory:expr; $($check:ident),+ $(,)?) => {
        mod notify_store_conformance {
            // The factory is the invoking module's.
            #[allow(unused_imports)]
            use super::*;

            $(
                #[test]
                fn $check() {
                    $crate::notify::conformance::$check(&$factory);
                }
            )+
        }
    };
    ($factory:expr $(,)?) => {
        // The list of checks: every backend runs exactly these.
        $crate::notify_store_conformance!(@tests $factory;
            a_new_store_knows_nothing,
            states_and_checkpoints_read_back_and_survive_a_reopen,
            a_long_conversation_reads_back_as_it_is,
            a_newer_state_replaces_the_older_one,
        );
    };
}

/// The bytes of a state: two states are the same if these are.
fn encoded(s: &ConversationState) -> Vec<u8> {
    let mut out = Vec::new();
    s.encode_into(&mut out);
    out
}

/// Asserts that `store` holds `want` for its conversation.
fn assert_holds<S: NotifyStore>(store: &S, want: &ConversationState, what: &str) {
    let got = store
        .load_states(&[want.conversation_id().to_owned()])
        .unwrap()
        .remove(0)
        .unwrap_or_else(|| panic!("no state of {} {what}", want.conversation_id()));
    assert_eq!(
        got.applied_offset(),
        want.applied_offset(),
        "applied offset of {} {what}",
        want.conversation_id()
    );
    assert_eq!(
        encoded(&got),
        encoded(want),
        "state of {} {what}",
        want.conversation_id()
    );
}

/// A conversation's state folded from canonical JSON lines on partition 0,
/// from offset `first`.
struct Folding {
    state: ConversationState,
    next: u64,
}

impl Folding {
    fn new(conversation: &str, first: u64) -> Self {
        Folding {
            state: ConversationState::new(conversation),
            next: first,
        }
    }

    fn fold(&mut self, line: &str) {
        let outcome = apply(
            &mut self.state,
            &parse_line(line).expect("a valid line"),
            Position::new(0, self.next),
        );
        self.next += 1;
        assert!(outcome.rejection().is_none(), "{line}");
    }

    fn created(conversation: &str, first: u64) -> Self {
        let mut f = Folding::new(conversation, first);
        f.fold(&format!(
            r#"{{"type":"conversation_created","event_id":"{conversation}-e0","conversation_id":"{conversation}","kind":"group","creator_id":"u1","member_ids":["u1","u2"],"title":"","at_ms":1}}"#
        ));
        f
    }

    fn send(&mut self, i: usize) {
        let c = self.state.conversation_id().to_owned();
        self.fold(&format!(
            r#"{{"type":"message_sent","event_id":"{c}-m{i}","conversation_id":"{c}","message_id":"m{i}","sender_id":"u{}","text":"x","at_ms":{}}}"#,
            1 + i % 2,
            10 + i
        ));
    }

    /// Writes the state with its checkpoint, then marks it written, as the
    /// notifier does once the store acknowledged.
    fn store<S: NotifyStore>(&mut self, store: &mut S) {
        store
            .write(std::slice::from_ref(&self.state), &[(0, self.next)])
            .unwrap();
        self.state.mark_written();
    }
}

/// A store nothing was written to knows no state and no checkpoint.
pub fn a_new_store_knows_nothing<F: NotifyStoreFactory>(f: &F) {
    let place = f.place();
    let store = f.open(&place);
    assert_eq!(store.checkpoint(0).unwrap(), None);
    let got = store.load_states(&["c1".into()]).unwrap();
    assert!(got[0].is_none());
    drop(store);
    f.remove(place);
}

/// States and checkpoints of writes read back, after a reopen too; `c1` is not
/// confused with `c10`, and a conversation never written is `None` in its
/// place among the answers.
pub fn states_and_checkpoints_read_back_and_survive_a_reopen<F: NotifyStoreFactory>(f: &F) {
    let place = f.place();
    let mut store = f.open(&place);
    let empty = ConversationState::new("c2");
    let mut c1 = Folding::created("c1", 0);
    c1.send(1);
    let c10 = Folding::created("c10", 5);
    store
        .write(&[c1.state.clone(), c10.state.clone()], &[(2, 9)])
        .unwrap();
    store
        .write(std::slice::from_ref(&empty), &[(4, 1)])
        .unwrap();
    for reopened in [false, true] {
        let what = if reopened { "after a reopen" } else { "" };
        assert_eq!(store.checkpoint(2).unwrap(), Some(9), "{what}");
        assert_eq!(store.checkpoint(4).unwrap(), Some(1), "{what}");
        assert_eq!(store.checkpoint(0).unwrap(), None, "{what}");
        let got = store
            .load_states(&["c10".into(), "c3".into(), "c1".into(), "c2".into()])
            .unwrap();
        assert!(got[1].is_none(), "c3 was never written {what}");
        assert_eq!(
            got.iter()
                .map(|s| s.as_ref().map(|s| s.conversation_id().to_owned()))
                .collect::<Vec<_>>(),
            [
                Some("c10".into()),
                None,
                Some("c1".into()),
                Some("c2".into())
            ],
            "{what}"
        );
        assert_holds(&store, &c1.state, what);
        assert_holds(&store, &c10.state, what);
        assert_holds(&store, &empty, what);
        drop(store);
        store = f.open(&place);
    }
    drop(store);
    f.remove(place);
}

/// A conversation of hundreds of messages, stored after every hundred, then
/// after an edit and a delete of messages stored long before, reads back as it
/// is — after a reopen too.
pub fn a_long_conversation_reads_back_as_it_is<F: NotifyStoreFactory>(f: &F) {
    let place = f.place();
    let mut store = f.open(&place);
    let mut c1 = Folding::created("c1", 0);
    for i in 0..600 {
        c1.send(i);
        if i % 100 == 99 {
            c1.store(&mut store);
            assert_holds(&store, &c1.state, &format!("after {} messages", i + 1));
        }
    }
    c1.fold(r#"{"type":"message_edited","event_id":"x1","conversation_id":"c1","message_id":"m5","editor_id":"u2","text":"y","at_ms":700}"#);
    c1.fold(r#"{"type":"message_deleted","event_id":"x2","conversation_id":"c1","message_id":"m300","actor_id":"u1","at_ms":701}"#);
    c1.store(&mut store);
    assert_holds(&store, &c1.state, "after an edit and a delete");
    drop(store);
    let store = f.open(&place);
    assert_holds(&store, &c1.state, "after a reopen");
    let back = store
        .load_states(&["c1".into()])
        .unwrap()
        .remove(0)
        .unwrap();
    assert_eq!(back.message_count(), 600);
    assert_eq!(store.checkpoint(0).unwrap(), Some(603));
    drop(store);
    f.remove(place);
}

/// A newer state of a conversation replaces all of the older one, and its
/// checkpoint the older checkpoint; other conversations keep theirs.
pub fn a_newer_state_replaces_the_older_one<F: NotifyStoreFactory>(f: &F) {
    let place = f.place();
    let mut store = f.open(&place);
    let mut c1 = Folding::created("c1", 0);
    let c2 = Folding::created("c2", 100);
    store.write(std::slice::from_ref(&c2.state), &[]).unwrap();
    c1.send(0);
    c1.store(&mut store);
    let older = c1.state.clone();
    for i in 1..300 {
        c1.send(i);
    }
    c1.store(&mut store);
    assert_ne!(encoded(&older), encoded(&c1.state));
    for _reopened in [false, true] {
        assert_holds(&store, &c1.state, "after a newer state");
        assert_holds(&store, &c2.state, "beside c1");
        assert_eq!(store.checkpoint(0).unwrap(), Some(c1.next));
        drop(store);
        store = f.open(&place);
    }
    drop(store);
    f.remove(place);
}
