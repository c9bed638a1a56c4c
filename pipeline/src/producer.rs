//! The producer path: events → records (topic, key, headers) → the log.
//!
//! Every record carries the schema headers, is keyed by the event's routing key (so
//! a conversation's events share a partition), and is timestamped with the event's
//! `at_ms`.

use std::collections::BTreeMap;

use courier_schemas::{Event, EventKind};
use courier_topics as topics;

use crate::log::{Appended, EventLog, LogError, Record};

/// The topic an event kind belongs on (docs/DESIGN.md, "Topics").
pub fn topic_for(kind: EventKind) -> &'static str {
    match kind {
        EventKind::ConversationCreated
        | EventKind::MembersAdded
        | EventKind::MembersRemoved
        | EventKind::MessageSent
        | EventKind::MessageEdited
        | EventKind::MessageDeleted
        | EventKind::Receipt => topics::CONVERSATIONS,
        EventKind::Presence => topics::PRESENCE,
        EventKind::PushJob => topics::PUSH_JOBS,
        EventKind::DeadLetter => topics::DEAD_LETTERS,
    }
}

/// The record an event is stored as.
pub fn to_record(event: &Event) -> Record {
    Record {
        key: event.routing_key().as_bytes().to_vec(),
        value: courier_schemas::encode(event),
        headers: courier_schemas::headers::for_event(event),
        timestamp_ms: event.at_ms,
    }
}

/// Where a published event landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Its topic.
    pub topic: &'static str,
    /// Partition and offset.
    pub at: Appended,
}

/// Publishes events, one append per topic, and returns where each landed in input
/// order. Events without a body, and events over the log's record limit
/// ([`crate::log::MAX_RECORD_BYTES`]), are refused before anything is written.
///
/// When an append fails part of the way (one topic written and the next refused,
/// or a Kafka append acknowledged in part), the error is
/// [`LogError::PartlyAppended`] with the acknowledged events by their index in
/// `events`, so a caller can say exactly what was published.
pub async fn publish(log: &dyn EventLog, events: &[Event]) -> Result<Vec<Published>, LogError> {
    let mut by_topic: BTreeMap<&'static str, (Vec<usize>, Vec<Record>)> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        let kind = e.kind().ok_or_else(|| {
            LogError::backend(
                "publish",
                format!("event `{}` has no body; nothing was published", e.event_id),
            )
        })?;
        let record = to_record(e);
        record.check_size().map_err(|err| {
            LogError::backend(
                "publish",
                format!("event `{}`: {err}; nothing was published", e.event_id),
            )
        })?;
        let slot = by_topic.entry(topic_for(kind)).or_default();
        slot.0.push(i);
        slot.1.push(record);
    }
    let mut out = vec![None; events.len()];
    for (topic, (idx, records)) in by_topic {
        match log.append(topic, records).await {
            Ok(appended) => {
                for (i, at) in idx.into_iter().zip(appended) {
                    out[i] = Some(Published { topic, at });
                }
            }
            Err(e) => {
                let (partly, cause) = match e {
                    LogError::PartlyAppended {
                        acknowledged,
                        cause,
                        ..
                    } => (acknowledged, cause),
                    other => (Vec::new(), Box::new(other)),
                };
                for (j, at) in partly {
                    out[idx[j]] = Some(Published { topic, at });
                }
                let acknowledged: Vec<(usize, Appended)> = out
                    .iter()
                    .enumerate()
                    .filter_map(|(i, p)| Some((i, p.as_ref()?.at)))
                    .collect();
                if acknowledged.is_empty() {
                    return Err(*cause);
                }
                return Err(LogError::PartlyAppended {
                    acknowledged,
                    total: events.len(),
                    cause,
                });
            }
        }
    }
    Ok(out.into_iter().flatten().collect())
}
