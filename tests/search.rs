//! End-to-end tests of the search view through the `courier` binary: for a
//! generated stream, every (user, word) query returns exactly what an independent,
//! deliberately simple model of docs/DESIGN.md says — on the embedded log, after the
//! stream is produced a second time, after `rebuild search`, and on real Kafka.

mod common;

use common::{
    Live, Rng, await_progress, configured, courier, kafka_config, ok, search_serves, spawn_live,
    unique_namespace, write_lines,
};

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::process::Command;

use serde_json::Value;

/// Words of the generated texts, in several cases. None is a query operator
/// once lowercased.
const WORDS: &[&str] = &[
    "Apple",
    "banana",
    "CHERRY",
    "date",
    "elder",
    "fig",
    "grape",
    "honeydew",
    "kiwi",
    "lemon",
    "mango",
    "nectarine",
];
const USERS: usize = 6;

/// Canonical JSON of a generated stream: conversations with membership churn,
/// text, ciphertext and media sends, edits, deletes, rule breaks (non-members,
/// edits by others) and producer retries of earlier lines.
fn generated(conversations: usize, per: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng(seed);
    let mut out: Vec<String> = Vec::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    let mut sent: Vec<Vec<(String, usize)>> = Vec::new();
    for c in 0..conversations {
        let m = vec![c % USERS, (c + 1) % USERS, (c + 2) % USERS];
        out.push(format!(
            r#"{{"type":"conversation_created","event_id":"cc{c}","conversation_id":"c{c}","kind":"group","creator_id":"u{}","member_ids":["u{}","u{}","u{}"],"title":"","at_ms":1000}}"#,
            m[0], m[0], m[1], m[2]
        ));
        members.push(m);
        sent.push(Vec::new());
    }
    let text = |rng: &mut Rng| {
        let n = 1 + rng.below(4);
        (0..n)
            .map(|_| WORDS[rng.below(WORDS.len())])
            .collect::<Vec<_>>()
            .join(if rng.below(2) == 0 { " " } else { ", " })
    };
    for i in 0..per {
        for c in 0..conversations {
            let id = format!("g{c}-{i}");
            let at = 10_000 + (i * conversations + c) as i64;
            // Mostly a member, sometimes anyone (a rule break when not a member).
            let someone = |rng: &mut Rng, m: &[usize]| {
                if rng.below(8) == 0 {
                    rng.below(USERS)
                } else {
                    m[rng.below(m.len())]
                }
            };
            let line = match rng.below(20) {
                0..=8 => {
                    let s = someone(&mut rng, &members[c]);
                    let mid = format!("m{i}");
                    sent[c].push((mid.clone(), s));
                    let content = match rng.below(10) {
                        0 => r#""ciphertext":"YXBwbGUgYmFuYW5h""#.to_string(),
                        1 => r#""media":{"url":"https://cdn/apple.png","mime_type":"image/png","size_bytes":5}"#.to_string(),
                        _ => format!(r#""text":"{}""#, text(&mut rng)),
                    };
                    format!(
                        r#"{{"type":"message_sent","event_id":"{id}","conversation_id":"c{c}","message_id":"{mid}","sender_id":"u{s}",{content},"at_ms":{at}}}"#
                    )
                }
                9..=11 if !sent[c].is_empty() => {
                    let (mid, s) = sent[c][rng.below(sent[c].len())].clone();
                    let editor = if rng.below(6) == 0 {
                        rng.below(USERS)
                    } else {
                        s
                    };
                    format!(
                        r#"{{"type":"message_edited","event_id":"{id}","conversation_id":"c{c}","message_id":"{mid}","editor_id":"u{editor}","text":"{}","at_ms":{at}}}"#,
                        text(&mut rng)
                    )
                }
                12 if !sent[c].is_empty() => {
                    let (mid, s) = sent[c][rng.below(sent[c].len())].clone();
                    format!(
                        r#"{{"type":"message_deleted","event_id":"{id}","conversation_id":"c{c}","message_id":"{mid}","actor_id":"u{s}","at_ms":{at}}}"#
                    )
                }
                13..=15 => {
                    let actor = someone(&mut rng, &members[c]);
                    let u = rng.below(USERS);
                    if members[c].contains(&actor) && !members[c].contains(&u) {
                        members[c].push(u);
                    }
                    format!(
                        r#"{{"type":"members_added","event_id":"{id}","conversation_id":"c{c}","actor_id":"u{actor}","user_ids":["u{u}"],"at_ms":{at}}}"#
                    )
                }
                16 | 17 if members[c].len() > 2 => {
                    let actor = someone(&mut rng, &members[c]);
                    let u = members[c][rng.below(members[c].len())];
                    if members[c].contains(&actor) {
                        members[c].retain(|m| *m != u);
                    }
                    format!(
                        r#"{{"type":"members_removed","event_id":"{id}","conversation_id":"c{c}","actor_id":"u{actor}","user_ids":["u{u}"],"at_ms":{at}}}"#
                    )
                }
                _ if out.len() > conversations => {
                    out[conversations + rng.below(out.len() - conversations)].clone()
                }
                _ => continue,
            };
            out.push(line);
        }
    }
    out
}

/// The words of a text as the index defines them: maximal runs of alphanumeric
/// characters, lowercased.
fn words_of(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// A message as the model keeps it.
struct Msg {
    sender: String,
    /// Current text; `None` for ciphertext or media.
    text: Option<String>,
    deleted: bool,
    visible: BTreeSet<String>,
}

/// The model: docs/DESIGN.md's rules applied directly, in log order per conversation
/// (the stream's order is each conversation's log order). Returns, per (user,
/// word), the "conversation/message" ids that search must return.
fn expected(lines: &[String]) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut members: HashMap<String, BTreeSet<String>> = HashMap::new();
    let mut msgs: BTreeMap<(String, String), Msg> = BTreeMap::new();
    for line in lines {
        let e: Value = serde_json::from_str(line).unwrap();
        let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
        // A retried event id is a duplicate, whatever happened in between.
        if !seen.insert(s("event_id")) {
            continue;
        }
        let c = s("conversation_id");
        let list = |k: &str| -> Vec<String> {
            e[k].as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        let is_member = |members: &HashMap<String, BTreeSet<String>>, u: &str| {
            members.get(&c).is_some_and(|m| m.contains(u))
        };
        match s("type").as_str() {
            "conversation_created" => {
                members.insert(c.clone(), list("member_ids").into_iter().collect());
            }
            "members_added" if is_member(&members, &s("actor_id")) => {
                members.get_mut(&c).unwrap().extend(list("user_ids"));
            }
            "members_removed" if is_member(&members, &s("actor_id")) => {
                for u in list("user_ids") {
                    members.get_mut(&c).unwrap().remove(&u);
                }
            }
            "message_sent"
                if is_member(&members, &s("sender_id"))
                    && !msgs.contains_key(&(c.clone(), s("message_id"))) =>
            {
                msgs.insert(
                    (c.clone(), s("message_id")),
                    Msg {
                        sender: s("sender_id"),
                        text: e["text"].as_str().map(str::to_string),
                        deleted: false,
                        visible: members[&c].clone(),
                    },
                );
            }
            "message_edited" | "message_deleted" => {
                let actor = if s("type") == "message_edited" {
                    s("editor_id")
                } else {
                    s("actor_id")
                };
                let still = is_member(&members, &actor);
                if let Some(m) = msgs.get_mut(&(c.clone(), s("message_id")))
                    && m.sender == actor
                    && !m.deleted
                    && still
                {
                    if s("type") == "message_edited" {
                        m.text = Some(s("text"));
                    } else {
                        m.deleted = true;
                    }
                }
            }
            _ => {}
        }
    }
    let mut want: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let vocabulary: BTreeSet<String> = WORDS.iter().map(|w| w.to_lowercase()).collect();
    for u in 0..USERS {
        for w in &vocabulary {
            want.insert((format!("u{u}"), w.clone()), BTreeSet::new());
        }
    }
    for ((c, id), m) in &msgs {
        let Some(text) = &m.text else { continue };
        if m.deleted {
            continue;
        }
        for w in words_of(text) {
            for u in &m.visible {
                want.entry((u.clone(), w.clone()))
                    .or_default()
                    .insert(format!("{c}/{id}"));
            }
        }
    }
    want
}

/// What `courier search USER WORD --json --limit 100000` returns for every pair
/// the model knows, compared with it; also checks the JSON shape of each hit.
fn assert_search_matches(
    cmd: impl Fn() -> Command,
    want: &BTreeMap<(String, String), BTreeSet<String>>,
) {
    let mut hits_seen = 0;
    for ((user, word), ids) in want {
        let out = ok(cmd()
            .args(["search", user, word, "--json", "--limit", "100000"])
            .output()
            .unwrap());
        let hits: Vec<Value> = serde_json::from_str(&out).unwrap();
        let got: BTreeSet<String> = hits
            .iter()
            .map(|h| {
                assert!(
                    h["text"]
                        .as_str()
                        .is_some_and(|t| words_of(t).contains(word))
                );
                assert!(h["score"].as_f64().is_some() && h["sent_at_ms"].as_i64().is_some());
                assert!(h["snippet"].as_str().unwrap().contains("<b>"), "{h}");
                format!(
                    "{}/{}",
                    h["conversation_id"].as_str().unwrap(),
                    h["message_id"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(got.len(), hits.len(), "no message twice for {user} {word}");
        assert_eq!(&got, ids, "search {user} {word}");
        hits_seen += hits.len();
    }
    assert!(
        hits_seen > 200,
        "the stream gives searches something to find"
    );
}

fn run_search(cmd: Command) -> u64 {
    let mut cmd = cmd;
    let out = cmd
        .args(["run", "search", "--until-caught-up"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "run search: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8_lossy(&out.stderr);
    s.lines()
        .find_map(|l| l.strip_prefix("search: applied "))
        .unwrap_or_else(|| panic!("no summary in {s}"))
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn every_word_search_equals_the_model_embedded_twice_produced_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let lines = generated(10, 40, 11);
    let file = write_lines(dir.path(), "stream.jsonl", &lines);
    let want = expected(&lines);
    let cmd = || courier(&data);

    ok(cmd()
        .args(["produce", "--file"])
        .arg(&file)
        .output()
        .unwrap());
    assert_eq!(run_search(cmd()), lines.len() as u64);
    assert_search_matches(cmd, &want);

    // The same stream again: every event a duplicate, nothing changes.
    ok(cmd()
        .args(["produce", "--file"])
        .arg(&file)
        .output()
        .unwrap());
    assert_eq!(run_search(cmd()), lines.len() as u64);
    assert_search_matches(cmd, &want);

    // A rebuild from the start of the log gives the same answers from g1.
    let out = cmd().args(["rebuild", "search"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let views = data.join("views/search");
    assert_eq!(
        std::fs::read_to_string(views.join("CURRENT")).unwrap(),
        "g1\n"
    );
    assert!(!views.join("g0").exists(), "the old generation is gone");
    assert_search_matches(cmd, &want);
    // The live processor continues where the rebuild ended.
    assert_eq!(run_search(cmd()), 0);

    // Malformed queries: a clear error and exit code 2, nothing on stdout.
    for bad in ["\"unclosed", "nosuchfield:apple"] {
        let out = cmd()
            .args(["search", "u1", bad, "--json"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("malformed query"), "{err}");
    }
    // The human form names the match.
    let human = ok(cmd()
        .args(["search", "u0", "apple", "--limit", "3"])
        .output()
        .unwrap());
    assert!(human.contains("<b>"), "{human}");
}

#[test]
fn every_word_search_equals_the_model_on_kafka() {
    let Some(brokers) = courier_pipeline::testing::KAFKA.reachable() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let lines = generated(10, 30, 23);
    let file = write_lines(dir.path(), "stream.jsonl", &lines);
    let want = expected(&lines);
    let namespace = unique_namespace("search");
    let config = kafka_config(
        dir.path(),
        "kafka",
        &namespace,
        &brokers,
        "[runner]\nmax_batch = 50\n",
    );
    let cmd = || configured(&data, &config);
    ok(cmd().args(["topics", "apply"]).output().unwrap());
    ok(cmd()
        .args(["produce", "--file"])
        .arg(&file)
        .output()
        .unwrap());
    assert_eq!(run_search(cmd()), lines.len() as u64);
    assert_search_matches(cmd, &want);
    ok(cmd()
        .args(["produce", "--file"])
        .arg(&file)
        .output()
        .unwrap());
    assert_eq!(run_search(cmd()), lines.len() as u64);
    assert_search_matches(cmd, &want);
    let out = cmd().args(["rebuild", "search"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_search_matches(cmd, &want);

    // Leave the shared broker as we found it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let log = courier_pipeline::KafkaLog::new(
            common::kafka_settings(&brokers).with_namespace(namespace.clone()),
            courier_topics::Catalog::builtin(),
        )
        .unwrap();
        log.delete_namespace().await.unwrap();
    });
}

/// The model itself is checked on a hand-made stream, so a bug in it cannot
/// hide one in the index.
#[test]
fn the_model_follows_the_spec_on_a_small_stream() {
    let lines: Vec<String> = [
        r#"{"type":"conversation_created","event_id":"a","conversation_id":"c","kind":"group","creator_id":"u0","member_ids":["u0","u1"],"title":"","at_ms":1}"#,
        r#"{"type":"message_sent","event_id":"b","conversation_id":"c","message_id":"m1","sender_id":"u0","text":"Apple pie","at_ms":2}"#,
        r#"{"type":"members_added","event_id":"c","conversation_id":"c","actor_id":"u1","user_ids":["u2"],"at_ms":3}"#,
        r#"{"type":"message_sent","event_id":"d","conversation_id":"c","message_id":"m2","sender_id":"u3","text":"apple","at_ms":4}"#,
        r#"{"type":"message_sent","event_id":"e","conversation_id":"c","message_id":"m3","sender_id":"u2","text":"fig","at_ms":5}"#,
        r#"{"type":"message_edited","event_id":"f","conversation_id":"c","message_id":"m3","editor_id":"u2","text":"apple, fig","at_ms":6}"#,
        r#"{"type":"message_deleted","event_id":"g","conversation_id":"c","message_id":"m1","actor_id":"u1","at_ms":7}"#,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let want = expected(&lines);
    let get = |u: &str, w: &str| want[&(u.to_string(), w.to_string())].clone();
    let of = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        get("u1", "apple"),
        of(&["c/m1", "c/m3"]),
        "u1 cannot delete m1"
    );
    assert_eq!(get("u2", "apple"), of(&["c/m3"]), "joined after m1");
    assert_eq!(get("u3", "apple"), of(&[]), "never a member");
    assert_eq!(get("u0", "fig"), of(&["c/m3"]));
}

/// Distributed mode, simple version: two instances, each indexing its own
/// conversations and answering for its shards over HTTP; `courier search --peers`
/// fans out and merges, and equals the model of both streams together.
#[test]
fn search_fans_out_to_instances_and_merges_their_shards() {
    let dir = tempfile::tempdir().unwrap();
    let a_lines = generated(6, 20, 5);
    // The second instance's conversations are others (`x…`), as partitions of
    // one topic would be.
    let b_lines: Vec<String> = generated(6, 20, 6)
        .into_iter()
        .map(|l| l.replace("\"conversation_id\":\"c", "\"conversation_id\":\"x"))
        .collect();
    let mut want = expected(&a_lines);
    for (k, v) in expected(&b_lines) {
        want.entry(k).or_default().extend(v);
    }
    // Killed on any exit, a failed assertion included.
    struct Instances(Vec<(std::process::Child, String)>);
    impl Drop for Instances {
        fn drop(&mut self) {
            for (child, _) in &mut self.0 {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    let mut instances = Instances(Vec::new());
    for (name, lines) in [("a", &a_lines), ("b", &b_lines)] {
        let data = dir.path().join(name);
        let file = write_lines(dir.path(), &format!("{name}.jsonl"), lines);
        ok(courier(&data)
            .args(["produce", "--file"])
            .arg(&file)
            .output()
            .unwrap());
        // `--serve` through its environment variable: `spawn_live` adds the
        // `run search` arguments itself.
        let Live { child, addr, rest } = spawn_live(
            courier(&data).env("COURIER_SEARCH_SERVE", "127.0.0.1:0"),
            "search",
            None,
        );
        let search_addr = search_serves(&rest);
        await_progress(&addr, "search", lines.len() as u64);
        instances.0.push((child, format!("http://{search_addr}")));
    }
    let peers = format!("{},{}", instances.0[0].1, instances.0[1].1);
    let querier = dir.path().join("querier");
    let ask = |user: &str, word: &str| -> Vec<Value> {
        let out = ok(courier(&querier)
            .args([
                "search", user, word, "--json", "--limit", "100000", "--peers", &peers,
            ])
            .output()
            .unwrap());
        serde_json::from_str(&out).unwrap()
    };
    // Applied is not yet searchable: a live instance commits when idle, or each
    // second while it keeps up (less often while it is behind, as with these old
    // events), and each shard's reader reloads within about half a second of
    // its commit, independently of the others. So each answer is awaited until
    // it is complete (answers only grow to it), then checked exactly.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut hits_seen = 0;
    for ((user, word), ids) in &want {
        let (hits, got) = loop {
            let hits = ask(user, word);
            let got: BTreeSet<String> = hits
                .iter()
                .map(|h| {
                    format!(
                        "{}/{}",
                        h["conversation_id"].as_str().unwrap(),
                        h["message_id"].as_str().unwrap()
                    )
                })
                .collect();
            if &got == ids || std::time::Instant::now() >= deadline {
                break (hits, got);
            }
        };
        assert_eq!(&got, ids, "search {user} {word} across instances");
        assert!(
            hits.windows(2)
                .all(|w| w[0]["score"].as_f64() >= w[1]["score"].as_f64())
        );
        hits_seen += hits.len();
    }
    assert!(hits_seen > 100);
    let bad = courier(&querier)
        .args(["search", "u1", "\"unclosed", "--peers", &peers])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("malformed query"));

    for (child, _) in &mut instances.0 {
        assert!(
            Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
        assert!(
            child.wait().unwrap().success(),
            "the instance stops cleanly"
        );
    }
}

/// The partitions whose search shard the instance with metrics at `addr` owns
/// (`courier_search_shard_owned`).
fn owned_by(addr: &str) -> BTreeSet<u32> {
    common::metrics_text(addr)
        .lines()
        .filter_map(|l| l.strip_prefix("courier_search_shard_owned{partition=\""))
        .filter_map(|l| {
            let (p, rest) = l.split_once('"')?;
            (rest.trim_start_matches('}').trim() == "1").then(|| p.parse().ok())?
        })
        .collect()
}

/// (conversation/message) of every hit `peers` answer for `user` `word`.
fn ask_peers(querier: &std::path::Path, peers: &str, user: &str, word: &str) -> BTreeSet<String> {
    let out = ok(courier(querier)
        .args([
            "search", user, word, "--json", "--limit", "100000", "--peers", peers,
        ])
        .output()
        .unwrap());
    let hits: Vec<Value> = serde_json::from_str(&out).unwrap();
    hits.iter()
        .map(|h| {
            format!(
                "{}/{}",
                h["conversation_id"].as_str().unwrap(),
                h["message_id"].as_str().unwrap()
            )
        })
        .collect()
}

/// Waits (up to `within`) until `peers` answer every (user, word) of `want`
/// exactly: answers only grow to it while shards catch up and commit.
fn await_exact(
    querier: &std::path::Path,
    peers: &str,
    want: &BTreeMap<(String, String), BTreeSet<String>>,
    within: std::time::Duration,
) {
    let deadline = std::time::Instant::now() + within;
    for ((user, word), ids) in want {
        loop {
            let got = ask_peers(querier, peers, user, word);
            if &got == ids {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "search {user} {word} from {peers}: got {got:?}, want {ids:?}"
            );
        }
    }
}

/// Issue 17, search hand-over, on Kafka: two `run search --serve` instances
/// over one topic, each snapshotting its shards into one shared directory. One
/// is SIGKILLed; the survivor takes its partitions over after the session
/// timeout, restores each of their shards from the newest snapshot (its log
/// and `courier_search_shard_restores_total{source="snapshot"}` say so),
/// applies exactly the records produced after the snapshots (some on the moved
/// partitions), nothing again, and alone answers every query exactly as the
/// model of everything produced says.
#[test]
fn on_kafka_a_killed_instance_s_shards_are_restored_from_snapshots_by_the_survivor() {
    let Some(brokers) = courier_pipeline::testing::KAFKA.reachable() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lines = generated(16, 20, 41);
    let file = write_lines(dir.path(), "stream.jsonl", &lines);
    let want = expected(&lines);
    let namespace = unique_namespace("handover");
    let snapshots = dir.path().join("snapshots");
    let config = kafka_config(
        dir.path(),
        "kafka",
        &namespace,
        &brokers,
        &format!(
            "[runner]\nmax_batch = 50\n[search]\nsnapshot_dir = \"{}\"\nsnapshot_interval_ms = 200\n",
            snapshots.display()
        ),
    );
    let data = |name: &str| dir.path().join(name);
    ok(configured(&data("a"), &config)
        .args(["topics", "apply"])
        .output()
        .unwrap());
    ok(configured(&data("a"), &config)
        .args(["produce", "--file"])
        .arg(&file)
        .output()
        .unwrap());

    struct Instance {
        child: common::KillOnDrop,
        metrics: String,
        search: String,
        rest: std::sync::mpsc::Receiver<String>,
    }
    let start = |name: &str| {
        let Live { child, addr, rest } = spawn_live(
            configured(&data(name), &config).env("COURIER_SEARCH_SERVE", "127.0.0.1:0"),
            "search",
            None,
        );
        let search = format!("http://{}", search_serves(&rest));
        Instance {
            child: common::KillOnDrop(child),
            metrics: addr,
            search,
            rest,
        }
    };
    // `a` alone first, so it owns every partition: `b` then gets its share
    // from `a` (restored from the snapshots `a` takes as it lets them go) and
    // never owned what `a` keeps, so nothing of that is on its disk.
    let mut a = start("a");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while owned_by(&a.metrics).len() < 12 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first instance never owned every partition"
        );
        std::thread::yield_now();
    }
    let b = start("b");

    // Both in the group, the partitions split between them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let (on_a, on_b) = loop {
        let (on_a, on_b) = (owned_by(&a.metrics), owned_by(&b.metrics));
        if !on_a.is_empty()
            && !on_b.is_empty()
            && on_a.is_disjoint(&on_b)
            && on_a.len() + on_b.len() == 12
        {
            break (on_a, on_b);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the instances never split the partitions: {on_a:?} {on_b:?}"
        );
        std::thread::yield_now();
    };
    let querier = data("querier");
    let both = format!("{},{}", a.search, b.search);
    await_exact(&querier, &both, &want, std::time::Duration::from_secs(120));

    // Every shard of the instance about to die is in the store up to the end of
    // its partition.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let kafka = courier_pipeline::KafkaLog::new(
        common::kafka_settings(&brokers).with_namespace(namespace.clone()),
        courier_topics::Catalog::builtin(),
    )
    .unwrap();
    let store = courier_sinks::search::SnapshotStore::new(
        snapshots.join(&namespace).join("search/g0"),
        std::time::Duration::from_secs(1),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // An empty partition has no commit, so no snapshot: its next owner starts
    // it from nothing, which is its end.
    let mut moving = BTreeSet::new();
    let mut ends = BTreeMap::new();
    for &p in &on_a {
        let (_, end) = rt
            .block_on(courier_pipeline::EventLog::watermarks(
                &kafka,
                courier_topics::CONVERSATIONS,
                p,
            ))
            .unwrap();
        ends.insert(p, end);
        if end == 0 {
            continue;
        }
        moving.insert(p);
        while store.newest(p).unwrap().is_none_or(|s| s.next_offset < end) {
            assert!(
                std::time::Instant::now() < deadline,
                "no snapshot of p{p} reaches its end {end}"
            );
            std::thread::yield_now();
        }
    }
    assert!(!moving.is_empty(), "the killed instance indexed something");
    let applied_before = common::processed_so_far(&b.metrics, "search");
    // Partitions may have moved already as the instances joined (from `a` to
    // `b`, through a snapshot at the revoke): only what follows counts.
    let restores_before = common::metrics_text(&b.metrics);
    while b.rest.try_recv().is_ok() {}

    // SIGKILL: no revoke, no last commit, no leaving the group.
    a.child.0.kill().unwrap();
    a.child.0.wait().unwrap();
    // More conversations (other ids) while nobody indexes them: the survivor
    // must replay them after the snapshots.
    let later: Vec<String> = generated(8, 10, 43)
        .into_iter()
        .map(|l| {
            l.replace("\"conversation_id\":\"c", "\"conversation_id\":\"x")
                .replace("\"event_id\":\"", "\"event_id\":\"x")
        })
        .collect();
    ok(configured(&data("a"), &config)
        .args(["produce", "--file"])
        .arg(write_lines(dir.path(), "later.jsonl", &later))
        .output()
        .unwrap());
    let mut want = want;
    for (k, v) in expected(&later) {
        want.entry(k).or_default().extend(v);
    }
    let grown = on_a.iter().any(|&p| {
        let (_, end) = rt
            .block_on(courier_pipeline::EventLog::watermarks(
                &kafka,
                courier_topics::CONVERSATIONS,
                p,
            ))
            .unwrap();
        end > ends[&p]
    });
    assert!(grown, "some of the later records are on moved partitions");

    // The survivor owns everything once the session times out.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while owned_by(&b.metrics).len() < 12 {
        assert!(
            std::time::Instant::now() < deadline,
            "the survivor never took the partitions over"
        );
        std::thread::yield_now();
    }
    await_exact(
        &querier,
        &b.search,
        &want,
        std::time::Duration::from_secs(60),
    );
    let text = common::metrics_text(&b.metrics);
    let restores = |p: u32, source: &str| {
        let (partition, source) = (format!("partition=\"{p}\""), format!("source=\"{source}\""));
        let name = "courier_search_shard_restores_total";
        common::metric_sum(&text, name, &[&partition, &source])
            - common::metric_sum(&restores_before, name, &[&partition, &source])
    };
    for &p in &on_a {
        let (snapshot, reindex) = (restores(p, "snapshot"), restores(p, "reindex"));
        if moving.contains(&p) {
            assert_eq!(
                (snapshot, reindex),
                (1.0, 0.0),
                "p{p} restored from a snapshot once: {text}"
            );
        } else {
            assert_eq!(
                (snapshot, reindex),
                (0.0, 1.0),
                "empty p{p}: nothing to restore"
            );
        }
    }
    for &p in &on_b {
        assert_eq!(
            restores(p, "snapshot") + restores(p, "reindex") + restores(p, "local"),
            0.0,
            "p{p} stayed open on the survivor"
        );
    }
    // Records after the last message (receipts) may still be on their way.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let applied = loop {
        let applied = common::processed_so_far(&b.metrics, "search") - applied_before;
        if applied >= later.len() as u64 || std::time::Instant::now() >= deadline {
            break applied;
        }
        std::thread::yield_now();
    };
    assert_eq!(
        applied,
        later.len() as u64,
        "only the records after the snapshots are applied, each once"
    );
    // Its log says which shards came from a snapshot.
    let mut restored = BTreeSet::new();
    while restored.len() < moving.len() {
        let line = b
            .rest
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("a log line per restored shard");
        if line.contains("restored search shard from a snapshot") {
            let p = line
                .split("partition=")
                .nth(1)
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|d| d.parse::<u32>().ok())
                .expect("the line names its partition");
            restored.insert(p);
        }
    }
    assert_eq!(restored, moving);
    drop(b);
    common::delete_namespace(&brokers, &namespace);
}
