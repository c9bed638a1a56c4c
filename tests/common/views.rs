//! The inbox views through the binary, shared by the tests that compare them:
//! generated streams, running the inbox processor, and snapshots of every query
//! compared byte for byte.

use std::path::Path;
use std::process::{Command, Output};

use super::{Rng, courier, ok};

pub fn produce(data: &Path, file: &Path) {
    ok(courier(data)
        .args(["produce", "--file"])
        .arg(file)
        .output()
        .unwrap());
}

/// Runs the inbox processor to the end of the log; returns how many records it applied.
pub fn run_inbox(data: &Path) -> u64 {
    let out = courier(data)
        .args(["run", "inbox", "--until-caught-up"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "run inbox: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    summary(&out.stderr, "inbox: applied ")
}

pub fn summary(stderr: &[u8], prefix: &str) -> u64 {
    let s = String::from_utf8_lossy(stderr);
    let line = s
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` summary in {s}"));
    line.split(' ').next().unwrap().parse().unwrap()
}

/// Every query's raw stdout, stderr and exit status, for byte-for-byte comparisons.
pub fn snapshot(data: &Path, users: &[String], conversations: &[String]) -> String {
    snapshot_with(|| courier(data), users, conversations)
}

/// Fails with the first lines where two snapshots differ: whole snapshots are too
/// long for a CI log to show the difference.
#[track_caller]
pub fn assert_same(got: &str, want: &str, what: &str) {
    if got == want {
        return;
    }
    let diff: Vec<String> = got
        .lines()
        .zip(want.lines())
        .enumerate()
        .filter(|(_, (g, w))| g != w)
        .take(6)
        .map(|(i, (g, w))| format!("line {}:\n  got:  {g}\n  want: {w}", i + 1))
        .collect();
    panic!(
        "{what}: snapshots differ ({} vs {} lines)\n{}",
        got.lines().count(),
        want.lines().count(),
        diff.join("\n")
    );
}

pub fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// `conversations` groups of 8 possible users, `per` events each, interleaved:
/// mostly valid sends, receipts, edits, deletes and membership churn, with rule
/// breaks and producer retries mixed in.
pub fn generated(conversations: usize, per: usize) -> Vec<String> {
    let mut rng = Rng(7);
    let mut members: Vec<Vec<usize>> = Vec::new();
    let mut sent: Vec<Vec<(String, usize)>> = Vec::new();
    let mut history: Vec<Vec<String>> = Vec::new();
    let mut out = Vec::new();
    for c in 0..conversations {
        let m = vec![c % 8, (c + 1) % 8, (c + 3) % 8];
        out.push(format!(
            r#"{{"type":"conversation_created","event_id":"cc{c}","conversation_id":"c{c}","kind":"group","creator_id":"u{}","member_ids":["u{}","u{}","u{}"],"title":"","at_ms":{}}}"#,
            m[0], m[0], m[1], m[2], 1_000 + c
        ));
        members.push(m);
        sent.push(Vec::new());
        history.push(Vec::new());
    }
    for i in 0..per {
        for c in 0..conversations {
            let at = 10_000 + (i * conversations + c) as i64;
            let id = format!("g{c}-{i}");
            let member = |rng: &mut Rng, m: &[usize]| {
                if m.is_empty() || rng.below(10) == 0 {
                    rng.below(8)
                } else {
                    m[rng.below(m.len())]
                }
            };
            let line = match rng.below(20) {
                0..=7 => {
                    let s = member(&mut rng, &members[c]);
                    let mid = format!("m{i}");
                    sent[c].push((mid.clone(), s));
                    format!(
                        r#"{{"type":"message_sent","event_id":"{id}","conversation_id":"c{c}","message_id":"{mid}","sender_id":"u{s}","text":"text {i} of c{c}","at_ms":{at}}}"#
                    )
                }
                8..=11 if !sent[c].is_empty() => {
                    // A recent message: most likely visible to today's members.
                    let recent = sent[c].len() - 1 - rng.below(sent[c].len().min(3));
                    let (mid, _) = &sent[c][recent];
                    let u = member(&mut rng, &members[c]);
                    let status = if rng.below(2) == 0 {
                        "read"
                    } else {
                        "delivered"
                    };
                    format!(
                        r#"{{"type":"receipt","event_id":"{id}","conversation_id":"c{c}","message_id":"{mid}","user_id":"u{u}","status":"{status}","at_ms":{at}}}"#
                    )
                }
                12 | 13 if !sent[c].is_empty() => {
                    let (mid, s) = sent[c][rng.below(sent[c].len())].clone();
                    format!(
                        r#"{{"type":"message_edited","event_id":"{id}","conversation_id":"c{c}","message_id":"{mid}","editor_id":"u{s}","text":"edit {i}","at_ms":{at}}}"#
                    )
                }
                14 if !sent[c].is_empty() => {
                    let (mid, s) = sent[c][rng.below(sent[c].len())].clone();
                    format!(
                        r#"{{"type":"message_deleted","event_id":"{id}","conversation_id":"c{c}","message_id":"{mid}","actor_id":"u{s}","at_ms":{at}}}"#
                    )
                }
                15 | 16 => {
                    let actor = member(&mut rng, &members[c]);
                    let u = rng.below(8);
                    if members[c].contains(&actor) && !members[c].contains(&u) {
                        members[c].push(u);
                    }
                    format!(
                        r#"{{"type":"members_added","event_id":"{id}","conversation_id":"c{c}","actor_id":"u{actor}","user_ids":["u{u}"],"at_ms":{at}}}"#
                    )
                }
                // Never below two members, or everything after would be rejected.
                17 | 18 if members[c].len() > 2 => {
                    let actor = member(&mut rng, &members[c]);
                    let u = member(&mut rng, &members[c]);
                    if members[c].contains(&actor) {
                        members[c].retain(|m| *m != u);
                    }
                    format!(
                        r#"{{"type":"members_removed","event_id":"{id}","conversation_id":"c{c}","actor_id":"u{actor}","user_ids":["u{u}"],"at_ms":{at}}}"#
                    )
                }
                _ if !history[c].is_empty() => {
                    // A producer retry of an earlier event, same id and body.
                    history[c][rng.below(history[c].len())].clone()
                }
                _ => continue,
            };
            history[c].push(line.clone());
            out.push(line);
        }
    }
    out
}

/// Every query's output through a command builder (e.g. with a `--config`).
pub fn snapshot_with(
    cmd: impl Fn() -> Command,
    users: &[String],
    conversations: &[String],
) -> String {
    let mut out = String::new();
    // The view is stdout and the exit code. stderr joins the snapshot only when the
    // command failed: a successful query may still log a warning from a driver
    // (the Cassandra driver warns when it reads schema metadata while another test
    // drops a keyspace), which is not part of the view. Printed, not compared.
    let mut record = |what: String, o: Output| {
        let stderr = String::from_utf8_lossy(&o.stderr);
        out.push_str(&format!(
            "== {what} [{}]\n{}{}",
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout),
            if o.status.success() { "" } else { &stderr }
        ));
        if o.status.success() && !stderr.is_empty() {
            eprintln!("{what}: stderr of a successful query: {stderr}");
        }
    };
    for u in users {
        record(
            format!("inbox {u}"),
            cmd().args(["inbox", u, "--json"]).output().unwrap(),
        );
    }
    for c in conversations {
        for u in users {
            let o = cmd()
                .args(["messages", c, "--as", u, "--json"])
                .output()
                .unwrap();
            record(format!("messages {c} as {u}"), o);
        }
    }
    out
}
