//! What a provider's answer means, and the circuit breaker: pure, with time passed
//! in, so every rule is tested without a clock or a network.

use std::time::{Duration, Instant};

use super::{Answer, NoAnswer};

/// Longest `Retry-After` honoured: a provider asking for more still gets a retry
/// then, rather than holding a batch (and everything behind it) for hours.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// What to do after one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// 2xx: the provider has it.
    Delivered,
    /// Worth trying again: 5xx, 429, a timeout or a connection error. `after` is
    /// the provider's `Retry-After` (429 only); otherwise the caller backs off.
    Retry {
        /// Metric label: `5xx`, `429`, `timeout`, `transport`.
        cause: &'static str,
        /// The wait the provider asked for.
        after: Option<Duration>,
    },
    /// Any other answer (4xx but 429, or an unexpected 1xx/3xx): retrying cannot
    /// help. The reason quotes the provider.
    Permanent(String),
}

impl Decision {
    /// Whether the answer says the endpoint itself is unwell (counts towards
    /// opening the breaker). A 429 is the provider pacing us, and a permanent
    /// answer is about the job, not the endpoint.
    pub fn endpoint_failed(&self) -> bool {
        matches!(self, Decision::Retry { cause, .. } if *cause != "429")
    }
}

/// Classifies one attempt.
pub fn classify(result: &Result<Answer, NoAnswer>) -> Decision {
    match result {
        Ok(a) if (200..300).contains(&a.status) => Decision::Delivered,
        Ok(a) if a.status == 429 => Decision::Retry {
            cause: "429",
            after: a.retry_after.map(|d| d.min(MAX_RETRY_AFTER)),
        },
        Ok(a) if a.status >= 500 => Decision::Retry {
            cause: "5xx",
            after: None,
        },
        Ok(a) => Decision::Permanent(format!(
            "the push provider answered {}: {}",
            a.status,
            a.body.trim()
        )),
        Err(e) if e.timeout => Decision::Retry {
            cause: "timeout",
            after: None,
        },
        Err(_) => Decision::Retry {
            cause: "transport",
            after: None,
        },
    }
}

/// The state of an endpoint's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Requests flow; counting consecutive failures.
    Closed {
        /// Consecutive failures so far.
        failures: u32,
    },
    /// No requests until `until`.
    Open {
        /// When one probe may go.
        until: Instant,
    },
    /// One probe is in flight; everyone else waits for its result.
    HalfOpen,
}

impl State {
    /// As the `courier_push_breaker_state` gauge: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> i64 {
        match self {
            State::Closed { .. } => 0,
            State::HalfOpen => 1,
            State::Open { .. } => 2,
        }
    }
}

/// Whether a request may go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Yes (closed).
    Go,
    /// Yes, as the probe of a half-open breaker: report its result.
    Probe,
    /// Not yet; ask again after this long.
    Wait(Duration),
}

/// A circuit breaker: opens after `threshold` consecutive endpoint failures, lets
/// one probe through after `cooldown`, closes on its success and opens again
/// (for another cooldown) on its failure.
#[derive(Debug, Clone)]
pub struct Breaker {
    state: State,
    threshold: u32,
    cooldown: Duration,
}

/// How often a request waiting on a half-open breaker looks again: the probe's
/// result usually comes within a round trip.
const PROBE_POLL: Duration = Duration::from_millis(20);

impl Breaker {
    /// A closed breaker.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Breaker {
            state: State::Closed { failures: 0 },
            threshold: threshold.max(1),
            cooldown,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Asks to send a request at `now`.
    pub fn permit(&mut self, now: Instant) -> Permit {
        match self.state {
            State::Closed { .. } => Permit::Go,
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen;
                Permit::Probe
            }
            State::Open { until } => Permit::Wait(until - now),
            State::HalfOpen => Permit::Wait(PROBE_POLL),
        }
    }

    /// Reports the result of a request sent with `permit`: `failed` when the
    /// endpoint failed (see [`Decision::endpoint_failed`]).
    pub fn report(&mut self, permit: Permit, failed: bool, now: Instant) {
        self.state = match (self.state, permit, failed) {
            (State::HalfOpen, Permit::Probe, false) => State::Closed { failures: 0 },
            (State::HalfOpen, Permit::Probe, true) => State::Open {
                until: now + self.cooldown,
            },
            // Results of requests sent before the breaker opened change nothing
            // more: it is already open or probing.
            (s @ (State::Open { .. } | State::HalfOpen), _, _) => s,
            (State::Closed { .. }, _, false) => State::Closed { failures: 0 },
            (State::Closed { failures }, _, true) if failures + 1 >= self.threshold => {
                State::Open {
                    until: now + self.cooldown,
                }
            }
            (State::Closed { failures }, _, true) => State::Closed {
                failures: failures + 1,
            },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, retry_after: Option<u64>) -> Result<Answer, NoAnswer> {
        Ok(Answer {
            status,
            retry_after: retry_after.map(Duration::from_secs),
            body: " gone \n".into(),
        })
    }

    #[test]
    fn answers_are_classified_as_the_issue_says() {
        assert_eq!(classify(&answer(202, None)), Decision::Delivered);
        assert_eq!(
            classify(&answer(429, Some(2))),
            Decision::Retry {
                cause: "429",
                after: Some(Duration::from_secs(2))
            }
        );
        assert_eq!(
            classify(&answer(429, Some(86_400))),
            Decision::Retry {
                cause: "429",
                after: Some(MAX_RETRY_AFTER)
            }
        );
        assert!(matches!(
            classify(&answer(503, None)),
            Decision::Retry { cause: "5xx", .. }
        ));
        assert_eq!(
            classify(&answer(410, None)),
            Decision::Permanent("the push provider answered 410: gone".into())
        );
        let timeout = Err(NoAnswer {
            timeout: true,
            message: "deadline".into(),
        });
        assert!(classify(&timeout).endpoint_failed());
        assert!(!classify(&answer(429, None)).endpoint_failed());
        assert!(!classify(&answer(400, None)).endpoint_failed());
    }

    #[test]
    fn the_breaker_opens_after_repeated_failures_and_probes_before_closing() {
        let t0 = Instant::now();
        let cooldown = Duration::from_secs(1);
        let mut b = Breaker::new(3, cooldown);
        for _ in 0..2 {
            assert_eq!(b.permit(t0), Permit::Go);
            b.report(Permit::Go, true, t0);
        }
        // A success in between resets the count.
        b.report(Permit::Go, false, t0);
        for _ in 0..2 {
            b.report(Permit::Go, true, t0);
        }
        assert_eq!(b.state(), State::Closed { failures: 2 });
        b.report(Permit::Go, true, t0);
        assert_eq!(b.state().gauge(), 2, "open after 3 in a row");
        assert_eq!(b.permit(t0), Permit::Wait(cooldown));
        // Late results of requests already in flight do not reopen or close it.
        b.report(Permit::Go, false, t0);
        assert_eq!(b.state().gauge(), 2);

        let t1 = t0 + cooldown;
        assert_eq!(b.permit(t1), Permit::Probe);
        assert_eq!(
            b.permit(t1),
            Permit::Wait(PROBE_POLL),
            "one probe at a time"
        );
        b.report(Permit::Probe, true, t1);
        assert_eq!(
            b.permit(t1),
            Permit::Wait(cooldown),
            "a failed probe reopens"
        );

        let t2 = t1 + cooldown;
        assert_eq!(b.permit(t2), Permit::Probe);
        b.report(Permit::Probe, false, t2);
        assert_eq!(b.state(), State::Closed { failures: 0 });
        assert_eq!(b.permit(t2), Permit::Go);
    }
}
