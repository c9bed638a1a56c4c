//! The pipeline on the embedded log: the EventLog conformance suite, the runner's
//! commit-after-ack and caught-up behaviour, and bounded replays.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use courier_pipeline::config::RunnerConfig;
use courier_pipeline::conformance::{LogFactory, LogHandle};
use courier_pipeline::embedded::EmbeddedOptions;
use courier_pipeline::producer::publish;
use courier_pipeline::replay::{End, Replay, ReplaySpec};
use courier_pipeline::runner::{self, Handler, HandlerError, RunOptions};
use courier_pipeline::shutdown;
use courier_pipeline::{ConsumedRecord, EmbeddedLog, EventLog, Position, TopicPartition};
use courier_schemas::json;
use courier_topics::{CONVERSATIONS, Catalog, PRESENCE};

struct Embedded {
    dir: tempfile::TempDir,
    log: Option<Arc<dyn EventLog>>,
}

fn open(dir: &std::path::Path) -> Arc<dyn EventLog> {
    Arc::new(
        EmbeddedLog::open(dir, Catalog::builtin(), EmbeddedOptions::default()).expect("open log"),
    )
}

#[async_trait]
impl LogHandle for Embedded {
    fn log(&self) -> Arc<dyn EventLog> {
        self.log.clone().expect("log is open")
    }

    async fn restart(&mut self) {
        let log = self.log.take().expect("log is open");
        assert_eq!(
            Arc::strong_count(&log),
            1,
            "every other handle to the log was dropped"
        );
        drop(log);
        self.log = Some(open(self.dir.path()));
    }
}

struct EmbeddedFactory;

#[async_trait]
impl LogFactory for EmbeddedFactory {
    async fn fresh(&self) -> Box<dyn LogHandle> {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = open(dir.path());
        Box::new(Embedded {
            dir,
            log: Some(log),
        })
    }
}

// The EventLog conformance suite on the embedded log: one test per check.
courier_pipeline::event_log_conformance!(EmbeddedFactory);

#[tokio::test]
async fn a_second_process_on_the_same_data_dir_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let _log = open(dir.path());
    let err = EmbeddedLog::open(dir.path(), Catalog::builtin(), EmbeddedOptions::default())
        .err()
        .expect("second open fails");
    assert!(
        err.to_string()
            .contains("in use by another courier process"),
        "{err}"
    );
}

fn events(lines: &[String]) -> Vec<courier_schemas::Event> {
    lines
        .iter()
        .map(|l| json::parse_line(l).expect("valid line"))
        .collect()
}

fn messages(conversations: usize, per: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..per {
        for c in 0..conversations {
            out.push(format!(
                r#"{{"type":"message_sent","event_id":"e-{c}-{i}","conversation_id":"c{c}","message_id":"m{i}","sender_id":"u1","text":"hello {i}","at_ms":{}}}"#,
                1_764_000_000_000i64 + (i * conversations + c) as i64
            ));
        }
    }
    out
}

/// Remembers what it applied; can be told to fail.
#[derive(Default)]
struct Recorder {
    applied: Vec<(u32, u64)>,
    fail_times: u32,
    fatal: bool,
}

#[async_trait]
impl Handler for Recorder {
    async fn handle(&mut self, batch: &[ConsumedRecord]) -> Result<(), HandlerError> {
        if self.fatal {
            return Err(HandlerError::fatal("the sink refused the batch"));
        }
        if self.fail_times > 0 {
            self.fail_times -= 1;
            return Err(HandlerError::retryable("the sink is down"));
        }
        self.applied
            .extend(batch.iter().map(|r| (r.partition, r.offset)));
        Ok(())
    }
}

fn opts(group: &str) -> RunOptions {
    RunOptions {
        processor: "test".into(),
        group: group.into(),
        topics: vec![CONVERSATIONS.to_string()],
        until_caught_up: true,
        runner: RunnerConfig {
            max_batch: 37,
            poll_timeout_ms: 50,
            max_attempts: 4,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_commits_after_the_handler_and_resumes_there() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    publish(&*log, &events(&messages(5, 40))).await.unwrap();

    let mut h = Recorder {
        fail_times: 2,
        ..Recorder::default()
    };
    let stats = runner::run(log.clone(), &mut h, opts("g"), shutdown::Shutdown::never())
        .await
        .unwrap();
    assert_eq!(stats.records, 200, "caught up with every record");
    assert_eq!(
        h.applied.len(),
        200,
        "each applied once despite two retried failures"
    );
    let committed = log.committed("g", CONVERSATIONS).await.unwrap();
    for p in 0..12u32 {
        let (_, high) = log.watermarks(CONVERSATIONS, p).await.unwrap();
        assert_eq!(
            committed[p as usize].unwrap_or(0),
            high,
            "partition {p} committed to the end"
        );
    }

    // More records, and a restart of the process: the runner resumes at the commit.
    publish(&*log, &events(&messages(5, 41)[200..]))
        .await
        .unwrap();
    drop(log);
    let log = open(dir.path());
    let mut h2 = Recorder::default();
    let stats = runner::run(log.clone(), &mut h2, opts("g"), shutdown::Shutdown::never())
        .await
        .unwrap();
    assert_eq!(
        stats.records, 5,
        "only the new records are processed after a restart"
    );
    let mut parts: BTreeMap<u32, u64> = BTreeMap::new();
    for (p, o) in &h2.applied {
        parts.insert(*p, *o);
    }
    for (p, o) in parts {
        let (_, high) = log.watermarks(CONVERSATIONS, p).await.unwrap();
        assert_eq!(o + 1, high);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_is_not_committed() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    publish(&*log, &events(&messages(3, 3))).await.unwrap();
    let mut h = Recorder {
        fatal: true,
        ..Recorder::default()
    };
    let err = runner::run(log.clone(), &mut h, opts("g"), shutdown::Shutdown::never())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("the sink refused the batch"),
        "{err}"
    );
    let committed = log.committed("g", CONVERSATIONS).await.unwrap();
    assert!(
        committed.iter().all(Option::is_none),
        "nothing committed: {committed:?}"
    );

    // Retryable failures go on past max_attempts (a sink that is down for a while
    // is waited for, not given up on) until the sink answers or a stop request;
    // a stop leaves the batch uncommitted.
    let (trigger, stop) = shutdown::channel();
    let mut h = Stopper {
        attempts: 0,
        stop_at: 6,
        trigger,
    };
    let err = runner::run(log.clone(), &mut h, opts("g"), stop)
        .await
        .unwrap_err();
    assert_eq!(h.attempts, 6, "retried past max_attempts (4) until stopped");
    assert!(err.to_string().contains("the sink is down"), "{err}");
    assert!(
        log.committed("g", CONVERSATIONS)
            .await
            .unwrap()
            .iter()
            .all(Option::is_none)
    );
    assert_eq!(
        courier_pipeline::metrics::metrics()
            .stalled
            .with_label_values(&["test"])
            .get(),
        1,
        "reported stalled"
    );

    // A sink down for longer than max_attempts, then back: every record applied once.
    let mut h = Recorder {
        fail_times: 5,
        ..Recorder::default()
    };
    let stats = runner::run(log.clone(), &mut h, opts("g"), shutdown::Shutdown::never())
        .await
        .unwrap();
    assert_eq!((stats.records, h.applied.len()), (9, 9));
    assert_eq!(
        courier_pipeline::metrics::metrics()
            .stalled
            .with_label_values(&["test"])
            .get(),
        0,
        "recovered"
    );
}

/// Fails every batch as a sink that is down would, and asks the run to stop at
/// its `stop_at`-th attempt.
struct Stopper {
    attempts: u32,
    stop_at: u32,
    trigger: shutdown::ShutdownTrigger,
}

#[async_trait]
impl Handler for Stopper {
    async fn handle(&mut self, _batch: &[ConsumedRecord]) -> Result<(), HandlerError> {
        self.attempts += 1;
        if self.attempts == self.stop_at {
            self.trigger.trigger();
        }
        Err(HandlerError::retryable("the sink is down"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_a_running_processor_after_committing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    publish(&*log, &events(&messages(2, 10))).await.unwrap();
    let (trigger, stop) = shutdown::channel();
    let mut o = opts("live");
    o.until_caught_up = false;
    let task_log = log.clone();
    let task = tokio::spawn(async move {
        let mut h = Recorder::default();
        let r = runner::run(task_log, &mut h, o, stop).await;
        (r, h.applied.len())
    });
    // Wait until the live processor has committed everything, then stop it.
    let want: u64 = 20;
    loop {
        let c: u64 = log
            .committed("live", CONVERSATIONS)
            .await
            .unwrap()
            .iter()
            .flatten()
            .sum();
        if c == want {
            break;
        }
        tokio::task::yield_now().await;
    }
    trigger.trigger();
    let (r, applied) = task.await.unwrap();
    assert_eq!(r.unwrap().records, 20);
    assert_eq!(applied, 20);
}

/// Seeks a partition to a checkpoint the handler keeps itself.
struct Checkpointed {
    from: u64,
    first_seen: BTreeMap<u32, u64>,
}

#[async_trait]
impl Handler for Checkpointed {
    async fn on_assigned(
        &mut self,
        tps: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, u64)>, HandlerError> {
        Ok(tps.iter().map(|tp| (tp.clone(), self.from)).collect())
    }
    async fn handle(&mut self, batch: &[ConsumedRecord]) -> Result<(), HandlerError> {
        for r in batch {
            self.first_seen.entry(r.partition).or_insert(r.offset);
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_checkpoint_overrides_the_group_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    publish(&*log, &events(&messages(12, 10))).await.unwrap();
    let mut h = Checkpointed {
        from: 3,
        first_seen: BTreeMap::new(),
    };
    runner::run(log.clone(), &mut h, opts("cp"), shutdown::Shutdown::never())
        .await
        .unwrap();
    assert!(!h.first_seen.is_empty());
    assert!(h.first_seen.values().all(|o| *o == 3), "{:?}", h.first_seen);
}

#[tokio::test]
async fn replay_is_bounded_filtered_and_ordered_per_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let lines = messages(4, 25);
    let mut evs = events(&lines);
    evs.push(
        json::parse_line(
            r#"{"type":"presence","event_id":"p1","user_id":"u9","status":"online","at_ms":1}"#,
        )
        .unwrap(),
    );
    publish(&*log, &evs).await.unwrap();

    let spec = |from, to, conversation: Option<&str>, user: Option<&str>| ReplaySpec {
        topic: CONVERSATIONS.to_string(),
        from,
        to,
        conversation: conversation.map(str::to_string),
        user: user.map(str::to_string),
    };
    let collect = |s: ReplaySpec| {
        let log = log.clone();
        async move {
            let mut r = Replay::start(log.clone(), s).await.unwrap();
            let mut out = Vec::new();
            while let Some((_, e)) = r.next().await.unwrap() {
                out.push(json::to_line(&e));
            }
            out
        }
    };
    // Everything, in timeline order (the lines were made in time order).
    let all = collect(spec(Position::Earliest, None, None, None)).await;
    assert_eq!(all, lines);
    // One conversation, in its order.
    let c2 = collect(spec(Position::Earliest, None, Some("c2"), None)).await;
    let want: Vec<_> = lines
        .iter()
        .filter(|l| l.contains(r#""conversation_id":"c2""#))
        .cloned()
        .collect();
    assert_eq!(c2, want);
    // A time range [from, to).
    let t0 = 1_764_000_000_000i64;
    let range = collect(spec(
        Position::Timestamp(t0 + 10),
        Some(End::Timestamp(t0 + 20)),
        None,
        None,
    ))
    .await;
    assert_eq!(range, lines[10..20].to_vec());
    // A user filter on another topic.
    let mut r = Replay::start(
        log.clone(),
        ReplaySpec {
            topic: PRESENCE.into(),
            from: Position::Earliest,
            to: None,
            conversation: None,
            user: Some("u9".into()),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        r.next().await.unwrap().map(|(_, e)| e.event_id),
        Some("p1".to_string())
    );
    assert!(r.next().await.unwrap().is_none());
    // Nobody matches.
    assert!(
        collect(spec(Position::Earliest, None, None, Some("nobody")))
            .await
            .is_empty()
    );
}

/// Subscribes `group` to the presence topic and polls until it owns partitions.
async fn member_of(log: &dyn EventLog, group: &str) -> Box<dyn courier_pipeline::GroupConsumer> {
    let mut c = log
        .subscribe(group, &[PRESENCE.to_string()])
        .await
        .expect("subscribe");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while c.assignment().is_empty() {
        assert!(std::time::Instant::now() < deadline, "never assigned");
        c.poll(10, std::time::Duration::from_millis(100))
            .await
            .expect("poll");
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_show_their_members_and_offsets_move_only_while_empty() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let group = "courier.tools";
    let mut c = member_of(&*log, group).await;
    let mut owned = c.assignment();
    owned.sort();
    let tp = owned[0].clone();
    c.commit(&[(tp.clone(), 0)]).await.unwrap();

    assert_eq!(log.groups().await.unwrap(), vec![group.to_string()]);
    let d = log.describe_group(group).await.unwrap();
    assert_eq!(d.state, "Stable");
    assert_eq!(d.members.len(), 1);
    let m = &d.members[0];
    assert!(
        m.member_id.starts_with(&format!("{}-", std::process::id())),
        "{m:?}"
    );
    assert_eq!(m.client_id, "courier-group");
    assert!(!m.host.is_empty());
    assert_eq!(m.assignment, owned);
    assert_eq!(d.committed, vec![(tp.clone(), 0)]);

    // Moving the offsets of a group with a member is refused, naming it.
    let err = log
        .reset_committed(group, &[(tp.clone(), 5)])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, courier_pipeline::LogError::GroupNotEmpty { members, .. } if members.len() == 1),
        "{err}"
    );
    assert!(err.to_string().contains(&m.member_id), "{err}");

    // Another process's view: the log is held, so it opens read-only and reads
    // the members the holder publishes.
    let other = EmbeddedLog::open_for_inspection(
        dir.path(),
        Catalog::builtin(),
        EmbeddedOptions::default(),
    )
    .unwrap();
    assert!(other.is_read_only());
    let seen = other.describe_group(group).await.unwrap();
    assert_eq!(seen.members, d.members);
    assert_eq!(seen.committed, d.committed);
    assert_eq!(other.groups().await.unwrap(), vec![group.to_string()]);
    let err = other
        .reset_committed(group, &[(tp.clone(), 5)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, courier_pipeline::LogError::GroupNotEmpty { .. }),
        "{err}"
    );

    c.close().await.unwrap();
    let d = log.describe_group(group).await.unwrap();
    assert_eq!((d.state.as_str(), d.members.len()), ("Empty", 0));
    // Read-only, the holder must stop first, members or not.
    let refused = other.reset_committed(group, &[(tp.clone(), 0)]).await;
    assert!(
        refused
            .unwrap_err()
            .to_string()
            .contains(&format!("process {}", std::process::id())),
    );
    drop(other);

    log.append(
        PRESENCE,
        (0..20)
            .map(|i| courier_pipeline::Record {
                key: format!("u{i}").into_bytes(),
                value: vec![1],
                headers: vec![],
                timestamp_ms: i,
            })
            .collect(),
    )
    .await
    .unwrap();
    let (_, high) = log.watermarks(&tp.topic, tp.partition).await.unwrap();
    assert!(high > 1, "the partition has records");
    log.reset_committed(group, &[(tp.clone(), 1)])
        .await
        .unwrap();
    assert_eq!(
        log.committed(group, PRESENCE).await.unwrap()[tp.partition as usize],
        Some(1)
    );
    // The next member starts there.
    let c = member_of(&*log, group).await;
    assert_eq!(c.position(&tp), Some(1));
    c.close().await.unwrap();

    // The holder gone, its published members go with it.
    drop(log);
    let after =
        EmbeddedLog::open_read_only(dir.path(), Catalog::builtin()).expect("read-only open");
    assert_eq!(after.describe_group(group).await.unwrap().state, "Unknown");
    assert_eq!(
        after.describe_group(group).await.unwrap().committed,
        vec![(tp, 1)]
    );
}
