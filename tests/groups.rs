//! End-to-end tests of `courier groups` and `courier dead-letters` through the
//! binary, embedded and on Kafka: a group described while `courier run` holds
//! it (members, assignment, offsets), `courier lag` beside `courier up`, a
//! reset refused while that member lives, a reset followed by `run` that
//! processes again exactly the chosen range
//! (presence), the folds moving only forward (and that move reaching the
//! view's own checkpoint, on RocksDB and on Cassandra), push moving back only
//! with --resend-notifications,
//! and dead letters taken back to the processor that rejected them, once:
//! inbox (applied by the inbox, not by search), one that fails again becoming a
//! new dead letter, and push jobs delivered on redrive to a provider started by
//! the test.

mod common;

use common::{KillOnDrop, configured, courier, kafka_config, ok, spawn_live, unique_namespace};

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use courier_topics::{CONVERSATIONS, PRESENCE, partition_for_key};
use serde_json::Value;

const AT: i64 = 1_764_000_000_000;

fn write_file(dir: &Path, name: &str, lines: &[String]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

fn produce(mut cmd: Command, file: &Path) {
    ok(cmd.args(["produce", "--file"]).arg(file).output().unwrap());
}

/// `run PROCESSOR --until-caught-up`; the records it applied, from its last line.
fn applied(mut cmd: Command, processor: &str) -> u64 {
    let out = cmd
        .args(["run", processor, "--until-caught-up"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "run {processor} failed: {stderr}");
    let prefix = format!("{processor}: applied ");
    stderr
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no total in: {stderr}"))
}

/// Stderr of a command that must fail.
fn fails(out: Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: Output) -> Value {
    serde_json::from_str(&ok(out)).unwrap()
}

/// `groups describe GROUP --json`.
fn describe(mut cmd: Command, group: &str) -> Value {
    json(
        cmd.args(["groups", "describe", group, "--json"])
            .output()
            .unwrap(),
    )
}

/// The committed offset of one partition in a `describe --json`.
fn committed(d: &Value, topic: &str, partition: u32) -> Option<u64> {
    d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["topic"] == topic && r["partition"] == partition)
        .and_then(|r| r["committed"].as_u64())
}

/// Three presence events for each of u0..u9, alternating online and offline,
/// one second apart in turn order; and the partition holding the most of them.
fn presence_stream() -> (Vec<String>, u32) {
    let mut lines = Vec::new();
    for round in 0..3 {
        for u in 0..10 {
            let status = if round % 2 == 0 { "online" } else { "offline" };
            lines.push(format!(
                r#"{{"type":"presence","event_id":"p{round}-{u}","user_id":"u{u}","status":"{status}","at_ms":{}}}"#,
                AT + (round * 10 + u) * 1000
            ));
        }
    }
    let mut per: BTreeMap<u32, usize> = BTreeMap::new();
    for u in 0..10 {
        *per.entry(partition_for_key(format!("u{u}").as_bytes(), 6))
            .or_default() += 3;
    }
    let busiest = per
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(p, _)| *p)
        .unwrap();
    (lines, busiest)
}

/// What `groups reset … then run` must do on any backend: `cmd()` is the
/// binary with the backend's flags.
fn reset_then_run_processes_exactly_the_range(cmd: impl Fn() -> Command, dir: &Path) {
    let (lines, p) = presence_stream();
    produce(cmd(), &write_file(dir, "presence.jsonl", &lines));
    assert_eq!(applied(cmd(), "presence"), 30);
    let d = describe(cmd(), "courier.presence");
    let end = committed(&d, PRESENCE, p).expect("committed to the end");
    assert!(end >= 3, "partition {p} holds {end}");
    let total_lag: u64 = d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["lag"].as_u64().unwrap())
        .sum();
    assert_eq!(total_lag, 0);

    let reset = |args: &[&str]| {
        let mut c = cmd();
        c.args(["groups", "reset", "courier.presence"])
            .args(args)
            .args(["--topic", PRESENCE, "--partition", &p.to_string()]);
        ok(c.output().unwrap())
    };
    // A dry run moves nothing.
    let plan = reset(&["--to-offset", "1", "--dry-run"]);
    assert!(plan.contains("dry run"), "{plan}");
    assert_eq!(
        committed(&describe(cmd(), "courier.presence"), PRESENCE, p),
        Some(end)
    );
    // To an offset: exactly end - 1 records again.
    reset(&["--to-offset", "1", "--execute"]);
    assert_eq!(
        committed(&describe(cmd(), "courier.presence"), PRESENCE, p),
        Some(1)
    );
    assert_eq!(applied(cmd(), "presence"), end - 1);
    // By a shift back from where it stands: exactly that many.
    reset(&["--shift-by", "-2", "--execute"]);
    assert_eq!(applied(cmd(), "presence"), 2);
    // To a time: from the first record at or after it. The partition's records
    // are in time order; the last one is the last user's round 2.
    let last_user = (0..10)
        .rev()
        .find(|u| partition_for_key(format!("u{u}").as_bytes(), 6) == p)
        .unwrap();
    let t = AT + (20 + last_user) * 1000;
    let time = time_text(t);
    reset(&["--to-datetime", &time, "--execute"]);
    assert_eq!(applied(cmd(), "presence"), 1);
    // Each user ends as their latest event says, as after one clean pass.
    let mut c = cmd();
    let row = json(
        c.args(["presence", &format!("u{last_user}"), "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(row["status"], "online");
    assert_eq!(row["last_seen_ms"], t);
    // Nothing left over: the group is at the end again.
    assert_eq!(
        committed(&describe(cmd(), "courier.presence"), PRESENCE, p),
        Some(end)
    );
}

/// An RFC 3339 time for `ms` since the epoch (UTC, millisecond precision).
fn time_text(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

#[test]
fn embedded_reset_then_run_processes_exactly_the_chosen_range() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    reset_then_run_processes_exactly_the_range(|| courier(&data), dir.path());
}

#[test]
fn a_group_is_described_beside_the_process_holding_the_log_and_not_reset_while_it_lives() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (lines, _) = presence_stream();
    produce(courier(&data), &write_file(dir.path(), "p.jsonl", &lines));
    let live = spawn_live(&mut courier(&data), "presence", Some("partitions assigned"));
    let pid = live.child.id();
    let mut live = KillOnDrop(live.child);

    // The log is held: describe reads it read-only, members from the holder.
    let d = describe(courier(&data), "courier.presence");
    assert_eq!(d["state"], "Stable", "{d}");
    let members = d["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{d}");
    let member = members[0]["member_id"].as_str().unwrap().to_string();
    assert!(member.starts_with(&format!("{pid}-")), "{member}");
    assert_eq!(members[0]["client_id"], "courier-group");
    assert_eq!(members[0]["assignment"].as_array().unwrap().len(), 6);
    let listed = json(
        courier(&data)
            .args(["groups", "list", "--json"])
            .output()
            .unwrap(),
    );
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["group"] == "courier.presence" && g["members"] == 1),
        "{listed}"
    );

    // A reset is refused while the member lives, naming it; nothing moves.
    let err = fails(
        courier(&data)
            .args([
                "groups",
                "reset",
                "courier.presence",
                "--to-earliest",
                "--execute",
            ])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains(&member) && err.contains("stop them first"),
        "{err}"
    );

    // Stopped (killed: its published members go stale), the reset goes through.
    live.0.kill().unwrap();
    live.0.wait().unwrap();
    ok(courier(&data)
        .args([
            "groups",
            "reset",
            "courier.presence",
            "--to-earliest",
            "--execute",
        ])
        .output()
        .unwrap());
    assert_eq!(applied(courier(&data), "presence"), 30);
}

/// `courier lag` beside `courier up` on the embedded log, which `up` holds: it
/// reads the log read-only, sees every processor's group, and follows what
/// `up` appends and commits after `lag` first looked.
#[test]
fn lag_is_shown_beside_courier_up_holding_the_embedded_log() {
    use common::gateway::{Up, direct_conversation, eventually_within, token};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let up = Up::start(&data, None);
    let lag = |mut cmd: Command| -> Vec<Value> {
        json(cmd.args(["lag", "--json"]).output().unwrap())
            .as_array()
            .unwrap()
            .clone()
    };
    let groups = |rows: &[Value]| -> std::collections::BTreeSet<String> {
        rows.iter()
            .map(|r| r["group"].as_str().unwrap().to_string())
            .collect()
    };
    let before = lag(courier(&data));
    for g in ["courier.presence", "courier.notify"] {
        assert!(groups(&before).contains(g), "{g} missing: {before:?}");
    }
    assert!(
        groups(&before)
            .iter()
            .any(|g| g.starts_with("courier.inbox")),
        "{before:?}"
    );

    // Appended through the running gateway: the next `lag` sees the records
    // and, once up's processors committed them, nothing left.
    let alice = token(&data, None, "alice");
    direct_conversation(&up.addr, &alice, "bob");
    let rows = eventually_within("up's processors to commit", Duration::from_secs(60), || {
        let rows = lag(courier(&data));
        let conversations: Vec<&Value> = rows
            .iter()
            .filter(|r| r["topic"] == CONVERSATIONS)
            .collect();
        let ended = conversations.iter().any(|r| r["end"].as_u64() > Some(0));
        (ended && conversations.iter().all(|r| r["lag"] == 0)).then_some(rows)
    });
    assert_eq!(groups(&rows), groups(&before), "{rows:?}");
    assert!(
        rows.iter()
            .filter(|r| r["topic"] == CONVERSATIONS && r["end"].as_u64() > Some(0))
            .all(|r| r["committed"] == r["end"]),
        "{rows:?}"
    );
    drop(up);
}

/// A conversation of `n` messages from `from` on, in c1 (members a and b).
fn conversation(created: bool, from: usize, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    if created {
        lines.push(format!(
            r#"{{"type":"conversation_created","event_id":"c1-new","conversation_id":"c1","kind":"group","creator_id":"a","member_ids":["a","b"],"title":"t","at_ms":{AT}}}"#
        ));
    }
    for i in from..from + n {
        lines.push(format!(
            r#"{{"type":"message_sent","event_id":"c1-m{i}","conversation_id":"c1","message_id":"m{i}","sender_id":"a","text":"message {i}","at_ms":{}}}"#,
            AT + 1000 * (i as i64 + 1)
        ));
    }
    lines
}

fn message_ids(mut cmd: Command, conversation: &str, user: &str) -> Vec<String> {
    json(
        cmd.args(["messages", conversation, "--as", user, "--json"])
            .output()
            .unwrap(),
    )
    .as_array()
    .unwrap()
    .iter()
    .map(|m| m["message_id"].as_str().unwrap().to_string())
    .collect()
}

/// The inbox moves only forward, and a forward move reaches the view's own
/// checkpoint (RocksDB or Cassandra). `cmd()` is the binary with the backend's
/// flags.
fn inbox_moves_only_forward(cmd: impl Fn() -> Command, dir: &Path) {
    let c1 = partition_for_key(b"c1", 12).to_string();
    produce(
        cmd(),
        &write_file(dir, "a.jsonl", &conversation(true, 0, 10)),
    );
    assert_eq!(applied(cmd(), "inbox"), 11);

    // Back: the states already hold those records; the way is a rebuild.
    let err = fails(
        cmd()
            .args([
                "groups",
                "reset",
                "courier.inbox",
                "--to-earliest",
                "--dry-run",
            ])
            .output()
            .unwrap(),
    );
    assert!(err.contains("courier rebuild inbox"), "{err}");

    // Forward: the view's own checkpoint moves too, or the run would apply
    // the skipped records from it.
    produce(
        cmd(),
        &write_file(dir, "b.jsonl", &conversation(false, 10, 5)),
    );
    ok(cmd()
        .args([
            "groups",
            "reset",
            "courier.inbox",
            "--to-latest",
            "--topic",
            CONVERSATIONS,
            "--partition",
            &c1,
            "--execute",
        ])
        .output()
        .unwrap());
    assert_eq!(applied(cmd(), "inbox"), 0);
    assert_eq!(message_ids(cmd(), "c1", "b").len(), 10);
    // And what comes after is applied again.
    produce(
        cmd(),
        &write_file(dir, "c.jsonl", &conversation(false, 15, 2)),
    );
    assert_eq!(applied(cmd(), "inbox"), 2);
    assert_eq!(message_ids(cmd(), "c1", "b").len(), 12);
}

#[test]
fn folds_move_only_forward_and_push_moves_back_only_when_told_to_send_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    inbox_moves_only_forward(|| courier(&data), dir.path());
    assert_eq!(applied(courier(&data), "notify"), 18);
    let err = fails(
        courier(&data)
            .args([
                "groups",
                "reset",
                "courier.notify",
                "--to-earliest",
                "--execute",
            ])
            .output()
            .unwrap(),
    );
    assert!(err.contains("courier.push"), "{err}");

    // Push: forward freely; back only with --resend-notifications.
    let jobs: Vec<String> = (0..3)
        .map(|k| {
            format!(
                r#"{{"type":"push_job","event_id":"job-{k}","job_id":"job-{k}","user_id":"u{k}","conversation_id":"c1","message_id":"m{k}","sender_id":"a","preview":"hi","collapse_key":"c1","at_ms":{AT}}}"#
            )
        })
        .collect();
    produce(courier(&data), &write_file(dir.path(), "jobs.jsonl", &jobs));
    ok(courier(&data)
        .args([
            "groups",
            "reset",
            "courier.push",
            "--to-latest",
            "--execute",
        ])
        .output()
        .unwrap());
    let err = fails(
        courier(&data)
            .args([
                "groups",
                "reset",
                "courier.push",
                "--to-earliest",
                "--execute",
            ])
            .output()
            .unwrap(),
    );
    assert!(err.contains("--resend-notifications"), "{err}");
    ok(courier(&data)
        .args([
            "groups",
            "reset",
            "courier.push",
            "--to-earliest",
            "--execute",
            "--resend-notifications",
        ])
        .output()
        .unwrap());
    let d = describe(courier(&data), "courier.push");
    for r in d["partitions"].as_array().unwrap() {
        assert_eq!(r["committed"], 0, "{d}");
    }
}

/// `dead-letters list --json`.
fn letters(mut cmd: Command) -> Vec<Value> {
    json(
        cmd.args(["dead-letters", "list", "--json"])
            .output()
            .unwrap(),
    )
    .as_array()
    .unwrap()
    .clone()
}

fn redrive(mut cmd: Command, processor: Option<&str>) -> String {
    cmd.args(["dead-letters", "redrive", "--execute"]);
    if let Some(p) = processor {
        cmd.args(["--processor", p]);
    }
    ok(cmd.output().unwrap())
}

fn searched(mut cmd: Command, user: &str, query: &str) -> Vec<String> {
    json(
        cmd.args(["search", user, query, "--json"])
            .output()
            .unwrap(),
    )
    .as_array()
    .unwrap()
    .iter()
    .map(|h| h["message_id"].as_str().unwrap().to_string())
    .collect()
}

/// Dead letters of inbox and search go back, each to its own processor, once;
/// one that fails again is a new dead letter. `cmd()` is the binary with the
/// backend's flags.
fn dead_letters_go_back_once_to_their_processor(cmd: impl Fn() -> Command, dir: &Path) {
    let lines = vec![
        format!(
            r#"{{"type":"conversation_created","event_id":"e1","conversation_id":"c1","kind":"group","creator_id":"a","member_ids":["a","b"],"title":"t","at_ms":{AT}}}"#
        ),
        format!(
            r#"{{"type":"message_sent","event_id":"e2","conversation_id":"c1","message_id":"m1","sender_id":"carol","text":"hello from carol","at_ms":{}}}"#,
            AT + 1
        ),
        format!(
            r#"{{"type":"message_sent","event_id":"e3","conversation_id":"c1","message_id":"m2","sender_id":"dave","text":"hello from dave","at_ms":{}}}"#,
            AT + 2
        ),
    ];
    produce(cmd(), &write_file(dir, "dl.jsonl", &lines));
    assert_eq!(applied(cmd(), "inbox"), 3);
    assert_eq!(applied(cmd(), "search"), 3);
    let all = letters(cmd());
    let by = |p: &str, all: &[Value]| -> Vec<Value> {
        all.iter()
            .filter(|l| l["processor"] == p)
            .cloned()
            .collect()
    };
    assert_eq!(by("inbox", &all).len(), 2, "{all:?}");
    assert_eq!(by("search", &all).len(), 2, "{all:?}");
    assert!(all.iter().all(|l| l["redriven"] == false), "{all:?}");

    // carol joins; dave never does.
    let joined = vec![format!(
        r#"{{"type":"members_added","event_id":"e4","conversation_id":"c1","actor_id":"a","user_ids":["carol"],"at_ms":{}}}"#,
        AT + 3
    )];
    produce(cmd(), &write_file(dir, "join.jsonl", &joined));
    assert_eq!(applied(cmd(), "inbox"), 1);
    assert_eq!(applied(cmd(), "search"), 1);

    // A dry run lists, takes nothing back.
    let plan = ok(cmd()
        .args(["dead-letters", "redrive", "--processor", "inbox"])
        .output()
        .unwrap());
    assert!(
        plan.contains("2 dead letter(s)") && plan.contains("dry run"),
        "{plan}"
    );
    assert!(letters(cmd()).iter().all(|l| l["redriven"] == false));

    let out = redrive(cmd(), Some("inbox"));
    assert!(out.contains("took 2 dead letter(s) back"), "{out}");
    let out = redrive(cmd(), Some("inbox"));
    assert!(out.contains("inbox: no dead letter to take back"), "{out}");

    // The inbox applies carol's message, once; search passes over both.
    assert_eq!(applied(cmd(), "inbox"), 2);
    assert_eq!(applied(cmd(), "search"), 2);
    let seen = message_ids(cmd(), "c1", "carol");
    assert_eq!(seen, vec!["m1".to_string()], "carol sees her message once");
    assert!(searched(cmd(), "carol", "hello").is_empty());

    // dave's fails again: a new dead letter of the inbox, at the redriven
    // record, not yet taken back; the originals are.
    let all = letters(cmd());
    let inbox = by("inbox", &all);
    assert_eq!(inbox.len(), 3, "{inbox:?}");
    assert_eq!(inbox.iter().filter(|l| l["redriven"] == true).count(), 2);
    let again: Vec<&Value> = inbox.iter().filter(|l| l["redriven"] == false).collect();
    assert_eq!(again.len(), 1);
    assert!(
        again[0]["reason"].as_str().unwrap().contains("dave"),
        "{again:?}"
    );
    assert!(again[0]["source_offset"].as_u64().unwrap() > 3);
    assert!(by("search", &all).iter().all(|l| l["redriven"] == false));

    // Every processor's: search's two go to search (carol's now found), the
    // inbox's new one to the inbox (and fails a third time).
    let out = redrive(cmd(), None);
    assert!(out.contains("search: took 2"), "{out}");
    assert!(out.contains("inbox: took 1"), "{out}");
    assert_eq!(applied(cmd(), "search"), 3);
    assert_eq!(searched(cmd(), "carol", "hello"), vec!["m1".to_string()]);
    assert_eq!(applied(cmd(), "inbox"), 3);
    assert_eq!(message_ids(cmd(), "c1", "carol"), vec!["m1".to_string()]);
    let all = letters(cmd());
    assert_eq!(by("inbox", &all).len(), 4);
    assert_eq!(by("search", &all).len(), 3);
}

#[test]
fn embedded_dead_letters_go_back_once_to_the_processor_that_rejected_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    dead_letters_go_back_once_to_their_processor(|| courier(&data), dir.path());
}

/// A push provider on 127.0.0.1:0: 410 to every job until `accept` is set, then
/// 202; counts accepted deliveries per job id.
struct Provider {
    url: String,
    accept: Arc<AtomicBool>,
    accepted: Arc<Mutex<HashMap<String, u32>>>,
}

fn provider() -> Provider {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/push", listener.local_addr().unwrap());
    let accept = Arc::new(AtomicBool::new(false));
    let accepted: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let (a, seen) = (accept.clone(), accepted.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (a, seen) = (a.clone(), seen.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut length = 0;
                    let mut line = String::new();
                    // Request line and headers; a closed connection ends it.
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            length = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    let job = v["job_id"].as_str().unwrap().to_string();
                    let answer = if a.load(Ordering::SeqCst) {
                        *seen.lock().unwrap().entry(job).or_default() += 1;
                        "HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n"
                    } else {
                        "HTTP/1.1 410 Gone\r\ncontent-length: 4\r\n\r\ngone"
                    };
                    if stream.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    Provider {
        url,
        accept,
        accepted,
    }
}

#[test]
fn push_jobs_dead_lettered_by_the_provider_are_delivered_once_on_redrive() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let provider = provider();
    let config = dir.path().join("push.toml");
    std::fs::write(
        &config,
        format!(
            "[push]\nendpoint = \"{}\"\ntimeout_ms = 2000\nmax_attempts = 2\n",
            provider.url
        ),
    )
    .unwrap();
    let cmd = || configured(&data, &config);
    let jobs: Vec<String> = (0..3)
        .map(|k| {
            format!(
                r#"{{"type":"push_job","event_id":"job-{k}","job_id":"job-{k}","user_id":"u{k}","conversation_id":"c1","message_id":"m{k}","sender_id":"a","preview":"hi","collapse_key":"c1","at_ms":{AT}}}"#
            )
        })
        .collect();
    produce(cmd(), &write_file(dir.path(), "jobs.jsonl", &jobs));
    assert_eq!(applied(cmd(), "push"), 3);
    let all = letters(cmd());
    assert_eq!(all.len(), 3, "every job refused for good: {all:?}");
    assert!(all.iter().all(|l| l["processor"] == "push"));
    assert!(provider.accepted.lock().unwrap().is_empty());

    provider.accept.store(true, Ordering::SeqCst);
    let out = redrive(cmd(), Some("push"));
    assert!(out.contains("push: took 3"), "{out}");
    assert_eq!(applied(cmd(), "push"), 3);
    // Taken back once: a second redrive and run deliver nothing more.
    let out = redrive(cmd(), None);
    assert!(out.contains("push: no dead letter to take back"), "{out}");
    assert_eq!(applied(cmd(), "push"), 0);
    let accepted = provider.accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), 3, "{accepted:?}");
    assert!(accepted.values().all(|n| *n == 1), "{accepted:?}");
    assert!(letters(cmd()).iter().all(|l| l["redriven"] == true));
}

/// Runs `f(dir, config, namespace)` with a Kafka config in a fresh namespace,
/// deleting the namespace after, pass or fail; skipped (loudly) without a
/// broker.
fn on_kafka(prefix: &str, f: impl FnOnce(&Path, &Path, &str) + std::panic::UnwindSafe) {
    let Some(brokers) = courier_pipeline::testing::KAFKA.reachable() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let namespace = unique_namespace(prefix);
    let config = kafka_config(dir.path(), "kafka", &namespace, &brokers, "");
    let (d, ns) = (dir.path().to_path_buf(), namespace.clone());
    let result = std::panic::catch_unwind(move || f(&d, &config, &ns));
    common::delete_namespace(&brokers, &namespace);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn kafka_group_with_a_live_member_is_described_refused_then_reset_and_run_exactly() {
    on_kafka("groups", |dir, config, ns| {
        let data = dir.join("data");
        let cmd = || configured(&data, config);
        reset_then_run_processes_exactly_the_range(cmd, dir);

        let live = spawn_live(&mut cmd(), "presence", Some("partitions assigned"));
        let pid = live.child.id();
        let _live = KillOnDrop(live.child);
        // The coordinator may describe the member before its assignment lands.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let d = loop {
            let d = describe(cmd(), "courier.presence");
            if d["members"].as_array().unwrap().len() == 1
                && d["members"][0]["assignment"].as_array().unwrap().len() == 6
            {
                break d;
            }
            assert!(std::time::Instant::now() < deadline, "{d}");
            std::thread::sleep(std::time::Duration::from_millis(300));
        };
        let m = &d["members"][0];
        assert_eq!(m["client_id"], format!("courier-{ns}-group"));
        assert!(!m["host"].as_str().unwrap().is_empty());
        assert!(
            d["partitions"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["member"] == m["member_id"]),
            "{d}"
        );
        let member = m["member_id"].as_str().unwrap().to_string();
        let err = fails(
            cmd()
                .args([
                    "groups",
                    "reset",
                    "courier.presence",
                    "--to-earliest",
                    "--execute",
                ])
                .output()
                .unwrap(),
        );
        assert!(err.contains(&member), "{err}");

        // Stopped cleanly (SIGTERM: it leaves the group at once), the group
        // empties and the reset goes through.
        let stopped = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(stopped.success());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !describe(cmd(), "courier.presence")["members"]
            .as_array()
            .unwrap()
            .is_empty()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the member never left"
            );
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        ok(cmd()
            .args([
                "groups",
                "reset",
                "courier.presence",
                "--to-earliest",
                "--execute",
            ])
            .output()
            .unwrap());
        assert_eq!(applied(cmd(), "presence"), 30);
        let listed = json(cmd().args(["groups", "list", "--json"]).output().unwrap());
        assert!(
            listed
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["group"] == "courier.presence" && g["state"] == "Empty"),
            "logical names: {listed}"
        );
    });
}

#[test]
fn kafka_dead_letters_go_back_once_to_the_processor_that_rejected_them() {
    on_kafka("redrive", |dir, config, _| {
        let data = dir.join("data");
        dead_letters_go_back_once_to_their_processor(|| configured(&data, config), dir);
    });
}

#[test]
fn on_cassandra_the_inbox_moves_only_forward_and_its_checkpoint_moves_with_the_group() {
    let (Some(brokers), Some(cassandra)) = (
        courier_pipeline::testing::KAFKA.reachable(),
        courier_pipeline::testing::CASSANDRA.reachable(),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let namespace = unique_namespace("reset");
    let config = kafka_config(
        dir.path(),
        "distributed",
        &namespace,
        &brokers,
        &common::cassandra_views(&cassandra),
    );
    let data = dir.path().join("data");
    let (d, c) = (dir.path().to_path_buf(), config.clone());
    let result = std::panic::catch_unwind(move || {
        ok(configured(&data, &c).arg("migrate").output().unwrap());
        inbox_moves_only_forward(|| configured(&data, &c), &d);
    });
    common::drop_distributed(&config, &brokers, &cassandra, &namespace);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
