//! The Cassandra inbox store against a real Apache Cassandra: the port's
//! conformance suite, migrations, and idempotent versioned writes.
//!
//! Needs a node at `COURIER_TEST_CASSANDRA` (default 127.0.0.1:9042; start one with
//! `compose/local/up.sh cassandra`). When it cannot be reached, each test fails
//! under `CI=true` and otherwise prints "skipping: Cassandra not reachable …" and
//! passes. Every test works in a fresh keyspace and drops it at the end.

use courier_pipeline::testing;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use courier_processors::inbox::store::{InboxBatch, InboxStore, Versioned, conformance};
use courier_processors::inbox::{Content, MessageRow, ParticipantRow, Position, Span};
use courier_sinks::inbox::cassandra::{self, CassandraSettings};
use courier_sinks::inbox::{CassandraInboxStore, cql};

fn contact_points() -> String {
    testing::CASSANDRA.address()
}

/// Whether Cassandra answers; panics under CI when it does not.
fn cassandra_available() -> bool {
    testing::CASSANDRA.reachable().is_some()
}

/// Settings of a keyspace no other test or run uses.
fn fresh_settings() -> CassandraSettings {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let ks = format!(
        "courier_test_{}_{}_{nanos:08x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    CassandraSettings::new(&contact_points(), ks)
}

async fn drop_keyspace(settings: &CassandraSettings) {
    let session = cassandra::connect(settings).await.unwrap();
    session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", settings.keyspace), ())
        .await
        .unwrap();
}

async fn migrated_store(settings: &CassandraSettings) -> CassandraInboxStore {
    cassandra::migrate(settings).await.unwrap();
    CassandraInboxStore::open(settings).await.unwrap()
}

async fn tables(settings: &CassandraSettings) -> Vec<String> {
    let session = cassandra::connect(settings).await.unwrap();
    let mut t: Vec<String> = session
        .query_unpaged(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?",
            (settings.keyspace.as_str(),),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .rows::<(String,)>()
        .unwrap()
        .map(|r| r.unwrap().0)
        .collect();
    t.sort();
    t
}

#[tokio::test]
async fn meets_the_port_contract() {
    if !cassandra_available() {
        return;
    }
    let settings = fresh_settings();
    let mut s = migrated_store(&settings).await;
    conformance::empty(&s).await;
    conformance::write_stream(&mut s, 4).await;
    conformance::reads_back(&s).await;
    // A second connection reads the same.
    let other = CassandraInboxStore::open(&settings).await.unwrap();
    conformance::reads_back(&other).await;
    // The whole stream again (a redelivery after a crash) changes nothing.
    conformance::write_stream(&mut s, 3).await;
    conformance::reads_back(&s).await;
    drop_keyspace(&settings).await;

    // One event per batch gives the same views.
    let settings = fresh_settings();
    let mut one = migrated_store(&settings).await;
    conformance::write_stream(&mut one, 1).await;
    conformance::reads_back(&one).await;
    drop_keyspace(&settings).await;
}

#[tokio::test]
async fn migrations_are_recorded_and_safe_to_rerun() {
    if !cassandra_available() {
        return;
    }
    let settings = fresh_settings();
    // Not migrated: opening says what to do.
    let e = CassandraInboxStore::open(&settings)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("run `courier migrate`"), "{e}");

    let first = cassandra::migrate(&settings).await.unwrap();
    assert_eq!(
        first.iter().map(|m| m.version).collect::<Vec<_>>(),
        cql::MIGRATIONS
            .iter()
            .map(|m| m.version)
            .collect::<Vec<_>>()
    );
    let after_first = tables(&settings).await;
    assert_eq!(
        after_first,
        [
            "checkpoints",
            "conversation_states",
            "inbox",
            "message_days",
            "messages",
            "participants",
            "schema_migrations",
            "view_generations"
        ]
    );
    let second = cassandra::migrate(&settings).await.unwrap();
    assert!(second.is_empty(), "the rerun applied {second:?}");
    assert_eq!(tables(&settings).await, after_first);
    CassandraInboxStore::open(&settings).await.unwrap();
    drop_keyspace(&settings).await;
}

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

fn message(version: u64, text: &str) -> Versioned<MessageRow> {
    Versioned {
        version: Position::new(0, version),
        row: MessageRow {
            conversation_id: "c1".into(),
            message_id: "m1".into(),
            sender_id: "u1".into(),
            content: Some(Content::Text(text.into())),
            // Two days after the epoch: its own history bucket.
            sent_at_ms: 2 * 86_400_000 + 5,
            edited: version > 2,
            deleted: false,
            position: Position::new(0, 2),
        },
    }
}

#[tokio::test]
async fn an_older_version_never_replaces_a_newer_one() {
    if !cassandra_available() {
        return;
    }
    let settings = fresh_settings();
    let mut s = migrated_store(&settings).await;
    let newer = InboxBatch {
        messages: vec![message(7, "edited")],
        participants: vec![participant(7, 7)],
        checkpoints: vec![(0, 8)],
        ..InboxBatch::default()
    };
    let older = InboxBatch {
        messages: vec![message(2, "original")],
        participants: vec![participant(3, 3)],
        checkpoints: vec![(0, 4)],
        ..InboxBatch::default()
    };
    // The same batch twice: one row, as written.
    s.write(&newer).await.unwrap();
    s.write(&newer).await.unwrap();
    let rows = s.conversation_rows("c1").await.unwrap();
    assert_eq!(rows.participants, [participant(7, 7).row]);
    assert_eq!(rows.messages, [message(7, "edited").row]);
    assert_eq!(s.checkpoint(0).await.unwrap(), Some(8));
    // An older version after the newer (a stale owner, a replay): ignored.
    s.write(&older).await.unwrap();
    let rows = s.conversation_rows("c1").await.unwrap();
    assert_eq!(rows.participants, [participant(7, 7).row]);
    assert_eq!(rows.messages, [message(7, "edited").row]);
    assert_eq!(s.checkpoint(0).await.unwrap(), Some(8));
    // A newer one still wins.
    s.write(&InboxBatch {
        participants: vec![participant(9, 9)],
        ..InboxBatch::default()
    })
    .await
    .unwrap();
    let rows = s.conversation_rows("c1").await.unwrap();
    assert_eq!(rows.participants, [participant(9, 9).row]);
    drop_keyspace(&settings).await;
}
