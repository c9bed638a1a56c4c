//! Dead letters: records a processor could not apply, kept with the reason, so a
//! poison record never blocks a partition and is never silently dropped.
//!
//! A dead letter record carries a [`DEAD_LETTERED_BY`] header naming the
//! processor that rejected it, so a redrive ([`redrive_record`]) takes it back
//! to that processor and to no other: the original record is appended again to
//! its own topic (same key, so the same partition) with a [`REDRIVE_FOR`]
//! header, which every other processor reading the topic skips
//! ([`addressed_to_another`]). docs/decisions/2026-12-07-redrive.md
//! has the reasoning.

use std::time::{SystemTime, UNIX_EPOCH};

use courier_schemas::Event;
use courier_schemas::proto::{DeadLetter, event::Body};

use crate::log::{ConsumedRecord, EventLog, LogError, Record};
use crate::metrics::metrics;
use crate::producer::to_record;

/// Header of a dead letter: the processor that rejected the record (its
/// registry name: `inbox`, `search`, `presence`, `push`).
pub const DEAD_LETTERED_BY: &str = "courier-dead-lettered-by";

/// Header of a redriven record: the one processor that is to apply it. Every
/// other processor reading the topic passes over it as if applied.
pub const REDRIVE_FOR: &str = "courier-redrive-for";

/// Header of a redriven record: where its dead letter is
/// (`courier.dead-letters.v1:PARTITION:OFFSET`), for people and tools.
pub const REDRIVE_OF: &str = "courier-redrive-of";

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

/// Appends dead letters for `(record, reason)` pairs to `courier.dead-letters.v1`,
/// attributed to `processor`.
pub async fn send(
    log: &dyn EventLog,
    processor: &str,
    rejected: &[(&ConsumedRecord, String)],
) -> Result<(), LogError> {
    send_as(log, processor, processor, rejected).await
}

/// [`send`] for a processor whose metrics label differs from the view it
/// writes (`search-rebuild` builds `search`): the dead letters are counted and
/// logged under `label` and attributed to `processor`, whose redrive takes
/// them back.
pub async fn send_as(
    log: &dyn EventLog,
    label: &str,
    processor: &str,
    rejected: &[(&ConsumedRecord, String)],
) -> Result<(), LogError> {
    if rejected.is_empty() {
        return Ok(());
    }
    let mut records = Vec::with_capacity(rejected.len());
    for (r, reason) in rejected {
        tracing::warn!(processor = label, topic = %r.topic, partition = r.partition, offset = r.offset, reason = %reason, "dead-lettering a record");
        let event = dead_letter_for(r, reason);
        let mut record = to_record(&event);
        record
            .headers
            .push((DEAD_LETTERED_BY.to_string(), processor.as_bytes().to_vec()));
        record.check_size().map_err(|err| {
            LogError::backend(
                "publish",
                format!(
                    "dead letter `{}`: {err}; nothing was published",
                    event.event_id
                ),
            )
        })?;
        records.push(record);
    }
    let n = records.len();
    log.append(courier_topics::DEAD_LETTERS, records).await?;
    metrics()
        .dead_letters
        .with_label_values(&[label])
        .inc_by(n as u64);
    Ok(())
}

/// Whether `record` was redriven for a processor other than `me`, which must
/// then pass over it (advancing its position as for any record it applied).
pub fn addressed_to_another(record: &ConsumedRecord, me: &str) -> bool {
    record
        .header(REDRIVE_FOR)
        .is_some_and(|p| p != me.as_bytes())
}

/// A dead letter as read back from `courier.dead-letters.v1`.
#[derive(Debug, Clone, PartialEq)]
pub struct Letter {
    /// Partition of the dead-letters topic it is on.
    pub partition: u32,
    /// Its offset there.
    pub offset: u64,
    /// Its `event_id` (`dl:TOPIC:PARTITION:OFFSET` of the source record).
    pub id: String,
    /// When it was written (ms since the epoch).
    pub at_ms: i64,
    /// The processor that rejected the record; `None` for dead letters
    /// written before courier recorded it.
    pub processor: Option<String>,
    /// The source record, the reason and the original bytes.
    pub letter: DeadLetter,
}

impl Letter {
    /// Reads a record of the dead-letters topic.
    pub fn parse(record: &ConsumedRecord) -> Result<Letter, String> {
        let event = crate::replay::decode(record).map_err(|e| e.to_string())?;
        let Some(Body::DeadLetter(letter)) = event.body else {
            return Err(format!(
                "{} at {}:{} is not a dead letter",
                event.event_id, record.partition, record.offset
            ));
        };
        Ok(Letter {
            partition: record.partition,
            offset: record.offset,
            id: event.event_id,
            at_ms: event.at_ms,
            processor: record
                .header(DEAD_LETTERED_BY)
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            letter,
        })
    }

    /// Where it is, as [`REDRIVE_OF`] names it.
    pub fn position(&self) -> String {
        format!(
            "{}:{}:{}",
            courier_topics::DEAD_LETTERS,
            self.partition,
            self.offset
        )
    }
}

/// The record that takes a dead letter back to `processor`: appended to the
/// source topic under the source key (so on the source partition, after
/// everything already there), with [`REDRIVE_FOR`] and [`REDRIVE_OF`].
///
/// When the original bytes decode with this build, the event gets a new
/// `event_id` derived from the dead letter's position (`ID+redrive:P:O`): the
/// fold remembers the ids of the events it rejected, so the original id would
/// be ignored as a repetition, while the same dead letter redriven twice (a
/// redrive stopped between its append and its commit) gives the same id, so
/// the processor applies it once. Bytes that do not decode go back as they are
/// (with this build's schema headers), for a processor that now can.
/// Returns the topic and the record.
pub fn redrive_record(letter: &Letter, processor: &str) -> (String, Record) {
    let dl = &letter.letter;
    let (value, mut headers, timestamp_ms) = match courier_schemas::decode(&dl.payload) {
        Ok(mut event) => {
            event.event_id = format!(
                "{}+redrive:{}:{}",
                event.event_id, letter.partition, letter.offset
            );
            let r = to_record(&event);
            (r.value, r.headers, r.timestamp_ms)
        }
        Err(_) => (
            dl.payload.clone(),
            vec![
                (
                    courier_schemas::headers::SCHEMA.to_string(),
                    courier_schemas::SCHEMA_NAME.as_bytes().to_vec(),
                ),
                (
                    courier_schemas::headers::VERSION.to_string(),
                    courier_schemas::SCHEMA_VERSION.to_string().into_bytes(),
                ),
            ],
            letter.at_ms,
        ),
    };
    headers.push((REDRIVE_FOR.to_string(), processor.as_bytes().to_vec()));
    headers.push((REDRIVE_OF.to_string(), letter.position().into_bytes()));
    (
        dl.source_topic.clone(),
        Record {
            key: dl.source_key.as_bytes().to_vec(),
            value,
            headers,
            timestamp_ms,
        },
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::log::RecordHeaders;

    fn consumed(topic: &str, offset: u64, record: &Record) -> ConsumedRecord {
        ConsumedRecord {
            topic: Arc::from(topic),
            partition: 1,
            offset,
            timestamp_ms: record.timestamp_ms,
            key: Bytes::from(record.key.clone()),
            value: Bytes::from(record.value.clone()),
            headers: RecordHeaders::from(&record.headers),
        }
    }

    fn source() -> Record {
        let e = courier_schemas::json::parse_line(
            r#"{"type":"message_sent","event_id":"e7","conversation_id":"c1","message_id":"m1","sender_id":"u9","text":"hi","at_ms":5}"#,
        )
        .unwrap();
        to_record(&e)
    }

    #[test]
    fn a_redriven_record_goes_to_its_source_topic_and_key_for_one_processor() {
        let src = consumed(courier_topics::CONVERSATIONS, 40, &source());
        let mut dl = to_record(&dead_letter_for(&src, "u9 is not a member"));
        dl.headers
            .push((DEAD_LETTERED_BY.to_string(), b"inbox".to_vec()));
        let letter = Letter::parse(&consumed(courier_topics::DEAD_LETTERS, 3, &dl)).unwrap();
        assert_eq!(letter.processor.as_deref(), Some("inbox"));
        assert_eq!(letter.letter.source_offset, 40);

        let (topic, r) = redrive_record(&letter, "inbox");
        assert_eq!(topic, courier_topics::CONVERSATIONS);
        assert_eq!(r.key, b"c1");
        assert_eq!(r.timestamp_ms, 5);
        let back = consumed(&topic, 41, &r);
        let event = crate::replay::decode(&back).unwrap();
        // A new id, the same for the same dead letter: applied once.
        assert_eq!(event.event_id, "e7+redrive:1:3");
        assert_eq!(redrive_record(&letter, "inbox").1, r);
        assert!(!addressed_to_another(&back, "inbox"));
        assert!(addressed_to_another(&back, "search"));
        assert_eq!(
            back.header(REDRIVE_OF),
            Some(&b"courier.dead-letters.v1:1:3"[..])
        );
        // An ordinary record is everybody's.
        assert!(!addressed_to_another(&src, "search"));
    }

    #[test]
    fn bytes_that_do_not_decode_go_back_as_they_are() {
        let mut bad = source();
        bad.value = vec![0xff, 0xff, 0xff];
        let src = consumed(courier_topics::CONVERSATIONS, 2, &bad);
        let dl = to_record(&dead_letter_for(&src, "does not decode"));
        let letter = Letter::parse(&consumed(courier_topics::DEAD_LETTERS, 0, &dl)).unwrap();
        assert_eq!(letter.processor, None, "written before it was recorded");
        let (_, r) = redrive_record(&letter, "search");
        assert_eq!(r.value, vec![0xff, 0xff, 0xff]);
        let back = consumed(courier_topics::CONVERSATIONS, 9, &r);
        assert!(
            courier_schemas::headers::check_with(|n| back.headers.last(n)).is_ok(),
            "schema headers, so the processor judges the bytes"
        );
    }
}
