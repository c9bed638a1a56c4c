//! The Cassandra inbox store against a real Apache Cassandra: the port's
//! conformance suite — with its stale-version checks, since this store writes a
//! batch's rows apart from its states — migrations, and the node's refusal of a
//! client without TLS or without the password.
//!
//! Needs a node at `COURIER_TEST_CASSANDRA` (default 127.0.0.1:9042; start one with
//! `compose/local/up.sh cassandra`), reached with the TLS and login up.sh wrote
//! for it (`courier_sinks::testing`). When it cannot be reached, each test fails
//! under `CI=true` and otherwise prints "skipping: Cassandra not reachable …" and
//! passes. Every test works in a fresh keyspace and drops it at the end.

use async_trait::async_trait;
use courier_pipeline::testing;
use std::io::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use courier_processors::inbox::store::conformance::InboxStoreFactory;
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
    courier_sinks::testing::secured(CassandraSettings::new(&contact_points(), ks))
}

async fn drop_keyspace(settings: &CassandraSettings) {
    let session = cassandra::connect(settings).await.unwrap();
    session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", settings.keyspace), ())
        .await
        .unwrap();
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

/// Each check in a fresh, migrated keyspace, dropped once the check passed.
struct CassandraFactory;

#[async_trait]
impl InboxStoreFactory for CassandraFactory {
    type Place = CassandraSettings;
    type Store = CassandraInboxStore;
    async fn place(&self) -> CassandraSettings {
        let settings = fresh_settings();
        cassandra::migrate(&settings).await.unwrap();
        settings
    }
    async fn open(&self, settings: &CassandraSettings) -> CassandraInboxStore {
        CassandraInboxStore::open(settings).await.unwrap()
    }
    async fn remove(&self, settings: CassandraSettings) {
        drop_keyspace(&settings).await;
    }
}

courier_processors::inbox_store_conformance!(
    CassandraFactory,
    writes = rows_then_states,
    skip_unless = cassandra_available()
);

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

/// A secured node (compose/local's default) lets in only a client that speaks TLS,
/// trusts the node's CA and logs in with the right password: without a login,
/// with a wrong password, in plaintext or trusting another CA, connecting fails.
#[tokio::test]
async fn a_client_without_tls_or_the_password_is_refused() {
    if !cassandra_available() {
        return;
    }
    let good = fresh_settings();
    let Some(login) = good.credentials.clone().filter(|_| good.tls.is_some()) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true and the Cassandra at {} has no TLS or login: compose/local/up.sh starts \
             it secured unless COURIER_LOCAL_PLAINTEXT=1",
            contact_points()
        );
        let _ = writeln!(
            std::io::stderr(),
            "skipping: the Cassandra at {} is plaintext (COURIER_LOCAL_PLAINTEXT=1)",
            contact_points()
        );
        return;
    };
    // The control: the right settings get in.
    cassandra::connect(&good).await.unwrap();

    // A CA of another deployment, which signed nothing of this node's.
    let dir = tempfile::tempdir().unwrap();
    let other_ca = dir.path().join("other-ca.pem");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    std::fs::write(&other_ca, params.self_signed(&key).unwrap().pem()).unwrap();

    // What each refusal says, in the driver's words.
    let refused = [
        (
            "no login",
            CassandraSettings {
                credentials: None,
                ..good.clone()
            },
        ),
        (
            "a wrong password",
            CassandraSettings {
                credentials: Some(cassandra::Credentials {
                    username: login.username.clone(),
                    password: courier_pipeline::secret::Secret::new("not-the-password"),
                }),
                ..good.clone()
            },
        ),
        (
            "plaintext",
            CassandraSettings {
                tls: None,
                ..good.clone()
            },
        ),
        (
            "another CA",
            CassandraSettings {
                tls: Some(cassandra::CassandraTls {
                    ca_file: Some(other_ca),
                }),
                ..good.clone()
            },
        ),
    ];
    let reasons = [
        "Authentication is required".to_string(),
        format!(
            "Provided username {} and/or password are incorrect",
            login.username
        ),
        "Connection reset by peer".to_string(),
        "UnknownIssuer".to_string(),
    ];
    for ((what, settings), reason) in refused.into_iter().zip(reasons) {
        let e = cassandra::connect(&settings)
            .await
            .err()
            .unwrap_or_else(|| panic!("{what}: the node let the client in"))
            .to_string();
        assert!(
            e.contains(&reason),
            "{what}: refused, but not for {reason}: {e}"
        );
    }
}
