//! Drives push delivery from the runner: decode the batch's jobs, skip those the
//! sent store already has, deliver the rest with bounded concurrency (retries with
//! backoff and jitter, `Retry-After`, one circuit breaker for the endpoint), record
//! each accepted job the moment the provider accepts it, and dead-letter the jobs
//! the provider refuses for good. `handle` returns once every job of the batch is
//! delivered or dead-lettered, so the runner's commit means exactly that.
//!
//! The one window where a job can reach the provider twice is a crash between the
//! provider's 2xx and the local write of the job's id (microseconds per job in
//! flight); the `Idempotency-Key` header carries the `job_id` so a provider that
//! honours it closes that window too.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use courier_pipeline::runner::{Handler, HandlerError, backoff};
use courier_pipeline::{ConsumedRecord, EventLog, TopicPartition, dead_letter, replay};
use courier_schemas::proto::{PushJob, event::Body};
use futures::StreamExt;

use super::policy::{Breaker, Decision, Permit, classify};
use super::{Done, PushProvider, SentStore, body};
use crate::metrics::metrics;

/// How deliveries behave (from `[push]` of the config).
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Jobs in flight at once.
    pub concurrency: usize,
    /// Attempts per job on retryable failures before it is dead-lettered.
    pub max_attempts: u32,
    /// Consecutive endpoint failures that open the breaker.
    pub breaker_failures: u32,
    /// How long an open breaker waits before its probe.
    pub breaker_cooldown: Duration,
    /// How long sent ids are remembered.
    pub sent_ttl: Duration,
}

/// The push delivery processor over its two ports.
pub struct PushProcessor<P, S> {
    provider: Arc<P>,
    sent: Arc<S>,
    log: Arc<dyn EventLog>,
    opts: PushOptions,
    breaker: Arc<Mutex<Breaker>>,
    /// When expired ids were last dropped.
    expired_at: Option<Instant>,
}

/// How often expired sent ids are dropped.
const EXPIRE_EVERY: Duration = Duration::from_secs(60);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How one job ended in this batch.
enum Ended {
    Delivered,
    AlreadyDone,
    /// To dead letters, with the metric cause and the reason.
    Refused(&'static str, String),
}

impl<P: PushProvider + 'static, S: SentStore + 'static> PushProcessor<P, S> {
    /// A processor sending through `provider`, remembering sent jobs in `sent`,
    /// dead-lettering through `log`.
    pub fn new(provider: P, sent: S, log: Arc<dyn EventLog>, opts: PushOptions) -> Self {
        let breaker = Breaker::new(opts.breaker_failures, opts.breaker_cooldown);
        metrics()
            .push_breaker
            .with_label_values(&[provider.endpoint()])
            .set(breaker.state().gauge());
        PushProcessor {
            provider: Arc::new(provider),
            sent: Arc::new(sent),
            log,
            opts,
            breaker: Arc::new(Mutex::new(breaker)),
            expired_at: None,
        }
    }

    /// The sent store (for checks after a run).
    pub fn sent(&self) -> &S {
        &self.sent
    }

    fn expire(&mut self) -> Result<(), HandlerError> {
        if self.expired_at.is_some_and(|t| t.elapsed() < EXPIRE_EVERY) {
            return Ok(());
        }
        let before = now_ms() - self.opts.sent_ttl.as_millis() as i64;
        let n = self.sent.expire(before)?;
        if n > 0 {
            tracing::info!(
                processor = "push",
                expired = n,
                "forgot expired sent job ids"
            );
        }
        self.expired_at = Some(Instant::now());
        Ok(())
    }
}

/// Delivers one job: retries until the provider accepts it, refuses it for good,
/// or the attempts run out. A `redriven` job (a dead letter taken back by
/// `courier dead-letters redrive`) is tried again though it is recorded as
/// dead-lettered; one recorded as sent never is.
async fn deliver<P: PushProvider, S: SentStore>(
    provider: &P,
    sent: &S,
    breaker: &Mutex<Breaker>,
    max_attempts: u32,
    job: &PushJob,
    at_ms: i64,
    redriven: bool,
) -> Result<Ended, HandlerError> {
    let m = metrics();
    let endpoint = provider.endpoint();
    match sent.get(&job.job_id)? {
        Some(Done::DeadLettered) if redriven => {}
        Some(_) => {
            m.push_already_sent.inc();
            return Ok(Ended::AlreadyDone);
        }
        None => {}
    }
    let payload = body::json(job, at_ms);
    let started = Instant::now();
    let gauge = m.push_breaker.with_label_values(&[endpoint]);
    let mut attempt = 0;
    loop {
        let permit = loop {
            // The lock is never held across an await.
            let p = {
                let mut b = breaker.lock().unwrap_or_else(|e| e.into_inner());
                let p = b.permit(Instant::now());
                gauge.set(b.state().gauge());
                p
            };
            match p {
                Permit::Wait(d) => tokio::time::sleep(d).await,
                p => break p,
            }
        };
        attempt += 1;
        let result = provider.post(&job.job_id, payload.clone()).await;
        let decision = classify(&result);
        {
            let mut b = breaker.lock().unwrap_or_else(|e| e.into_inner());
            let before = b.state().gauge();
            b.report(permit, decision.endpoint_failed(), Instant::now());
            let after = b.state().gauge();
            gauge.set(after);
            if before != after {
                tracing::warn!(processor = "push", endpoint, state = ?b.state(), "circuit breaker changed state");
            }
        }
        match decision {
            Decision::Delivered => {
                sent.put(&job.job_id, Done::Sent, now_ms())?;
                m.push_sent.inc();
                m.push_delivery_seconds
                    .with_label_values(&[endpoint])
                    .observe(started.elapsed().as_secs_f64());
                return Ok(Ended::Delivered);
            }
            Decision::Permanent(reason) => {
                return Ok(Ended::Refused(
                    "permanent",
                    format!("push job {} for {}: {reason}", job.job_id, job.user_id),
                ));
            }
            Decision::Retry { cause, after } => {
                let last = match &result {
                    Ok(a) => format!("{} {}", a.status, a.body.trim()),
                    Err(e) => e.message.clone(),
                };
                if attempt >= max_attempts {
                    return Ok(Ended::Refused(
                        "exhausted",
                        format!(
                            "push job {} for {}: the push provider still failed after {attempt} \
                             attempts; last answer: {last}",
                            job.job_id, job.user_id
                        ),
                    ));
                }
                m.push_retried.with_label_values(&[cause]).inc();
                let wait = after.unwrap_or_else(|| backoff(attempt - 1));
                tracing::debug!(processor = "push", job_id = %job.job_id, attempt, cause, last = %last, retry_in_ms = wait.as_millis() as u64, "push attempt failed; retrying");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// The job a record holds, or why it cannot be delivered.
fn job_of(r: &ConsumedRecord) -> Result<(PushJob, i64), String> {
    let e = replay::decode(r).map_err(|e| e.to_string())?;
    match e.body {
        Some(Body::PushJob(j)) if !j.job_id.is_empty() && !j.user_id.is_empty() => Ok((j, e.at_ms)),
        Some(Body::PushJob(_)) => Err(format!(
            "push_job {} has an empty job_id or user_id",
            e.event_id
        )),
        Some(other) => Err(format!(
            "courier.push-jobs.v1 holds only push jobs; `{}` is {}",
            e.event_id,
            other.kind()
        )),
        None => Err(format!(
            "`{}` has an event type this build does not know",
            e.event_id
        )),
    }
}

#[async_trait]
impl<P: PushProvider + 'static, S: SentStore + 'static> Handler for PushProcessor<P, S> {
    async fn on_assigned(
        &mut self,
        _tps: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, u64)>, HandlerError> {
        self.expire()?;
        Ok(Vec::new())
    }

    async fn handle(&mut self, batch: &[ConsumedRecord]) -> Result<(), HandlerError> {
        self.expire()?;
        let m = metrics();
        let mut refused: Vec<(&ConsumedRecord, String)> = Vec::new();
        let mut jobs = Vec::new();
        let mut seen = HashSet::new();
        for r in batch {
            // Redriven for another processor: not ours (push alone reads its
            // topic, so none is, but the rule is every processor's).
            if dead_letter::addressed_to_another(r, "push") {
                continue;
            }
            match job_of(r) {
                // The same job twice in one batch (a notifier crash republished it)
                // is delivered once.
                Ok((job, _)) if !seen.insert(job.job_id.clone()) => m.push_already_sent.inc(),
                Ok((job, at_ms)) => jobs.push((r, job, at_ms)),
                Err(reason) => {
                    m.push_failed.with_label_values(&["invalid"]).inc();
                    refused.push((r, reason));
                }
            }
        }
        let max_attempts = self.opts.max_attempts;
        // Each delivery owns what it needs (Arcs and a copy of its job), so the
        // futures are 'static and may run concurrently.
        let deliveries: Vec<_> = jobs
            .iter()
            .enumerate()
            .map(|(i, (r, job, at_ms))| {
                let (provider, sent, breaker) = (
                    self.provider.clone(),
                    self.sent.clone(),
                    self.breaker.clone(),
                );
                let (job, at_ms) = (job.clone(), *at_ms);
                let redriven = r.header(dead_letter::REDRIVE_FOR).is_some();
                async move {
                    let ended = deliver(
                        &*provider,
                        &*sent,
                        &breaker,
                        max_attempts,
                        &job,
                        at_ms,
                        redriven,
                    )
                    .await;
                    (i, ended)
                }
            })
            .collect();
        let ended: Vec<(usize, Result<Ended, HandlerError>)> = futures::stream::iter(deliveries)
            .buffer_unordered(self.opts.concurrency)
            .collect()
            .await;
        let mut first_error = None;
        let mut dead_jobs = Vec::new();
        for (i, ended) in ended {
            let (r, job, _) = &jobs[i];
            match ended {
                Ok(Ended::Delivered | Ended::AlreadyDone) => {}
                Ok(Ended::Refused(cause, reason)) => {
                    m.push_failed.with_label_values(&[cause]).inc();
                    refused.push((*r, reason));
                    dead_jobs.push(job.job_id.as_str());
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        refused.sort_by_key(|(r, _)| (r.partition, r.offset));
        dead_letter::send(&*self.log, "push", &refused)
            .await
            .map_err(|e| HandlerError::retryable(format!("writing dead letters: {e}")))?;
        // Only once the dead letters are durable: a crash before this sends the
        // same dead letters again (same ids), never loses one.
        let now = now_ms();
        for id in dead_jobs {
            self.sent.put(id, Done::DeadLettered, now)?;
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use courier_pipeline::config::RunnerConfig;
    use courier_pipeline::runner::{RunOptions, run};
    use courier_pipeline::shutdown::Shutdown;
    use courier_pipeline::{EmbeddedLog, Record, producer};
    use courier_schemas::json::parse_line;
    use courier_topics::{Catalog, DEAD_LETTERS, PUSH_JOBS};

    use super::*;
    use crate::push::{Answer, NoAnswer};
    use crate::store::StoreError;

    #[derive(Default)]
    struct MemorySent(Mutex<HashMap<String, Done>>);

    impl SentStore for MemorySent {
        fn get(&self, job_id: &str) -> Result<Option<Done>, StoreError> {
            Ok(self.0.lock().unwrap().get(job_id).copied())
        }
        fn put(&self, job_id: &str, done: Done, _now_ms: i64) -> Result<(), StoreError> {
            self.0.lock().unwrap().insert(job_id.into(), done);
            Ok(())
        }
        fn expire(&self, _before_ms: i64) -> Result<u64, StoreError> {
            Ok(0)
        }
    }

    /// Answers 503 to jobs whose id starts with `down`, 202 to the rest; counts.
    #[derive(Default)]
    struct Script {
        calls: Mutex<HashMap<String, u32>>,
    }

    #[async_trait]
    impl PushProvider for Script {
        fn endpoint(&self) -> &str {
            "memory://handler-test"
        }
        async fn post(&self, job_id: &str, _body: Vec<u8>) -> Result<Answer, NoAnswer> {
            *self.calls.lock().unwrap().entry(job_id.into()).or_default() += 1;
            let status = if job_id.starts_with("down") { 503 } else { 202 };
            Ok(Answer {
                status,
                retry_after: None,
                body: "down for maintenance".into(),
            })
        }
    }

    fn job(id: &str) -> courier_schemas::Event {
        parse_line(&format!(
            r#"{{"type":"push_job","event_id":"{id}","job_id":"{id}","user_id":"u-{id}","conversation_id":"c","message_id":"m","sender_id":"s","preview":"","collapse_key":"c","at_ms":1}}"#
        ))
        .unwrap()
    }

    fn opts() -> RunOptions {
        RunOptions {
            processor: "push".into(),
            group: "courier.push".into(),
            topics: vec![PUSH_JOBS.into()],
            until_caught_up: true,
            runner: RunnerConfig::default(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_redriven_job_is_tried_again_unless_it_was_sent() {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> = Arc::new(
            EmbeddedLog::open(dir.path(), Catalog::builtin(), Default::default()).unwrap(),
        );
        let redriven = |id: &str| {
            let mut r = producer::to_record(&job(id));
            r.headers
                .push((dead_letter::REDRIVE_FOR.to_string(), b"push".to_vec()));
            r
        };
        // `refused` was dead-lettered, `sent` delivered; both come back as
        // redrives, and `refused` once more as a plain record.
        let records = vec![
            redriven("refused"),
            redriven("sent"),
            producer::to_record(&job("refused")),
        ];
        for r in records {
            log.append(PUSH_JOBS, vec![r]).await.unwrap();
        }
        let sent = MemorySent::default();
        sent.put("refused", Done::DeadLettered, 0).unwrap();
        sent.put("sent", Done::Sent, 0).unwrap();
        let mut p = PushProcessor::new(
            Script::default(),
            sent,
            log.clone(),
            PushOptions {
                concurrency: 1,
                max_attempts: 1,
                breaker_failures: 5,
                breaker_cooldown: Duration::from_millis(10),
                sent_ttl: Duration::from_secs(60),
            },
        );
        run(log.clone(), &mut p, opts(), Shutdown::never())
            .await
            .unwrap();
        let calls = p.provider.calls.lock().unwrap().clone();
        assert_eq!(calls.get("refused"), Some(&1), "delivered once: {calls:?}");
        assert_eq!(calls.get("sent"), None, "a sent job never again");
        assert_eq!(p.sent().get("refused").unwrap(), Some(Done::Sent));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exhausted_and_invalid_jobs_are_dead_lettered_done_ones_skipped_and_the_breaker_probes()
    {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> = Arc::new(
            EmbeddedLog::open(dir.path(), Catalog::builtin(), Default::default()).unwrap(),
        );
        producer::publish(&*log, &[job("down-1"), job("done-1")])
            .await
            .unwrap();
        let garbage = Record {
            key: b"u".to_vec(),
            value: vec![0xff],
            headers: vec![],
            timestamp_ms: 1,
        };
        log.append(PUSH_JOBS, vec![garbage]).await.unwrap();

        let sent = MemorySent::default();
        sent.put("done-1", Done::Sent, 0).unwrap();
        let mut p = PushProcessor::new(
            Script::default(),
            sent,
            log.clone(),
            PushOptions {
                concurrency: 1,
                max_attempts: 3,
                breaker_failures: 2,
                breaker_cooldown: Duration::from_millis(10),
                sent_ttl: Duration::from_secs(60),
            },
        );
        run(log.clone(), &mut p, opts(), Shutdown::never())
            .await
            .unwrap();
        let calls = p.provider.calls.lock().unwrap().clone();
        assert_eq!(calls.get("down-1"), Some(&3), "retried up to max_attempts");
        assert_eq!(calls.get("done-1"), None, "a done job is never posted");
        assert_eq!(p.sent().get("down-1").unwrap(), Some(Done::DeadLettered));
        let gauge = metrics()
            .push_breaker
            .with_label_values(&["memory://handler-test"]);
        assert_eq!(
            gauge.get(),
            2,
            "two failures opened it; the failed probe reopened it"
        );

        let mut reasons = Vec::new();
        for part in 0..log.partitions(DEAD_LETTERS).unwrap() {
            for r in log
                .read(DEAD_LETTERS, part, 0, 10, Duration::ZERO)
                .await
                .unwrap()
            {
                let line = courier_schemas::json::to_line(&replay::decode(&r).unwrap());
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                reasons.push(v["reason"].as_str().unwrap().to_string());
            }
        }
        reasons.sort();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(
            reasons[1].contains(
                "push job down-1 for u-down-1: the push provider still failed after 3 attempts; \
                 last answer: 503 down for maintenance"
            ),
            "{reasons:?}"
        );
        assert!(reasons[0].contains("courier-schema"), "{reasons:?}");

        // A healthy answer to the next probe closes the breaker.
        producer::publish(&*log, &[job("ok-1")]).await.unwrap();
        run(log.clone(), &mut p, opts(), Shutdown::never())
            .await
            .unwrap();
        assert_eq!(p.sent().get("ok-1").unwrap(), Some(Done::Sent));
        assert_eq!(gauge.get(), 0, "closed after a successful probe");
    }
}
