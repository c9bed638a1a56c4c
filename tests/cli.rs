//! End-to-end tests of the `courier` binary on the embedded log: produce → replay
//! round trips, all-or-nothing validation, kill -9 of a producer, and processors
//! that resume from their committed offsets after SIGTERM and SIGKILL.

mod common;

use common::{
    Live, await_progress, cassandra_views, configured, courier, entries, kafka_config, ok,
    spawn_live, unique_namespace, wait_for_line, write_lines,
};

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// A mixed stream: several conversations interleaved, every event type, presence.
fn stream(conversations: usize, per: usize) -> Vec<String> {
    let t0 = 1_764_000_000_000i64;
    let mut out = Vec::new();
    for c in 0..conversations {
        out.push(format!(
            r#"{{"type":"conversation_created","event_id":"cc{c}","conversation_id":"c{c}","kind":"group","creator_id":"u0","member_ids":["u0","u1","u2"],"title":"room {c}","at_ms":{t0}}}"#
        ));
    }
    for i in 0..per {
        for c in 0..conversations {
            let t = t0 + 1 + (i * conversations + c) as i64;
            out.push(match i % 6 {
                0 | 1 => format!(
                    r#"{{"type":"message_sent","event_id":"s{c}-{i}","conversation_id":"c{c}","message_id":"m{i}","sender_id":"u{}","text":"hello \"{i}\" ✓","at_ms":{t}}}"#,
                    i % 3
                ),
                2 => format!(
                    r#"{{"type":"message_edited","event_id":"ed{c}-{i}","conversation_id":"c{c}","message_id":"m{}","editor_id":"u0","text":"edited","at_ms":{t}}}"#,
                    i - 2
                ),
                3 => format!(
                    r#"{{"type":"receipt","event_id":"r{c}-{i}","conversation_id":"c{c}","message_id":"m{}","user_id":"u1","status":"read","at_ms":{t}}}"#,
                    i - 3
                ),
                4 => format!(
                    r#"{{"type":"members_added","event_id":"ma{c}-{i}","conversation_id":"c{c}","actor_id":"u0","user_ids":["u{}"],"at_ms":{t}}}"#,
                    i + 3
                ),
                _ => format!(
                    r#"{{"type":"message_deleted","event_id":"d{c}-{i}","conversation_id":"c{c}","message_id":"m{}","actor_id":"u0","at_ms":{t}}}"#,
                    i - 5
                ),
            });
        }
        out.push(format!(
            r#"{{"type":"presence","event_id":"p{i}","user_id":"u{}","status":"{}","at_ms":{}}}"#,
            i % 5,
            if i.is_multiple_of(2) {
                "online"
            } else {
                "offline"
            },
            t0 + i as i64
        ));
    }
    out
}

fn json(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

fn conversation_of(v: &Value) -> Option<String> {
    v.get("conversation_id")
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[test]
fn produce_then_replay_gives_back_every_event_in_conversation_order() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let lines = stream(7, 30);
    let file = write_lines(dir.path(), "events.jsonl", &lines);
    let out = ok(courier(&data)
        .args(["produce", "--file"])
        .arg(&file)
        .output()
        .unwrap());
    assert!(
        out.starts_with(&format!("published {} event(s)", lines.len())),
        "{out}"
    );

    let replayed = ok(courier(&data)
        .args(["replay", "courier.conversations.v1", "--format", "json"])
        .output()
        .unwrap());
    let got: Vec<Value> = replayed.lines().map(json).collect();
    let want: Vec<Value> = lines
        .iter()
        .map(|l| json(l))
        .filter(|v| v["type"] != "presence")
        .collect();
    assert_eq!(got.len(), want.len(), "every conversation event comes back");
    for c in 0..7 {
        let id = format!("c{c}");
        let g: Vec<_> = got
            .iter()
            .filter(|v| conversation_of(v).as_deref() == Some(&id))
            .collect();
        let w: Vec<_> = want
            .iter()
            .filter(|v| conversation_of(v).as_deref() == Some(&id))
            .collect();
        assert_eq!(
            g, w,
            "conversation {id}: same events, same order, field for field"
        );
    }
    // Field order too: `type` first, canonical form byte for byte.
    let first_c0 = replayed
        .lines()
        .find(|l| l.contains(r#""conversation_id":"c0""#))
        .unwrap();
    assert_eq!(first_c0, lines[0]);

    let presence = ok(courier(&data)
        .args(["replay", "courier.presence.v1"])
        .output()
        .unwrap());
    assert_eq!(presence.lines().count(), 30);

    // Filters and ranges.
    let c3 = ok(courier(&data)
        .args(["replay", "courier.conversations.v1", "--conversation", "c3"])
        .output()
        .unwrap());
    assert_eq!(c3.lines().count(), 31);
    assert!(c3.lines().all(|l| l.contains(r#""conversation_id":"c3""#)));
    let ranged = ok(courier(&data)
        .args([
            "replay",
            "courier.conversations.v1",
            "--from",
            "2025-11-24T16:00:00.001Z",
            "--to",
            "2025-11-24T16:00:00.011Z",
        ])
        .output()
        .unwrap());
    assert_eq!(
        ranged.lines().count(),
        10,
        "[from, to) by event time: {ranged}"
    );

    // Avro: an object container file with one record per event.
    let avro = dir.path().join("out.avro");
    ok(courier(&data)
        .args([
            "replay",
            "courier.conversations.v1",
            "--format",
            "avro",
            "--out",
        ])
        .arg(&avro)
        .output()
        .unwrap());
    let reader = apache_avro::Reader::new(std::fs::File::open(&avro).unwrap()).unwrap();
    assert_eq!(reader.count(), want.len());

    let topics = ok(courier(&data)
        .args(["topics", "list", "--json"])
        .output()
        .unwrap());
    let topics: Value = serde_json::from_str(&topics).unwrap();
    assert_eq!(topics[0]["name"], "courier.conversations.v1");
    assert_eq!(topics[0]["records"], want.len());
    assert_eq!(topics[1]["records"], 30);
}

#[test]
fn one_bad_line_publishes_nothing_unless_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut lines = stream(2, 3);
    lines.insert(3, r#"{"type":"message_sent","event_id":"bad","conversation_id":"c0","message_id":"mx","text":"no sender","at_ms":1}"#.into());
    lines.insert(5, "{not json".into());
    let file = write_lines(dir.path(), "events.jsonl", &lines);
    let out = courier(&data)
        .args(["produce", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a bad line fails the command");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("events.jsonl:4: message_sent is missing `sender_id`"),
        "{err}"
    );
    assert!(err.contains("events.jsonl:6: invalid JSON"), "{err}");
    assert!(err.contains("nothing was published"), "{err}");
    let replayed = ok(courier(&data)
        .args(["replay", "courier.conversations.v1"])
        .output()
        .unwrap());
    assert_eq!(replayed, "", "nothing was published");

    let out = ok(courier(&data)
        .args(["produce", "--skip-invalid", "--file"])
        .arg(&file)
        .output()
        .unwrap());
    assert!(
        out.contains(&format!("published {} event(s)", lines.len() - 2))
            && out.contains("skipped 2"),
        "{out}"
    );
    let replayed = ok(courier(&data)
        .args(["replay", "courier.conversations.v1"])
        .output()
        .unwrap());
    assert!(!replayed.contains(r#""event_id":"bad""#));
    assert_eq!(replayed.lines().count(), lines.len() - 2 - 3);
}

#[test]
fn produce_reads_stdin_and_fills_missing_ids() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = courier(&data)
        .args(["produce", "--file", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"{\"type\":\"presence\",\"user_id\":\"u1\",\"status\":\"online\",\"at_ms\":5}\n",
        )
        .unwrap();
    ok(child.wait_with_output().unwrap());
    let replayed = ok(courier(&data)
        .args(["replay", "courier.presence.v1"])
        .output()
        .unwrap());
    let v = json(replayed.trim());
    let id = v["event_id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(&id[14..15], "7", "a UUIDv7: {id}");
}

#[test]
fn kill_9_of_a_producer_loses_nothing_it_reported_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let t0 = 1_764_000_000_000i64;
    let lines: Vec<String> = (0..200_000)
        .map(|i| {
            format!(
                r#"{{"type":"message_sent","event_id":"k{i}","conversation_id":"c{}","message_id":"m{i}","sender_id":"u1","text":"n{i}","at_ms":{}}}"#,
                i % 50,
                t0 + i
            )
        })
        .collect();
    let file = write_lines(dir.path(), "big.jsonl", &lines);
    let mut child: Child = courier(&data)
        .args(["produce", "--file"])
        .arg(&file)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = wait_for_line(&mut err, "a progress line", |l| l.starts_with("written "));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let reported: usize = line["written ".len()..]
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(reported >= 5000);

    let replayed = ok(courier(&data)
        .args(["replay", "courier.conversations.v1"])
        .output()
        .unwrap());
    let ids: std::collections::HashSet<String> = replayed
        .lines()
        .map(|l| json(l)["event_id"].as_str().unwrap().to_string())
        .collect();
    eprintln!("kill -9 test: reported {reported}, found {}", ids.len());
    assert!(
        ids.len() >= reported,
        "{} events in the log, {reported} reported written",
        ids.len()
    );
    // What is there is a prefix of the file: whole chunks, nothing torn.
    for i in 0..ids.len() {
        assert!(
            ids.contains(&format!("k{i}")),
            "event k{i} of the first {} is missing",
            ids.len()
        );
    }
    assert_eq!(ids.len() % 5000, 0, "only whole chunks were written");
}

fn presence_stream(n: usize, users: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"type":"presence","event_id":"p{i}","user_id":"u{}","status":"{}","at_ms":{}}}"#,
                i % users,
                if (i / users).is_multiple_of(2) { "online" } else { "offline" },
                1_000 + i
            )
        })
        .collect()
}

fn applied(stderr: &[u8]) -> u64 {
    let s = String::from_utf8_lossy(stderr);
    let line = s
        .lines()
        .find(|l| l.starts_with("presence: applied "))
        .unwrap_or_else(|| panic!("no summary in {s}"));
    line["presence: applied ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_processor_resumes_from_its_commit_after_sigterm_and_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Small batches: many commits, so the signals land mid-run.
    let config = dir.path().join("courier.toml");
    std::fs::write(&config, "[runner]\nmax_batch = 10\n").unwrap();
    let total = 100_000u64;
    let users = 500;
    let lines = presence_stream(total as usize, users);
    ok(courier(&data)
        .args(["produce", "--file"])
        .arg(write_lines(dir.path(), "p.jsonl", &lines))
        .output()
        .unwrap());

    // SIGTERM mid-run: the batch in hand is finished and committed, then the next
    // run applies exactly the rest.
    let Live { child, addr, rest } = spawn_live(
        courier(&data).arg("--config").arg(&config),
        "presence",
        None,
    );
    await_progress(&addr, "presence", 1);
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "SIGTERM is a clean stop: {}",
        out.status
    );
    let first: u64 = rest
        .iter()
        .find_map(|l| {
            l.strip_prefix("presence: applied ")
                .and_then(|r| r.split(' ').next()?.parse().ok())
        })
        .expect("a summary after SIGTERM");
    eprintln!("sigterm test: first run applied {first} of {total}");
    assert!(first >= 1 && first <= total);

    // SIGKILL mid-run: nothing committed is lost, whatever was not is redone.
    let Live {
        mut child, addr, ..
    } = spawn_live(
        courier(&data).arg("--config").arg(&config),
        "presence",
        None,
    );
    await_progress(&addr, "presence", 1);
    child.kill().unwrap();
    child.wait().unwrap();

    let out = courier(&data)
        .args(["run", "presence", "--until-caught-up"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = applied(&out.stderr);
    assert!(
        last <= total - first,
        "a restarted processor resumes from its commit: applied {last} after {first} of {total}"
    );
    eprintln!("sigterm test: final run applied {last}");
    let lag: Value = serde_json::from_str(&ok(courier(&data)
        .args(["lag", "--json"])
        .output()
        .unwrap()))
    .unwrap();
    let presence_lag: Vec<&Value> = lag
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["group"] == "courier.presence")
        .collect();
    assert_eq!(presence_lag.len(), 6, "one row per presence partition");
    assert!(
        presence_lag
            .iter()
            .all(|r| r["lag"] == 0 && r["committed"] == r["end"]),
        "{lag}"
    );
    let again = applied(
        &courier(&data)
            .args(["run", "presence", "--until-caught-up"])
            .output()
            .unwrap()
            .stderr,
    );
    assert_eq!(again, 0, "caught up: nothing left to apply");

    // The view equals one clean pass: the last event of each user wins.
    for u in [0, 1, users - 1] {
        let i = (0..total as usize).rev().find(|i| i % users == u).unwrap();
        let want_status = if (i / users).is_multiple_of(2) {
            "online"
        } else {
            "offline"
        };
        let got = json(&ok(courier(&data)
            .args(["presence", &format!("u{u}"), "--json"])
            .output()
            .unwrap()));
        assert_eq!(
            got,
            serde_json::json!({"user_id": format!("u{u}"), "status": want_status, "last_seen_ms": 1000 + i as i64})
        );
    }
    let nobody = json(&ok(courier(&data)
        .args(["presence", "nobody", "--json"])
        .output()
        .unwrap()));
    assert_eq!(
        nobody,
        serde_json::json!({"user_id": "nobody", "status": "offline", "last_seen_ms": null})
    );
}

#[test]
fn bad_arguments_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = courier(&data)
        .args(["replay", "courier.nope.v1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown topic `courier.nope.v1`"));
    let out = courier(&data)
        .args(["replay", "courier.presence.v1", "--from", "yesterday"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--from \"yesterday\": expected earliest, latest")
    );
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[log]\nbackend = \"kafak\"\n").unwrap();
    let out = courier(&data)
        .arg("--config")
        .arg(&cfg)
        .args(["topics", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("kafak"));
}

#[test]
fn long_commands_report_progress_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok(courier(&data)
        .args(["produce", "--file", "examples/chat.jsonl"])
        .output()
        .unwrap());
    let conversations = std::fs::read_to_string("examples/chat.jsonl")
        .unwrap()
        .lines()
        .filter(|l| !l.contains("\"type\":\"presence\""))
        .count();
    let out = courier(&data)
        .args(["run", "inbox", "--until-caught-up"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    // Not a terminal: lines, the last with the totals and nothing left.
    let want = format!("inbox: {conversations} records, ");
    let last = stderr.lines().find(|l| l.starts_with(&want));
    assert!(
        last.is_some_and(|l| l.ends_with(", 0 left")),
        "{want}… 0 left in:\n{stderr}"
    );
    let out = courier(&data).args(["rebuild", "inbox"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("inbox-rebuild: {conversations} records, ")),
        "{stderr}"
    );
}

#[test]
fn courier_config_prints_the_effective_config_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[gateway]\nmax_members = 7\njwt_secret = \"from-the-file\"\n[kafka.properties]\n\"sasl.password\" = \"pw-in-file\"\n",
    )
    .unwrap();
    let out = courier(&data)
        .arg("--config")
        .arg(&cfg)
        .env("COURIER_GATEWAY__MAX_TEXT_BYTES", "4096")
        .env("COURIER_RUNNER__MAX_BATCH", "9")
        .arg("config")
        .output()
        .unwrap();
    let printed = ok(out);
    for expected in [
        "max_members = 7",
        "max_text_bytes = 4096",
        "max_batch = 9",
        "jwt_secret = \"********\"",
        "\"sasl.password\" = \"********\"",
    ] {
        assert!(printed.contains(expected), "{expected} in:\n{printed}");
    }
    for secret in ["from-the-file", "pw-in-file"] {
        assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
    }
    // --data is a flag, stronger than the file and the environment.
    assert!(
        printed.contains(&format!("data_dir = \"{}\"", data.display())),
        "{printed}"
    );
    let out = courier(&data)
        .env("COURIER_GATEWAY__MAX_TEXT_BYTES", "lots")
        .arg("config")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("COURIER_GATEWAY__MAX_TEXT_BYTES=lots: expected a whole number"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The broker of compose/local (or COURIER_TEST_KAFKA) if it answers.
fn kafka() -> Option<String> {
    courier_pipeline::testing::KAFKA.reachable()
}

#[test]
fn produce_and_replay_through_real_kafka_match_the_embedded_log() {
    let Some(brokers) = kafka() else { return };
    let dir = tempfile::tempdir().unwrap();
    let namespace = unique_namespace("cli");
    let config = kafka_config(dir.path(), "kafka", &namespace, &brokers, "");
    let kdata = dir.path().join("kdata");
    let on_kafka = |args: &[&str]| {
        let mut c = configured(&kdata, &config);
        c.args(args);
        c
    };
    let applied = ok(on_kafka(&["topics", "apply"]).output().unwrap());
    assert_eq!(
        applied
            .lines()
            .filter(|l| l.contains("created, matches the catalog"))
            .count(),
        4,
        "{applied}"
    );
    assert!(
        applied.contains(&format!("{namespace}.courier.conversations.v1")),
        "{applied}"
    );

    let lines = stream(4, 12);
    let file = write_lines(dir.path(), "events.jsonl", &lines);
    ok(on_kafka(&["produce", "--file", file.to_str().unwrap()])
        .output()
        .unwrap());
    let from_kafka = ok(on_kafka(&["replay", "courier.conversations.v1"])
        .output()
        .unwrap());

    let edata = dir.path().join("edata");
    ok(courier(&edata)
        .args(["produce", "--file"])
        .arg(&file)
        .output()
        .unwrap());
    let from_embedded = ok(courier(&edata)
        .args(["replay", "courier.conversations.v1"])
        .output()
        .unwrap());
    assert_eq!(
        from_kafka.lines().count(),
        lines.len() - 12,
        "every conversation event"
    );
    assert_eq!(
        from_kafka, from_embedded,
        "Kafka round-trips canonical JSON exactly as the embedded log"
    );

    let again = ok(on_kafka(&["topics", "apply"]).output().unwrap());
    assert_eq!(
        again
            .lines()
            .filter(|l| l.contains("exists, matches the catalog"))
            .count(),
        4,
        "{again}"
    );
    let listed: Value = serde_json::from_str(&ok(on_kafka(&["topics", "list", "--json"])
        .output()
        .unwrap()))
    .unwrap();
    assert_eq!(listed[1]["records"], 12, "presence on Kafka");

    // Leave the shared broker as we found it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let log = courier_pipeline::KafkaLog::new(
            common::kafka_settings(&brokers).with_namespace(namespace),
            courier_topics::Catalog::builtin(),
        )
        .unwrap();
        log.delete_namespace().await.unwrap();
    });
}

/// A `courier bench --json` summary of `messages` messages: every view saw every
/// message once, percentiles are ordered, nothing was dead-lettered (the
/// simulated traffic is valid by construction).
fn check_bench(v: &Value, messages: u64) {
    assert_eq!(v["messages"], messages, "{v:#}");
    assert!(
        v["events"].as_u64().unwrap() > messages,
        "receipts etc. too"
    );
    assert!(v["messages_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(v["dead_letters"], 0, "{v:#}");
    // Most users are offline: notify fans messages out to push jobs.
    assert!(v["push_jobs"].as_u64().unwrap() > messages / 2, "{v:#}");
    for view in ["inbox", "search", "push"] {
        let l = &v["views"][view];
        assert_eq!(l["count"], messages, "{view}: {l}");
        let q = |k: &str| l[k].as_f64().unwrap_or_else(|| panic!("{view}.{k}: {l}"));
        assert!(
            0.0 <= q("p50_ms")
                && q("p50_ms") <= q("p99_ms")
                && q("p99_ms") <= q("p999_ms")
                && q("p999_ms") <= q("max_ms"),
            "{view}: {l}"
        );
    }
    // Every event of the load went to one of the two topics; each processor of
    // the conversations applied all of its share.
    let presence = v["processors"]["presence"]["records"].as_u64().unwrap();
    let conversation_events = v["events"].as_u64().unwrap() - presence;
    for p in ["inbox", "search", "notify"] {
        let applied = v["processors"][p]["records"].as_u64().unwrap();
        assert!(
            applied >= conversation_events,
            "{p} applied {applied}: {v:#}"
        );
    }
}

/// The `"baselines"` of a `courier bench --baselines --json` summary: every
/// ceiling measured over the run's traffic, every ratio present.
fn check_baselines(v: &Value, rate_limited: bool) {
    let b = &v["baselines"];
    let rate = |path: &[&str]| {
        let x = path.iter().fold(b, |x, k| &x[k]);
        let r = x
            .as_f64()
            .unwrap_or_else(|| panic!("baselines.{}: {b:#}", path.join(".")));
        assert!(
            r > 0.0 && r.is_finite(),
            "baselines.{} = {r}",
            path.join(".")
        );
        r
    };
    for path in [
        &["log", "append_events_per_s"][..],
        &["log", "read_events_per_s"],
        &["store", "events_per_s"],
        &["store", "rows_per_s"],
        &["search", "docs_per_s"],
        &["ratios", "producer_vs_log_append"],
        &["ratios", "slowest_processor_vs_log_read"],
        &["ratios", "inbox_vs_store_writes"],
        &["courier", "producer_events_per_s"],
        &["courier", "slowest_processor_records_per_s"],
        &["courier", "inbox_records_per_s"],
        &["courier", "search_messages_per_s"],
        &["ratios", "search_vs_tantivy"],
    ] {
        rate(path);
    }
    // The same traffic: every event of the load, the conversations' share of it
    // through the store, one document per message (all of them text).
    assert_eq!(b["log"]["records"], v["events"], "{b:#}");
    let presence = v["processors"]["presence"]["records"].as_u64().unwrap();
    assert_eq!(
        b["store"]["events"].as_u64().unwrap(),
        v["events"].as_u64().unwrap() - presence,
        "{b:#}"
    );
    assert_eq!(b["search"]["docs"], v["messages"], "{b:#}");
    assert!(
        ["inbox", "search", "notify"]
            .contains(&b["courier"]["slowest_processor"].as_str().unwrap())
    );
    assert_eq!(b["rate_limited"], rate_limited);
}

#[test]
fn bench_measures_every_message_in_every_view_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = ok(courier(&data)
        .args([
            "bench",
            "--messages",
            "2000",
            "--users",
            "300",
            "--baselines",
            "--json",
        ])
        .output()
        .unwrap());
    let v = json(&out);
    check_bench(&v, 2000);
    check_baselines(&v, false);
    // The human summary says which ceiling is which.
    let human = ok(courier(&data)
        .args([
            "bench",
            "--messages",
            "300",
            "--users",
            "50",
            "--rate",
            "2000",
            "--baselines",
        ])
        .output()
        .unwrap());
    for line in [
        "log append: raw RocksDB WriteBatch puts",
        "log read: raw RocksDB iterate",
        "inbox: raw rocksdb store writes",
        "search: raw tantivy indexing",
        "the run was rate-limited (--rate)",
    ] {
        assert!(human.contains(line), "{line:?} in {human}");
    }
    let baseline = json(&ok(courier(&data)
        .args(["bench", "--messages", "2000", "--produce-only", "--json"])
        .output()
        .unwrap()));
    assert_eq!(baseline["messages"], 2000);
    assert_eq!(baseline["processors"], serde_json::json!({}));
    let left = entries(&data);
    assert!(
        left.is_empty(),
        "the runs' namespaces were removed: {left:?}"
    );
}

#[test]
fn bench_on_kafka_and_cassandra() {
    let (Some(brokers), Some(cassandra)) =
        (kafka(), courier_pipeline::testing::CASSANDRA.reachable())
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The bench makes (and drops) a namespace of its own under this one.
    let namespace = format!("cb{}", std::process::id());
    let config = kafka_config(
        dir.path(),
        "distributed",
        &namespace,
        &brokers,
        &cassandra_views(&cassandra),
    );
    let out = ok(configured(&dir.path().join("data"), &config)
        .args([
            "bench",
            "--messages",
            "1000",
            "--users",
            "200",
            "--rate",
            "1000",
            "--baselines",
            "--json",
        ])
        .output()
        .unwrap());
    let v = json(&out);
    assert_eq!(v["backend"]["log"], "kafka");
    assert_eq!(v["backend"]["views"], "cassandra");
    check_bench(&v, 1000);
    check_baselines(&v, true);
    for (ceiling, what) in [("log", "kafka-producer-perf-test"), ("store", "Cassandra")] {
        let said = v["baselines"][ceiling]["what"].as_str().unwrap();
        assert!(said.contains(what), "{ceiling}: {said}");
    }

    // Nothing left behind on the shared servers: no topic (the run's nor the
    // perf tools') and no keyspace (the run's nor the raw writes') of the namespace.
    let topics = courier_pipeline::kafka::perf::Tools::new(&common::kafka_settings(&brokers))
        .unwrap()
        .run(&["topics", "--bootstrap-server", &brokers, "--list"])
        .unwrap();
    let left: Vec<&str> = topics
        .lines()
        .filter(|t| t.starts_with(&namespace))
        .collect();
    assert!(left.is_empty(), "topics left: {left:?}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let keyspaces: Vec<String> = rt.block_on(async {
        use courier_sinks::inbox::cassandra;
        let session = cassandra::connect(&common::cassandra_secured(
            cassandra::CassandraSettings::new(&cassandra, "system"),
        ))
        .await
        .unwrap();
        let all = cassandra::keyspaces(&session).await.unwrap();
        all.into_iter()
            .filter(|k| k.starts_with(&namespace))
            .collect()
    });
    assert!(keyspaces.is_empty(), "keyspaces left: {keyspaces:?}");
}

#[test]
fn bench_rejects_instances_it_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (args, says) in [
        (
            &["bench", "--messages", "10", "--kill-at", "1"][..],
            "--kill-at kills one instance of each processor and needs --instances 2",
        ),
        (
            &["bench", "--messages", "10", "--instances", "0"][..],
            "--instances must be at least 1",
        ),
        (
            &["bench", "--messages", "10", "--instances", "2"][..],
            "needs the Kafka log",
        ),
    ] {
        let out = courier(&data).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} fails");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let left = entries(&data);
    assert!(left.is_empty(), "nothing was left: {left:?}");
}

/// Two processes per processor in one group each, and one of each SIGKILLed
/// mid-run: the survivors take over after the session timeout and every view
/// still shows every message exactly once.
#[test]
fn bench_with_two_instances_of_each_processor_survives_killing_one() {
    let (Some(brokers), Some(cassandra)) =
        (kafka(), courier_pipeline::testing::CASSANDRA.reachable())
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = kafka_config(
        dir.path(),
        "instances",
        &format!("ci{}", std::process::id()),
        &brokers,
        &cassandra_views(&cassandra),
    );
    let out = ok(configured(&data, &config)
        .args([
            "bench",
            "--messages",
            "1500",
            "--users",
            "200",
            "--rate",
            "500",
            "--instances",
            "2",
            "--kill-at",
            "1",
            "--json",
        ])
        .output()
        .unwrap());
    let v = json(&out);
    assert_eq!(v["processors_as"], "processes", "{v:#}");
    assert_eq!(v["instances"], 2);
    assert_eq!(
        v["killed"]["instances"],
        serde_json::json!(["inbox-2", "presence-2", "search-2", "notify-2"]),
        "{v:#}"
    );
    check_bench(&v, 1500);
    // Per-second p99s are there for the seconds a view showed messages.
    let timeline = v["timeline"].as_array().unwrap();
    assert!(
        timeline.iter().any(|t| t["inbox_p99_ms"].is_f64()),
        "{timeline:?}"
    );
    let left = entries(&data);
    assert!(
        left.is_empty(),
        "the run's directories were removed: {left:?}"
    );
}

/// The event ids `replay TOPIC` prints.
fn replayed_ids(mut cmd: Command, topic: &str) -> Vec<String> {
    ok(cmd.args(["replay", topic]).output().unwrap())
        .lines()
        .map(|l| json(l)["event_id"].as_str().unwrap().to_string())
        .collect()
}

/// Issue: `produce` published a `conversation_created` to Kafka, then the broker
/// refused a 3 MB message and courier said "the first 0 were written". Now an
/// event over the log's limit fails validation on both backends (nothing is
/// published); and when the broker refuses records midway, the report says
/// exactly what is in the log and the same command run again publishes only the
/// rest, each event once.
#[test]
fn on_kafka_produce_never_publishes_half_a_file_unsaid_and_a_rerun_publishes_the_rest_once() {
    let Some(brokers) = kafka() else { return };
    let dir = tempfile::tempdir().unwrap();
    let namespace = unique_namespace("produce");
    let config = kafka_config(dir.path(), "kafka", &namespace, &brokers, "");
    let kdata = dir.path().join("kdata");
    let on_kafka = |args: &[&str]| {
        let mut c = configured(&kdata, &config);
        c.args(args);
        c
    };
    ok(on_kafka(&["topics", "apply"]).output().unwrap());

    // 1. The issue's file, on both backends: refused whole before publishing.
    let oversize = write_lines(
        dir.path(),
        "oversize.jsonl",
        &[
            r#"{"type":"conversation_created","event_id":"o1","conversation_id":"o","kind":"group","creator_id":"u0","member_ids":["u0","u1"],"title":"","at_ms":1}"#.to_string(),
            format!(
                r#"{{"type":"message_sent","event_id":"o2","conversation_id":"o","message_id":"m","sender_id":"u0","text":"{}","at_ms":2}}"#,
                "x".repeat(3_000_000)
            ),
        ],
    );
    let edata = dir.path().join("edata");
    for mut cmd in [on_kafka(&[]), courier(&edata)] {
        let out = cmd
            .args(["produce", "--file"])
            .arg(&oversize)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("oversize.jsonl:2: event `o2`") && err.contains("over the log's limit"),
            "{err}"
        );
        assert!(err.contains("nothing was published"), "{err}");
    }
    assert_eq!(
        replayed_ids(on_kafka(&[]), "courier.conversations.v1"),
        Vec::<String>::new()
    );
    assert_eq!(
        replayed_ids(courier(&edata), "courier.conversations.v1"),
        Vec::<String>::new()
    );

    // 2. The broker refuses records midway: the conversations topic takes batches of
    // at most 2,000 bytes, and one message of the file is ~8 KB of text that does
    // not compress. Everything else is small.
    let topic = format!("{namespace}.courier.conversations.v1");
    let configs = |change: &[&str]| {
        let mut args = vec![
            "class",
            "org.apache.kafka.tools.ConfigCommand",
            "--bootstrap-server",
            &brokers,
            "--alter",
            "--entity-type",
            "topics",
            "--entity-name",
            &topic,
        ];
        args.extend_from_slice(change);
        courier_pipeline::kafka::perf::Tools::new(&common::kafka_settings(&brokers))
            .unwrap()
            .run(&args)
            .unwrap();
    };
    configs(&["--add-config", "max.message.bytes=2000"]);
    let mut rng = common::Rng(7);
    let noise: String = (0..8000)
        .map(|_| (b'a' + rng.below(26) as u8) as char)
        .collect();
    let mut lines = stream(3, 4);
    lines.insert(
        lines.len() / 2,
        format!(
            r#"{{"type":"message_sent","event_id":"big","conversation_id":"c1","message_id":"big","sender_id":"u0","text":"{noise}","at_ms":1764000000100}}"#
        ),
    );
    let file = write_lines(dir.path(), "events.jsonl", &lines);
    let out = on_kafka(&["produce", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the broker refused a record");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!err.contains("the first 0 were written"), "{err}");
    let report = err
        .lines()
        .find(|l| l.starts_with("published by this run: "))
        .unwrap_or_else(|| panic!("a report of what was published: {err}"));
    let reported: usize = report
        .rsplit(" (")
        .next()
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count in {report}"));
    let all_ids = || {
        let mut ids = replayed_ids(on_kafka(&[]), "courier.conversations.v1");
        ids.extend(replayed_ids(on_kafka(&[]), "courier.presence.v1"));
        ids.sort();
        ids
    };
    assert_eq!(all_ids().len(), reported, "the report is the log: {err}");
    assert!(
        report.contains("courier.conversations.v1["),
        "per partition: {report}"
    );
    let missing_line = err
        .lines()
        .find(|l| l.starts_with("not published: "))
        .unwrap_or_else(|| panic!("what was not published: {err}"));
    let missing: usize = missing_line["not published: ".len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count in {missing_line}"));
    assert_eq!(reported + missing, lines.len(), "{err}");
    assert!(missing >= 1 && reported >= 1, "a failure midway: {err}");

    // 3. The limit back to the broker's default; the same command publishes the rest.
    configs(&["--delete-config", "max.message.bytes"]);
    let again = ok(on_kafka(&["produce", "--file"])
        .arg(&file)
        .output()
        .unwrap());
    assert!(again.contains("published by an earlier run"), "{again}");
    let mut want: Vec<String> = lines
        .iter()
        .map(|l| json(l)["event_id"].as_str().unwrap().to_string())
        .collect();
    want.sort();
    assert_eq!(all_ids(), want, "every event of the file exactly once");
    // The journal is gone: the file is in.
    assert_eq!(
        entries(&kdata.join(&namespace).join("produce")),
        Vec::<std::ffi::OsString>::new()
    );
    common::delete_namespace(&brokers, &namespace);
}

/// A `courier run PROCESSOR` whose stderr is read line by line: the line with
/// `until` it printed, and the rest of its lines on a channel.
fn started(
    mut cmd: Command,
    processor: &str,
    until: &str,
) -> (Child, String, std::sync::mpsc::Receiver<String>) {
    let mut child = cmd
        .args(["run", processor])
        .env("COURIER_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = wait_for_line(&mut err, until, |l| l.contains(until));
    let (tx, rest) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in err.map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    (child, line, rest)
}

/// The partitions a "partitions assigned" or "revoked" line names.
fn partitions_in(line: &str) -> std::collections::BTreeSet<u32> {
    line.split("partition: ")
        .skip(1)
        .filter_map(|p| p.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .collect()
}

/// Static membership (issue 14): an instance killed with SIGKILL and started
/// again with the same `--instance-id` takes its own partitions back, and the
/// other member of the group sees no rebalance at all. Without an instance id
/// the broker would first wait out the dead member's session, then move its
/// partitions.
#[test]
fn on_kafka_a_static_member_restarted_takes_its_partitions_back_without_a_rebalance() {
    let Some(brokers) = kafka() else { return };
    let dir = tempfile::tempdir().unwrap();
    let namespace = unique_namespace("static");
    let config = kafka_config(dir.path(), "kafka", &namespace, &brokers, "");
    let (a_data, b_data) = (dir.path().join("a"), dir.path().join("b"));
    let on = |data: &std::path::Path, id: &str| {
        let mut c = configured(data, &config);
        c.args(["--instance-id", id]);
        c
    };
    ok(configured(&a_data, &config)
        .args(["topics", "apply"])
        .output()
        .unwrap());
    let file = write_lines(dir.path(), "events.jsonl", &stream(12, 6));
    ok(configured(&a_data, &config)
        .args(["produce", "--file"])
        .arg(&file)
        .output()
        .unwrap());

    // a holds everything; b joins and takes its share.
    let (a, _, a_rest) = started(
        on(&a_data, "inbox-a"),
        "inbox",
        "runner: partitions assigned",
    );
    let mut a = common::KillOnDrop(a);
    let (b, b_line, b_rest) = started(
        on(&b_data, "inbox-b"),
        "inbox",
        "runner: partitions assigned",
    );
    let _b = common::KillOnDrop(b);
    let b_owns = partitions_in(&b_line);
    assert!(!b_owns.is_empty(), "{b_line}");
    let revoked = loop {
        let l = a_rest
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("a gives b its share");
        if l.contains("runner: partitions revoked") {
            break l;
        }
    };
    assert_eq!(partitions_in(&revoked), b_owns);
    let a_owns: std::collections::BTreeSet<u32> = (0..12).filter(|p| !b_owns.contains(p)).collect();

    // a dies and comes back under its id before its session ends (10 s).
    a.0.kill().unwrap();
    a.0.wait().unwrap();
    let died = std::time::Instant::now();
    let (a2, a2_line, _a2_rest) = started(
        on(&a_data, "inbox-a"),
        "inbox",
        "runner: partitions assigned",
    );
    let _a2 = common::KillOnDrop(a2);
    let back = died.elapsed();
    eprintln!("static member: partitions back {back:?} after the kill");
    assert_eq!(
        partitions_in(&a2_line),
        a_owns,
        "its own partitions: {a2_line}"
    );
    // Without a rebalance: no waiting out the dead member's session, and b was
    // never asked to give up or take anything.
    assert!(
        back < std::time::Duration::from_secs(10),
        "took {back:?}: the broker waited for the session to end, as for a member it does not know"
    );
    let steps: Vec<String> = b_rest
        .try_iter()
        .filter(|l| l.contains("runner: partitions"))
        .collect();
    assert!(steps.is_empty(), "b saw a rebalance: {steps:?}");
    common::delete_namespace(&brokers, &namespace);
}

/// compose/local/courier.toml reaches the servers compose/local/up.sh runs, as
/// they are secured: its CA and password files are where up.sh keeps them in its
/// default state directory; and when those servers run here with that state,
/// `courier --config compose/local/courier.toml` logs in to both (topics apply,
/// migrate) with no other setting.
#[test]
fn the_compose_local_config_logs_in_to_the_local_servers() {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("compose/local/courier.toml");
    let c = courier_app::config::Config::load(Some(&file), Vec::new()).unwrap();
    let state =
        std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/courier/local");
    let expand = |p: &Option<std::path::PathBuf>| {
        courier_pipeline::secret::expand_home(p.as_deref().expect("a file is named"))
    };
    for (section, tls, ca, password, dir) in [
        (
            "kafka",
            c.kafka.tls,
            &c.kafka.ca_file,
            &c.kafka.password_file,
            "kafka",
        ),
        (
            "cassandra",
            c.cassandra.tls,
            &c.cassandra.ca_file,
            &c.cassandra.password_file,
            "cassandra",
        ),
    ] {
        assert!(tls, "{section}: tls");
        assert_eq!(expand(ca), state.join(dir).join("tls/ca.pem"), "{section}");
        assert_eq!(
            expand(password),
            state.join(dir).join("secrets/courier.password"),
            "{section}"
        );
    }
    assert_eq!(c.kafka.username.as_deref(), Some("courier"));
    assert_eq!(c.cassandra.username.as_deref(), Some("courier"));

    // Live, only against compose/local's own servers in their default state.
    let defaults = [
        "COURIER_LOCAL_STATE",
        "COURIER_CACHE",
        "COURIER_TEST_KAFKA",
        "COURIER_TEST_CASSANDRA",
    ]
    .iter()
    .all(|v| std::env::var_os(v).is_none());
    if !defaults {
        return;
    }
    let (Some(brokers), Some(cassandra)) =
        (kafka(), courier_pipeline::testing::CASSANDRA.reachable())
    else {
        return;
    };
    if courier_pipeline::testing::KAFKA.client_env().is_empty()
        || courier_pipeline::testing::CASSANDRA.client_env().is_empty()
    {
        // Plaintext servers (COURIER_LOCAL_PLAINTEXT=1): the config is not for them.
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let namespace = unique_namespace("localtoml");
    let on = |args: &[&str]| {
        let mut cmd = configured(&dir.path().join("data"), &file);
        for (var, _) in common::client_env() {
            cmd.env_remove(var);
        }
        cmd.env("COURIER_NAMESPACE", &namespace).args(args);
        cmd
    };
    ok(on(&["topics", "apply"]).output().unwrap());
    ok(on(&["migrate"]).output().unwrap());
    let copy = dir.path().join("local.toml");
    std::fs::write(
        &copy,
        format!(
            "namespace = \"{namespace}\"\n{}",
            std::fs::read_to_string(&file).unwrap()
        ),
    )
    .unwrap();
    common::drop_distributed(&copy, &brokers, &cassandra, &namespace);
}
