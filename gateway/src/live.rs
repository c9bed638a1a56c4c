//! Live delivery: WebSocket connections per user, each with a bounded queue.
//!
//! The tail of `courier.conversations.v1` (see `conversations`) hands every applied
//! event to [`Hub::deliver`] with its audience. A connection whose queue is full is
//! cut off: its sender is dropped, so it drains what it had, then tells the client
//! it was too slow and closes (code 1008). Nothing is buffered without bound; a
//! reconnecting client catches up from `GET /v1/inbox` and the messages endpoint.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use courier_pipeline::shutdown::Shutdown;
use tokio::sync::mpsc;

use crate::metrics;

/// Close code for a client that could not keep up (RFC 6455 "policy violation").
pub const SLOW_CLOSE_CODE: u16 = 1008;

/// Close code for a connection whose token expired (in the range RFC 6455
/// leaves to applications; 4000 + HTTP's 401): reconnect with a fresh token.
pub const TOKEN_EXPIRED_CLOSE_CODE: u16 = 4401;

struct Conn {
    id: u64,
    tx: mpsc::Sender<Arc<str>>,
    overflowed: Arc<AtomicBool>,
}

/// Every open connection, by user.
pub struct Hub {
    queue: usize,
    next_id: AtomicU64,
    conns: Mutex<HashMap<String, Vec<Conn>>>,
}

/// A registered connection: what it reads, and how it learns it was cut off.
pub struct Subscription {
    id: u64,
    user: String,
    rx: mpsc::Receiver<Arc<str>>,
    overflowed: Arc<AtomicBool>,
}

impl Hub {
    /// A hub whose connections queue at most `queue` events each.
    pub fn new(queue: usize) -> Self {
        Hub {
            queue: queue.max(1),
            next_id: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
        }
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

    /// Queues `line` (one event's canonical JSON) for every connection of these users.
    pub fn deliver<'a>(&self, users: impl IntoIterator<Item = &'a str>, line: &str) {
        let mut conns = self.lock();
        let line: Arc<str> = Arc::from(line);
        for user in users {
            let Some(v) = conns.get_mut(user) else {
                continue;
            };
            v.retain(|c| match c.tx.try_send(line.clone()) {
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
    /// the gateway stops.
    pub async fn serve(
        self: Arc<Self>,
        mut socket: WebSocket,
        mut sub: Subscription,
        mut stop: Shutdown,
        expires: std::time::SystemTime,
    ) {
        metrics::get().ws_connections.inc();
        // A socket must not outlive its token: REST calls with it get 401 from
        // then on, so the stream ends then too.
        let left = expires
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        let expiry = tokio::time::sleep(left);
        tokio::pin!(expiry);
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
                    Some(line) => {
                        if socket.send(Message::Text(line.as_ref().into())).await.is_err() {
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
        self.unsubscribe(&sub.user, sub.id);
        metrics::get().ws_connections.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_cuts_the_connection_off_and_leaves_others_alone() {
        let hub = Hub::new(2);
        let mut slow = hub.subscribe("u1");
        let mut other = hub.subscribe("u2");
        for i in 0..3 {
            hub.deliver(["u1", "u2"], &format!("e{i}"));
            // u2 keeps up.
            assert_eq!(&*other.rx.recv().await.unwrap(), format!("e{i}"));
        }
        assert!(slow.overflowed.load(Ordering::Acquire));
        assert_eq!(&*slow.rx.recv().await.unwrap(), "e0");
        assert_eq!(&*slow.rx.recv().await.unwrap(), "e1");
        assert!(slow.rx.recv().await.is_none(), "then the queue ends");
        assert!(!other.overflowed.load(Ordering::Acquire));
    }
}
