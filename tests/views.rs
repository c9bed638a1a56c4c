//! End-to-end tests of the inbox views through the `courier` binary on the embedded
//! log: produce → `run inbox` → `inbox` / `messages` give the exact JSON of the
//! spec; producing twice changes nothing; `rebuild inbox` gives identical output;
//! a processor killed with SIGKILL mid-run ends with the views of a clean run.
//! With real Kafka and Cassandra reachable, the same on Kafka with views in
//! Cassandra: two instances with one killed, a second produce, two rebuilds.

mod common;

use common::views::{
    assert_same, generated, ids, produce, run_inbox, snapshot, snapshot_with, summary,
};
use common::{
    KillOnDrop, Live, await_progress, cassandra_views, configured, courier, drop_distributed,
    kafka_config, ok, processed_so_far, spawn_live, unique_namespace, write_lines,
};

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn inbox(data: &Path, user: &str) -> Value {
    serde_json::from_str(&ok(courier(data)
        .args(["inbox", user, "--json"])
        .output()
        .unwrap()))
    .unwrap()
}

fn messages(data: &Path, conversation: &str, user: &str) -> Value {
    serde_json::from_str(&ok(courier(data)
        .args(["messages", conversation, "--as", user, "--json"])
        .output()
        .unwrap()))
    .unwrap()
}

fn dead_letters(data: &Path) -> Vec<Value> {
    ok(courier(data)
        .args(["replay", "courier.dead-letters.v1", "--format", "json"])
        .output()
        .unwrap())
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}

/// 120 characters, some of them two bytes long: the preview keeps 100 characters.
fn long_text() -> String {
    format!("{}{}", "ü".repeat(30), "x".repeat(90))
}

/// One group with membership churn, edits, a delete and receipts; a direct
/// conversation; an empty group tying on activity; a rule break, a backwards
/// receipt and a duplicate send.
fn scenario() -> Vec<String> {
    let long = long_text();
    [
        r#"{"type":"conversation_created","event_id":"e1","conversation_id":"c1","kind":"group","creator_id":"u1","member_ids":["u1","u2","u3"],"title":"team","at_ms":1000}"#.to_string(),
        r#"{"type":"conversation_created","event_id":"e2","conversation_id":"d1","kind":"direct","creator_id":"u1","member_ids":["u1","u4"],"title":"","at_ms":1001}"#.to_string(),
        r#"{"type":"message_sent","event_id":"e3","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"hello team","at_ms":1002}"#.to_string(),
        r#"{"type":"message_sent","event_id":"e4","conversation_id":"c1","message_id":"m2","sender_id":"u2","text":"hi u1","at_ms":1003}"#.to_string(),
        r#"{"type":"receipt","event_id":"e5","conversation_id":"c1","message_id":"m1","user_id":"u2","status":"delivered","at_ms":1004}"#.to_string(),
        r#"{"type":"receipt","event_id":"e6","conversation_id":"c1","message_id":"m2","user_id":"u3","status":"read","at_ms":1005}"#.to_string(),
        r#"{"type":"message_edited","event_id":"e7","conversation_id":"c1","message_id":"m2","editor_id":"u2","text":"hi u1!","at_ms":1006}"#.to_string(),
        r#"{"type":"members_removed","event_id":"e8","conversation_id":"c1","actor_id":"u1","user_ids":["u3"],"at_ms":1007}"#.to_string(),
        r#"{"type":"message_sent","event_id":"e9","conversation_id":"c1","message_id":"m3","sender_id":"u1","text":"u3 is gone","at_ms":1008}"#.to_string(),
        r#"{"type":"members_added","event_id":"e10","conversation_id":"c1","actor_id":"u2","user_ids":["u4","u3"],"at_ms":1009}"#.to_string(),
        r#"{"type":"conversation_created","event_id":"e11","conversation_id":"c0","kind":"group","creator_id":"u2","member_ids":["u2","u1"],"title":"quiet","at_ms":1010}"#.to_string(),
        format!(r#"{{"type":"message_sent","event_id":"e12","conversation_id":"c1","message_id":"m4","sender_id":"u4","text":"{long}","at_ms":1010}}"#),
        r#"{"type":"message_deleted","event_id":"e13","conversation_id":"c1","message_id":"m3","actor_id":"u1","at_ms":1011}"#.to_string(),
        r#"{"type":"message_sent","event_id":"e14","conversation_id":"d1","message_id":"m1","sender_id":"u4","text":"direct hello","at_ms":1012}"#.to_string(),
        r#"{"type":"receipt","event_id":"e15","conversation_id":"d1","message_id":"m1","user_id":"u1","status":"read","at_ms":1013}"#.to_string(),
        r#"{"type":"message_sent","event_id":"e16","conversation_id":"c1","message_id":"m5","sender_id":"u5","text":"intruder","at_ms":1014}"#.to_string(),
        r#"{"type":"receipt","event_id":"e17","conversation_id":"c1","message_id":"m1","user_id":"u3","status":"read","at_ms":1015}"#.to_string(),
        r#"{"type":"message_sent","event_id":"e18","conversation_id":"c1","message_id":"m1","sender_id":"u2","text":"first one wins","at_ms":1016}"#.to_string(),
    ]
    .to_vec()
}

#[test]
fn views_follow_the_spec_survive_a_second_produce_and_a_rebuild() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = write_lines(dir.path(), "scenario.jsonl", &scenario());
    produce(&data, &file);
    assert_eq!(run_inbox(&data), 18);

    let long = long_text();
    let preview: String = long.chars().take(100).collect();
    let row = |c: &str, last: Value, preview: Value, deleted: Value, at: i64, unread: u64| {
        json!({"conversation_id": c, "last_message_id": last, "last_message_preview": preview,
               "last_message_deleted": deleted, "last_activity_ms": at, "unread_count": unread})
    };
    // u1: d1 is newest; c0 and c1 tie at 1010 and go by id. c1's unread: m2 and m4
    // (m1, m3 are u1's own).
    assert_eq!(
        inbox(&data, "u1"),
        json!([
            row(
                "d1",
                json!("m1"),
                json!("direct hello"),
                json!(false),
                1012,
                0
            ),
            row("c0", Value::Null, Value::Null, Value::Null, 1010, 0),
            row("c1", json!("m4"), json!(preview), json!(false), 1010, 2),
        ])
    );
    // u2: m1 and m4 unread; m3 is deleted, so no longer unread.
    assert_eq!(
        inbox(&data, "u2"),
        json!([
            row("c0", Value::Null, Value::Null, Value::Null, 1010, 0),
            row("c1", json!("m4"), json!(preview), json!(false), 1010, 2),
        ])
    );
    // u3 read up to m2, missed m3 while removed, and sees m4 after re-joining.
    assert_eq!(
        inbox(&data, "u3"),
        json!([row(
            "c1",
            json!("m4"),
            json!(preview),
            json!(false),
            1010,
            1
        )])
    );
    assert_eq!(
        inbox(&data, "u4"),
        json!([
            row(
                "d1",
                json!("m1"),
                json!("direct hello"),
                json!(false),
                1012,
                0
            ),
            row("c1", json!("m4"), json!(preview), json!(false), 1010, 0),
        ])
    );
    assert_eq!(
        inbox(&data, "u5"),
        json!([]),
        "a rejected sender has no inbox"
    );

    let msg = |id: &str,
               sender: &str,
               text: Value,
               at: i64,
               edited,
               deleted,
               to: &[&str],
               by: &[&str]| {
        json!({"message_id": id, "sender_id": sender, "text": text, "sent_at_ms": at,
               "edited": edited, "deleted": deleted, "delivered_to": to, "read_by": by})
    };
    let m1 = msg(
        "m1",
        "u1",
        json!("hello team"),
        1002,
        false,
        false,
        &["u2", "u3"],
        &["u3"],
    );
    let m2 = msg(
        "m2",
        "u2",
        json!("hi u1!"),
        1003,
        true,
        false,
        &["u3"],
        &["u3"],
    );
    let m3 = msg("m3", "u1", Value::Null, 1008, false, true, &[], &[]);
    let m4 = msg("m4", "u4", json!(long), 1010, false, false, &[], &[]);
    assert_eq!(
        messages(&data, "c1", "u1"),
        json!([m1.clone(), m2.clone(), m3.clone(), m4.clone()])
    );
    assert_eq!(messages(&data, "c1", "u2"), json!([m1, m2, m3, m4]));
    assert_eq!(
        messages(&data, "c1", "u3"),
        json!([m1, m2, m4]),
        "removed members miss what was sent meanwhile"
    );
    assert_eq!(messages(&data, "c1", "u4"), json!([m4]));
    assert_eq!(
        messages(&data, "d1", "u4"),
        json!([msg(
            "m1",
            "u4",
            json!("direct hello"),
            1012,
            false,
            false,
            &["u1"],
            &["u1"]
        )])
    );
    assert_eq!(messages(&data, "c0", "u2"), json!([]));

    // Someone who never belonged: a clear error and a non-zero exit.
    let out = courier(&data)
        .args(["messages", "c1", "--as", "u5", "--json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: u5 is not and never was a member of conversation c1"
    );

    // The rule break is a dead letter; the duplicate and the backwards receipt are not.
    let dl = dead_letters(&data);
    assert_eq!(dl.len(), 1, "{dl:?}");
    assert_eq!(
        dl[0]["reason"],
        "message_sent m5 in c1: sender u5 is not a member"
    );
    assert_eq!(dl[0]["source_key"], "c1");

    // Without --json, tables a person can read.
    let table = ok(courier(&data).args(["inbox", "u3"]).output().unwrap());
    assert!(table.starts_with("CONVERSATION"), "{table}");
    assert!(table.contains("c1"), "{table}");
    let table = ok(courier(&data)
        .args(["messages", "c1", "--as", "u1"])
        .output()
        .unwrap());
    assert!(
        table.contains("(deleted)") && table.contains("hi u1!"),
        "{table}"
    );

    let users = ids("u", 6);
    let conversations = vec!["c0".into(), "c1".into(), "d1".into(), "nope".into()];
    let before = snapshot(&data, &users, &conversations);

    // The same stream again: every event is a duplicate; nothing changes.
    produce(&data, &file);
    assert_eq!(run_inbox(&data), 18);
    assert_same(
        &snapshot(&data, &users, &conversations),
        &before,
        "unchanged",
    );
    assert_eq!(dead_letters(&data).len(), 1, "no new dead letter");

    // A rebuild makes a new generation with byte-identical answers, switches to it
    // and drops the old one.
    let views = data.join("views/inbox");
    assert!(views.join("g0").is_dir());
    let out = courier(&data).args(["rebuild", "inbox"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        summary(&out.stderr, "inbox: rebuilt generation g1 from "),
        36
    );
    assert_eq!(
        std::fs::read_to_string(views.join("CURRENT")).unwrap(),
        "g1\n"
    );
    assert!(!views.join("g0").exists(), "the old generation is gone");
    assert_same(
        &snapshot(&data, &users, &conversations),
        &before,
        "unchanged",
    );
    assert_eq!(
        dead_letters(&data).len(),
        1,
        "a rebuild sends no dead letter twice"
    );

    // The live processor continues where the rebuild ended, in the new generation.
    assert_eq!(run_inbox(&data), 0);
    let more = write_lines(
        dir.path(),
        "more.jsonl",
        &[r#"{"type":"receipt","event_id":"e19","conversation_id":"c1","message_id":"m4","user_id":"u3","status":"read","at_ms":1020}"#.to_string()],
    );
    produce(&data, &more);
    assert_eq!(run_inbox(&data), 1);
    assert_eq!(inbox(&data, "u3")[0]["unread_count"], 0);
    assert_eq!(messages(&data, "c1", "u1")[3]["read_by"], json!(["u3"]));
    eprintln!("scenario test took {:?}", started.elapsed());
}

#[test]
fn a_processor_killed_mid_run_ends_with_the_views_of_an_uninterrupted_run() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let lines = generated(200, 100);
    let total = lines.len() as u64;
    let file = write_lines(dir.path(), "big.jsonl", &lines);
    let (killed, clean) = (dir.path().join("killed"), dir.path().join("clean"));
    produce(&killed, &file);
    produce(&clean, &file);
    assert_eq!(run_inbox(&clean), total);

    // Small batches: many writes and commits, so the kill lands between some.
    let config = dir.path().join("courier.toml");
    std::fs::write(&config, "[runner]\nmax_batch = 10\n").unwrap();
    let Live {
        mut child, addr, ..
    } = spawn_live(courier(&killed).arg("--config").arg(&config), "inbox", None);
    await_progress(&addr, "inbox", total / 4);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let rest = run_inbox(&killed);
    eprintln!("kill test: {total} records, {rest} applied after the restart");
    assert!(
        rest > 0 && rest < total,
        "the kill landed mid-run and the restart resumed: {rest} of {total}"
    );

    let users = ids("u", 8);
    let conversations: Vec<String> = [0, 1, 2, 7, 99, 100, 150, 199]
        .iter()
        .map(|c| format!("c{c}"))
        .collect();
    let want = snapshot(&clean, &users, &conversations);
    assert!(want.contains("\"unread_count\":"), "{want}");
    assert_same(&snapshot(&killed, &users, &conversations), &want, "killed");
    // Dead letters: the same records, perhaps some sent twice (same ids) by the
    // batch the kill interrupted.
    let reasons = |data: &Path| {
        let mut v: Vec<(String, String)> = dead_letters(data)
            .into_iter()
            .map(|d| {
                (
                    d["event_id"].as_str().unwrap().to_string(),
                    d["reason"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let want = reasons(&clean);
    assert!(!want.is_empty(), "the stream holds rule breaks");
    eprintln!("kill test: {} dead letters", want.len());
    assert_eq!(reasons(&killed), want);
    eprintln!("kill test took {:?}", started.elapsed());
}

#[test]
fn two_instances_on_kafka_and_cassandra_with_one_killed_end_with_the_views_of_one_clean_pass() {
    let (Some(brokers), Some(cassandra)) = (
        courier_pipeline::testing::KAFKA.reachable(),
        courier_pipeline::testing::CASSANDRA.reachable(),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lines = generated(60, 60);
    let total = lines.len() as u64;
    let file = write_lines(dir.path(), "stream.jsonl", &lines);

    // The reference: one clean pass on the embedded default.
    let clean = dir.path().join("clean");
    produce(&clean, &file);
    assert_eq!(run_inbox(&clean), total);

    // The same stream on Kafka, views in Cassandra, in a namespace of its own.
    let namespace = unique_namespace("mp");
    let config = kafka_config(
        dir.path(),
        "distributed",
        &namespace,
        &brokers,
        &format!("{}[runner]\nmax_batch = 20\n", cassandra_views(&cassandra)),
    );
    let on = |data: &Path| configured(data, &config);
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    ok(on(&a_dir).args(["topics", "apply"]).output().unwrap());
    ok(on(&a_dir).arg("migrate").output().unwrap());

    // Two instances share the group; the second is in once it has partitions. Only
    // then the stream arrives, so both have work; then one dies by SIGKILL.
    let assigned = Some("partitions assigned");
    let Live {
        child: mut a,
        addr: a_addr,
        ..
    } = spawn_live(&mut on(&a_dir), "inbox", assigned);
    let Live {
        child: mut b,
        addr: b_addr,
        ..
    } = spawn_live(&mut on(&b_dir), "inbox", assigned);
    ok(on(&a_dir)
        .args(["produce", "--file"])
        .arg(&file)
        .output()
        .unwrap());
    let deadline = Instant::now() + Duration::from_secs(120);
    while processed_so_far(&a_addr, "inbox") == 0 || processed_so_far(&b_addr, "inbox") == 0 {
        assert!(
            Instant::now() < deadline,
            "both instances never got to work"
        );
        std::thread::yield_now();
    }
    let (a_done, b_done) = (
        processed_so_far(&a_addr, "inbox"),
        processed_so_far(&b_addr, "inbox"),
    );
    b.kill().unwrap(); // SIGKILL
    b.wait().unwrap();
    eprintln!("multi-process test: at the kill a had applied {a_done}, b {b_done} of {total}");

    // The survivor takes the dead one's partitions over and catches up.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let lag: Value =
            serde_json::from_str(&ok(on(&a_dir).args(["lag", "--json"]).output().unwrap()))
                .unwrap();
        let rows: Vec<&Value> = lag
            .as_array()
            .unwrap()
            .iter()
            // The inbox's group only: notify and search consume the same topic, and nothing
            // runs it here.
            .filter(|r| r["topic"] == "courier.conversations.v1" && r["group"] == "courier.inbox")
            .collect();
        if !rows.is_empty() && rows.iter().all(|r| r["lag"] == 0) {
            break;
        }
        // No pause needed: each poll is a whole `courier lag` process.
        assert!(
            Instant::now() < deadline,
            "the survivor never caught up: {lag}"
        );
    }
    assert!(
        Command::new("kill")
            .args(["-TERM", &a.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert!(a.wait().unwrap().success(), "the survivor stops cleanly");

    let users = ids("u", 8);
    let conversations: Vec<String> = [0, 1, 17, 30, 59].iter().map(|c| format!("c{c}")).collect();
    let want = snapshot(&clean, &users, &conversations);
    assert!(want.contains("\"unread_count\":"), "{want}");
    assert_same(
        &snapshot_with(|| on(&a_dir), &users, &conversations),
        &want,
        "nothing lost, nothing applied twice",
    );

    // Leave the shared servers as we found them.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let log = courier_pipeline::KafkaLog::new(
            common::kafka_settings(&brokers).with_namespace(namespace.clone()),
            courier_topics::Catalog::builtin(),
        )
        .unwrap();
        log.delete_namespace().await.unwrap();
        let cfg = courier_app::config::Config::load(Some(&config), Vec::new()).unwrap();
        let settings =
            common::cassandra_secured(courier_sinks::inbox::cassandra::CassandraSettings::new(
                &cassandra,
                cfg.cassandra_keyspace().unwrap(),
            ));
        let session = courier_sinks::inbox::cassandra::connect(&settings)
            .await
            .unwrap();
        session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", settings.keyspace), ())
            .await
            .unwrap();
    });
}

#[test]
fn on_kafka_and_cassandra_a_second_produce_changes_nothing_and_rebuilds_give_identical_output() {
    let (Some(brokers), Some(cassandra)) = (
        courier_pipeline::testing::KAFKA.reachable(),
        courier_pipeline::testing::CASSANDRA.reachable(),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lines = generated(30, 40);
    let total = lines.len() as u64;
    let file = write_lines(dir.path(), "stream.jsonl", &lines);
    let users = ids("u", 8);
    let conversations: Vec<String> = [0, 1, 7, 18, 29].iter().map(|c| format!("c{c}")).collect();

    // The reference: one clean pass on the embedded default.
    let clean = dir.path().join("clean");
    produce(&clean, &file);
    assert_eq!(run_inbox(&clean), total);
    let want = snapshot(&clean, &users, &conversations);
    assert!(want.contains("\"unread_count\":"), "{want}");

    let namespace = unique_namespace("rb");
    let config = kafka_config(
        dir.path(),
        "distributed",
        &namespace,
        &brokers,
        &format!("{}[runner]\nmax_batch = 50\n", cassandra_views(&cassandra)),
    );
    let data = dir.path().join("d");
    let on = || configured(&data, &config);
    let run = |prefix: &str, args: &[&str]| {
        let out = on().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        summary(&out.stderr, prefix)
    };
    ok(on().args(["topics", "apply"]).output().unwrap());
    ok(on().arg("migrate").output().unwrap());
    let current = || {
        let cfg = courier_app::config::Config::load(Some(&config), Vec::new()).unwrap();
        let settings = common::cassandra_secured(courier_sinks::inbox::CassandraSettings::new(
            &cassandra,
            cfg.cassandra_keyspace().unwrap(),
        ));
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let g = courier_sinks::inbox::CassandraGenerations::connect(&settings)
                .await
                .unwrap();
            (g.current().await.unwrap(), g.on_cluster().await.unwrap())
        })
    };

    ok(on()
        .args(["produce", "--file"])
        .arg(&file)
        .output()
        .unwrap());
    let inbox = ["run", "inbox", "--until-caught-up"];
    assert_eq!(run("inbox: applied ", &inbox), total);
    assert_same(
        &snapshot_with(on, &users, &conversations),
        &want,
        "one pass",
    );

    // The same stream again: every event is a duplicate of one applied.
    ok(on()
        .args(["produce", "--file"])
        .arg(&file)
        .output()
        .unwrap());
    assert_eq!(run("inbox: applied ", &inbox), total);
    assert_same(
        &snapshot_with(on, &users, &conversations),
        &want,
        "a second produce changes nothing",
    );

    // A rebuild folds both copies from the start of the log into g1, switches,
    // and drops g0 (the base keyspace's view tables).
    let rebuild = ["rebuild", "inbox"];
    assert_eq!(
        run("inbox: rebuilt generation g1 from ", &rebuild),
        2 * total,
        "both copies"
    );
    assert_eq!(current(), (1, vec![1]));
    assert_same(
        &snapshot_with(on, &users, &conversations),
        &want,
        "after g1",
    );
    // The live processor continues in g1's group, where the rebuild ended.
    assert_eq!(run("inbox: applied ", &inbox), 0);

    // Another rebuild, while a live processor serves g1: g1 is dropped, and the
    // live one follows the switch into g2's keyspace and group.
    let Live { child, rest, .. } = spawn_live(&mut on(), "inbox", Some("partitions assigned"));
    let mut live = KillOnDrop(child);
    assert_eq!(
        run("inbox: rebuilt generation g2 from ", &rebuild),
        2 * total
    );
    assert_eq!(current(), (2, vec![2]));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rest
            .recv_timeout(left)
            .expect("the live processor follows the switch");
        if line.contains("switched generation; following") {
            break;
        }
    }
    // A third copy: the live processor applies it in g2's group.
    ok(on()
        .args(["produce", "--file"])
        .arg(&file)
        .output()
        .unwrap());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let lag: Value =
            serde_json::from_str(&ok(on().args(["lag", "--json"]).output().unwrap())).unwrap();
        let rows: Vec<&Value> = lag
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["group"] == "courier.inbox.g2")
            .collect();
        if rows.len() == 12 && rows.iter().all(|r| r["lag"] == 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the live processor never caught up in g2: {lag}"
        );
    }
    let pid = live.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(live.0.wait().unwrap().success(), "stops cleanly");
    assert_same(
        &snapshot_with(on, &users, &conversations),
        &want,
        "after g2",
    );

    drop_distributed(&config, &brokers, &cassandra, &namespace);
}

/// Issue: `run search --until-caught-up`, started right after an instance was
/// killed, said it was caught up and exited 0 while the killed member (its
/// session not yet ended) still held partitions nobody had processed. Here the
/// other member is one that holds partitions and never processes them, which
/// is the same to the group but does not depend on timing: the run must wait
/// for those partitions, and end with the views of one clean pass.
#[test]
fn until_caught_up_on_kafka_and_cassandra_waits_for_partitions_another_member_holds() {
    use courier_pipeline::{ConsumerEvent, EventLog};
    use std::io::BufRead;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let (Some(brokers), Some(cassandra)) = (
        courier_pipeline::testing::KAFKA.reachable(),
        courier_pipeline::testing::CASSANDRA.reachable(),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lines = generated(40, 20);
    let file = write_lines(dir.path(), "stream.jsonl", &lines);
    let clean = dir.path().join("clean");
    produce(&clean, &file);
    run_inbox(&clean);

    let namespace = unique_namespace("caught");
    let config = kafka_config(
        dir.path(),
        "distributed",
        &namespace,
        &brokers,
        &format!("{}[runner]\nmax_batch = 20\n", cassandra_views(&cassandra)),
    );
    let data = dir.path().join("data");
    let on = || configured(&data, &config);
    ok(on().args(["topics", "apply"]).output().unwrap());
    ok(on().arg("migrate").output().unwrap());
    ok(on()
        .args(["produce", "--file"])
        .arg(&file)
        .output()
        .unwrap());

    // The other member: in the inbox's group, holding what it is given, never
    // committing. It polls all along, so it takes part in rebalances.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let log = courier_pipeline::KafkaLog::new(
        common::kafka_settings(&brokers).with_namespace(namespace.clone()),
        courier_topics::Catalog::builtin(),
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (assigned_tx, assigned) = std::sync::mpsc::channel();
    let holder = rt.spawn({
        let stop = stop.clone();
        async move {
            let mut c = log
                .subscribe("courier.inbox", &["courier.conversations.v1".to_string()])
                .await
                .unwrap();
            while !stop.load(Ordering::Relaxed) {
                if let ConsumerEvent::Assigned(tps) =
                    c.poll(100, Duration::from_millis(100)).await.unwrap()
                {
                    let _ = assigned_tx.send(tps);
                }
            }
            c.close().await.unwrap();
        }
    });
    let first = assigned
        .recv_timeout(Duration::from_secs(60))
        .expect("the holder joins the group");
    assert!(!first.is_empty());

    let mut run = on()
        .args(["run", "inbox", "--until-caught-up"])
        .env("COURIER_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(run.stderr.take().unwrap()).lines();
    // Before the fix, the run exited here, its own partitions done.
    let waiting =
        common::wait_for_line(&mut err, "that it waits for the holder's partitions", |l| {
            l.contains("waiting for the group's others")
        });
    assert!(waiting.contains("courier.conversations.v1"), "{waiting}");
    // The holder leaves; its partitions come to the run, which finishes them.
    stop.store(true, Ordering::Relaxed);
    rt.block_on(holder).unwrap();
    std::thread::spawn(move || for _ in err {});
    let status = run.wait().unwrap();
    assert!(status.success(), "{status}");

    let users = ids("u", 8);
    let conversations: Vec<String> = [0, 1, 17, 39].iter().map(|c| format!("c{c}")).collect();
    let want = snapshot(&clean, &users, &conversations);
    assert!(want.contains("\"unread_count\":"), "{want}");
    assert_same(
        &snapshot_with(on, &users, &conversations),
        &want,
        "every partition processed before the run said it was caught up",
    );
    // Every partition committed to its end by the group.
    rt.block_on(async {
        let log = courier_pipeline::KafkaLog::new(
            common::kafka_settings(&brokers).with_namespace(namespace.clone()),
            courier_topics::Catalog::builtin(),
        )
        .unwrap();
        let committed = log
            .committed("courier.inbox", "courier.conversations.v1")
            .await
            .unwrap();
        for (p, c) in committed.iter().enumerate() {
            let (_, high) = log
                .watermarks("courier.conversations.v1", p as u32)
                .await
                .unwrap();
            assert!(
                high == 0 || *c == Some(high),
                "partition {p}: {c:?} of {high}"
            );
        }
    });
    drop(rt);
    drop_distributed(&config, &brokers, &cassandra, &namespace);
}
