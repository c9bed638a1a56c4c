//! Live delivery: WebSocket connections per user, each with a bounded queue.
//!
//! The tail of `courier.conversations.v1` (see `conversations`) hands every applied
//! event to [`Hub::deliver`] with its audience and its place in the log, and the
//! tails of `courier.presence.v1` (see `presence`) every presence change, to the
//! user's contacts. Each frame carries a cursor (see `resume`): where the stream
//! stands in every partition of both topics, from which a reconnect resumes.
//! A connection whose queue is full is cut off: its sender is dropped, so it
//! drains what it had, then tells the client it was too slow and closes (code
//! 1008). Nothing is buffered without bound.
//!
//! A frame is `{"cursor", "event"}`; an idle connection also gets
//! `{"cursor"}` alone now and then (`gateway.ws_cursor_every_ms`) when the
//! tails moved past records that were not for it.
//!
//! The tails publish two positions per partition (see [`Hub::claim`]): one
//! before they deliver a record, from which a new connection knows where its
//! live events start, and one after, from which a connection with an empty
//! queue knows it has everything below it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use courier_pipeline::shutdown::Shutdown;
use tokio::sync::mpsc;

use crate::metrics;
use crate::resume::{Cursor, Topic};

/// Close code for a client that could not keep up (RFC 6455 "policy violation").
pub const SLOW_CLOSE_CODE: u16 = 1008;

/// Close code for a connection whose token expired (in the range RFC 6455
/// leaves to applications; 4000 + HTTP's 401): reconnect with a fresh token.
pub const TOKEN_EXPIRED_CLOSE_CODE: u16 = 4401;

/// One live event: where it is in the log, and its canonical JSON.
#[derive(Debug, Clone)]
pub struct Live {
    /// The topic it was read from.
    pub topic: Topic,
    /// Its partition.
    pub partition: u32,
    /// Its offset.
    pub offset: u64,
    /// The event's canonical JSON.
    pub line: Arc<str>,
}

impl Live {
    /// `event`, read at `offset` of `partition` of `topic`.
    pub fn new(topic: Topic, partition: u32, offset: u64, event: &courier_schemas::Event) -> Self {
        Live {
            topic,
            partition,
            offset,
            line: Arc::from(courier_schemas::json::to_line(event)),
        }
    }
}

/// A tail's progress in one partition (see the module doc).
struct TailPosition {
    claimed: AtomicU64,
    delivered: AtomicU64,
}

struct Conn {
    id: u64,
    tx: mpsc::Sender<Live>,
    overflowed: Arc<AtomicBool>,
}

/// Every open connection, by user.
pub struct Hub {
    queue: usize,
    next_id: AtomicU64,
    conns: Mutex<HashMap<String, Vec<Conn>>>,
    /// Per topic (indexed by [`Topic`]), per partition.
    tails: [Vec<TailPosition>; 2],
    /// How often an idle connection is sent its cursor when it moved.
    cursor_every: Duration,
}

/// A registered connection: what it reads, and how it learns it was cut off.
pub struct Subscription {
    id: u64,
    user: String,
    rx: mpsc::Receiver<Live>,
    overflowed: Arc<AtomicBool>,
}

impl Hub {
    /// A hub whose connections queue at most `queue` events each, for tails of
    /// `partitions` partitions of each [`Topic`], and send an idle client its
    /// cursor at most every `cursor_every`.
    pub fn new(queue: usize, partitions: [u32; 2], cursor_every: Duration) -> Self {
        let positions = |n: u32| {
            (0..n)
                .map(|_| TailPosition {
                    claimed: AtomicU64::new(0),
                    delivered: AtomicU64::new(0),
                })
                .collect()
        };
        Hub {
            queue: queue.max(1),
            next_id: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            tails: partitions.map(positions),
            cursor_every: cursor_every.max(Duration::from_millis(10)),
        }
    }

    /// How many partitions of `topic` the tails read.
    pub fn partitions(&self, topic: Topic) -> usize {
        self.tails[topic as usize].len()
    }

    /// A tail starts at `next` of its partition.
    pub fn start_tail(&self, topic: Topic, partition: u32, next: u64) {
        let t = &self.tails[topic as usize][partition as usize];
        t.claimed.store(next, Ordering::SeqCst);
        t.delivered.store(next, Ordering::SeqCst);
    }

    /// A tail is about to deliver the record before `next` (call before
    /// [`Hub::deliver`]): a connection that subscribed before it reads this
    /// position gets every record from it on live.
    pub fn claim(&self, topic: Topic, partition: u32, next: u64) {
        self.tails[topic as usize][partition as usize]
            .claimed
            .store(next, Ordering::SeqCst);
    }

    /// A tail delivered everything before `next` (call after [`Hub::deliver`]).
    pub fn delivered(&self, topic: Topic, partition: u32, next: u64) {
        self.tails[topic as usize][partition as usize]
            .delivered
            .store(next, Ordering::SeqCst);
    }

    fn positions(&self, pick: impl Fn(&TailPosition) -> &AtomicU64) -> Cursor {
        Cursor {
            topics: self
                .tails
                .each_ref()
                .map(|t| t.iter().map(|p| pick(p).load(Ordering::SeqCst)).collect()),
        }
    }

    /// Where live events start for a connection subscribed before this call.
    pub fn live_from(&self) -> Cursor {
        self.positions(|p| &p.claimed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Conn>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether anybody is listening (the tail skips working out audiences if not).
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Registers a connection of `user`.
    pub fn subscribe(&self, user: &str) -> Subscription {
        let (tx, rx) = mpsc::channel(self.queue);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let overflowed = Arc::new(AtomicBool::new(false));
        self.lock().entry(user.to_string()).or_default().push(Conn {
            id,
            tx,
            overflowed: overflowed.clone(),
        });
        Subscription {
            id,
            user: user.to_string(),
            rx,
            overflowed,
        }
    }

    fn unsubscribe(&self, user: &str, id: u64) {
        let mut conns = self.lock();
        if let Some(v) = conns.get_mut(user) {
            v.retain(|c| c.id != id);
            if v.is_empty() {
                conns.remove(user);
            }
        }
    }

    /// Queues `event` for every connection of these users.
    pub fn deliver<'a>(&self, users: impl IntoIterator<Item = &'a str>, event: Live) {
        let mut conns = self.lock();
        for user in users {
            let Some(v) = conns.get_mut(user) else {
                continue;
            };
            v.retain(|c| match c.tx.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(
                        user,
                        conn = c.id,
                        "live connection too slow; cutting it off"
                    );
                    metrics::get().ws_slow_disconnects.inc();
                    c.overflowed.store(true, Ordering::Release);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
            if v.is_empty() {
                conns.remove(user);
            }
        }
    }

    /// Serves one upgraded connection until the client leaves, is cut off, or
    /// the gateway stops: first the `missed` events (a resume's catch-up, each
    /// frame's cursor advancing `from`), then live events from `live_from`
    /// (what the catch-up already covered is skipped by position).
    #[allow(clippy::too_many_arguments)]
    pub async fn serve(
        self: Arc<Self>,
        mut socket: WebSocket,
        mut sub: Subscription,
        mut stop: Shutdown,
        expires: std::time::SystemTime,
        mut from: Cursor,
        missed: Vec<Live>,
        live_from: Cursor,
    ) {
        metrics::get().ws_connections.inc();
        let mut open = true;
        for e in &missed {
            from.advance(e);
            if socket.send(frame(&from, e)).await.is_err() {
                open = false;
                break;
            }
        }
        let mut at = live_from;
        // A socket must not outlive its token: REST calls with it get 401 from
        // then on, so the stream ends then too.
        let left = expires
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        let expiry = tokio::time::sleep(left);
        tokio::pin!(expiry);
        let mut checkpoints = tokio::time::interval_at(
            tokio::time::Instant::now() + self.cursor_every,
            self.cursor_every,
        );
        checkpoints.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Live events, unless the client left during the catch-up.
        if open {
            loop {
                tokio::select! {
                    _ = &mut expiry => {
                        let note = serde_json::json!({
                            "type": "error",
                            "error": "token expired: reconnect with a fresh token",
                        });
                        let _ = socket.send(Message::Text(note.to_string().into())).await;
                        let _ = socket
                            .send(Message::Close(Some(CloseFrame {
                                code: TOKEN_EXPIRED_CLOSE_CODE,
                                reason: "token expired".into(),
                            })))
                            .await;
                        break;
                    }
                    next = sub.rx.recv() => match next {
                        Some(e) => {
                            // Already delivered by the catch-up (or by the gateway
                            // that gave the cursor, when its tail was ahead of ours).
                            if e.offset < at.get(e.topic, e.partition) {
                                continue;
                            }
                            at.advance(&e);
                            // With the queue empty, every record the tails finished
                            // before this check was either sent or not this user's:
                            // the cursor moves past them too, so a quiet partition
                            // does not hold a reconnect far back.
                            let done = self.positions(|p| &p.delivered);
                            if sub.rx.is_empty() {
                                at.catch_up_to(&done);
                            }
                            if socket.send(frame(&at, &e)).await.is_err() {
                                break;
                            }
                        }
                        None => {
                            if sub.overflowed.load(Ordering::Acquire) {
                                let note = serde_json::json!({
                                    "type": "error",
                                    "error": "too slow: live events were arriving faster than this \
                                              connection read them; reconnect and catch up from \
                                              GET /v1/inbox",
                                });
                                let _ = socket.send(Message::Text(note.to_string().into())).await;
                                let _ = socket
                                    .send(Message::Close(Some(CloseFrame {
                                        code: SLOW_CLOSE_CODE,
                                        reason: "too slow".into(),
                                    })))
                                    .await;
                            }
                            break;
                        }
                    },
                    _ = checkpoints.tick() => {
                        // Nothing for this user lately, but the tails moved on:
                        // the client gets a cursor past what it did not need,
                        // so an idle connection's reconnect reads little.
                        let done = self.positions(|p| &p.delivered);
                        if sub.rx.is_empty() {
                            let mut next = at.clone();
                            next.catch_up_to(&done);
                            if next != at {
                                at = next;
                                let only = format!("{{\"cursor\":\"{}\"}}", at.encode());
                                if socket.send(Message::Text(only.into())).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    incoming = socket.recv() => match incoming {
                        // Clients have nothing to say on this socket; pings are
                        // answered by the library.
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                        Some(Ok(_)) => {}
                    },
                    _ = stop.wait() => {
                        let _ = socket
                            .send(Message::Close(Some(CloseFrame {
                                code: 1001,
                                reason: "gateway shutting down".into(),
                            })))
                            .await;
                        break;
                    }
                }
            }
        }
        self.unsubscribe(&sub.user, sub.id);
        metrics::get().ws_connections.dec();
    }
}

// The event's line is already canonical JSON, so `frame` formats frames
// rather than serializing this type: it is their schema, and a test reads
// `frame`'s output with it.
/// One text frame of `/v1/stream`: an event and the cursor after it; or, now
/// and then on an idle connection, the cursor alone.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamFrame {
    /// Opaque and URL-safe: where the stream stands once this frame is
    /// received. Keep the last one; reconnect with `?since=` it to get what was
    /// missed. Valid across gateway restarts and gateways of the same log.
    #[schema(pattern = "^[A-Za-z0-9_-]+$")]
    pub cursor: String,
    /// One event in canonical JSON (docs/DESIGN.md, Events); absent now and
    /// then on an idle connection, when only the cursor moved (the log moved on
    /// with nothing for you). Notices are `{"type":"error","error":…}` instead
    /// of a frame, right before a close.
    #[schema(value_type = Option<Object>)]
    pub event: Option<serde_json::Value>,
}

/// A text frame: `{"cursor": …, "event": …}`.
fn frame(at: &Cursor, e: &Live) -> Message {
    // The cursor is base64url and the line canonical JSON: nothing to escape.
    Message::Text(format!("{{\"cursor\":\"{}\",\"event\":{}}}", at.encode(), e.line).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frames are formatted by hand; the document describes them with
    /// [`StreamFrame`], which must read them.
    #[test]
    fn a_frame_is_what_the_document_says_a_frame_is() {
        let at = Cursor {
            topics: [vec![3, 0], vec![7]],
        };
        let line =
            r#"{"at_ms":1,"event_id":"e","type":"presence","user_id":"u","status":"online"}"#;
        let live = Live {
            topic: Topic::Presence,
            partition: 0,
            offset: 6,
            line: Arc::from(line),
        };
        let Message::Text(text) = frame(&at, &live) else {
            panic!("a text frame")
        };
        let parsed: StreamFrame = serde_json::from_str(text.as_str()).unwrap();
        assert_eq!(parsed.cursor, at.encode());
        assert!(
            parsed
                .cursor
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(
            parsed.event.unwrap(),
            serde_json::from_str::<serde_json::Value>(line).unwrap()
        );
    }

    #[tokio::test]
    async fn a_full_queue_cuts_the_connection_off_and_leaves_others_alone() {
        let hub = Hub::new(2, [1, 1], Duration::from_secs(10));
        let mut slow = hub.subscribe("u1");
        let mut other = hub.subscribe("u2");
        let live = |i: u64| Live {
            topic: Topic::Conversations,
            partition: 0,
            offset: i,
            line: Arc::from(format!("e{i}")),
        };
        for i in 0..3 {
            hub.deliver(["u1", "u2"], live(i));
            // u2 keeps up.
            assert_eq!(&*other.rx.recv().await.unwrap().line, format!("e{i}"));
        }
        assert!(slow.overflowed.load(Ordering::Acquire));
        assert_eq!(&*slow.rx.recv().await.unwrap().line, "e0");
        assert_eq!(&*slow.rx.recv().await.unwrap().line, "e1");
        assert!(slow.rx.recv().await.is_none(), "then the queue ends");
        assert!(!other.overflowed.load(Ordering::Acquire));
    }
}
