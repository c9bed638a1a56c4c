//! Client-supplied idempotency keys: the same request twice publishes one event
//! and answers the same.
//!
//! A key is scoped to its user and endpoint. The first request with a key claims
//! it (`Pending`); a concurrent duplicate waits for that one to finish and then
//! gets its answer; a failed request releases the key so a retry can try again.
//! The same key with a different body is refused (422): it is a client bug, and
//! answering the first request's response would hide it. The store is bounded by
//! count and by age (oldest forgotten first).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use tokio::sync::Notify;

use crate::error::ApiError;

/// A stored answer.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Status of the first answer.
    pub status: StatusCode,
    /// Its JSON body.
    pub body: serde_json::Value,
}

#[derive(Debug)]
enum Entry {
    Pending {
        fingerprint: u64,
        done: Arc<Notify>,
    },
    Done {
        fingerprint: u64,
        answer: Stored,
        at: Instant,
    },
}

/// What [`Idempotency::claim`] decided.
#[derive(Debug)]
pub enum Claim {
    /// Go ahead; call [`Idempotency::finish`] or [`Idempotency::release`] after.
    Fresh,
    /// Answered before: answer the same.
    Replay(Stored),
}

/// The bounded store of keys.
#[derive(Debug)]
pub struct Idempotency {
    ttl: Duration,
    max: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Completed keys in completion order, for expiry and the count bound.
    order: VecDeque<(Instant, String)>,
}

impl Idempotency {
    /// A store keeping at most `max` answers for `ttl`.
    pub fn new(ttl: Duration, max: usize) -> Self {
        Idempotency {
            ttl,
            max: max.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Claims `key` for a request whose body hashes to `fingerprint`.
    pub async fn claim(&self, key: &str, fingerprint: u64) -> Result<Claim, ApiError> {
        loop {
            let wait = {
                let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
                self.expire(&mut inner);
                match inner.entries.get(key) {
                    None => {
                        inner.entries.insert(
                            key.to_string(),
                            Entry::Pending {
                                fingerprint,
                                done: Arc::new(Notify::new()),
                            },
                        );
                        return Ok(Claim::Fresh);
                    }
                    Some(Entry::Done {
                        fingerprint: f,
                        answer,
                        ..
                    }) => {
                        if *f != fingerprint {
                            return Err(reused());
                        }
                        return Ok(Claim::Replay(answer.clone()));
                    }
                    Some(Entry::Pending {
                        fingerprint: f,
                        done,
                    }) => {
                        if *f != fingerprint {
                            return Err(reused());
                        }
                        done.clone()
                    }
                }
            };
            // `notified` registers before we re-check, so a finish between the
            // unlock and here is not missed: `notify_waiters` only wakes futures
            // already created, hence the short bounded wait and the loop.
            let _ = tokio::time::timeout(Duration::from_millis(50), wait.notified()).await;
        }
    }

    /// Stores the answer of a claimed key.
    pub fn finish(&self, key: &str, answer: Stored) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if let Some(Entry::Pending { fingerprint, done }) = inner.entries.remove(key) {
            done.notify_waiters();
            inner.entries.insert(
                key.to_string(),
                Entry::Done {
                    fingerprint,
                    answer,
                    at: now,
                },
            );
            inner.order.push_back((now, key.to_string()));
        }
        while inner.order.len() > self.max {
            if let Some((_, k)) = inner.order.pop_front() {
                inner.entries.remove(&k);
            }
        }
    }

    /// Forgets a claimed key whose request failed, so a retry runs again.
    pub fn release(&self, key: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(Entry::Pending { done, .. }) = inner.entries.remove(key) {
            done.notify_waiters();
        }
    }

    fn expire(&self, inner: &mut Inner) {
        let now = Instant::now();
        while let Some((at, _)) = inner.order.front() {
            if now.duration_since(*at) < self.ttl {
                break;
            }
            let (_, k) = inner.order.pop_front().expect("front exists");
            if matches!(inner.entries.get(&k), Some(Entry::Done { at: a, .. }) if now.duration_since(*a) >= self.ttl)
            {
                inner.entries.remove(&k);
            }
        }
    }
}

fn reused() -> ApiError {
    ApiError::invalid("Idempotency-Key was already used for a different request")
}

/// A stable hash of a request (endpoint and body) to tell a retry from a reuse.
pub fn fingerprint(parts: &[&[u8]]) -> u64 {
    // FNV-1a: stable across processes and builds, unlike `DefaultHasher`.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.iter().chain(&[0xff]) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(v: i64) -> Stored {
        Stored {
            status: StatusCode::OK,
            body: serde_json::json!({ "v": v }),
        }
    }

    #[tokio::test]
    async fn a_finished_key_replays_and_a_reused_key_is_refused() {
        let s = Idempotency::new(Duration::from_secs(60), 10);
        assert!(matches!(s.claim("k", 1).await.unwrap(), Claim::Fresh));
        s.finish("k", ok(1));
        match s.claim("k", 1).await.unwrap() {
            Claim::Replay(a) => assert_eq!(a.body["v"], 1),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.claim("k", 2).await.unwrap_err().status, 422);
    }

    #[tokio::test]
    async fn a_concurrent_duplicate_waits_for_the_first_answer() {
        let s = Arc::new(Idempotency::new(Duration::from_secs(60), 10));
        assert!(matches!(s.claim("k", 1).await.unwrap(), Claim::Fresh));
        let s2 = s.clone();
        let dup = tokio::spawn(async move { s2.claim("k", 1).await.unwrap() });
        tokio::task::yield_now().await;
        s.finish("k", ok(7));
        match dup.await.unwrap() {
            Claim::Replay(a) => assert_eq!(a.body["v"], 7),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn released_expired_and_overflowing_keys_are_forgotten() {
        let s = Idempotency::new(Duration::from_millis(1), 1);
        assert!(matches!(s.claim("a", 1).await.unwrap(), Claim::Fresh));
        s.release("a");
        assert!(matches!(s.claim("a", 1).await.unwrap(), Claim::Fresh));
        s.finish("a", ok(1));
        tokio::time::sleep(Duration::from_millis(5)).await; // the TTL itself
        assert!(matches!(s.claim("a", 1).await.unwrap(), Claim::Fresh));
        let s = Idempotency::new(Duration::from_secs(60), 1);
        for k in ["x", "y"] {
            assert!(matches!(s.claim(k, 1).await.unwrap(), Claim::Fresh));
            s.finish(k, ok(1));
        }
        assert!(matches!(s.claim("x", 1).await.unwrap(), Claim::Fresh));
    }
}
