//! The Kafka backend against a real broker (compose/local/up.sh kafka): the EventLog
//! conformance suite, namespace isolation, topic drift reports, the explicit
//! murmur2 partitioning, and the broker's refusal of clients without TLS or
//! without credentials.
//!
//! The broker is `127.0.0.1:9092` unless `COURIER_TEST_KAFKA` names another, reached
//! with the TLS and SCRAM login up.sh wrote for it (`testing::kafka_settings`). When
//! it cannot be reached, each test fails under `CI=true` and otherwise prints
//! "skipping: Kafka not reachable …" and passes. Every test uses fresh namespaces
//! and deletes their topics at the end.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use courier_pipeline::conformance::{LogFactory, LogHandle};
use courier_pipeline::kafka::{Drift, TopicAction};
use courier_pipeline::{EventLog, KafkaLog, KafkaSettings, Record, testing};
use courier_topics::{CONVERSATIONS, Catalog, PRESENCE, partition_for_key};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

fn brokers() -> String {
    testing::KAFKA.address()
}

/// The broker with the TLS and login compose/local/up.sh wrote for it.
fn settings() -> KafkaSettings {
    testing::kafka_settings(&brokers())
}

/// A raw librdkafka client config for the broker, logged in as `settings`.
fn client_config() -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers());
    for (k, v) in &settings().properties {
        c.set(k, v);
    }
    c
}

/// Whether the broker answers; panics under CI when it does not.
fn kafka_available() -> bool {
    testing::KAFKA.reachable().is_some()
}

/// A namespace no other test or run uses.
fn fresh_namespace() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "test-{}-{}-{nanos:08x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn connect(namespace: &str) -> KafkaLog {
    KafkaLog::connect(settings().with_namespace(namespace), Catalog::builtin())
        .await
        .expect("connect to Kafka")
}

struct Kafka {
    namespace: String,
    log: Option<Arc<dyn EventLog>>,
}

#[async_trait]
impl LogHandle for Kafka {
    fn log(&self) -> Arc<dyn EventLog> {
        self.log.clone().expect("log is open")
    }

    async fn restart(&mut self) {
        let log = self.log.take().expect("log is open");
        assert_eq!(
            Arc::strong_count(&log),
            1,
            "every other handle to the log was dropped"
        );
        drop(log);
        self.log = Some(Arc::new(connect(&self.namespace).await));
    }
}

/// Hands out logs in fresh namespaces and remembers them; `cleanup` deletes their
/// topics at the end of a test (a failed test leaves them: `down.sh --wipe`).
#[derive(Default)]
struct KafkaFactory {
    namespaces: Mutex<Vec<String>>,
}

fn connect_lazy(namespace: &str) -> KafkaLog {
    KafkaLog::new(settings().with_namespace(namespace), Catalog::builtin()).expect("kafka clients")
}

#[async_trait]
impl LogFactory for KafkaFactory {
    async fn fresh(&self) -> Box<dyn LogHandle> {
        let namespace = fresh_namespace();
        self.namespaces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(namespace.clone());
        let log: Arc<dyn EventLog> = Arc::new(connect(&namespace).await);
        Box::new(Kafka {
            namespace,
            log: Some(log),
        })
    }

    async fn cleanup(&self) {
        let namespaces =
            std::mem::take(&mut *self.namespaces.lock().unwrap_or_else(|p| p.into_inner()));
        for ns in namespaces {
            if let Err(e) = connect_lazy(&ns).delete_namespace().await {
                eprintln!("warning: could not delete the topics of namespace {ns}: {e}");
            }
        }
    }
}

// The EventLog conformance suite on Kafka, one test per check, so they run side
// by side and fail separately; skipped (or failed under CI) without a broker.
courier_pipeline::event_log_conformance!(KafkaFactory::default(), skip_unless = kafka_available());

fn rec(key: &str, value: &str, ts: i64) -> Record {
    Record {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        headers: vec![("courier-test".into(), b"1".to_vec())],
        timestamp_ms: ts,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_do_not_see_each_other() {
    if !kafka_available() {
        return;
    }
    let (ns_a, ns_b) = (fresh_namespace(), fresh_namespace());
    let a = connect(&ns_a).await;
    let b = connect(&ns_b).await;
    assert_eq!(
        a.kafka_topic(CONVERSATIONS),
        format!("{ns_a}.{CONVERSATIONS}")
    );
    assert_eq!(
        a.kafka_group("courier.inbox"),
        format!("{ns_a}.courier.inbox")
    );

    let key = "conv-iso";
    let appended = a
        .append(
            CONVERSATIONS,
            vec![rec(key, "only in a", 1_764_000_000_000)],
        )
        .await
        .expect("append");
    let p = appended[0].partition;
    let got = a
        .read(CONVERSATIONS, p, 0, 10, Duration::from_secs(10))
        .await
        .expect("read a");
    assert_eq!(got.len(), 1);
    assert_eq!(
        &*got[0].topic, CONVERSATIONS,
        "records carry the logical topic name"
    );
    assert_eq!(got[0].value, &b"only in a"[..]);
    assert_eq!(
        b.watermarks(CONVERSATIONS, p).await.expect("watermarks b"),
        (0, 0),
        "b's topic is empty"
    );
    assert!(
        b.read(CONVERSATIONS, p, 0, 10, Duration::from_millis(300))
            .await
            .expect("read b")
            .is_empty()
    );

    // Groups are namespaced too: a commit in a's group is not b's.
    let mut c = a
        .subscribe("iso", &[CONVERSATIONS.to_string()])
        .await
        .expect("subscribe");
    let tp = courier_pipeline::TopicPartition::new(CONVERSATIONS, p);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !c.assignment().contains(&tp) {
        assert!(
            std::time::Instant::now() < deadline,
            "the member never got {tp}"
        );
        c.poll(10, Duration::from_millis(200)).await.expect("poll");
    }
    c.commit(&[(tp.clone(), 1)]).await.expect("commit");
    c.close().await.expect("close");
    assert_eq!(
        a.committed("iso", CONVERSATIONS)
            .await
            .expect("committed a")[p as usize],
        Some(1)
    );
    assert_eq!(
        b.committed("iso", CONVERSATIONS)
            .await
            .expect("committed b")[p as usize],
        None
    );

    a.delete_namespace().await.expect("delete a");
    b.delete_namespace().await.expect("delete b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_topics_creates_missing_and_reports_drift_without_touching_data() {
    if !kafka_available() {
        return;
    }
    let ns = fresh_namespace();
    // Someone created the conversations topic by hand, wrongly: 3 partitions, compacted.
    let admin: AdminClient<DefaultClientContext> = client_config().create().expect("admin client");
    let wrong = format!("{ns}.{CONVERSATIONS}");
    let res = admin
        .create_topics(
            &[NewTopic::new(&wrong, 3, TopicReplication::Fixed(1))
                .set("cleanup.policy", "compact")],
            &AdminOptions::new(),
        )
        .await
        .expect("create topic");
    assert!(res.iter().all(Result::is_ok), "{res:?}");

    let log = connect_lazy(&ns);
    let reports = log.apply_topics(Catalog::builtin()).await.expect("apply");
    let conv = reports
        .iter()
        .find(|r| r.topic == CONVERSATIONS)
        .expect("conversations reported");
    assert_eq!(conv.action, TopicAction::Existing);
    assert_eq!(conv.kafka_topic, wrong);
    assert!(
        conv.drift.contains(&Drift::Partitions {
            expected: 12,
            actual: 3
        }),
        "{:?}",
        conv.drift
    );
    assert!(
        conv.drift.contains(&Drift::Cleanup {
            expected: "delete".into(),
            actual: "compact".into()
        }),
        "{:?}",
        conv.drift
    );
    let presence = reports
        .iter()
        .find(|r| r.topic == PRESENCE)
        .expect("presence reported");
    assert_eq!(presence.action, TopicAction::Created);
    assert!(
        presence.is_ok(),
        "a created topic matches the catalog: {:?}",
        presence.drift
    );

    // The log refuses to write to a topic with another partition count: keys would
    // land elsewhere than every other client puts them.
    let err = log
        .append(CONVERSATIONS, vec![rec("k", "v", 1)])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&wrong) && err.contains("3 partitions") && err.contains("12"),
        "{err}"
    );

    // A second apply creates nothing, still reports the drift, and left the topic alone.
    let again = log
        .apply_topics(Catalog::builtin())
        .await
        .expect("apply again");
    assert!(again.iter().all(|r| r.action == TopicAction::Existing));
    assert_eq!(
        again
            .iter()
            .filter(|r| !r.is_ok())
            .map(|r| r.topic.as_str())
            .collect::<Vec<_>>(),
        [CONVERSATIONS]
    );
    let md = {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let c: BaseConsumer = client_config().create().expect("client");
        c.fetch_metadata(Some(&wrong), Duration::from_secs(10))
            .expect("metadata")
    };
    assert_eq!(
        md.topics()[0].partitions().len(),
        3,
        "apply never changes an existing topic"
    );

    let _ = admin
        .delete_topics(&[wrong.as_str()], &AdminOptions::new())
        .await;
    log.delete_namespace().await.expect("delete namespace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_land_on_the_murmur2_partition_with_headers_and_timestamps() {
    if !kafka_available() {
        return;
    }
    let ns = fresh_namespace();
    let log = connect(&ns).await;
    let n = log.partitions(CONVERSATIONS).expect("partitions");
    // Where the Java client puts these keys over 12 partitions (`BuiltInPartitioner`,
    // see courier-topics' tests), then more keys checked against `partition_for_key`.
    let java: [(&str, u32); 4] = [
        ("1039-36302-36840-2-9f138052", 4),
        ("1182-07205-22440-2-0ad4507d", 9),
        ("1388-20023-36900-2-c9985f66", 0),
        ("599999", 3),
    ];
    let keys: Vec<String> = java
        .iter()
        .map(|(k, _)| k.to_string())
        .chain((0..40).map(|i| format!("conversation-{i}")))
        .collect();
    let records: Vec<Record> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Record {
            key: k.as_bytes().to_vec(),
            value: format!("v{i}").into_bytes(),
            headers: vec![
                ("courier-schema".into(), b"courier.v1.Event".to_vec()),
                ("trace".into(), vec![]),
            ],
            timestamp_ms: 1_764_000_000_000 + i as i64,
        })
        .collect();
    let appended = log.append(CONVERSATIONS, records).await.expect("append");
    for ((k, want), a) in java.iter().zip(&appended) {
        assert_eq!(
            a.partition, *want,
            "{k} lands where the Java client puts it"
        );
    }
    for (i, (k, a)) in keys.iter().zip(&appended).enumerate() {
        assert_eq!(a.partition, partition_for_key(k.as_bytes(), n), "{k}");
        let got = log
            .read(
                CONVERSATIONS,
                a.partition,
                a.offset,
                1,
                Duration::from_secs(10),
            )
            .await
            .expect("read");
        let r = got
            .first()
            .unwrap_or_else(|| panic!("{k} is at {}[{}]@{}", CONVERSATIONS, a.partition, a.offset));
        assert_eq!(
            r.key,
            k.as_bytes(),
            "the record at the reported offset is {k}'s"
        );
        assert_eq!(r.header("courier-schema"), Some(&b"courier.v1.Event"[..]));
        assert_eq!(
            r.header("trace"),
            Some(&b""[..]),
            "empty header values survive"
        );
        assert_eq!(
            r.timestamp_ms,
            1_764_000_000_000 + i as i64,
            "record time is the event time"
        );
    }
    let spread: std::collections::BTreeSet<u32> = appended.iter().map(|a| a.partition).collect();
    assert!(
        spread.len() > 5,
        "40 keys spread over many partitions: {spread:?}"
    );
    log.delete_namespace().await.expect("delete namespace");
}

/// The runner on Kafka: a processor's checkpoint returned from `on_assigned` is
/// sought right after the `Assigned` event (before librdkafka's fetcher started),
/// the records of that partition start exactly there, the run ends once caught up,
/// and the group's offsets end at the high watermarks. Lag is known locally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_seeks_right_after_assignment_and_catches_up() {
    use courier_pipeline::config::RunnerConfig;
    use courier_pipeline::runner::{self, Handler, HandlerError, RunOptions};
    use courier_pipeline::{ConsumedRecord, ConsumerEvent, TopicPartition};

    if !kafka_available() {
        return;
    }
    let ns = fresh_namespace();
    let log: Arc<dyn EventLog> = Arc::new(connect(&ns).await);
    let n = log.partitions(CONVERSATIONS).expect("partitions");
    let key = "checkpointed";
    let p = partition_for_key(key.as_bytes(), n);
    let tp = TopicPartition::new(CONVERSATIONS, p);
    let mut records: Vec<Record> = (0..50)
        .map(|i| rec(key, &format!("{i}"), 1_000 + i))
        .collect();
    records.extend((0..30).map(|i| rec(&format!("other-{i}"), "x", 2_000 + i)));
    log.append(CONVERSATIONS, records).await.expect("append");
    // Some `other-*` keys may share the partition: its end is what the log says.
    let (_, high_p) = log.watermarks(CONVERSATIONS, p).await.expect("watermarks");
    let mut total = 0;
    for q in 0..n {
        total += log
            .watermarks(CONVERSATIONS, q)
            .await
            .expect("watermarks")
            .1;
    }

    // A bare member first: seek at once after `Assigned`, lag before reading.
    let mut c = log
        .subscribe("seek-now", &[CONVERSATIONS.to_string()])
        .await
        .expect("subscribe");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(std::time::Instant::now() < deadline, "never assigned");
        if let ConsumerEvent::Assigned(tps) =
            c.poll(100, Duration::from_millis(200)).await.expect("poll")
            && tps.contains(&tp)
        {
            break;
        }
    }
    c.seek(&tp, 20).await.expect("seek right after Assigned");
    assert_eq!(c.position(&tp), Some(20));
    let lag: std::collections::BTreeMap<_, _> = c.lag().into_iter().collect();
    assert_eq!(
        lag.get(&tp),
        Some(&(high_p - 20)),
        "lag from the sought position, without reading"
    );
    let mut offsets = Vec::new();
    while (offsets.len() as u64) < high_p - 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "read only {offsets:?}"
        );
        if let ConsumerEvent::Records(rs) =
            c.poll(100, Duration::from_millis(200)).await.expect("poll")
        {
            offsets.extend(rs.iter().filter(|r| r.partition == p).map(|r| r.offset));
        }
    }
    assert_eq!(
        offsets,
        (20..high_p).collect::<Vec<u64>>(),
        "the partition restarts exactly at the seek"
    );
    assert_eq!(
        c.lag().into_iter().find(|(t, _)| *t == tp).map(|(_, l)| l),
        Some(0)
    );
    c.close().await.expect("close");

    // The runner, with a processor that keeps its own checkpoint for one partition.
    struct Checkpointed {
        tp: TopicPartition,
        applied: Vec<(u32, u64)>,
    }
    #[async_trait]
    impl Handler for Checkpointed {
        async fn on_assigned(
            &mut self,
            tps: &[TopicPartition],
        ) -> Result<Vec<(TopicPartition, u64)>, HandlerError> {
            Ok(tps
                .iter()
                .filter(|t| **t == self.tp)
                .map(|t| (t.clone(), 40))
                .collect())
        }
        async fn handle(&mut self, batch: &[ConsumedRecord]) -> Result<(), HandlerError> {
            self.applied
                .extend(batch.iter().map(|r| (r.partition, r.offset)));
            Ok(())
        }
    }
    let mut h = Checkpointed {
        tp: tp.clone(),
        applied: Vec::new(),
    };
    let opts = RunOptions {
        processor: "test".into(),
        group: "runner".into(),
        topics: vec![CONVERSATIONS.to_string()],
        until_caught_up: true,
        runner: RunnerConfig {
            max_batch: 7,
            poll_timeout_ms: 100,
            max_attempts: 3,
        },
    };
    let stats = tokio::time::timeout(
        Duration::from_secs(120),
        runner::run(
            log.clone(),
            &mut h,
            opts,
            courier_pipeline::shutdown::Shutdown::never(),
        ),
    )
    .await
    .expect("the runner catches up")
    .expect("run");
    assert_eq!(
        stats.records,
        total - 40,
        "everything but what the checkpoint covers"
    );
    let from_checkpoint: Vec<u64> = h
        .applied
        .iter()
        .filter(|(q, _)| *q == p)
        .map(|(_, o)| *o)
        .collect();
    assert_eq!(from_checkpoint, (40..high_p).collect::<Vec<u64>>());
    let committed = log
        .committed("runner", CONVERSATIONS)
        .await
        .expect("committed");
    for q in 0..n {
        let (_, high) = log.watermarks(CONVERSATIONS, q).await.expect("watermarks");
        if high > 0 {
            assert_eq!(
                committed[q as usize],
                Some(high),
                "partition {q} committed to the end"
            );
        }
    }
    drop(log);
    connect_lazy(&ns)
        .delete_namespace()
        .await
        .expect("delete namespace");
}

/// Groups as Kafka's coordinator has them: a live member with its client id,
/// host and assignment (logical names), committed offsets; moving the offsets
/// is refused while the member lives, and takes effect for the next member
/// once it has left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_show_their_members_and_offsets_move_only_while_empty() {
    use courier_pipeline::{LogError, TopicPartition};

    if !kafka_available() {
        return;
    }
    let ns = fresh_namespace();
    let log: Arc<dyn EventLog> = Arc::new(connect(&ns).await);
    let key = "grouped";
    let p = partition_for_key(key.as_bytes(), log.partitions(PRESENCE).unwrap());
    let tp = TopicPartition::new(PRESENCE, p);
    log.append(
        PRESENCE,
        (0..10)
            .map(|i| rec(key, &format!("{i}"), 1_000 + i))
            .collect(),
    )
    .await
    .expect("append");
    let group = "courier.tools";

    let member = |log: Arc<dyn EventLog>| async move {
        let mut c = log
            .subscribe(group, &[PRESENCE.to_string()])
            .await
            .expect("subscribe");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !c.assignment().contains(&TopicPartition::new(PRESENCE, p)) {
            assert!(std::time::Instant::now() < deadline, "never assigned");
            c.poll(10, Duration::from_millis(200)).await.expect("poll");
        }
        c
    };
    let mut c = member(log.clone()).await;
    c.commit(&[(tp.clone(), 7)]).await.expect("commit");

    // The coordinator may describe the member before it has its assignment.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let d = loop {
        let d = log.describe_group(group).await.expect("describe");
        if d.members.len() == 1 && d.members[0].assignment.contains(&tp) {
            break d;
        }
        assert!(std::time::Instant::now() < deadline, "described as {d:?}");
        // The member's own poll is the wait: it answers the rebalance and
        // heartbeats until the coordinator has the assignment.
        c.poll(10, Duration::from_millis(200)).await.expect("poll");
    };
    assert_eq!(d.group, group, "logical name");
    assert_eq!(d.state, "Stable");
    let m = &d.members[0];
    assert_eq!(m.client_id, format!("courier-{ns}-group"));
    assert!(!m.host.is_empty() && !m.host.starts_with('/'), "{m:?}");
    let mut owned = c.assignment();
    owned.sort();
    let mut described = m.assignment.clone();
    described.sort();
    assert_eq!(described, owned);
    assert!(d.committed.contains(&(tp.clone(), 7)), "{:?}", d.committed);
    assert!(
        log.groups()
            .await
            .expect("groups")
            .contains(&group.to_string())
    );

    let err = log
        .reset_committed(group, &[(tp.clone(), 2)])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LogError::GroupNotEmpty { members, .. } if members.len() == 1),
        "{err}"
    );
    assert!(err.to_string().contains(&m.member_id), "{err}");

    c.close().await.expect("close");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !log
        .describe_group(group)
        .await
        .expect("describe")
        .members
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the member never left"
        );
        // Each describe is a round trip to the group coordinator: no pause.
    }
    log.reset_committed(group, &[(tp.clone(), 2)])
        .await
        .expect("reset an empty group");
    assert_eq!(
        log.committed(group, PRESENCE).await.expect("committed")[p as usize],
        Some(2)
    );
    let d = log.describe_group(group).await.expect("describe");
    assert_eq!(d.state, "Empty");
    assert!(d.committed.contains(&(tp.clone(), 2)));

    // The next member starts where the reset put the group.
    let c = member(log.clone()).await;
    assert_eq!(c.position(&tp), Some(2));
    c.close().await.expect("close");
    connect_lazy(&ns).delete_namespace().await.expect("cleanup");
}

/// A secured broker (compose/local's default: one SASL_SSL listener) serves only a
/// client that speaks TLS, trusts the broker's CA and logs in with the right SCRAM
/// password: a plaintext client, one without credentials, one with a wrong password
/// and one trusting another CA all fail to connect, and fail fast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_client_or_one_without_credentials_is_refused() {
    if !kafka_available() {
        return;
    }
    let good = settings();
    let secured = good.properties.get("security.protocol").map(String::as_str) == Some("SASL_SSL");
    if !secured {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true and the Kafka at {} is not SASL_SSL: compose/local/up.sh starts it \
             secured unless COURIER_LOCAL_PLAINTEXT=1",
            brokers()
        );
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!(
                "skipping: the Kafka at {} is plaintext (COURIER_LOCAL_PLAINTEXT=1)\n",
                brokers()
            )
            .as_bytes(),
        );
        return;
    }
    // The control: the right settings get in.
    KafkaLog::connect(
        good.clone().with_namespace(fresh_namespace()),
        Catalog::builtin(),
    )
    .await
    .expect("the secured settings connect")
    .delete_namespace()
    .await
    .expect("delete");

    let dir = tempfile::tempdir().unwrap();
    let other_ca = dir.path().join("other-ca.pem");
    // A CA of another deployment (a well-formed certificate that signed nothing here).
    std::fs::write(&other_ca, OTHER_CA).unwrap();
    let with = |changes: &[(&str, Option<&str>)]| {
        let mut s = good.clone().with_namespace(fresh_namespace());
        for (k, v) in changes {
            match v {
                Some(v) => s.properties.insert(k.to_string(), v.to_string()),
                None => s.properties.remove(*k),
            };
        }
        s
    };
    let other_ca = other_ca.display().to_string();
    let cases = [
        (
            "a plaintext client",
            with(&[
                ("security.protocol", None),
                ("sasl.mechanism", None),
                ("sasl.username", None),
                ("sasl.password", None),
                ("ssl.ca.location", None),
            ]),
        ),
        (
            "TLS without credentials",
            with(&[
                ("security.protocol", Some("SSL")),
                ("sasl.mechanism", None),
                ("sasl.username", None),
                ("sasl.password", None),
            ]),
        ),
        (
            "a wrong password",
            with(&[("sasl.password", Some("not-the-password"))]),
        ),
        (
            "a CA that did not sign the broker's certificate",
            with(&[("ssl.ca.location", Some(&other_ca))]),
        ),
    ];
    for (what, settings) in cases {
        let started = std::time::Instant::now();
        let e = KafkaLog::connect(settings, Catalog::builtin())
            .await
            .err()
            .unwrap_or_else(|| panic!("{what}: the broker let it in"));
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what}: refused only after {:?}",
            started.elapsed()
        );
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("{what}: refused: {e}\n").as_bytes(),
        );
    }
}

/// A self-signed CA certificate (P-256, its key discarded) that signed nothing of
/// compose/local's.
const OTHER_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBmDCCAT2gAwIBAgIUT15ykSZSRShZ3QiN8hMyPWuUII4wCgYIKoZIzj0EAwIw
IDEeMBwGA1UEAwwVYW5vdGhlciBkZXBsb3ltZW50IENBMCAXDTI2MTIwNzEzMjIw
MloYDzIxMjYxMTEzMTMyMjAyWjAgMR4wHAYDVQQDDBVhbm90aGVyIGRlcGxveW1l
bnQgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASs+UyEj3brfL1HSYfl/FJE
xQLwKH+JgBSTgA5fQeb9e3xSyuUn9M3npfkSSHFOgtxqBS1oXDEa9fz0CYDdy4Iv
o1MwUTAdBgNVHQ4EFgQU5muvdMEjBUoLJiAy6YCEdDfXKPEwHwYDVR0jBBgwFoAU
5muvdMEjBUoLJiAy6YCEdDfXKPEwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQD
AgNJADBGAiEA23Xs6bZlOWs3wQQofdNytfqT1fzmGrcSSOHjoP4jDrUCIQCFLxJB
ZRV765tK4t2A43ekJucBnqF1rIfk/Uo/BBetrg==
-----END CERTIFICATE-----
";

/// A static member the coordinator fences (a broker restart can leave it
/// holding another member id for the same `group.instance.id`; fencing is
/// fatal to a librdkafka client) joins again with a new client and hands what
/// it owned out as revoked, instead of ending the processor. Fenced again
/// soon after, it is not an outage but a second process with its id: then an
/// error that says so. Two members with one id make both happen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_static_member_joins_again_once_then_names_the_duplicate_id() {
    use courier_pipeline::{ConsumerEvent, LogError};

    if !kafka_available() {
        return;
    }
    let ns = fresh_namespace();
    let mut s = settings().with_namespace(&ns);
    s.instance_id = Some("twin".into());
    let open = || async {
        Arc::new(
            KafkaLog::connect(s.clone(), Catalog::builtin())
                .await
                .expect("connect"),
        ) as Arc<dyn EventLog>
    };
    let (log_a, log_b) = (open().await, open().await);
    let topics = [PRESENCE.to_string()];
    let mut a = log_a.subscribe("courier.twins", &topics).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while a.assignment().is_empty() {
        assert!(std::time::Instant::now() < deadline, "a never assigned");
        a.poll(10, Duration::from_millis(200))
            .await
            .expect("poll a");
    }
    let owned = a.assignment();
    // b takes the id: the coordinator fences a.
    let mut b = log_b.subscribe("courier.twins", &topics).await.unwrap();
    let mut revoked_from_a = None;
    let (who, error) = 'fencing: loop {
        assert!(
            std::time::Instant::now() < deadline + Duration::from_secs(60),
            "no member was fenced twice"
        );
        for (name, c) in [("a", &mut a), ("b", &mut b)] {
            match c.poll(10, Duration::from_millis(200)).await {
                Ok(ConsumerEvent::Revoked(tps)) if name == "a" && revoked_from_a.is_none() => {
                    revoked_from_a = Some(tps);
                }
                Ok(_) => {}
                Err(e) => break 'fencing (name, e),
            }
        }
    };
    // The first fencing was ridden out: a handed its partitions out as
    // revoked (and joined again) rather than failing.
    assert_eq!(
        revoked_from_a.as_deref(),
        Some(&owned[..]),
        "a's first fencing: {who} failed with {error}"
    );
    // The second, within a minute of joining again, names the cause.
    assert!(matches!(error, LogError::Fatal { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("another consumer with group.instance.id \"twin\"")
            && text.contains("--instance-id twin"),
        "{who}: {text}"
    );
}
