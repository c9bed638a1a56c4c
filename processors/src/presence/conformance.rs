//! The contract every [`PresenceStore`] must meet, as checks each backend runs
//! through [`presence_store_conformance!`](crate::presence_store_conformance)
//! (RocksDB in `sinks`).
//!
//! The order a presence store keeps is the log's, not the clocks': a user's
//! latest row is the one written last (their events share one partition, and
//! the processor writes them in log order, skipping what the stored checkpoint
//! says was applied), and `last_seen_ms` is only what that event said. So a
//! later write carrying an *older* `last_seen_ms` (a client or gateway clock
//! that went back) must replace the row; a store that kept the newest time
//! instead would show a status the log has since overruled.

use super::{PresenceRow, PresenceStore, Status};

/// Hands out stores for the checks: each check takes a new place, opens a store
/// there, and may drop it and open the place again, as a restarted process would.
pub trait PresenceStoreFactory {
    /// Where one store keeps its data (a directory).
    type Place;
    /// The store under test.
    type Store: PresenceStore;

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

/// One `#[test]` per check for a [`PresenceStore`] backend, in a module
/// `presence_store_conformance` that sees the invoking module's items;
/// `$factory` (a [`PresenceStoreFactory`]) is evaluated afresh in each test.
///
/// ```ignore
/// courier_processors::presence_store_conformance!(RocksFactory);
/// ```
#[macro_export]
macro_rules! presence_store_conformance {
    (@tests $factory:expr; $($check:ident),+ $(,)?) => {
        mod presence_store_conformance {
            // The factory is the invoking module's.
            #[allow(unused_imports)]
            use super::*;

            $(
                #[test]
                fn $check() {
                    $crate::presence::conformance::$check(&$factory);
                }
            )+
        }
    };
    ($factory:expr $(,)?) => {
        // The list of checks: every backend runs exactly these.
        $crate::presence_store_conformance!(@tests $factory;
            a_new_store_knows_nothing,
            rows_and_checkpoints_read_back_and_survive_a_reopen,
            rows_and_checkpoints_are_written_apart_when_given_apart,
            a_later_write_wins_even_with_an_older_last_seen,
        );
    };
}

fn row(user: &str, status: Status, last_seen_ms: i64) -> PresenceRow {
    PresenceRow {
        user_id: user.into(),
        status,
        last_seen_ms,
    }
}

/// A store nothing was written to knows no user and no checkpoint.
pub fn a_new_store_knows_nothing<F: PresenceStoreFactory>(f: &F) {
    let place = f.place();
    let store = f.open(&place);
    for p in 0..4 {
        assert_eq!(store.checkpoint(p).unwrap(), None, "checkpoint of {p}");
    }
    assert_eq!(store.get("u1").unwrap(), None);
    drop(store);
    f.remove(place);
}

/// Rows and checkpoints of a write read back, after a reopen too; ids are
/// exact (`u1` is neither `u` nor `u10`) and any `i64` time is kept.
pub fn rows_and_checkpoints_read_back_and_survive_a_reopen<F: PresenceStoreFactory>(f: &F) {
    let place = f.place();
    let rows = [
        row("u1", Status::Online, -7),
        row("u10", Status::Offline, i64::MAX),
        row("u2", Status::Offline, 1_764_000_000_000),
    ];
    let mut store = f.open(&place);
    store.write(&rows, &[(3, 11), (0, 2)]).unwrap();
    for _reopened in [false, true] {
        for r in &rows {
            assert_eq!(store.get(&r.user_id).unwrap().as_ref(), Some(r));
        }
        assert_eq!(store.get("u").unwrap(), None, "no prefix match");
        assert_eq!(store.get("u3").unwrap(), None);
        assert_eq!(store.checkpoint(3).unwrap(), Some(11));
        assert_eq!(store.checkpoint(0).unwrap(), Some(2));
        assert_eq!(store.checkpoint(1).unwrap(), None);
        drop(store);
        store = f.open(&place);
    }
    drop(store);
    f.remove(place);
}

/// A batch whose records were all rejected writes only its checkpoint; rows
/// written without checkpoints leave them as they were.
pub fn rows_and_checkpoints_are_written_apart_when_given_apart<F: PresenceStoreFactory>(f: &F) {
    let place = f.place();
    let mut store = f.open(&place);
    store
        .write(&[row("u1", Status::Online, 5)], &[(1, 4)])
        .unwrap();
    store.write(&[], &[(1, 9)]).unwrap();
    assert_eq!(store.checkpoint(1).unwrap(), Some(9));
    assert_eq!(store.get("u1").unwrap(), Some(row("u1", Status::Online, 5)));
    store.write(&[row("u1", Status::Offline, 6)], &[]).unwrap();
    assert_eq!(store.checkpoint(1).unwrap(), Some(9));
    assert_eq!(
        store.get("u1").unwrap(),
        Some(row("u1", Status::Offline, 6))
    );
    drop(store);
    f.remove(place);
}

/// Log order, not `last_seen_ms`, decides: a later write replaces a user's row
/// whatever its time, and a write about other users leaves it alone.
pub fn a_later_write_wins_even_with_an_older_last_seen<F: PresenceStoreFactory>(f: &F) {
    let place = f.place();
    let mut store = f.open(&place);
    store
        .write(&[row("u1", Status::Online, 1_000)], &[(0, 1)])
        .unwrap();
    // The next event of u1 in the log, stamped by a clock that went back.
    store
        .write(&[row("u1", Status::Offline, 400)], &[(0, 2)])
        .unwrap();
    store
        .write(&[row("u2", Status::Online, 2_000)], &[(0, 3)])
        .unwrap();
    for _reopened in [false, true] {
        assert_eq!(
            store.get("u1").unwrap(),
            Some(row("u1", Status::Offline, 400)),
            "the later event of u1 wins over its earlier time"
        );
        assert_eq!(
            store.get("u2").unwrap(),
            Some(row("u2", Status::Online, 2_000))
        );
        assert_eq!(store.checkpoint(0).unwrap(), Some(3));
        drop(store);
        store = f.open(&place);
    }
    drop(store);
    f.remove(place);
}
