//! The contract every [`SentStore`] must meet, as checks each backend runs
//! through [`sent_store_conformance!`](crate::sent_store_conformance) (RocksDB
//! in `sinks`).
//!
//! A record's version is the time it was made (`now_ms` of
//! [`SentStore::put`]), and expiry counts from the newest record of a job: a
//! job recorded again (a redelivery that raced the first record, a dead letter
//! sent again) is remembered until its *latest* record expires, and a record
//! older than the stored one (a delivery that finished on a clock behind)
//! never replaces it — neither its outcome nor its time. Otherwise the store
//! would forget a job early and a replay of the topic inside the retention
//! would send it twice.

use std::collections::BTreeMap;

use super::{Done, SentStore};

/// Hands out stores for the checks: each check takes a new place, opens a store
/// there, and may drop it and open the place again, as a restarted process would.
pub trait SentStoreFactory {
    /// Where one store keeps its data (a directory).
    type Place;
    /// The store under test.
    type Store: SentStore + 'static;

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

/// One `#[test]` per check for a [`SentStore`] backend, in a module
/// `sent_store_conformance` that sees the invoking module's items; `$factory`
/// (a [`SentStoreFactory`]) is evaluated afresh in each test.
///
/// ```ignore
/// courier_processors::sent_store_conformance!(RocksFactory);
/// ```
#[macro_export]
macro_rules! sent_store_conformance {
    (@tests $factory:expr; $($check:ident),+ $(,)?) => {
        mod sent_store_conformance {
            // The factory is the invoking module's.
            #[allow(unused_imports)]
            use super::*;

            $(
                #[test]
                fn $check() {
                    $crate::push::conformance::$check(&$factory);
                }
            )+
        }
    };
    ($factory:expr $(,)?) => {
        // The list of checks: every backend runs exactly these.
        $crate::sent_store_conformance!(@tests $factory;
            an_unknown_job_is_not_done,
            done_jobs_survive_a_reopen,
            expiry_forgets_the_jobs_recorded_before_the_time,
            concurrent_records_are_all_kept,
            a_job_recorded_again_is_kept_until_its_latest_record_expires,
            an_older_record_never_replaces_a_newer_one,
        );
    };
}

/// A store nothing was written to knows no job, and expires nothing.
pub fn an_unknown_job_is_not_done<F: SentStoreFactory>(f: &F) {
    let place = f.place();
    let store = f.open(&place);
    assert_eq!(store.get("job-1").unwrap(), None);
    assert_eq!(store.expire(i64::MAX).unwrap(), 0);
    drop(store);
    f.remove(place);
}

/// What a job ended as is kept across a reopen; ids are exact.
pub fn done_jobs_survive_a_reopen<F: SentStoreFactory>(f: &F) {
    let place = f.place();
    {
        let store = f.open(&place);
        store.put("a", Done::Sent, 100).unwrap();
        store.put("b", Done::DeadLettered, 200).unwrap();
        store.put("a1", Done::DeadLettered, -5).unwrap();
    }
    let store = f.open(&place);
    assert_eq!(store.get("a").unwrap(), Some(Done::Sent));
    assert_eq!(store.get("b").unwrap(), Some(Done::DeadLettered));
    assert_eq!(store.get("a1").unwrap(), Some(Done::DeadLettered));
    assert_eq!(store.get("z").unwrap(), None);
    assert_eq!(store.get("").unwrap(), None);
    drop(store);
    f.remove(place);
}

/// `expire(t)` forgets exactly the jobs recorded before `t` (negative times
/// too), says how many, and forgets nothing twice.
pub fn expiry_forgets_the_jobs_recorded_before_the_time<F: SentStoreFactory>(f: &F) {
    let place = f.place();
    let store = f.open(&place);
    store.put("early", Done::Sent, -50).unwrap();
    store.put("a", Done::Sent, 100).unwrap();
    store.put("b", Done::DeadLettered, 200).unwrap();
    store.put("c", Done::Sent, 300).unwrap();
    assert_eq!(store.expire(-50).unwrap(), 0, "before, not at");
    assert_eq!(store.expire(201).unwrap(), 3);
    for gone in ["early", "a", "b"] {
        assert_eq!(store.get(gone).unwrap(), None, "{gone} expired");
    }
    assert_eq!(store.get("c").unwrap(), Some(Done::Sent));
    assert_eq!(store.expire(201).unwrap(), 0, "nothing twice");
    drop(store);
    let store = f.open(&place);
    assert_eq!(store.get("c").unwrap(), Some(Done::Sent), "after a reopen");
    assert_eq!(store.expire(301).unwrap(), 1);
    drop(store);
    f.remove(place);
}

/// Deliveries record jobs side by side on one shared store: every record is
/// kept.
pub fn concurrent_records_are_all_kept<F: SentStoreFactory>(f: &F) {
    let place = f.place();
    let store = std::sync::Arc::new(f.open(&place));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    store.put(&format!("t{t}-{i}"), Done::Sent, i).unwrap();
                    // Every thread also records one job all of them share.
                    store.put("shared", Done::Sent, 1_000 + i).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a recording thread");
    }
    for t in 0..4 {
        for i in 0..50 {
            assert_eq!(store.get(&format!("t{t}-{i}")).unwrap(), Some(Done::Sent));
        }
    }
    assert_eq!(
        store.expire(1_049).unwrap(),
        200,
        "every thread's jobs, not the shared one (recorded last at 1049)"
    );
    assert_eq!(store.get("shared").unwrap(), Some(Done::Sent));
    assert_eq!(store.expire(1_050).unwrap(), 1);
    drop(store);
    f.remove(place);
}

/// A job recorded at 100 and again at 500 is still done after an expiry that
/// would have forgotten the first record alone; it goes with its latest.
pub fn a_job_recorded_again_is_kept_until_its_latest_record_expires<F: SentStoreFactory>(f: &F) {
    let place = f.place();
    let store = f.open(&place);
    store.put("a", Done::DeadLettered, 100).unwrap();
    store.put("a", Done::Sent, 500).unwrap();
    store.put("b", Done::Sent, 150).unwrap();
    assert_eq!(store.expire(200).unwrap(), 1, "only b");
    assert_eq!(
        store.get("a").unwrap(),
        Some(Done::Sent),
        "a was recorded at 500"
    );
    assert_eq!(store.get("b").unwrap(), None);
    drop(store);
    let store = f.open(&place);
    assert_eq!(store.expire(500).unwrap(), 0, "after a reopen too");
    assert_eq!(store.get("a").unwrap(), Some(Done::Sent));
    assert_eq!(store.expire(501).unwrap(), 1);
    assert_eq!(store.get("a").unwrap(), None);
    drop(store);
    f.remove(place);
}

/// A record older than the stored one changes nothing: the job keeps the
/// outcome and the time of its newer record.
pub fn an_older_record_never_replaces_a_newer_one<F: SentStoreFactory>(f: &F) {
    let place = f.place();
    let store = f.open(&place);
    let newer: BTreeMap<&str, (Done, i64)> =
        [("a", (Done::Sent, 500)), ("b", (Done::DeadLettered, 400))].into();
    for (id, (done, at)) in &newer {
        store.put(id, *done, *at).unwrap();
    }
    store.put("a", Done::DeadLettered, 100).unwrap();
    store.put("b", Done::Sent, 399).unwrap();
    for (id, (done, _)) in &newer {
        assert_eq!(
            store.get(id).unwrap(),
            Some(*done),
            "{id} keeps its outcome"
        );
    }
    assert_eq!(store.expire(400).unwrap(), 0, "each kept its newer time");
    assert_eq!(store.get("b").unwrap(), Some(Done::DeadLettered));
    assert_eq!(store.expire(401).unwrap(), 1, "b, recorded at 400");
    assert_eq!(store.get("a").unwrap(), Some(Done::Sent));
    assert_eq!(store.expire(501).unwrap(), 1, "a, recorded at 500");
    drop(store);
    f.remove(place);
}
