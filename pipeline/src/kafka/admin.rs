//! Topic administration on Kafka: create the catalog's missing topics, and report how
//! existing ones differ from the catalog without ever changing them (their data and
//! their partition count are other people's contract too).

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use courier_topics::{Catalog, TopicSpec};
use rdkafka::admin::{AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::consumer::Consumer;
use rdkafka::error::RDKafkaErrorCode;

use super::{Inner, OP_TIMEOUT, blocking};
use crate::log::LogError;

/// How long a newly created topic may take to show up with leaders for every
/// partition.
const CREATE_PATIENCE: Duration = Duration::from_secs(30);

/// What `apply_topics` did with one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicAction {
    /// It did not exist and was created from the catalog.
    Created,
    /// It existed and was left as it is.
    Existing,
}

/// One way an existing topic differs from the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// Another partition count: keys land elsewhere than the catalog promises.
    Partitions {
        /// The catalog's count.
        expected: u32,
        /// Kafka's.
        actual: u32,
    },
    /// Another `cleanup.policy`.
    Cleanup {
        /// The catalog's policy.
        expected: String,
        /// Kafka's (as Kafka spells it, e.g. `compact,delete`).
        actual: String,
    },
    /// Another `retention.ms`.
    Retention {
        /// The catalog's retention.
        expected: i64,
        /// Kafka's.
        actual: String,
    },
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::Partitions { expected, actual } => {
                write!(
                    f,
                    "{actual} partitions, the catalog says {expected} (keys would land on other partitions)"
                )
            }
            Drift::Cleanup { expected, actual } => {
                write!(f, "cleanup.policy={actual}, the catalog says {expected}")
            }
            Drift::Retention { expected, actual } => {
                write!(f, "retention.ms={actual}, the catalog says {expected}")
            }
        }
    }
}

/// The state of one catalog topic on Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicReport {
    /// Logical name.
    pub topic: String,
    /// Name on Kafka (namespace applied).
    pub kafka_topic: String,
    /// Created now or already there.
    pub action: TopicAction,
    /// Differences from the catalog; empty when it matches.
    pub drift: Vec<Drift>,
}

impl TopicReport {
    /// Whether the topic matches the catalog.
    pub fn is_ok(&self) -> bool {
        self.drift.is_empty()
    }
}

/// Partition count per Kafka topic.
async fn topic_partitions(inner: &Inner) -> Result<HashMap<String, u32>, LogError> {
    let meta = inner.meta.clone();
    let brokers = inner.settings.brokers.clone();
    blocking("read Kafka metadata", move || {
        let md = meta.fetch_metadata(None, OP_TIMEOUT).map_err(|e| {
            LogError::backend("read Kafka metadata", format!("brokers {brokers}: {e}"))
        })?;
        Ok(md
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| (t.name().to_string(), t.partitions().len() as u32))
            .collect())
    })
    .await
}

/// Waits until every partition of these topics has a leader, so the first produce
/// or fetch does not race the controller. `None`: any partition count (a topic
/// someone else just created, whose count the drift report will judge).
async fn wait_until_usable(
    inner: &Inner,
    topics: Vec<(String, Option<u32>)>,
) -> Result<(), LogError> {
    let meta = inner.meta.clone();
    blocking("wait for new topics", move || {
        let deadline = Instant::now() + CREATE_PATIENCE;
        for (topic, partitions) in &topics {
            loop {
                let usable = meta
                    .fetch_metadata(Some(topic), OP_TIMEOUT)
                    .ok()
                    .is_some_and(|md| {
                        md.topics().iter().any(|t| {
                            t.name() == topic
                                && t.error().is_none()
                                && !t.partitions().is_empty()
                                && partitions.is_none_or(|n| t.partitions().len() as u32 == n)
                                && t.partitions()
                                    .iter()
                                    .all(|p| p.error().is_none() && p.leader() >= 0)
                        })
                    });
                if usable {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(LogError::backend(
                        "wait for new topics",
                        format!(
                            "{topic} has no leader for every partition after {CREATE_PATIENCE:?}"
                        ),
                    ));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    })
    .await
}

async fn create(inner: &Inner, specs: &[&TopicSpec]) -> Result<Vec<String>, LogError> {
    let names: Vec<String> = specs.iter().map(|s| inner.names.topic(&s.name)).collect();
    let settings: Vec<(String, String)> = specs
        .iter()
        .map(|s| (s.cleanup.as_str().to_string(), s.retention_ms.to_string()))
        .collect();
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .zip(&names)
        .zip(&settings)
        .map(|((s, name), (cleanup, retention))| {
            NewTopic::new(
                name,
                s.partitions as i32,
                TopicReplication::Fixed(inner.settings.replication_factor),
            )
            .set("cleanup.policy", cleanup)
            .set("retention.ms", retention)
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(OP_TIMEOUT));
    let results = inner
        .admin
        .create_topics(new_topics.iter(), &opts)
        .await
        .map_err(|e| {
            LogError::backend(
                "create Kafka topics",
                format!("brokers {}: {e}", inner.settings.brokers),
            )
        })?;
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(name) => {
                tracing::info!(topic = %name, "created Kafka topic");
                created.push(name);
            }
            // Someone else (another process, another test) created it meanwhile.
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(LogError::backend(
                    "create Kafka topics",
                    format!("{name}: {code}"),
                ));
            }
        }
    }
    Ok(created)
}

/// `cleanup.policy` and `retention.ms` per Kafka topic.
async fn topic_configs(
    inner: &Inner,
    topics: &[String],
) -> Result<HashMap<String, (String, String)>, LogError> {
    if topics.is_empty() {
        return Ok(HashMap::new());
    }
    let specifiers: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let opts = AdminOptions::new().request_timeout(Some(OP_TIMEOUT));
    let results = inner
        .admin
        .describe_configs(specifiers.iter(), &opts)
        .await
        .map_err(|e| {
            LogError::backend(
                "describe Kafka topics",
                format!("brokers {}: {e}", inner.settings.brokers),
            )
        })?;
    let mut out = HashMap::new();
    for (topic, r) in topics.iter().zip(results) {
        let resource = r.map_err(|code| {
            LogError::backend("describe Kafka topics", format!("{topic}: {code}"))
        })?;
        let value = |name: &str| {
            resource
                .get(name)
                .and_then(|e| e.value.clone())
                .unwrap_or_default()
        };
        out.insert(
            topic.clone(),
            (value("cleanup.policy"), value("retention.ms")),
        );
    }
    Ok(out)
}

/// Creates what is missing and reports drift (see `KafkaLog::apply_topics`).
pub(crate) async fn apply(inner: &Inner, catalog: &Catalog) -> Result<Vec<TopicReport>, LogError> {
    let existing = topic_partitions(inner).await?;
    let missing: Vec<&TopicSpec> = catalog
        .topics()
        .iter()
        .filter(|s| !existing.contains_key(&inner.names.topic(&s.name)))
        .collect();
    let created = if missing.is_empty() {
        Vec::new()
    } else {
        create(inner, &missing).await?
    };
    if !missing.is_empty() {
        // Topics we created have the catalog's count; one that "already existed" was
        // created by someone else meanwhile and may not be in metadata yet.
        let wanted = missing
            .iter()
            .map(|s| {
                let name = inner.names.topic(&s.name);
                let count = created.contains(&name).then_some(s.partitions);
                (name, count)
            })
            .collect();
        wait_until_usable(inner, wanted).await?;
    }
    // Re-read: a topic another process created meanwhile is checked like any other.
    let partitions = if missing.is_empty() {
        existing
    } else {
        topic_partitions(inner).await?
    };
    let kafka_names: Vec<String> = catalog
        .topics()
        .iter()
        .map(|s| inner.names.topic(&s.name))
        .collect();
    let configs = topic_configs(inner, &kafka_names).await?;
    let mut reports = Vec::new();
    for (spec, kafka_topic) in catalog.topics().iter().zip(kafka_names) {
        let mut drift = Vec::new();
        let actual = partitions.get(&kafka_topic).copied().unwrap_or(0);
        if actual != spec.partitions {
            drift.push(Drift::Partitions {
                expected: spec.partitions,
                actual,
            });
        }
        if let Some((cleanup, retention)) = configs.get(&kafka_topic) {
            if cleanup != spec.cleanup.as_str() {
                drift.push(Drift::Cleanup {
                    expected: spec.cleanup.as_str().to_string(),
                    actual: cleanup.clone(),
                });
            }
            if retention.parse::<i64>().ok() != Some(spec.retention_ms) {
                drift.push(Drift::Retention {
                    expected: spec.retention_ms,
                    actual: retention.clone(),
                });
            }
        }
        let action = if created.contains(&kafka_topic) {
            TopicAction::Created
        } else {
            TopicAction::Existing
        };
        for d in &drift {
            tracing::warn!(topic = %spec.name, kafka_topic = %kafka_topic, drift = %d, "Kafka topic differs from the catalog");
        }
        reports.push(TopicReport {
            topic: spec.name.clone(),
            kafka_topic,
            action,
            drift,
        });
    }
    Ok(reports)
}

/// First use of a log: the catalog's topics exist, with the catalog's partition
/// counts (other drift is only logged by `apply`).
pub(crate) async fn ensure(inner: &Inner) -> Result<(), LogError> {
    let reports = apply(inner, &inner.catalog).await?;
    for r in &reports {
        for d in &r.drift {
            if let Drift::Partitions { .. } = d {
                return Err(LogError::backend(
                    "check the Kafka topics",
                    format!(
                        "{} has {d}; courier will not write to it (see `courier topics apply`)",
                        r.kafka_topic
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Deletes this namespace's catalog topics.
pub(crate) async fn delete_namespace(inner: &Inner) -> Result<(), LogError> {
    if inner.settings.namespace.is_empty() {
        return Err(LogError::backend(
            "delete a namespace",
            "refused: this log has no namespace, its topics are the shared ones",
        ));
    }
    let existing = topic_partitions(inner).await?;
    let names: Vec<String> = inner
        .catalog
        .topics()
        .iter()
        .map(|s| inner.names.topic(&s.name))
        .filter(|t| existing.contains_key(t))
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let opts = AdminOptions::new().operation_timeout(Some(OP_TIMEOUT));
    let results = inner.admin.delete_topics(&refs, &opts).await.map_err(|e| {
        LogError::backend(
            "delete Kafka topics",
            format!("namespace {}: {e}", inner.settings.namespace),
        )
    })?;
    for r in results {
        if let Err((name, code)) = r
            && code != RDKafkaErrorCode::UnknownTopicOrPartition
        {
            return Err(LogError::backend(
                "delete Kafka topics",
                format!("{name}: {code}"),
            ));
        }
    }
    tracing::info!(namespace = %inner.settings.namespace, topics = names.len(), "deleted the namespace's Kafka topics");
    Ok(())
}
