//! The pure part of notify: an applied message and who is online in, push jobs out.

use courier_schemas::Event;
use courier_schemas::proto::{PushJob, event::Body};

use crate::inbox::view::preview;
use crate::inbox::{Content, Outcome, Verdict};

/// The UUIDv5 namespace of push job ids (a fixed random UUID: changing it would
/// change every id, and with them the push side's deduplication).
const JOB_NAMESPACE: uuid::Uuid = uuid::uuid!("6f1d3a52-7c1e-4d8e-9b0a-2f4c8e5d7a10");

/// The id of the push job telling `user` about message `message_id` of
/// `conversation_id`: a UUIDv5 of the three, length-prefixed so no choice of ids can
/// make two different triples collide. Deterministic, so a replay or a redelivery
/// yields the same id and the push side recognises it.
pub fn job_id(user: &str, conversation_id: &str, message_id: &str) -> String {
    let name = format!(
        "{}:{user}{}:{conversation_id}{}:{message_id}",
        user.len(),
        conversation_id.len(),
        message_id.len()
    );
    uuid::Uuid::new_v5(&JOB_NAMESPACE, name.as_bytes()).to_string()
}

/// The push jobs of one event: for an applied `message_sent`, one per recipient
/// (a member when it was sent, other than the sender) for whom `online` says no, in
/// the order of the recipients; nothing for anything else. The preview is the first
/// 100 characters of a text, empty for ciphertext and media (courier never reads
/// the one and has no words for the other). A job's `at_ms` is the message's, so
/// the push side measures latency from the send.
pub fn jobs_for(event: &Event, outcome: &Outcome, online: impl Fn(&str) -> bool) -> Vec<Event> {
    let (Verdict::Applied, Some(Body::MessageSent(sent))) = (&outcome.verdict, &event.body) else {
        return Vec::new();
    };
    let text = outcome
        .effects
        .messages
        .iter()
        .find(|m| m.message_id == sent.message_id)
        .and_then(|m| match &m.content {
            Some(Content::Text(t)) => Some(preview(t)),
            _ => None,
        })
        .unwrap_or_default();
    // The fold emits the inbox row of every member as of the send: exactly the
    // message's audience.
    outcome
        .effects
        .inbox
        .iter()
        .map(|u| u.user_id.as_str())
        .filter(|u| *u != sent.sender_id && !online(u))
        .map(|user| {
            let id = job_id(user, &sent.conversation_id, &sent.message_id);
            Event {
                event_id: id.clone(),
                at_ms: event.at_ms,
                body: Some(Body::PushJob(PushJob {
                    job_id: id,
                    user_id: user.to_string(),
                    conversation_id: sent.conversation_id.clone(),
                    message_id: sent.message_id.clone(),
                    sender_id: sent.sender_id.clone(),
                    preview: text.clone(),
                    // One notification per thread on the device: a newer message of
                    // the same conversation replaces the older one.
                    collapse_key: sent.conversation_id.clone(),
                })),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use courier_schemas::json::{parse_line, to_line};

    use super::*;
    use crate::inbox::{ConversationState, Position, apply};

    fn run(lines: &[&str], online: &[&str]) -> Vec<String> {
        let mut state = ConversationState::new("c1");
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            let e = parse_line(l).unwrap();
            let outcome = apply(&mut state, &e, Position::new(0, i as u64));
            out.extend(
                jobs_for(&e, &outcome, |u| online.contains(&u))
                    .iter()
                    .map(to_line),
            );
        }
        out
    }

    const CREATE: &str = r#"{"type":"conversation_created","event_id":"e1","conversation_id":"c1","kind":"group","creator_id":"u1","member_ids":["u1","u2","u3"],"title":"t","at_ms":1}"#;

    #[test]
    fn offline_recipients_get_one_job_each_and_the_sender_and_online_users_none() {
        let jobs = run(
            &[
                CREATE,
                r#"{"type":"message_sent","event_id":"e2","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"hello","at_ms":5}"#,
            ],
            &["u3"],
        );
        let id = job_id("u2", "c1", "m1");
        assert_eq!(
            jobs,
            vec![format!(
                r#"{{"type":"push_job","event_id":"{id}","job_id":"{id}","user_id":"u2","conversation_id":"c1","message_id":"m1","sender_id":"u1","preview":"hello","collapse_key":"c1","at_ms":5}}"#
            )]
        );
    }

    #[test]
    fn duplicates_invalid_messages_and_other_events_make_no_jobs() {
        let jobs = run(
            &[
                CREATE,
                r#"{"type":"message_sent","event_id":"e2","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"a","at_ms":5}"#,
                // The same event again, and another send reusing m1.
                r#"{"type":"message_sent","event_id":"e2","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"a","at_ms":5}"#,
                r#"{"type":"message_sent","event_id":"e3","conversation_id":"c1","message_id":"m1","sender_id":"u2","text":"b","at_ms":6}"#,
                // Not a member: rejected by the fold, so no job.
                r#"{"type":"message_sent","event_id":"e4","conversation_id":"c1","message_id":"m2","sender_id":"u9","text":"c","at_ms":7}"#,
                r#"{"type":"message_edited","event_id":"e5","conversation_id":"c1","message_id":"m1","editor_id":"u1","text":"a!","at_ms":8}"#,
                r#"{"type":"members_removed","event_id":"e6","conversation_id":"c1","actor_id":"u1","user_ids":["u3"],"at_ms":9}"#,
                // Membership as of the send: u3 left, so only u2 hears of m3.
                r#"{"type":"message_sent","event_id":"e7","conversation_id":"c1","message_id":"m3","sender_id":"u1","ciphertext":"AAEC","at_ms":10}"#,
            ],
            &[],
        );
        let users: Vec<_> = jobs
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                format!("{}/{}/{:?}", v["message_id"], v["user_id"], v["preview"])
            })
            .collect();
        assert_eq!(
            users,
            vec![
                r#""m1"/"u2"/String("a")"#,
                r#""m1"/"u3"/String("a")"#,
                r#""m3"/"u2"/String("")"#,
            ]
        );
    }

    #[test]
    fn job_ids_are_deterministic_and_do_not_collide_across_splits() {
        assert_eq!(job_id("u1", "c1", "m1"), job_id("u1", "c1", "m1"));
        assert_ne!(job_id("u1", "c1", "m1"), job_id("u2", "c1", "m1"));
        assert_ne!(job_id("ab", "c", "m"), job_id("a", "bc", "m"));
        assert_ne!(job_id("u", "c:1", "m"), job_id("u", "c", "1:m"));
    }
}
