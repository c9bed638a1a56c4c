//! Resuming the live stream: the cursor every frame carries, and the catch-up a
//! reconnect with `?since=CURSOR` gets before its live events.
//!
//! A cursor is, per partition of each topic the stream reads (conversations,
//! presence), the offset of the next record not yet accounted for: everything
//! below it that this user may see was delivered. Offsets are the log's own, so
//! a cursor survives a restart of `courier up` and works against any gateway of
//! the same log. To clients it is opaque: base64url of `v1:C0,C1,…:P0,P1,…`.
//!
//! The seam (docs/decisions/2026-12-07-websocket-resume.md): the connection
//! subscribes to live events first, then reads where the tails will deliver from
//! (`live_from`), reads the log from the cursor up to there (judging each record
//! by the rule the live fan-out applies), sends that, and then its queue,
//! skipping by position what the catch-up already sent. Nothing below `live_from`
//! can be missing (the catch-up read it) and nothing at or above it is read twice
//! (the catch-up stopped there).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use courier_pipeline::EventLog;
use courier_schemas::proto::event::Body;
use courier_topics::{CONVERSATIONS, PRESENCE};

use crate::Gateway;
use crate::live::{Live, Subscription};
use crate::metrics;

/// Close code telling a client its cursor cannot be resumed from (too old for
/// the log's retention, more missed than a reconnect catches up, or from another
/// log): re-read `GET /v1/inbox` and the conversations' messages, then connect
/// without `since`. 4000 + HTTP's 410 Gone.
pub const RESYNC_CLOSE_CODE: u16 = 4410;

/// The topics the stream reads, in the order a cursor lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// `courier.conversations.v1`.
    Conversations = 0,
    /// `courier.presence.v1`.
    Presence = 1,
}

impl Topic {
    const ALL: [Topic; 2] = [Topic::Conversations, Topic::Presence];

    fn name(self) -> &'static str {
        match self {
            Topic::Conversations => CONVERSATIONS,
            Topic::Presence => PRESENCE,
        }
    }
}

/// Where a stream stands: per topic (by [`Topic`]), per partition, the next offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Next offsets, `topics[topic][partition]`.
    pub topics: [Vec<u64>; 2],
}

impl Cursor {
    /// The next offset of a partition (0 for one the cursor does not list).
    pub fn get(&self, topic: Topic, partition: u32) -> u64 {
        self.topics[topic as usize]
            .get(partition as usize)
            .copied()
            .unwrap_or(0)
    }

    /// Moves past `e`.
    pub fn advance(&mut self, e: &Live) {
        if let Some(next) = self.topics[e.topic as usize].get_mut(e.partition as usize) {
            *next = (*next).max(e.offset + 1);
        }
    }

    /// Moves each partition up to `other`'s position, where that is further.
    pub fn catch_up_to(&mut self, other: &Cursor) {
        for (mine, theirs) in self.topics.iter_mut().zip(&other.topics) {
            for (m, t) in mine.iter_mut().zip(theirs) {
                *m = (*m).max(*t);
            }
        }
    }

    /// The opaque, URL-safe text clients see.
    pub fn encode(&self) -> String {
        let list = |v: &Vec<u64>| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        B64.encode(format!(
            "v1:{}:{}",
            list(&self.topics[0]),
            list(&self.topics[1])
        ))
    }

    /// Reads a cursor a frame carried; the error says what is wrong with it.
    pub fn decode(text: &str) -> Result<Cursor, String> {
        let bad = |why: &str| {
            format!(
                "`since` is not a cursor of this stream ({why}); pass the `cursor` of the last frame received, or connect without `since`"
            )
        };
        let bytes = B64.decode(text).map_err(|_| bad("not base64url"))?;
        let text = String::from_utf8(bytes).map_err(|_| bad("not text"))?;
        let parts: Vec<&str> = text.split(':').collect();
        let [version, conversations, presence] = parts[..] else {
            return Err(bad("expected a version and two lists of offsets"));
        };
        if version != "v1" {
            return Err(bad(&format!("unknown version {version:?}")));
        }
        let list = |s: &str| -> Result<Vec<u64>, String> {
            if s.is_empty() {
                return Ok(Vec::new());
            }
            s.split(',')
                .map(|o| o.parse().map_err(|_| bad(&format!("offset {o:?}"))))
                .collect()
        };
        Ok(Cursor {
            topics: [list(conversations)?, list(presence)?],
        })
    }
}

/// Why a resume was refused after the handshake.
enum Refused {
    /// The cursor cannot be resumed from: re-read the inbox (4410).
    Resync(String),
    /// The log could not be read: try again with the same cursor (1011).
    Failed(String),
}

/// Serves an upgraded `/v1/stream` connection: the catch-up from `since` (if
/// any), then live events from `live_from`, which the caller read right after
/// subscribing `sub` (not here, after the handshake: a record claimed in
/// between would be below it, so skipped live, yet read by no catch-up).
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    gw: Arc<Gateway>,
    mut socket: WebSocket,
    sub: Subscription,
    live_from: Cursor,
    user: String,
    since: Option<Cursor>,
    expires: std::time::SystemTime,
) {
    let (from, missed) = match since {
        None => (live_from.clone(), Vec::new()),
        Some(since) => match catch_up(&gw, &user, &since, &live_from).await {
            Ok(missed) => {
                metrics::get()
                    .ws_resumes
                    .with_label_values(&["resumed"])
                    .inc();
                metrics::get().ws_resumed_events.inc_by(missed.len() as u64);
                tracing::debug!(user, missed = missed.len(), "live connection resumed");
                (since, missed)
            }
            Err(refused) => {
                let (outcome, code, reason, error) = match refused {
                    Refused::Resync(why) => (
                        "resync",
                        RESYNC_CLOSE_CODE,
                        "re-read the inbox",
                        format!(
                            "cannot resume: {why}; re-read GET /v1/inbox and the conversations' messages, then connect without `since`"
                        ),
                    ),
                    Refused::Failed(why) => (
                        "failed",
                        1011,
                        "log unavailable",
                        format!("cannot resume now: {why}; reconnect with the same `since`"),
                    ),
                };
                metrics::get()
                    .ws_resumes
                    .with_label_values(&[outcome])
                    .inc();
                tracing::info!(user, error, "live connection not resumed");
                let note = serde_json::json!({"type": "error", "error": error});
                let _ = socket.send(Message::Text(note.to_string().into())).await;
                let _ = socket
                    .send(Message::Close(Some(CloseFrame {
                        code,
                        reason: reason.into(),
                    })))
                    .await;
                // Dropping `sub` unregisters it at the next delivery.
                return;
            }
        },
    };
    // Where the catch-up ended: the cursor of the first live frame starts here.
    let mut live = from.clone();
    live.catch_up_to(&live_from);
    gw.hub
        .clone()
        .serve(socket, sub, gw.stop.clone(), expires, from, missed, live)
        .await;
}

/// Every event `user` would have got live between `since` and `live_from`, in
/// log order per partition.
async fn catch_up(
    gw: &Gateway,
    user: &str,
    since: &Cursor,
    live_from: &Cursor,
) -> Result<Vec<Live>, Refused> {
    let log = &*gw.log;
    let mut records = 0u64;
    for topic in Topic::ALL {
        let have = since.topics[topic as usize].len();
        let want = gw.hub.partitions(topic);
        if have != want {
            return Err(Refused::Resync(format!(
                "the cursor lists {have} partitions of {}, which has {want}",
                topic.name()
            )));
        }
        for p in 0..want as u32 {
            let (low, high) = log
                .watermarks(topic.name(), p)
                .await
                .map_err(|e| Refused::Failed(format!("reading the log: {e}")))?;
            let from = since.get(topic, p);
            if from < low {
                return Err(Refused::Resync(format!(
                    "{} partition {p} no longer holds offset {from} (it starts at {low})",
                    topic.name()
                )));
            }
            if from > high {
                return Err(Refused::Resync(format!(
                    "{} partition {p} ends at {high}, before the cursor's {from}: not this log's cursor",
                    topic.name()
                )));
            }
            records += live_from.get(topic, p).saturating_sub(from);
        }
    }
    let max = gw.settings.resume_max_records;
    if records > max {
        return Err(Refused::Resync(format!(
            "{records} events were logged since the cursor, more than the {max} a reconnect reads"
        )));
    }
    let mut missed = Vec::new();
    let mut contacts: Option<BTreeSet<String>> = None;
    for topic in Topic::ALL {
        for p in 0..gw.hub.partitions(topic) as u32 {
            let end = live_from.get(topic, p);
            let mut next = since.get(topic, p);
            while next < end {
                let batch = read(log, topic, p, next, end).await?;
                for r in batch {
                    if r.offset < next || r.offset >= end {
                        continue;
                    }
                    next = r.offset + 1;
                    let Ok(event) = courier_schemas::decode(&r.value) else {
                        continue;
                    };
                    let sees = match (topic, &event.body) {
                        (Topic::Conversations, _) => gw
                            .conversations
                            .saw(user, &event, r.offset)
                            .await
                            .map_err(|e| Refused::Failed(e.message))?,
                        (Topic::Presence, Some(Body::Presence(presence))) => {
                            // The live rule: presence goes to the user's current
                            // contacts (a symmetric relation), read once.
                            if contacts.is_none() {
                                contacts = Some(
                                    crate::presence::audience(&*gw.views, user).await.map_err(
                                        |e| {
                                            Refused::Failed(format!("reading the inbox views: {e}"))
                                        },
                                    )?,
                                );
                            }
                            contacts
                                .as_ref()
                                .is_some_and(|c| c.contains(&presence.user_id))
                        }
                        _ => false,
                    };
                    if !sees {
                        continue;
                    }
                    if missed.len() == gw.settings.resume_max_events {
                        return Err(Refused::Resync(format!(
                            "more than {} events were missed",
                            gw.settings.resume_max_events
                        )));
                    }
                    missed.push(Live::new(topic, p, r.offset, &event));
                }
            }
        }
    }
    Ok(missed)
}

/// Records of a partition from `next`, below `end` (which the log holds).
async fn read(
    log: &dyn EventLog,
    topic: Topic,
    p: u32,
    next: u64,
    end: u64,
) -> Result<Vec<courier_pipeline::ConsumedRecord>, Refused> {
    let batch = log
        .read(topic.name(), p, next, 1000, Duration::from_secs(1))
        .await
        .map_err(|e| Refused::Failed(format!("reading the log: {e}")))?;
    if batch.is_empty() {
        return Err(Refused::Failed(format!(
            "the log returned nothing at {} partition {p} offset {next}, below {end}",
            topic.name()
        )));
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_as_written_and_garbage_is_refused_saying_why() {
        let c = Cursor {
            topics: [vec![12, 0, 7], vec![3]],
        };
        let text = c.encode();
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{text}"
        );
        assert_eq!(Cursor::decode(&text), Ok(c));
        for (garbage, why) in [
            ("%%%", "not base64url"),
            (&B64.encode("v2:1:2"), "unknown version"),
            (&B64.encode("v1:1"), "two lists"),
            (&B64.encode("v1:1,x:2"), "offset \"x\""),
            (&B64.encode("v1:-1:2"), "offset \"-1\""),
        ] {
            let e = Cursor::decode(garbage).unwrap_err();
            assert!(e.contains(why) && e.contains("`since`"), "{garbage}: {e}");
        }
    }
}
