//! Dead letters: records a processor could not apply, kept with the reason, so a
//! poison record never blocks a partition and is never silently dropped.

use std::time::{SystemTime, UNIX_EPOCH};

use courier_schemas::Event;
use courier_schemas::proto::{DeadLetter, event::Body};

use crate::log::{ConsumedRecord, EventLog, LogError};
use crate::metrics::metrics;
use crate::producer::publish;

/// The dead-letter event for a record. Its `event_id` is derived from the record's
/// position, so a redelivered poison record yields the same dead letter again.
pub fn dead_letter_for(record: &ConsumedRecord, reason: &str) -> Event {
    let at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Event {
        event_id: format!("dl:{}:{}:{}", record.topic, record.partition, record.offset),
        at_ms,
        body: Some(Body::DeadLetter(DeadLetter {
            source_topic: record.topic.to_string(),
            source_partition: record.partition as i32,
            source_offset: record.offset as i64,
            source_key: String::from_utf8_lossy(&record.key).into_owned(),
            reason: reason.to_string(),
            payload: record.value.to_vec(),
        })),
    }
}

/// Appends dead letters for `(record, reason)` pairs to `courier.dead-letters.v1`.
pub async fn send(
    log: &dyn EventLog,
    processor: &str,
    rejected: &[(&ConsumedRecord, String)],
) -> Result<(), LogError> {
    if rejected.is_empty() {
        return Ok(());
    }
    let events: Vec<Event> = rejected
        .iter()
        .map(|(r, reason)| {
            tracing::warn!(processor, topic = %r.topic, partition = r.partition, offset = r.offset, reason = %reason, "dead-lettering a record");
            dead_letter_for(r, reason)
        })
        .collect();
    publish(log, &events).await?;
    metrics()
        .dead_letters
        .with_label_values(&[processor])
        .inc_by(events.len() as u64);
    Ok(())
}
