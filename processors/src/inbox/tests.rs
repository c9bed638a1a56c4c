//! The semantics of docs/DESIGN.md as cases: canonical JSON events in, the inbox and
//! messages queries (as JSON) and the dead-letter reasons out.
//!
//! Conventions of [`run`]: every event is at offset = its line number (blank lines
//! skipped) on partition 0; a line without `event_id` gets `e<line>`, one without
//! `at_ms` gets `at_ms` = its line number.

use std::collections::BTreeMap;

use courier_schemas::Event;
use courier_schemas::json::parse_line;
use serde_json::Value;

use super::*;

/// The fold and the view after a stream of events.
struct Case {
    states: BTreeMap<String, ConversationState>,
    view: ViewModel,
    rejected: Vec<String>,
    ignored: Vec<(String, Ignored)>,
    next_offset: u64,
}

fn run(lines: &str) -> Case {
    let mut case = Case {
        states: BTreeMap::new(),
        view: ViewModel::new(),
        rejected: Vec::new(),
        ignored: Vec::new(),
        next_offset: 1,
    };
    case.feed(lines);
    case
}

impl Case {
    /// Applies more lines, continuing the offsets.
    fn feed(&mut self, lines: &str) {
        for line in lines.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let n = self.next_offset;
            let mut v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            let o = v.as_object_mut().expect("an object");
            o.entry("event_id").or_insert(format!("e{n}").into());
            o.entry("at_ms").or_insert(n.into());
            let event = parse_line(&v.to_string()).unwrap_or_else(|e| panic!("{line}: {e}"));
            self.apply(&event);
        }
    }

    fn apply(&mut self, event: &Event) -> Outcome {
        let n = self.next_offset;
        self.next_offset += 1;
        let position = Position::new(0, n);
        let c = match route(event) {
            Ok(c) => c.to_owned(),
            Err(reason) => {
                self.rejected.push(reason.clone());
                return Outcome {
                    position,
                    verdict: Verdict::Rejected(reason),
                    effects: Effects::default(),
                };
            }
        };
        let state = self
            .states
            .entry(c.clone())
            .or_insert_with(|| ConversationState::new(c));
        let outcome = apply(state, event, position);
        self.view.apply(&outcome);
        match &outcome.verdict {
            Verdict::Rejected(r) => self.rejected.push(r.clone()),
            Verdict::Ignored(why) => self.ignored.push((event.event_id.clone(), *why)),
            Verdict::Applied | Verdict::Redelivered => {}
        }
        outcome
    }

    #[track_caller]
    fn inbox(&self, user: &str, expected: &str) {
        let got = serde_json::to_value(self.view.inbox(user)).unwrap();
        same_json(&format!("inbox of {user}"), got, expected);
    }

    #[track_caller]
    fn messages(&self, conversation: &str, user: &str, expected: &str) {
        let got = match self.view.messages(conversation, user) {
            Ok(rows) => serde_json::to_value(rows).unwrap(),
            Err(e) => Value::String(e.to_string()),
        };
        same_json(
            &format!("messages of {conversation} as {user}"),
            got,
            expected,
        );
    }

    #[track_caller]
    fn rejected(&self, expected: &[&str]) {
        assert_eq!(self.rejected, expected, "dead-letter reasons");
    }

    #[track_caller]
    fn ignored(&self, expected: &[(&str, Ignored)]) {
        let expected: Vec<(String, Ignored)> =
            expected.iter().map(|(e, i)| (e.to_string(), *i)).collect();
        assert_eq!(self.ignored, expected, "ignored events");
    }
}

#[track_caller]
fn same_json(what: &str, got: Value, expected: &str) {
    let expected: Value = serde_json::from_str(expected)
        .unwrap_or_else(|e| Value::String(format!("(bad expectation: {e}) {expected}")));
    assert!(
        got == expected,
        "{what}\n   got: {}\nwanted: {}",
        serde_json::to_string_pretty(&got).unwrap(),
        serde_json::to_string_pretty(&expected).unwrap()
    );
}

const GROUP_C1: &str = r#"{"type":"conversation_created","conversation_id":"c1","kind":"group","creator_id":"u1","member_ids":["u1","u2","u3"],"title":"team"}"#;

#[test]
fn a_small_group_with_receipts_and_a_direct_conversation() {
    let case = run(&format!(
        r#"
        {GROUP_C1}
        {{"type":"message_sent","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"hello"}}
        {{"type":"message_sent","conversation_id":"c1","message_id":"m2","sender_id":"u2","text":"hi u1"}}
        {{"type":"receipt","conversation_id":"c1","message_id":"m2","user_id":"u3","status":"delivered"}}
        {{"type":"receipt","conversation_id":"c1","message_id":"m1","user_id":"u2","status":"read"}}
        {{"type":"conversation_created","conversation_id":"c0","kind":"direct","creator_id":"u1","member_ids":["u1","u2"],"at_ms":3}}
        "#
    ));
    case.rejected(&[]);
    // Equal activity (3): conversation_id ascending.
    case.inbox(
        "u1",
        r#"[
        {"conversation_id":"c0","last_message_id":null,"last_message_preview":null,"last_message_deleted":null,"last_activity_ms":3,"unread_count":0},
        {"conversation_id":"c1","last_message_id":"m2","last_message_preview":"hi u1","last_message_deleted":false,"last_activity_ms":3,"unread_count":1}
    ]"#,
    );
    case.inbox(
        "u2",
        r#"[
        {"conversation_id":"c0","last_message_id":null,"last_message_preview":null,"last_message_deleted":null,"last_activity_ms":3,"unread_count":0},
        {"conversation_id":"c1","last_message_id":"m2","last_message_preview":"hi u1","last_message_deleted":false,"last_activity_ms":3,"unread_count":0}
    ]"#,
    );
    // Delivered is not read.
    case.inbox(
        "u3",
        r#"[{"conversation_id":"c1","last_message_id":"m2","last_message_preview":"hi u1","last_message_deleted":false,"last_activity_ms":3,"unread_count":2}]"#,
    );
    case.inbox("u9", "[]");
    // Watermarks are cumulative: u3's delivered up to m2 covers m1; u2 read m1,
    // so m1 is delivered to u2 as well.
    case.messages(
        "c1",
        "u1",
        r#"[
        {"message_id":"m1","sender_id":"u1","text":"hello","sent_at_ms":2,"edited":false,"deleted":false,"delivered_to":["u2","u3"],"read_by":["u2"]},
        {"message_id":"m2","sender_id":"u2","text":"hi u1","sent_at_ms":3,"edited":false,"deleted":false,"delivered_to":["u3"],"read_by":[]}
    ]"#,
    );
    case.messages(
        "c1",
        "u9",
        r#""u9 is not and never was a member of conversation c1""#,
    );
    case.messages(
        "nope",
        "u1",
        r#""u1 is not and never was a member of conversation nope""#,
    );
}

#[test]
fn conversations_are_created_once_with_their_creator_and_direct_ones_have_two_members() {
    let mut case = run(r#"
        {"type":"conversation_created","conversation_id":"c1","kind":"group","creator_id":"u9","member_ids":["u1","u2"]}
        {"type":"conversation_created","conversation_id":"c2","kind":"direct","creator_id":"u1","member_ids":["u1","u1"]}
        {"type":"conversation_created","conversation_id":"c3","kind":"group","creator_id":"u1","member_ids":["u1","u2","u2"]}
        {"type":"conversation_created","conversation_id":"c3","kind":"group","creator_id":"u2","member_ids":["u2"]}
        "#);
    // The JSON parser already refuses a direct list of three; a record from
    // another producer may still carry one.
    let mut three = parse_line(r#"{"type":"conversation_created","event_id":"x","conversation_id":"c4","kind":"direct","creator_id":"u1","member_ids":["u1","u2"],"at_ms":5}"#).unwrap();
    if let Some(courier_schemas::proto::event::Body::ConversationCreated(b)) = &mut three.body {
        b.member_ids.push("u3".into());
    }
    case.apply(&three);
    case.rejected(&[
        "conversation_created c1: creator u9 is not among member_ids",
        "conversation_created c2: a direct conversation has exactly two distinct members, got 1",
        "conversation_created c3: conversation c3 already exists",
        "conversation_created c4: a direct conversation has exactly two distinct members, got 3",
    ]);
    // Repeating a member in the list means nothing more.
    case.messages("c3", "u2", "[]");
    case.inbox(
        "u2",
        r#"[{"conversation_id":"c3","last_message_id":null,"last_message_preview":null,"last_message_deleted":null,"last_activity_ms":3,"unread_count":0}]"#,
    );
    case.messages(
        "c1",
        "u1",
        r#""u1 is not and never was a member of conversation c1""#,
    );
}

#[test]
fn only_members_change_membership_and_direct_membership_never_changes() {
    let case = run(&format!(
        r#"
        {GROUP_C1}
        {{"type":"members_added","conversation_id":"c1","actor_id":"u9","user_ids":["u4"]}}
        {{"type":"members_removed","conversation_id":"c1","actor_id":"u9","user_ids":["u2"]}}
        {{"type":"members_added","conversation_id":"c1","actor_id":"u1","user_ids":["u2","u3"]}}
        {{"type":"members_removed","conversation_id":"c1","actor_id":"u1","user_ids":["u7"]}}
        {{"type":"conversation_created","conversation_id":"d1","kind":"direct","creator_id":"u1","member_ids":["u1","u2"]}}
        {{"type":"members_added","conversation_id":"d1","actor_id":"u1","user_ids":["u3"]}}
        {{"type":"members_removed","conversation_id":"d1","actor_id":"u1","user_ids":["u1"]}}
        {{"type":"members_added","conversation_id":"c9","actor_id":"u1","user_ids":["u3"]}}
        {{"type":"members_added","conversation_id":"c1","actor_id":"u1","user_ids":["u2","u4"]}}
        "#
    ));
    case.rejected(&[
        "members_added to c1 by u9: u9 is not a member",
        "members_removed from c1 by u9: u9 is not a member",
        "members_added to d1 by u1: d1 is a direct conversation, whose membership never changes",
        "members_removed from d1 by u1: d1 is a direct conversation, whose membership never changes",
        "members_added to c9 by u1: conversation c9 does not exist",
    ]);
    // Adding current members and removing non-members is no rule break: nothing
    // happens and nothing is dead-lettered.
    case.ignored(&[
        ("e4", Ignored::MembershipUnchanged),
        ("e5", Ignored::MembershipUnchanged),
    ]);
    // A list mixing a current and a new member adds the new one.
    case.inbox(
        "u4",
        r#"[{"conversation_id":"c1","last_message_id":null,"last_message_preview":null,"last_message_deleted":null,"last_activity_ms":10,"unread_count":0}]"#,
    );
    assert_eq!(case.states["c1"].members(), ["u1", "u2", "u3", "u4"]);
    assert_eq!(case.states["d1"].members(), ["u1", "u2"]);
}

#[test]
fn visibility_follows_membership_through_leaving_and_rejoining() {
    let case = run(&format!(
        r#"
        {GROUP_C1}
        {{"type":"message_sent","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"before"}}
        {{"type":"members_removed","conversation_id":"c1","actor_id":"u3","user_ids":["u3"]}}
        {{"type":"message_sent","conversation_id":"c1","message_id":"m2","sender_id":"u1","text":"while u3 is away"}}
        {{"type":"members_added","conversation_id":"c1","actor_id":"u2","user_ids":["u3","u4"]}}
        {{"type":"message_sent","conversation_id":"c1","message_id":"m3","sender_id":"u2","text":"welcome back"}}
        {{"type":"members_removed","conversation_id":"c1","actor_id":"u1","user_ids":["u2"]}}
        {{"type":"message_sent","conversation_id":"c1","message_id":"m4","sender_id":"u1","text":"u2 is gone"}}
        {{"type":"message_sent","conversation_id":"c1","message_id":"m5","sender_id":"u2","text":"let me in"}}
        "#
    ));
    case.rejected(&["message_sent m5 in c1: sender u2 is not a member"]);
    // u3 left and came back: m2 was sent in between. Recipients of m2 are u2 only.
    case.messages(
        "c1",
        "u3",
        r#"[
        {"message_id":"m1","sender_id":"u1","text":"before","sent_at_ms":2,"edited":false,"deleted":false,"delivered_to":[],"read_by":[]},
        {"message_id":"m3","sender_id":"u2","text":"welcome back","sent_at_ms":6,"edited":false,"deleted":false,"delivered_to":[],"read_by":[]},
        {"message_id":"m4","sender_id":"u1","text":"u2 is gone","sent_at_ms":8,"edited":false,"deleted":false,"delivered_to":[],"read_by":[]}
    ]"#,
    );
    // New members see only what comes after they join.
    case.messages(
        "c1",
        "u4",
        r#"[
        {"message_id":"m3","sender_id":"u2","text":"welcome back","sent_at_ms":6,"edited":false,"deleted":false,"delivered_to":[],"read_by":[]},
        {"message_id":"m4","sender_id":"u1","text":"u2 is gone","sent_at_ms":8,"edited":false,"deleted":false,"delivered_to":[],"read_by":[]}
    ]"#,
    );
    // Removed members keep what they had and get nothing new; their inbox row
    // stays, frozen at the last message they saw.
    case.messages(
        "c1",
        "u2",
        r#"[
        {"message_id":"m1","sender_id":"u1","text":"before","sent_at_ms":2,"edited":false,"deleted":false,"delivered_to":[],"read_by":[]},
        {"message_id":"m2","sender_id":"u1","text":"while u3 is away","sent_at_ms":4,"edited":false,"deleted":false,"delivered_to":[],"read_by":[]},
        {"message_id":"m3","sender_id":"u2","text":"welcome back","sent_at_ms":6,"edited":false,"deleted":false,"delivered_to":[],"read_by":[]}
    ]"#,
    );
    case.inbox(
        "u2",
        r#"[{"conversation_id":"c1","last_message_id":"m3","last_message_preview":"welcome back","last_message_deleted":false,"last_activity_ms":6,"unread_count":2}]"#,
    );
    // u3's unread: m1 (before leaving), m3 and m4 (after re-joining).
    case.inbox(
        "u3",
        r#"[{"conversation_id":"c1","last_message_id":"m4","last_message_preview":"u2 is gone","last_message_deleted":false,"last_activity_ms":8,"unread_count":3}]"#,
    );
    let p = case.view.participant("c1", "u3").unwrap();
    assert_eq!(
        p.spans,
        [
            Span {
                from: 1,
                to: Some(3)
            },
            Span { from: 5, to: None }
        ]
    );
}

#[test]
fn last_activity_is_the_later_of_the_join_and_the_last_visible_message() {
    let case = run(&format!(
        r#"
        {GROUP_C1}
        {{"type":"message_sent","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"old news","at_ms":100}}
        {{"type":"members_removed","conversation_id":"c1","actor_id":"u3","user_ids":["u3"],"at_ms":200}}
        {{"type":"members_added","conversation_id":"c1","actor_id":"u1","user_ids":["u3","u4"],"at_ms":300}}
        {{"type":"message_sent","conversation_id":"c1","message_id":"m2","sender_id":"u1","text":"clock skew","at_ms":250}}
        {{"type":"message_sent","conversation_id":"c2x","message_id":"m1","sender_id":"u1","text":"nowhere"}}
        "#
    ));
    case.rejected(&["message_sent m1 in c2x: conversation c2x does not exist"]);
    // The re-join (300) is later than both m1 (100) and m2 (250, a producer clock
    // behind): the row is as recent as the join.
    case.inbox(
        "u3",
        r#"[{"conversation_id":"c1","last_message_id":"m2","last_message_preview":"clock skew","last_message_deleted":false,"last_activity_ms":300,"unread_count":2}]"#,
    );
    case.inbox(
        "u2",
        r#"[{"conversation_id":"c1","last_message_id":"m2","last_message_preview":"clock skew","last_message_deleted":false,"last_activity_ms":250,"unread_count":2}]"#,
    );
    // After the re-join but before any new message, the row showed m1 at the
    // join's time; u4 had no message at all.
    let case = run(&format!(
        r#"
        {GROUP_C1}
        {{"type":"message_sent","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"old news","at_ms":100}}
        {{"type":"members_removed","conversation_id":"c1","actor_id":"u3","user_ids":["u3"],"at_ms":200}}
        {{"type":"members_added","conversation_id":"c1","actor_id":"u1","user_ids":["u3","u4"],"at_ms":300}}
        "#
    ));
    case.inbox(
        "u3",
        r#"[{"conversation_id":"c1","last_message_id":"m1","last_message_preview":"old news","last_message_deleted":false,"last_activity_ms":300,"unread_count":1}]"#,
    );
    case.inbox(
        "u4",
        r#"[{"conversation_id":"c1","last_message_id":null,"last_message_preview":null,"last_message_deleted":null,"last_activity_ms":300,"unread_count":0}]"#,
    );
}

#[test]
fn duplicates_change_nothing_and_the_first_message_id_wins() {
    let case = run(&format!(
        r#"
        {GROUP_C1}
        {{"type":"message_sent","event_id":"s1","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"first","at_ms":10}}
        {{"type":"message_sent","event_id":"s1","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"first","at_ms":10}}
        {{"type":"message_sent","event_id":"s2","conversation_id":"c1","message_id":"m1","sender_id":"u2","text":"second","at_ms":11}}
        {{"type":"members_added","event_id":"a1","conversation_id":"c1","actor_id":"u1","user_ids":["u4"]}}
        {{"type":"members_removed","conversation_id":"c1","actor_id":"u1","user_ids":["u4"]}}
        {{"type":"members_added","event_id":"a1","conversation_id":"c1","actor_id":"u1","user_ids":["u4"]}}
        {{"type":"message_edited","event_id":"x1","conversation_id":"c1","message_id":"m1","editor_id":"u1","text":"edit one"}}
        {{"type":"message_edited","conversation_id":"c1","message_id":"m1","editor_id":"u1","text":"edit two"}}
        {{"type":"message_edited","event_id":"x1","conversation_id":"c1","message_id":"m1","editor_id":"u1","text":"edit one"}}
        "#
    ));
    case.rejected(&[]);
    case.ignored(&[
        ("s1", Ignored::DuplicateMessageId),
        ("s2", Ignored::DuplicateMessageId),
        ("a1", Ignored::DuplicateEventId),
        ("x1", Ignored::DuplicateEventId),
    ]);
    // The retried add did not bring u4 back; the retried edit did not undo the
    // later one; u2's "second" never happened.
    assert_eq!(case.states["c1"].members(), ["u1", "u2", "u3"]);
    case.messages(
        "c1",
        "u2",
        r#"[{"message_id":"m1","sender_id":"u1","text":"edit two","sent_at_ms":10,"edited":true,"deleted":false,"delivered_to":[],"read_by":[]}]"#,
    );
    case.inbox(
        "u2",
        r#"[{"conversation_id":"c1","last_message_id":"m1","last_message_preview":"edit two","last_message_deleted":false,"last_activity_ms":10,"unread_count":1}]"#,
    );
}

#[test]
fn a_retried_rejected_event_stays_rejected_once_even_after_it_became_valid() {
    let case = run(&format!(
        r#"
        {GROUP_C1}
        {{"type":"message_sent","event_id":"s9","conversation_id":"c1","message_id":"m9","sender_id":"u9","text":"let me in"}}
        {{"type":"members_added","conversation_id":"c1","actor_id":"u1","user_ids":["u9"]}}
        {{"type":"message_sent","event_id":"s9","conversation_id":"c1","message_id":"m9","sender_id":"u9","text":"let me in"}}
        {{"type":"message_sent","conversation_id":"c1","message_id":"m9","sender_id":"u9","text":"now I may"}}
        "#
    ));
    case.rejected(&["message_sent m9 in c1: sender u9 is not a member"]);
    case.ignored(&[("s9", Ignored::DuplicateEventId)]);
    // A rejected send did not claim m9: a valid one with the same id applies.
    case.messages(
        "c1",
        "u1",
        r#"[{"message_id":"m9","sender_id":"u9","text":"now I may","sent_at_ms":5,"edited":false,"deleted":false,"delivered_to":[],"read_by":[]}]"#,
    );
}

#[test]
fn only_the_sender_while_a_member_edits_or_deletes_and_deleted_messages_stay_deleted() {
    let case = run(&format!(
        r#"
        {GROUP_C1}
        {{"type":"message_sent","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"typo"}}
        {{"type":"message_sent","conversation_id":"c1","message_id":"m2","sender_id":"u2","text":"by u2"}}
        {{"type":"message_edited","conversation_id":"c1","message_id":"m1","editor_id":"u2","text":"hijack"}}
        {{"type":"message_edited","conversation_id":"c1","message_id":"m1","editor_id":"u1","text":"fixed"}}
        {{"type":"message_deleted","conversation_id":"c1","message_id":"m1","actor_id":"u3"}}
        {{"type":"message_edited","conversation_id":"c1","message_id":"m7","editor_id":"u1","text":"?"}}
        {{"type":"members_removed","conversation_id":"c1","actor_id":"u2","user_ids":["u2"]}}
        {{"type":"message_edited","conversation_id":"c1","message_id":"m2","editor_id":"u2","text":"after leaving"}}
        {{"type":"message_deleted","conversation_id":"c1","message_id":"m2","actor_id":"u2"}}
        {{"type":"message_deleted","conversation_id":"c1","message_id":"m1","actor_id":"u1"}}
        {{"type":"message_edited","conversation_id":"c1","message_id":"m1","editor_id":"u1","text":"resurrect"}}
        {{"type":"message_deleted","conversation_id":"c1","message_id":"m1","actor_id":"u1"}}
        "#
    ));
    case.rejected(&[
        "message_edited m1 in c1: u2 is not its sender (u1)",
        "message_deleted m1 in c1: u3 is not its sender (u1)",
        "message_edited m7 in c1: there is no message m7",
        "message_edited m2 in c1: u2 is no longer a member",
        "message_deleted m2 in c1: u2 is no longer a member",
        "message_edited m1 in c1: the message is deleted",
    ]);
    case.ignored(&[("e13", Ignored::AlreadyDeleted)]);
    // The tombstone keeps `edited`; its text is gone everywhere.
    case.messages(
        "c1",
        "u3",
        r#"[
        {"message_id":"m1","sender_id":"u1","text":null,"sent_at_ms":2,"edited":true,"deleted":true,"delivered_to":[],"read_by":[]},
        {"message_id":"m2","sender_id":"u2","text":"by u2","sent_at_ms":3,"edited":false,"deleted":false,"delivered_to":[],"read_by":[]}
    ]"#,
    );
    // A deleted message leaves unread counts: u3 has only m2 left unread.
    case.inbox(
        "u3",
        r#"[{"conversation_id":"c1","last_message_id":"m2","last_message_preview":"by u2","last_message_deleted":false,"last_activity_ms":3,"unread_count":1}]"#,
    );
    // u2, gone, still sees the delete (it is "for everyone") and its count drops.
    case.inbox(
        "u2",
        r#"[{"conversation_id":"c1","last_message_id":"m2","last_message_preview":"by u2","last_message_deleted":false,"last_activity_ms":3,"unread_count":0}]"#,
    );
}

#[test]
fn edits_and_deletes_reach_the_preview_of_everyone_whose_last_message_it_is() {
    let case = run(&format!(
        r#"
        {GROUP_C1}
        {{"type":"message_sent","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"draft"}}
        {{"type":"members_removed","conversation_id":"c1","actor_id":"u3","user_ids":["u3"]}}
        {{"type":"message_edited","conversation_id":"c1","message_id":"m1","editor_id":"u1","text":"final"}}
        "#
    ));
    for u in ["u1", "u2", "u3"] {
        let unread = if u == "u1" { 0 } else { 1 };
        case.inbox(
            u,
            &format!(
                r#"[{{"conversation_id":"c1","last_message_id":"m1","last_message_preview":"final","last_message_deleted":false,"last_activity_ms":2,"unread_count":{unread}}}]"#
            ),
        );
    }
    let mut case = case;
    case.feed(
        r#"{"type":"message_deleted","conversation_id":"c1","message_id":"m1","actor_id":"u1","at_ms":99}"#,
    );
    // The delete's own at_ms is not activity; the row still names the message.
    for u in ["u1", "u2", "u3"] {
        case.inbox(
            u,
            r#"[{"conversation_id":"c1","last_message_id":"m1","last_message_preview":"","last_message_deleted":true,"last_activity_ms":2,"unread_count":0}]"#,
        );
    }
}

#[test]
fn receipts_are_monotone_cumulative_watermarks_of_current_members_for_visible_messages() {
    let case = run(&format!(
        r#"
        {GROUP_C1}
        {{"type":"message_sent","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"one"}}
        {{"type":"message_sent","conversation_id":"c1","message_id":"m2","sender_id":"u1","text":"two"}}
        {{"type":"message_sent","conversation_id":"c1","message_id":"m3","sender_id":"u2","text":"three"}}
        {{"type":"receipt","conversation_id":"c1","message_id":"m2","user_id":"u2","status":"read"}}
        {{"type":"receipt","conversation_id":"c1","message_id":"m1","user_id":"u2","status":"read"}}
        {{"type":"receipt","conversation_id":"c1","message_id":"m1","user_id":"u2","status":"delivered"}}
        {{"type":"receipt","conversation_id":"c1","message_id":"m1","user_id":"u3","status":"delivered"}}
        {{"type":"members_added","conversation_id":"c1","actor_id":"u1","user_ids":["u4"]}}
        {{"type":"receipt","conversation_id":"c1","message_id":"m1","user_id":"u4","status":"read"}}
        {{"type":"receipt","conversation_id":"c1","message_id":"m1","user_id":"u9","status":"read"}}
        {{"type":"receipt","conversation_id":"c1","message_id":"m8","user_id":"u2","status":"read"}}
        {{"type":"members_removed","conversation_id":"c1","actor_id":"u3","user_ids":["u3"]}}
        {{"type":"receipt","conversation_id":"c1","message_id":"m3","user_id":"u3","status":"read"}}
        {{"type":"receipt","conversation_id":"c1","message_id":"m3","user_id":"u1","status":"read"}}
        "#
    ));
    case.rejected(&[
        "receipt for m1 in c1 by u4: m1 is not visible to u4 (not a member when it was sent)",
        "receipt for m1 in c1 by u9: u9 is not a member",
        "receipt for m8 in c1 by u2: there is no message m8",
        "receipt for m3 in c1 by u3: u3 is not a member",
    ]);
    // Backwards: read m1 after m2, delivered m1 after reading m2.
    case.ignored(&[
        ("e6", Ignored::WatermarkAlreadyThere),
        ("e7", Ignored::WatermarkAlreadyThere),
    ]);
    // Read implies delivered (u2 on m1, m2; u1 on m3); m3 is u2's own.
    case.messages(
        "c1",
        "u1",
        r#"[
        {"message_id":"m1","sender_id":"u1","text":"one","sent_at_ms":2,"edited":false,"deleted":false,"delivered_to":["u2","u3"],"read_by":["u2"]},
        {"message_id":"m2","sender_id":"u1","text":"two","sent_at_ms":3,"edited":false,"deleted":false,"delivered_to":["u2"],"read_by":["u2"]},
        {"message_id":"m3","sender_id":"u2","text":"three","sent_at_ms":4,"edited":false,"deleted":false,"delivered_to":["u1"],"read_by":["u1"]}
    ]"#,
    );
    let p = case.view.participant("c1", "u2").unwrap();
    assert_eq!((p.delivered_up_to, p.read_up_to), (Some(3), Some(3)));
    case.inbox(
        "u2",
        r#"[{"conversation_id":"c1","last_message_id":"m3","last_message_preview":"three","last_message_deleted":false,"last_activity_ms":4,"unread_count":0}]"#,
    );
    case.inbox(
        "u1",
        r#"[{"conversation_id":"c1","last_message_id":"m3","last_message_preview":"three","last_message_deleted":false,"last_activity_ms":4,"unread_count":0}]"#,
    );
    case.inbox(
        "u3",
        r#"[{"conversation_id":"c1","last_message_id":"m3","last_message_preview":"three","last_message_deleted":false,"last_activity_ms":4,"unread_count":3}]"#,
    );
}

#[test]
fn unread_counts_skip_own_deleted_and_read_messages() {
    let case = run(&format!(
        r#"
        {GROUP_C1}
        {{"type":"message_sent","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"a"}}
        {{"type":"message_sent","conversation_id":"c1","message_id":"m2","sender_id":"u2","text":"b"}}
        {{"type":"message_sent","conversation_id":"c1","message_id":"m3","sender_id":"u1","text":"c"}}
        {{"type":"message_sent","conversation_id":"c1","message_id":"m4","sender_id":"u1","text":"d"}}
        {{"type":"message_deleted","conversation_id":"c1","message_id":"m3","actor_id":"u1"}}
        {{"type":"receipt","conversation_id":"c1","message_id":"m1","user_id":"u3","status":"read"}}
        {{"type":"message_deleted","conversation_id":"c1","message_id":"m1","actor_id":"u1"}}
        {{"type":"receipt","conversation_id":"c1","message_id":"m4","user_id":"u2","status":"read"}}
        "#
    ));
    case.rejected(&[]);
    // u3: m1 read, m3 deleted → m2, m4. u2: read up to m4. u1: only m2 is not theirs.
    for (u, unread) in [("u1", 1), ("u2", 0), ("u3", 2)] {
        case.inbox(
            u,
            &format!(
                r#"[{{"conversation_id":"c1","last_message_id":"m4","last_message_preview":"d","last_message_deleted":false,"last_activity_ms":5,"unread_count":{unread}}}]"#
            ),
        );
    }
}

#[test]
fn previews_are_the_first_hundred_characters_not_bytes() {
    let long: String = "é".repeat(60) + &"😀".repeat(60);
    let case = run(&format!(
        r#"
        {GROUP_C1}
        {{"type":"message_sent","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"{long}"}}
        "#
    ));
    let row = &case.view.inbox("u2")[0];
    let expected = "é".repeat(60) + &"😀".repeat(40);
    assert_eq!(row.last_message_preview.as_deref(), Some(expected.as_str()));
    assert_eq!(expected.chars().count(), 100);
    // History keeps the whole text.
    let messages = case.view.messages("c1", "u2").unwrap();
    assert_eq!(messages[0].text.as_deref(), Some(long.as_str()));
}

#[test]
fn ciphertext_and_media_have_no_preview_and_keep_their_content() {
    let case = run(&format!(
        r#"
        {GROUP_C1}
        {{"type":"message_sent","conversation_id":"c1","message_id":"m1","sender_id":"u1","ciphertext":"AAEC"}}
        {{"type":"message_sent","conversation_id":"c1","message_id":"m2","sender_id":"u1","media":{{"url":"https://x/1","mime_type":"image/png","size_bytes":3}}}}
        "#
    ));
    case.messages(
        "c1",
        "u2",
        r#"[
        {"message_id":"m1","sender_id":"u1","text":null,"ciphertext":"AAEC","sent_at_ms":2,"edited":false,"deleted":false,"delivered_to":[],"read_by":[]},
        {"message_id":"m2","sender_id":"u1","text":null,"media":{"url":"https://x/1","mime_type":"image/png","size_bytes":3},"sent_at_ms":3,"edited":false,"deleted":false,"delivered_to":[],"read_by":[]}
    ]"#,
    );
    case.inbox(
        "u2",
        r#"[{"conversation_id":"c1","last_message_id":"m2","last_message_preview":"","last_message_deleted":false,"last_activity_ms":3,"unread_count":2}]"#,
    );
}

#[test]
fn events_that_are_not_about_conversations_are_rejected() {
    let mut case = run(r#"{"type":"presence","event_id":"p1","user_id":"u1","status":"online"}"#);
    case.apply(&Event::default());
    case.rejected(&[
        "presence p1 does not belong on courier.conversations.v1",
        "event  has an event type this build does not know",
    ]);
    // Handed to a state anyway, they are rejected the same way.
    let mut state = ConversationState::new("c1");
    let p = parse_line(
        r#"{"type":"presence","event_id":"p1","user_id":"u1","status":"online","at_ms":1}"#,
    )
    .unwrap();
    let out = apply(&mut state, &p, Position::new(0, 1));
    assert_eq!(
        out.rejection(),
        Some("presence p1 does not belong on courier.conversations.v1")
    );
    let other = parse_line(&GROUP_C1.replace("\"c1\"", "\"c2\"")).unwrap();
    let out = apply(&mut state, &other, Position::new(0, 2));
    assert!(
        out.rejection().unwrap().contains("a processor bug"),
        "{out:?}"
    );
}

#[test]
fn redeliveries_are_skipped_and_a_restored_state_continues_where_it_was() {
    let events: Vec<Event> = [
        GROUP_C1,
        r#"{"type":"message_sent","event_id":"s1","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"hi","at_ms":2}"#,
        r#"{"type":"receipt","event_id":"r1","conversation_id":"c1","message_id":"m1","user_id":"u2","status":"read","at_ms":3}"#,
        r#"{"type":"members_removed","event_id":"x1","conversation_id":"c1","actor_id":"u1","user_ids":["u2"],"at_ms":4}"#,
    ]
    .iter()
    .map(|l| {
        let mut v: Value = serde_json::from_str(l).unwrap();
        v.as_object_mut().unwrap().entry("event_id").or_insert("c".into());
        parse_line(&v.to_string()).unwrap()
    })
    .collect();
    let mut state = ConversationState::new("c1");
    let first = apply(&mut state, &events[0], Position::new(3, 10));
    let second = apply(&mut state, &events[1], Position::new(3, 11));
    assert_eq!(
        (&first.verdict, &second.verdict),
        (&Verdict::Applied, &Verdict::Applied)
    );
    assert_eq!(second.effects.messages.len(), 1);
    assert_eq!(second.effects.inbox.len(), 3, "one row per member");
    // The same records again, at their positions: nothing at all.
    let again = apply(&mut state, &events[1], Position::new(3, 11));
    assert_eq!(again.verdict, Verdict::Redelivered);
    assert!(again.effects.is_empty() && !again.state_changed());
    assert_eq!(state.applied_offset(), Some(11));

    // Persisted and restored (the lookup maps are rebuilt), then continued.
    let json = serde_json::to_string(&state).unwrap();
    let mut restored: ConversationState = serde_json::from_str(&json).unwrap();
    let mut live = state.clone();
    for (i, e) in events.iter().enumerate().skip(1) {
        let at = Position::new(3, 10 + i as u64);
        assert_eq!(apply(&mut restored, e, at), apply(&mut live, e, at));
    }
    assert_eq!(
        serde_json::to_string(&restored).unwrap(),
        serde_json::to_string(&live).unwrap()
    );
    assert_eq!(restored.members(), ["u1", "u3"]);
    assert_eq!(restored.format(), STATE_FORMAT);
}

#[test]
fn a_receipt_moves_one_participant_row_and_one_inbox_row() {
    let mut case = run(&format!(
        r#"
        {GROUP_C1}
        {{"type":"message_sent","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"a"}}
        {{"type":"message_sent","conversation_id":"c1","message_id":"m2","sender_id":"u1","text":"b"}}
        "#
    ));
    let read = parse_line(r#"{"type":"receipt","event_id":"r","conversation_id":"c1","message_id":"m2","user_id":"u2","status":"read","at_ms":9}"#).unwrap();
    let out = case.apply(&read);
    assert!(out.effects.messages.is_empty(), "no message row rewritten");
    assert_eq!(out.effects.participants.len(), 1);
    assert_eq!(out.effects.inbox.len(), 1);
    let delivered = parse_line(r#"{"type":"receipt","event_id":"d","conversation_id":"c1","message_id":"m2","user_id":"u3","status":"delivered","at_ms":9}"#).unwrap();
    let out = case.apply(&delivered);
    assert_eq!(
        (out.effects.participants.len(), out.effects.inbox.len()),
        (1, 0)
    );
}

#[test]
fn state_keeps_one_preview_per_distinct_last_message() {
    let case = run(&format!(
        r#"
        {GROUP_C1}
        {{"type":"message_sent","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"a"}}
        {{"type":"members_removed","conversation_id":"c1","actor_id":"u3","user_ids":["u3"]}}
        {{"type":"message_sent","conversation_id":"c1","message_id":"m2","sender_id":"u1","text":"b"}}
        {{"type":"message_sent","conversation_id":"c1","message_id":"m3","sender_id":"u1","text":"c"}}
        "#
    ));
    let state = &case.states["c1"];
    // m1 for u3 (gone), m3 for the others; m2's preview was dropped.
    assert_eq!(state.previews.keys().copied().collect::<Vec<_>>(), [0, 2]);
    assert_eq!(state.message_count(), 3);
}

#[test]
fn state_grows_with_messages_but_not_with_receipts() {
    let mut case = run(GROUP_C1);
    let size = |case: &Case| serde_json::to_string(&case.states["c1"]).unwrap().len();
    let before = size(&case);
    for i in 0..1000 {
        case.feed(&format!(
            r#"{{"type":"message_sent","conversation_id":"c1","message_id":"m{i:04}","sender_id":"u1","text":"{}"}}"#,
            "x".repeat(200)
        ));
    }
    let per_message = (size(&case) - before) / 1000;
    // Texts are not kept: a 200-character message costs its id and a few numbers.
    assert!(per_message <= 48, "{per_message} bytes per message");
    let with_messages = size(&case);
    for i in 0..1000 {
        case.feed(&format!(
            r#"{{"type":"receipt","conversation_id":"c1","message_id":"m{i:04}","user_id":"u2","status":"read"}}"#
        ));
    }
    // Receipts move watermarks; their ids are not remembered.
    assert!(
        size(&case) <= with_messages + 64,
        "{} → {}",
        with_messages,
        size(&case)
    );
    case.rejected(&[]);
    case.inbox(
        "u2",
        r#"[{"conversation_id":"c1","last_message_id":"m0999","last_message_preview":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","last_message_deleted":false,"last_activity_ms":1001,"unread_count":0}]"#,
    );
}

/// Issue 18: a member sees the conversation as it is; a former member as it was
/// just before they left (those removed with them included, nobody added
/// since, and the join time of the membership open then, not of a later one);
/// someone never in sees nothing.
#[test]
fn a_conversation_is_seen_as_it_is_or_as_it_was_when_one_left() {
    let case = run(&format!(
        r#"
        {GROUP_C1}
        {{"type":"members_removed","conversation_id":"c1","actor_id":"u1","user_ids":["u2"]}}
        {{"type":"members_added","conversation_id":"c1","actor_id":"u1","user_ids":["u4"]}}
        {{"type":"members_removed","conversation_id":"c1","actor_id":"u1","user_ids":["u3","u4"]}}
        {{"type":"members_added","conversation_id":"c1","actor_id":"u1","user_ids":["u2","u5"]}}
        "#
    ));
    let s = &case.states["c1"];
    let seen = |u: &str| {
        s.seen_by(u).map(|v| {
            let members: Vec<(String, Option<i64>)> = v
                .members
                .into_iter()
                .map(|m| (m.user_id, m.joined_at_ms))
                .collect();
            (v.title, v.created_by, v.created_at_ms, members)
        })
    };
    let m = |u: &str, at: i64| (u.to_string(), Some(at));
    let head = (Some("team".to_string()), Some("u1".to_string()), Some(1));
    let now = (
        head.0.clone(),
        head.1.clone(),
        head.2,
        vec![m("u1", 1), m("u2", 5), m("u5", 5)],
    );
    assert_eq!(seen("u1"), Some(now.clone()));
    // u2 left and came back: now again.
    assert_eq!(seen("u2"), Some(now));
    // u3 and u4 left together: both are in what they saw; u2 (out then) is not.
    let u3_left = (
        head.0.clone(),
        head.1.clone(),
        head.2,
        vec![m("u1", 1), m("u3", 1), m("u4", 3)],
    );
    assert_eq!(seen("u3"), Some(u3_left.clone()));
    assert_eq!(seen("u4"), Some(u3_left));
    assert_eq!(seen("u9"), None);
    assert_eq!(
        s.seen_by("u1").map(|v| v.kind),
        Some(Kind::Group),
        "the kind"
    );
    // The shape of `GET /v1/conversations/{id}`.
    let json = serde_json::to_value(s.seen_by("u3").unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"conversation_id": "c1", "kind": "group", "title": "team",
            "created_by": "u1", "created_at_ms": 1,
            "members": [{"user_id": "u1", "joined_at_ms": 1}, {"user_id": "u3", "joined_at_ms": 1},
                        {"user_id": "u4", "joined_at_ms": 3}]})
    );
    // Through both encodings, and a state that does not exist yet.
    let mut binary = Vec::new();
    s.encode_into(&mut binary);
    let back = ConversationState::decode(&binary).unwrap();
    assert_eq!(back.seen_by("u3"), s.seen_by("u3"));
    let json: ConversationState = serde_json::from_str(&serde_json::to_string(s).unwrap()).unwrap();
    assert_eq!(json.seen_by("u3"), s.seen_by("u3"));
    assert_eq!(ConversationState::new("c9").seen_by("u1"), None);
}
