//! The inbox processor folding a generated stream into each view store, beside
//! writing the very same rows straight into the same store, in the same run.
//!
//! `cargo test -p courier-sinks --bench inbox -- --bench [--groups G --members M --per P --rounds R]`
//! (without `--bench`: a tiny smoke run; `cargo bench` for the release profile).
//!
//! - embedded: `InboxProcessor` under the runner on the embedded log, views in
//!   RocksDB, vs. the baseline of `RocksInboxStore::write` of every batch the
//!   processor wrote (recorded as it ran) into a fresh store: the same rows,
//!   states and checkpoints, with no log, no fold and no state loading.
//! - Kafka + Cassandra (when both are reachable, see `courier_pipeline::testing`):
//!   the same on real Kafka with views in a fresh Cassandra keyspace, vs. the
//!   recorded batches written by `CassandraInboxStore::write` into another fresh
//!   keyspace.
//!
//! Stream: G conversations of M members each (`conversation_created`), then P
//! events per conversation interleaved: three in four `message_sent`, one in four
//! a read receipt of the latest message by the next member. Events/s count every
//! event of the stream, on both sides. courier's clock starts when the processor
//! first asks the store for states (its first batch), so joining the group and
//! seeking are not counted; it stops when the run returned (caught up, committed).

// The courier binary's allocator (see src/main.rs): measure what it runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use courier_pipeline::config::RunnerConfig;
use courier_pipeline::runner::{RunOptions, run};
use courier_pipeline::shutdown::Shutdown;
use courier_pipeline::{EmbeddedLog, EventLog, KafkaLog, producer};
use courier_processors::inbox::InboxProcessor;
use courier_processors::inbox::store::{ConversationRows, InboxBatch, InboxStore};
use courier_processors::inbox::{ConversationState, InboxRow};
use courier_processors::store::StoreError;
use courier_schemas::{Event, json};
use courier_sinks::inbox::cassandra::{self, CassandraSettings};
use courier_sinks::inbox::{CassandraInboxStore, RocksInboxStore, baseline};
use courier_topics::Catalog;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn stream(groups: usize, members: usize, per: usize) -> Vec<Event> {
    let at = 1_764_000_000_000_i64;
    let mut lines = Vec::new();
    for c in 0..groups {
        let m: Vec<String> = (0..members)
            .map(|k| format!("\"u{}\"", c * members + k))
            .collect();
        lines.push(format!(
            r#"{{"type":"conversation_created","event_id":"cc{c}","conversation_id":"c{c}","kind":"group","creator_id":"u{}","member_ids":[{}],"title":"","at_ms":{at}}}"#,
            c * members,
            m.join(",")
        ));
    }
    for i in 0..per {
        for c in 0..groups {
            let at = at + 1 + i as i64;
            let user = |k: usize| format!("u{}", c * members + k % members);
            if i % 4 == 3 {
                lines.push(format!(
                    r#"{{"type":"receipt","event_id":"r{c}_{i}","conversation_id":"c{c}","message_id":"m{c}_{}","user_id":"{}","status":"read","at_ms":{at}}}"#,
                    i - 1,
                    user(i + 1)
                ));
            } else {
                lines.push(format!(
                    r#"{{"type":"message_sent","event_id":"e{c}_{i}","conversation_id":"c{c}","message_id":"m{c}_{i}","sender_id":"{}","text":"see you at the station at {} o'clock","at_ms":{at}}}"#,
                    user(i),
                    i % 24
                ));
            }
        }
    }
    lines.iter().map(|l| json::parse_line(l).unwrap()).collect()
}

/// A store that keeps a copy of every batch written through it: the baseline
/// writes exactly these.
struct Recording<S> {
    inner: S,
    batches: Arc<Mutex<Vec<InboxBatch>>>,
    /// When the first batch began.
    first: Arc<Mutex<Option<Instant>>>,
}

#[async_trait]
impl<S: InboxStore> InboxStore for Recording<S> {
    async fn checkpoint(&self, partition: u32) -> Result<Option<u64>, StoreError> {
        self.inner.checkpoint(partition).await
    }
    async fn load_states(
        &self,
        conversations: &[String],
    ) -> Result<Vec<Option<ConversationState>>, StoreError> {
        self.first.lock().unwrap().get_or_insert_with(Instant::now);
        self.inner.load_states(conversations).await
    }
    async fn write(&mut self, batch: &InboxBatch) -> Result<(), StoreError> {
        self.batches.lock().unwrap().push(batch.clone());
        self.inner.write(batch).await
    }
    async fn inbox_rows(&self, user: &str) -> Result<Vec<InboxRow>, StoreError> {
        self.inner.inbox_rows(user).await
    }
    async fn conversation_rows(&self, conversation: &str) -> Result<ConversationRows, StoreError> {
        self.inner.conversation_rows(conversation).await
    }
}

fn opts(group: &str) -> RunOptions {
    RunOptions {
        processor: "inbox".into(),
        group: group.into(),
        topics: vec![courier_topics::CONVERSATIONS.into()],
        until_caught_up: true,
        runner: RunnerConfig::default(),
    }
}

/// Events/s of the processor under the runner into `store`, and the batches it wrote.
async fn fold<S: InboxStore>(
    log: Arc<dyn EventLog>,
    store: S,
    group: &str,
    events: usize,
) -> (f64, Vec<InboxBatch>) {
    let batches = Arc::new(Mutex::new(Vec::new()));
    let first = Arc::new(Mutex::new(None));
    let mut p = InboxProcessor::new(
        Recording {
            inner: store,
            batches: batches.clone(),
            first: first.clone(),
        },
        log.clone(),
    );
    let stats = run(log, &mut p, opts(group), Shutdown::never())
        .await
        .unwrap();
    let started = first.lock().unwrap().expect("a batch ran");
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(stats.records, events as u64, "every event applied");
    let recorded = std::mem::take(&mut *batches.lock().unwrap());
    (events as f64 / secs, recorded)
}

/// Events/s of writing `batches` straight into `store` (the same events counted).
async fn raw<S: InboxStore>(mut store: S, batches: &[InboxBatch], events: usize) -> f64 {
    let written = baseline::write(&mut store, batches).await.unwrap();
    events as f64 / written.elapsed.as_secs_f64()
}

fn report(what: &str, rows: u64, batches: usize, courier: f64, baseline: f64) {
    println!(
        "{what}: {rows} rows in {batches} batches | baseline raw store writes {baseline:.0} events/s | courier run inbox {courier:.0} events/s | ratio {:.2}",
        courier / baseline
    );
}

fn rows(batches: &[InboxBatch]) -> u64 {
    batches.iter().map(baseline::rows).sum()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    courier_pipeline::alloc::tune();
    let measuring = std::env::args().any(|a| a == "--bench");
    let groups = arg("--groups", if measuring { 1_000 } else { 10 });
    let members = arg("--members", 5);
    let per = arg("--per", if measuring { 20 } else { 4 });
    let events = stream(groups, members, per);
    let n = events.len();
    println!(
        "inbox bench: {groups} conversations of {members} members, {per} events each after creation: {n} events"
    );

    let rounds = arg("--rounds", if measuring { 2 } else { 1 });

    // Embedded: the embedded log, views in RocksDB. Rounds alternate courier and
    // baseline, each into a fresh store (courier: in a fresh group).
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(
        EmbeddedLog::open(
            &dir.path().join("log"),
            Catalog::builtin(),
            Default::default(),
        )
        .unwrap(),
    );
    producer::publish(&*log, &events).await.unwrap();
    for r in 0..rounds {
        let store = RocksInboxStore::open(&dir.path().join(format!("views{r}"))).unwrap();
        let group = format!("bench.inbox.{r}");
        let (courier, batches) = fold(log.clone(), store, &group, n).await;
        let fresh = RocksInboxStore::open(&dir.path().join(format!("raw{r}"))).unwrap();
        let baseline = raw(fresh, &batches, n).await;
        let what = format!("embedded round {r}");
        report(&what, rows(&batches), batches.len(), courier, baseline);
    }

    // Kafka + Cassandra.
    let (Some(brokers), Some(contact)) = (
        courier_pipeline::testing::KAFKA.reachable(),
        courier_pipeline::testing::CASSANDRA.reachable(),
    ) else {
        return;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let namespace = format!("bi_{}_{nanos}", std::process::id());
    let log = Arc::new(
        KafkaLog::new(
            courier_pipeline::testing::kafka_settings(&brokers).with_namespace(namespace.clone()),
            Catalog::builtin(),
        )
        .unwrap(),
    );
    producer::publish(&*log, &events).await.unwrap();
    let mut keyspaces = Vec::new();
    for r in 0..rounds {
        // Over TLS and logged in as compose/local's courier.env says.
        let views = courier_sinks::testing::secured(CassandraSettings::new(
            &contact,
            format!("{namespace}_v{r}"),
        ));
        let raw_ks = courier_sinks::testing::secured(CassandraSettings::new(
            &contact,
            format!("{namespace}_r{r}"),
        ));
        cassandra::migrate(&views).await.unwrap();
        cassandra::migrate(&raw_ks).await.unwrap();
        keyspaces.extend([views.clone(), raw_ks.clone()]);
        let store = CassandraInboxStore::open(&views).await.unwrap();
        let dyn_log: Arc<dyn EventLog> = log.clone();
        let group = format!("bench.inbox.{r}");
        let (courier, batches) = fold(dyn_log, store, &group, n).await;
        let fresh = CassandraInboxStore::open(&raw_ks).await.unwrap();
        let baseline = raw(fresh, &batches, n).await;
        let what = format!("kafka+cassandra round {r}");
        report(&what, rows(&batches), batches.len(), courier, baseline);
    }

    // Leave the shared servers as we found them.
    log.delete_namespace().await.unwrap();
    for ks in keyspaces {
        cassandra::drop_keyspace(&ks).await.unwrap();
    }
}
