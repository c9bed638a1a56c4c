//! librdkafka's statistics as Prometheus gauges (`courier_kafka_*`).
//!
//! With `[kafka] statistics_interval_ms` above 0, the producer and every group
//! member get `statistics.interval.ms`; librdkafka then hands a JSON document to
//! the client's context from inside `poll` (the producer's polling thread, the
//! member's own poll), and [`Exporter::export`] sets the gauges from it. Only a
//! subset is exported, with labels that stay few: the client (`producer` or
//! `consumer`), its logical group, the broker (`host:port`), and topic and
//! partition only for what is per partition (the consumer's lag and fetch queue).
//!
//! librdkafka counts its totals (bytes, messages, errors) from the client's
//! start; they are gauges here, not counters, because a client made again (a
//! member rejoining) starts from 0 under the same labels. Each exporter removes
//! the label sets it no longer reports (a partition revoked, a broker gone) and,
//! when its client is dropped, all of its own, so no stale series stays behind.
//! Two clients of one role and group in one process share their series.

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};

use prometheus::{GaugeVec, Opts};
use rdkafka::statistics::{Broker, Statistics};

use super::Names;

/// The gauges, registered once per process in the shared registry.
pub struct KafkaMetrics {
    gauges: Vec<GaugeVec>,
}

/// The gauges, by index into [`KafkaMetrics::gauges`] (the order of [`G::ALL`]).
#[derive(Clone, Copy, Debug)]
enum G {
    QueueMessages,
    QueueBytes,
    Messages,
    BrokerUp,
    BrokerRttAvg,
    BrokerRttP99,
    BrokerOutbuf,
    BrokerWaitresp,
    BrokerBytes,
    BrokerErrors,
    ConsumerLag,
    FetchQueue,
    Rebalances,
}

const CLIENT: &[&str] = &["client", "group"];
const BROKER: &[&str] = &["client", "group", "broker"];
const PARTITION: &[&str] = &["client", "group", "topic", "partition"];

impl G {
    const ALL: [G; 13] = [
        G::QueueMessages,
        G::QueueBytes,
        G::Messages,
        G::BrokerUp,
        G::BrokerRttAvg,
        G::BrokerRttP99,
        G::BrokerOutbuf,
        G::BrokerWaitresp,
        G::BrokerBytes,
        G::BrokerErrors,
        G::ConsumerLag,
        G::FetchQueue,
        G::Rebalances,
    ];

    /// Name, help and labels.
    fn def(self) -> (&'static str, &'static str, &'static [&'static str]) {
        match self {
            G::QueueMessages => (
                "courier_kafka_queue_messages",
                "Messages waiting in the client's queue to be sent or delivered (librdkafka msg_cnt).",
                CLIENT,
            ),
            G::QueueBytes => (
                "courier_kafka_queue_bytes",
                "Bytes of the messages in the client's queue (librdkafka msg_size).",
                CLIENT,
            ),
            G::Messages => (
                "courier_kafka_messages",
                "Messages sent to (direction tx) or received from (rx) the brokers since the client started (txmsgs, rxmsgs).",
                &["client", "group", "direction"],
            ),
            G::BrokerUp => (
                "courier_kafka_broker_up",
                "1 while the client's connection to the broker is up (state UP), else 0.",
                BROKER,
            ),
            G::BrokerRttAvg => (
                "courier_kafka_broker_rtt_avg_seconds",
                "Average round-trip time of the client's requests to the broker over the last statistics interval.",
                BROKER,
            ),
            G::BrokerRttP99 => (
                "courier_kafka_broker_rtt_p99_seconds",
                "99th percentile round-trip time of the client's requests to the broker over the last statistics interval.",
                BROKER,
            ),
            G::BrokerOutbuf => (
                "courier_kafka_broker_outbuf_requests",
                "Requests waiting to be sent to the broker (outbuf_cnt).",
                BROKER,
            ),
            G::BrokerWaitresp => (
                "courier_kafka_broker_waitresp_requests",
                "Requests sent to the broker, awaiting its answer (waitresp_cnt).",
                BROKER,
            ),
            G::BrokerBytes => (
                "courier_kafka_broker_bytes",
                "Bytes sent to (direction tx) or received from (rx) the broker since the client started.",
                &["client", "group", "broker", "direction"],
            ),
            G::BrokerErrors => (
                "courier_kafka_broker_errors",
                "Errors with the broker since the client started: kind tx (send), rx (receive), timeout (requests timed out).",
                &["client", "group", "broker", "kind"],
            ),
            G::ConsumerLag => (
                "courier_kafka_consumer_lag_records",
                "Records between the member's committed offset (else its position) and the partition's end, as librdkafka sees it (consumer_lag); assigned partitions only.",
                PARTITION,
            ),
            G::FetchQueue => (
                "courier_kafka_fetch_queue_messages",
                "Messages fetched for the partition and not yet polled (fetchq_cnt).",
                PARTITION,
            ),
            G::Rebalances => (
                "courier_kafka_group_rebalances",
                "Rebalances the member went through since it started (cgrp rebalance_cnt).",
                CLIENT,
            ),
        }
    }
}

fn build() -> Result<KafkaMetrics, prometheus::Error> {
    let mut gauges = Vec::with_capacity(G::ALL.len());
    for g in G::ALL {
        let (name, help, labels) = g.def();
        let g = GaugeVec::new(Opts::new(name, help), labels)?;
        crate::metrics::register(Box::new(g.clone()))?;
        gauges.push(g);
    }
    Ok(KafkaMetrics { gauges })
}

/// The Kafka statistics gauges, registered on first use (`courier`'s metrics
/// init calls this so `/metrics` names them before any client reported).
pub fn metrics() -> &'static KafkaMetrics {
    static M: OnceLock<KafkaMetrics> = OnceLock::new();
    // Fails only on duplicate or malformed names, which are constants above
    // (unit test).
    M.get_or_init(|| build().expect("Kafka statistics metric definitions are valid"))
}

impl KafkaMetrics {
    fn gauge(&self, g: G) -> &GaugeVec {
        &self.gauges[g as usize]
    }
}

/// One client's statistics → the gauges, under `client` and `group` labels.
pub(crate) struct Exporter {
    client: &'static str,
    /// The logical group; empty for the producer.
    group: String,
    names: Names,
    /// The label sets set by the last export, by gauge.
    exported: Mutex<BTreeSet<(usize, Vec<String>)>>,
}

impl Exporter {
    pub(crate) fn new(client: &'static str, group: &str, names: Names) -> Self {
        Exporter {
            client,
            group: group.to_string(),
            names,
            exported: Mutex::new(BTreeSet::new()),
        }
    }

    /// Sets the gauges from one statistics document and removes the series of
    /// things it no longer mentions.
    pub(crate) fn export(&self, s: &Statistics) {
        let m = metrics();
        let mut now: BTreeSet<(usize, Vec<String>)> = BTreeSet::new();
        let mut set = |g: G, extra: &[&str], value: Option<f64>| {
            let mut labels = vec![self.client.to_string(), self.group.clone()];
            labels.extend(extra.iter().map(|l| l.to_string()));
            let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
            // No value (an empty rtt window): the series stays as it was.
            if let Some(v) = value {
                m.gauge(g).with_label_values(&refs).set(v);
            }
            now.insert((g as usize, labels));
        };
        set(G::QueueMessages, &[], Some(s.msg_cnt as f64));
        set(G::QueueBytes, &[], Some(s.msg_size as f64));
        set(G::Messages, &["tx"], Some(s.txmsgs as f64));
        set(G::Messages, &["rx"], Some(s.rxmsgs as f64));
        for b in s.brokers.values().filter(|b| is_real(b)) {
            let broker = b.nodename.as_str();
            set(G::BrokerUp, &[broker], Some(f64::from(b.state == "UP")));
            // librdkafka's windows are in microseconds; cnt 0: no request in it.
            if let Some(rtt) = b.rtt.as_ref() {
                let sampled = rtt.cnt > 0;
                set(
                    G::BrokerRttAvg,
                    &[broker],
                    sampled.then(|| rtt.avg as f64 / 1e6),
                );
                set(
                    G::BrokerRttP99,
                    &[broker],
                    sampled.then(|| rtt.p99 as f64 / 1e6),
                );
            }
            set(G::BrokerOutbuf, &[broker], Some(b.outbuf_cnt as f64));
            set(G::BrokerWaitresp, &[broker], Some(b.waitresp_cnt as f64));
            set(G::BrokerBytes, &[broker, "tx"], Some(b.txbytes as f64));
            set(G::BrokerBytes, &[broker, "rx"], Some(b.rxbytes as f64));
            set(G::BrokerErrors, &[broker, "tx"], Some(b.txerrs as f64));
            set(G::BrokerErrors, &[broker, "rx"], Some(b.rxerrs as f64));
            set(
                G::BrokerErrors,
                &[broker, "timeout"],
                Some(b.req_timeouts as f64),
            );
        }
        if self.client == "consumer" {
            for t in s.topics.values() {
                // Another namespace's topic cannot be here; a topic outside the
                // catalog keeps its Kafka name.
                let topic = self.names.logical(&t.topic).unwrap_or(&t.topic);
                // Partition -1 is librdkafka's internal "unassigned" queue;
                // `desired` marks the partitions this member was assigned.
                for p in t.partitions.values().filter(|p| p.partition >= 0) {
                    if !p.desired {
                        continue;
                    }
                    let partition = p.partition.to_string();
                    let at = [topic, partition.as_str()];
                    // -1: not known yet (no committed offset nor end fetched).
                    set(
                        G::ConsumerLag,
                        &at,
                        (p.consumer_lag >= 0).then_some(p.consumer_lag as f64),
                    );
                    set(G::FetchQueue, &at, Some(p.fetchq_cnt as f64));
                }
            }
            if let Some(cgrp) = &s.cgrp {
                set(G::Rebalances, &[], Some(cgrp.rebalance_cnt as f64));
            }
        }
        let mut exported = self.exported.lock().unwrap_or_else(|e| e.into_inner());
        for (g, labels) in exported.difference(&now) {
            remove(m, *g, labels);
        }
        *exported = now;
    }
}

/// A broker of the cluster, not a bootstrap entry (`nodeid` -1) nor one of
/// librdkafka's logical brokers (the group coordinator's alias, `source`
/// `logical`), whose numbers the real broker's already count.
fn is_real(b: &Broker) -> bool {
    b.nodeid >= 0 && b.source != "logical" && b.source != "internal"
}

fn remove(m: &KafkaMetrics, g: usize, labels: &[String]) {
    let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
    // A series set with no value yet (an empty window) was never created.
    let _ = m.gauges[g].remove_label_values(&refs);
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let m = metrics();
        let exported = self.exported.get_mut().unwrap_or_else(|e| e.into_inner());
        for (g, labels) in exported.iter() {
            remove(m, *g, labels);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::G;

    #[test]
    fn every_gauge_registers_under_its_name_at_its_index() {
        let m = super::metrics();
        assert_eq!(m.gauges.len(), G::ALL.len());
        let names = crate::metrics::registered_names();
        for (i, g) in G::ALL.into_iter().enumerate() {
            assert_eq!(g as usize, i, "{g:?} out of place in G::ALL");
            let (name, _, _) = g.def();
            assert!(names.contains(name), "{name} not registered");
        }
    }
}
