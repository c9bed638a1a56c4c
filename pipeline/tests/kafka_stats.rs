//! librdkafka's statistics exported as the `courier_kafka_*` gauges, against the
//! real broker (compose/local/up.sh kafka), read from `/metrics`' text as an
//! operator's scraper would. A test binary of its own: the gauges live in the
//! process-wide registry, and the producers of other tests would write the same
//! `client="producer"` series.
//!
//! Skipped (or failed under `CI=true`) when the broker cannot be reached, as in
//! tests/kafka.rs.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use courier_pipeline::log::GroupConsumer;
use courier_pipeline::{EventLog, KafkaLog, Record, TopicPartition, metrics, testing};
use courier_topics::{Catalog, PRESENCE, partition_for_key};

/// The lines of the series of `name` carrying every label of `labels`.
fn series<'a>(
    text: &'a str,
    name: &str,
    labels: &'a [(&str, &str)],
) -> impl Iterator<Item = &'a str> {
    let start = format!("{name}{{");
    text.lines().filter(move |l| {
        l.starts_with(&start)
            && labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
    })
}

/// The value of the first series of `name` carrying `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    series(text, name, labels)
        .next()
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The values of the `label` of every series of `name` carrying `labels`.
fn label_values(text: &str, name: &str, labels: &[(&str, &str)], label: &str) -> Vec<String> {
    let key = format!("{label}=\"");
    series(text, name, labels)
        .filter_map(|l| {
            let rest = &l[l.find(&key)? + key.len()..];
            Some(rest[..rest.find('"')?].to_string())
        })
        .collect()
}

/// Polls the member until `f` holds for the metrics text (the member's own poll
/// serves librdkafka's statistics callback) or 60 s passed.
async fn await_metrics(
    c: &mut Box<dyn GroupConsumer>,
    what: &str,
    f: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = metrics::gather();
        if f(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; /metrics has:\n{}",
            text.lines()
                .filter(|l| l.starts_with("courier_kafka_"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        c.poll(100, Duration::from_millis(50)).await.expect("poll");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_and_a_member_export_what_librdkafka_reports() {
    if testing::KAFKA.reachable().is_none() {
        return;
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let ns = format!("test-stats-{}-{nanos:08x}", std::process::id());
    let settings = |interval_ms: u64| {
        let mut s = testing::kafka_settings(&testing::KAFKA.address()).with_namespace(&ns);
        s.statistics_interval_ms = interval_ms;
        s
    };
    let log = KafkaLog::connect(settings(100), Catalog::builtin())
        .await
        .expect("connect to Kafka");
    // The same namespace without statistics: none of its series may show.
    let quiet = KafkaLog::connect(settings(0), Catalog::builtin())
        .await
        .expect("connect to Kafka");
    let key = "stats";
    let p = partition_for_key(key.as_bytes(), log.partitions(PRESENCE).unwrap());
    let tp = TopicPartition::new(PRESENCE, p);
    let records: Vec<Record> = (0..20)
        .map(|i| Record {
            key: key.as_bytes().to_vec(),
            value: format!("{i}").into_bytes(),
            headers: vec![],
            timestamp_ms: 1_000 + i,
        })
        .collect();
    log.append(PRESENCE, records).await.expect("append");

    let group = "courier.stats";
    let mut c = log
        .subscribe(group, &[PRESENCE.to_string()])
        .await
        .expect("subscribe");
    let mut off = quiet
        .subscribe("courier.stats-off", &[PRESENCE.to_string()])
        .await
        .expect("subscribe");
    let partition = p.to_string();
    let member = [
        ("client", "consumer"),
        ("group", group),
        ("topic", PRESENCE),
        ("partition", partition.as_str()),
    ];

    // Read everything, commit 5: librdkafka's lag is from the commit to the end.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut read = 0;
    while read < 20 {
        assert!(Instant::now() < deadline, "read {read} of 20");
        if let courier_pipeline::log::ConsumerEvent::Records(rs) =
            c.poll(100, Duration::from_millis(100)).await.expect("poll")
        {
            read += rs.len();
        }
        off.poll(100, Duration::ZERO).await.expect("poll");
    }
    c.commit(&[(tp.clone(), 5)]).await.expect("commit");
    await_metrics(&mut c, "consumer lag 15", |t| {
        sample(t, "courier_kafka_consumer_lag_records", &member) == Some(15.0)
    })
    .await;
    c.commit(&[(tp.clone(), 20)]).await.expect("commit");
    let text = await_metrics(&mut c, "consumer lag 0 and the producer's numbers", |t| {
        let producer = [("client", "producer"), ("group", "")];
        sample(t, "courier_kafka_consumer_lag_records", &member) == Some(0.0)
            && sample(
                t,
                "courier_kafka_messages",
                &[producer[0], ("direction", "tx")],
            )
            .is_some_and(|n| n >= 20.0)
            && sample(t, "courier_kafka_broker_rtt_avg_seconds", &producer[..1])
                .is_some_and(|s| s > 0.0)
    })
    .await;

    // Per broker, under its host:port: up, bytes both ways, a round trip.
    let brokers = label_values(
        &text,
        "courier_kafka_broker_up",
        &[("client", "consumer"), ("group", group)],
        "broker",
    );
    assert!(!brokers.is_empty(), "no broker of the member: {text}");
    for b in &brokers {
        let at = [("client", "consumer"), ("group", group), ("broker", b)];
        assert!(b.contains(':') && !b.contains("bootstrap"), "{b}");
        assert_eq!(sample(&text, "courier_kafka_broker_up", &at), Some(1.0));
        for dir in ["tx", "rx"] {
            let n = sample(
                &text,
                "courier_kafka_broker_bytes",
                &[at[0], at[1], at[2], ("direction", dir)],
            );
            assert!(n.is_some_and(|n| n > 0.0), "{b} {dir}: {n:?}");
        }
        for kind in ["tx", "rx", "timeout"] {
            let n = sample(
                &text,
                "courier_kafka_broker_errors",
                &[at[0], at[1], at[2], ("kind", kind)],
            );
            assert!(n.is_some(), "{b} errors {kind}");
        }
        assert!(sample(&text, "courier_kafka_broker_waitresp_requests", &at).is_some());
        assert!(sample(&text, "courier_kafka_broker_outbuf_requests", &at).is_some());
    }
    let consumer = [("client", "consumer"), ("group", group)];
    let received = sample(
        &text,
        "courier_kafka_messages",
        &[consumer[0], consumer[1], ("direction", "rx")],
    );
    assert!(received.is_some_and(|n| n >= 20.0), "{received:?}");
    assert!(sample(&text, "courier_kafka_fetch_queue_messages", &member).is_some());
    assert!(sample(&text, "courier_kafka_group_rebalances", &consumer).is_some_and(|n| n >= 1.0));
    // Every record was acknowledged: nothing waits in the producer's queue.
    assert_eq!(
        sample(
            &text,
            "courier_kafka_queue_messages",
            &[("client", "producer")]
        ),
        Some(0.0)
    );
    assert!(
        !text.contains("courier.stats-off"),
        "a client without statistics exported some: {text}"
    );

    // A member gone takes its series with it.
    c.close().await.expect("close");
    let text = metrics::gather();
    assert!(
        !text.contains(&format!("group=\"{group}\"")),
        "series left behind by a closed member: {text}"
    );
    off.close().await.expect("close");
    drop(quiet);
    log.delete_namespace().await.expect("cleanup");
}
