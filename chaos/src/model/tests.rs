//! The reference fold against docs/DESIGN.md's rules, one rule per test, each
//! expectation worked out by hand from the rule it names.

use super::*;
use courier_schemas::json::parse_line;

/// A model after the given canonical JSON lines.
fn fold(lines: &[&str]) -> (Model, Vec<Outcome>) {
    let mut m = Model::new();
    let outcomes = lines
        .iter()
        .map(|l| m.apply(&parse_line(l).unwrap_or_else(|e| panic!("{l}: {e}"))))
        .collect();
    (m, outcomes)
}

fn created(id: &str, members: &[&str], at: i64) -> String {
    let kind = if id.starts_with('d') {
        "direct"
    } else {
        "group"
    };
    format!(
        r#"{{"type":"conversation_created","event_id":"cc-{id}","conversation_id":"{id}","kind":"{kind}","creator_id":"{}","member_ids":{},"at_ms":{at}}}"#,
        members[0],
        json!(members)
    )
}

fn sent(e: &str, c: &str, m: &str, who: &str, text: &str, at: i64) -> String {
    format!(
        r#"{{"type":"message_sent","event_id":"{e}","conversation_id":"{c}","message_id":"{m}","sender_id":"{who}","text":"{text}","at_ms":{at}}}"#
    )
}

fn members(e: &str, kind: &str, c: &str, actor: &str, users: &[&str], at: i64) -> String {
    format!(
        r#"{{"type":"members_{kind}","event_id":"{e}","conversation_id":"{c}","actor_id":"{actor}","user_ids":{},"at_ms":{at}}}"#,
        json!(users)
    )
}

fn receipt(e: &str, c: &str, m: &str, who: &str, status: &str, at: i64) -> String {
    format!(
        r#"{{"type":"receipt","event_id":"{e}","conversation_id":"{c}","message_id":"{m}","user_id":"{who}","status":"{status}","at_ms":{at}}}"#
    )
}

fn ids(v: &Option<Value>) -> Vec<String> {
    v.as_ref()
        .expect("a member")
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_string())
        .collect()
}

/// examples/chat.jsonl, every view worked out by hand from DESIGN.md.
#[test]
fn the_example_chat() {
    let lines: Vec<&str> = include_str!("../../../examples/chat.jsonl")
        .lines()
        .collect();
    let (m, outcomes) = fold(&lines);
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Applied),
        "{outcomes:?}"
    );
    // bob: read m1 (later deleted), sent m2 (edited): nothing unread; the last
    // message he sees is his own m2.
    assert_eq!(
        m.inbox("u-bob"),
        json!([{"conversation_id":"c-team","last_message_id":"m2","last_message_preview":"on my way",
                "last_message_deleted":false,"last_activity_ms":1764000003000u64,"unread_count":0}])
    );
    assert_eq!(
        m.messages("c-team", "u-bob").unwrap(),
        json!([
            {"message_id":"m1","sender_id":"u-ana","text":null,"sent_at_ms":1764000001000u64,"edited":false,
             "deleted":true,"delivered_to":["u-bob"],"read_by":["u-bob"]},
            {"message_id":"m2","sender_id":"u-bob","text":"on my way","sent_at_ms":1764000003000u64,"edited":true,
             "deleted":false,"delivered_to":[],"read_by":[]}
        ])
    );
    // cy: the ciphertext in c-dm (newer) first, with an empty preview; m2 unread
    // in c-team (m1 is deleted, so it leaves the count).
    let cy = m.inbox("u-cy");
    assert_eq!(cy[0]["conversation_id"], "c-dm");
    assert_eq!(cy[0]["last_message_preview"], "");
    assert_eq!(cy[0]["unread_count"], 0, "their own message");
    assert_eq!(cy[1]["unread_count"], 1);
    let dm = m.messages("c-dm", "u-ana").unwrap();
    assert_eq!(dm[0]["ciphertext"], "c2VjcmV0");
    assert_eq!(dm[0]["text"], Value::Null);
    // dee joined after both messages: a row with nothing in it, at the join.
    assert_eq!(
        m.inbox("u-dee"),
        json!([{"conversation_id":"c-team","last_message_id":null,"last_message_preview":null,
                "last_message_deleted":null,"last_activity_ms":1764000007000u64,"unread_count":0}])
    );
    assert_eq!(m.messages("c-team", "u-dee"), Some(json!([])));
    assert_eq!(m.messages("c-team", "u-zed"), None, "never a member");
    // Search: m1 is deleted, the ciphertext is never indexed.
    assert!(m.search("u-bob", "standup").is_empty());
    assert_eq!(m.search("u-cy", "way").len(), 1);
    assert!(
        m.search("u-dee", "way").is_empty(),
        "sent before dee joined"
    );
    assert_eq!(
        m.presence("u-bob"),
        json!({"user_id":"u-bob","status":"offline","last_seen_ms":1764000009000u64})
    );
    assert_eq!(
        m.presence("u-nobody"),
        json!({"user_id":"u-nobody","status":"offline","last_seen_ms":null})
    );
    assert_eq!(m.online(), ["u-ana".to_string()].into());
}

/// Visibility: later members see only what follows their joining; removed
/// members keep what they had and receive nothing new; someone removed and
/// added again sees again from the new joining.
#[test]
fn visibility_follows_membership_at_each_message() {
    let (m, outcomes) = fold(&[
        &created("g1", &["a", "b"], 1),
        &sent("e1", "g1", "m1", "a", "one", 2),
        &members("e2", "added", "g1", "a", &["c"], 3),
        &sent("e3", "g1", "m2", "a", "two", 4),
        &members("e4", "removed", "g1", "a", &["c"], 5),
        &sent("e5", "g1", "m3", "b", "three", 6),
        &members("e6", "added", "g1", "b", &["c"], 7),
        &sent("e7", "g1", "m4", "a", "four", 8),
    ]);
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Applied),
        "{outcomes:?}"
    );
    assert_eq!(ids(&m.messages("g1", "c")), ["m2", "m4"]);
    assert_eq!(ids(&m.messages("g1", "b")), ["m1", "m2", "m3", "m4"]);
    // c's activity: the later of the re-join (7) and the last message (8).
    assert_eq!(m.inbox("c")[0]["last_activity_ms"], 8);
    assert_eq!(m.inbox("c")[0]["unread_count"], 2);
    assert_eq!(m.search("c", "three").len(), 0);
    assert_eq!(m.search("c", "four").len(), 1);
    assert_eq!(
        m.sends()
            .iter()
            .map(|s| s.recipients.clone())
            .collect::<Vec<_>>(),
        [vec!["b"], vec!["b", "c"], vec!["a"], vec!["b", "c"]]
    );
}

/// Membership rules: only a current member adds or removes; a direct
/// conversation never changes; adding a member or removing a non-member
/// changes nothing (ignored, not rejected); removing oneself is leaving.
#[test]
fn membership_rules() {
    let (m, o) = fold(&[
        &created("g1", &["a", "b"], 1),
        &created("d1", &["a", "b"], 1),
        &members("e1", "added", "g1", "x", &["c"], 2),
        &members("e2", "added", "d1", "a", &["c"], 3),
        &members("e3", "added", "g1", "a", &["b"], 4),
        &members("e4", "removed", "g1", "a", &["z"], 5),
        &members("e5", "removed", "g1", "b", &["b"], 6),
        &sent("e6", "g1", "m1", "b", "left already", 7),
        &members("e7", "added", "g1", "b", &["b"], 8),
    ]);
    assert!(matches!(o[2], Outcome::Rejected(_)), "not a member");
    assert!(matches!(o[3], Outcome::Rejected(_)), "direct");
    assert_eq!(o[4], Outcome::Ignored, "already a member");
    assert_eq!(o[5], Outcome::Ignored, "not a member");
    assert_eq!(o[6], Outcome::Applied, "leaving");
    assert!(matches!(o[7], Outcome::Rejected(_)), "sender left");
    assert!(matches!(o[8], Outcome::Rejected(_)), "a former member adds");
    assert_eq!(m.members("g1"), ["a"]);
    assert_eq!(m.people("g1"), ["a", "b"]);
    assert_eq!(
        m.inbox("b").as_array().unwrap().len(),
        2,
        "a row for what b left"
    );
}

/// A conversation id is created once; a creator must be a member; events of a
/// conversation that does not exist are rejected.
#[test]
fn creation_and_unknown_conversations() {
    let mut again = created("g1", &["b", "c"], 5);
    again = again.replace("cc-g1", "cc-again");
    let (m, o) = fold(&[
        &created("g1", &["a", "b"], 1),
        &again,
        r#"{"type":"conversation_created","event_id":"x","conversation_id":"g2","kind":"group","creator_id":"z","member_ids":["a","b"],"at_ms":1}"#,
        &sent("e1", "nope", "m1", "a", "hello", 2),
        &receipt("e2", "nope", "m1", "a", "read", 3),
    ]);
    assert_eq!(o[0], Outcome::Applied);
    assert!(
        o[1..].iter().all(|o| matches!(o, Outcome::Rejected(_))),
        "{o:?}"
    );
    assert_eq!(m.members("g1"), ["a", "b"], "the first creation stands");
    assert!(!m.exists("g2"));
    assert_eq!(m.rejected.len(), 4);
}

/// Duplicates: the same event again changes nothing, even where it would now
/// apply differently; a used message id changes nothing whatever its text.
#[test]
fn repeated_events_and_message_ids_change_nothing() {
    let add = members("e2", "added", "g1", "a", &["c"], 3);
    let (m, o) = fold(&[
        &created("g1", &["a", "b"], 1),
        &sent("e1", "g1", "m1", "a", "first", 2),
        &add,
        &members("e3", "removed", "g1", "a", &["c"], 4),
        // A producer retry of the add, after the removal: must not re-add c.
        &add,
        &sent("e4", "g1", "m1", "b", "second", 5),
        &sent("e1", "g1", "m1", "a", "first", 2),
    ]);
    assert_eq!(o[4], Outcome::Ignored);
    assert_eq!(o[5], Outcome::Ignored);
    assert_eq!(o[6], Outcome::Ignored);
    assert_eq!(m.members("g1"), ["a", "b"]);
    let h = m.messages("g1", "b").unwrap();
    assert_eq!(h[0]["text"], "first");
    assert_eq!(h.as_array().unwrap().len(), 1);
    assert_eq!(m.sends().len(), 1);
}

/// Receipts are watermarks: read up to m reads every message up to m, read
/// implies delivered, a watermark never moves back, only a current member sends
/// one, for a message they can see.
#[test]
fn receipts_are_watermarks() {
    let (m, o) = fold(&[
        &created("g1", &["a", "b", "c"], 1),
        &sent("e1", "g1", "m1", "a", "one", 2),
        &sent("e2", "g1", "m2", "a", "two", 3),
        &sent("e3", "g1", "m3", "a", "three", 4),
        &receipt("r1", "g1", "m2", "b", "read", 5),
        &receipt("r2", "g1", "m1", "b", "read", 6),
        &receipt("r3", "g1", "m3", "c", "delivered", 7),
        &receipt("r4", "g1", "m9", "c", "read", 8),
        &members("e4", "added", "g1", "a", &["d"], 9),
        &receipt("r5", "g1", "m1", "d", "read", 10),
        &members("e5", "removed", "g1", "a", &["c"], 11),
        &receipt("r6", "g1", "m3", "c", "read", 12),
        &receipt("r7", "g1", "m1", "zed", "read", 13),
    ]);
    assert_eq!(o[4], Outcome::Applied);
    assert_eq!(o[5], Outcome::Ignored, "below the watermark");
    assert_eq!(o[6], Outcome::Applied);
    assert!(matches!(o[7], Outcome::Rejected(_)), "no such message");
    assert!(matches!(o[9], Outcome::Rejected(_)), "d cannot see m1");
    assert!(matches!(o[11], Outcome::Rejected(_)), "c left");
    assert!(matches!(o[12], Outcome::Rejected(_)), "never a member");
    let h = m.messages("g1", "a").unwrap();
    assert_eq!(h[0]["read_by"], json!(["b"]));
    assert_eq!(h[1]["read_by"], json!(["b"]));
    assert_eq!(
        h[1]["delivered_to"],
        json!(["b", "c"]),
        "read implies delivered"
    );
    assert_eq!(h[2]["read_by"], json!([]));
    assert_eq!(h[2]["delivered_to"], json!(["c"]));
    // Unread: b read up to m2, c only delivered, a's own do not count.
    let unread = |u: &str| m.inbox(u)[0]["unread_count"].clone();
    assert_eq!(unread("b"), 1);
    assert_eq!(unread("c"), 3);
    assert_eq!(unread("a"), 0);
    assert_eq!(unread("d"), 0);
}

/// Edits and deletes: only the sender while a member; a deleted message cannot
/// be edited; an edit replaces the text everywhere and marks it edited; a delete
/// leaves a tombstone, search and the unread counts.
#[test]
fn edits_and_deletes() {
    let edit = |e: &str, m: &str, who: &str, text: &str| {
        format!(
            r#"{{"type":"message_edited","event_id":"{e}","conversation_id":"g1","message_id":"{m}","editor_id":"{who}","text":"{text}","at_ms":20}}"#
        )
    };
    let delete = |e: &str, m: &str, who: &str| {
        format!(
            r#"{{"type":"message_deleted","event_id":"{e}","conversation_id":"g1","message_id":"{m}","actor_id":"{who}","at_ms":30}}"#
        )
    };
    let (m, o) = fold(&[
        &created("g1", &["a", "b"], 1),
        &sent("e1", "g1", "m1", "a", "lunch today", 2),
        &sent("e2", "g1", "m2", "a", "coffee later", 3),
        &edit("x1", "m1", "b", "hijack"),
        &edit("x2", "m1", "a", "pizza today"),
        &delete("x3", "m2", "b"),
        &delete("x4", "m2", "a"),
        &delete("x5", "m2", "a"),
        &edit("x6", "m2", "a", "too late"),
    ]);
    assert!(matches!(o[3], Outcome::Rejected(_)), "not the sender");
    assert_eq!(o[4], Outcome::Applied);
    assert!(matches!(o[5], Outcome::Rejected(_)), "not the sender");
    assert_eq!(o[6], Outcome::Applied);
    assert_eq!(o[7], Outcome::Ignored, "deleted already");
    assert!(matches!(o[8], Outcome::Rejected(_)), "deleted");
    assert!(m.search("b", "lunch").is_empty());
    assert_eq!(
        m.search("b", "PIZZA").len(),
        1,
        "words match case-insensitively"
    );
    assert!(m.search("b", "coffee").is_empty());
    let row = &m.inbox("b")[0];
    assert_eq!(row["last_message_id"], "m2");
    assert_eq!(row["last_message_deleted"], true);
    assert_eq!(row["last_message_preview"], "");
    assert_eq!(row["unread_count"], 1);
    let h = m.messages("g1", "b").unwrap();
    assert_eq!(h[0]["text"], "pizza today");
    assert_eq!(h[0]["edited"], true);
    assert_eq!(h[1]["text"], Value::Null);
    assert_eq!(h[1]["deleted"], true);
}

/// Newest activity first, ties by conversation id; the preview is the first
/// 100 characters.
#[test]
fn inbox_order_and_previews() {
    let long = "é".repeat(150);
    let (m, _) = fold(&[
        &created("g2", &["a", "b"], 5),
        &created("g1", &["a", "b"], 5),
        &created("g3", &["a", "b"], 1),
        &sent("e1", "g3", "m1", "b", &long, 9),
    ]);
    let rows = m.inbox("a");
    let order: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["conversation_id"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["g3", "g1", "g2"]);
    assert_eq!(
        rows[0]["last_message_preview"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        100
    );
}

/// A word is a run of letters and digits, at most 40 bytes.
#[test]
fn words_are_runs_of_letters_and_digits() {
    let long = "x".repeat(41);
    let text = format!("Hi, standup-5 at 10:30! {long} ok");
    let w: Vec<&str> = words(&text).collect();
    assert_eq!(w, ["Hi", "standup", "5", "at", "10", "30", "ok"]);
}
