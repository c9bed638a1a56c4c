//! The traffic of a schedule: the bench's simulated users (courier-app's
//! `bench::load::Workload`, seeded by the schedule) with what real logs also
//! hold mixed in — membership changes, the same event published twice, a
//! message id reused with another text, events that break a rule of
//! docs/DESIGN.md (unknown conversations, non-members, other people's
//! messages, a second creation, direct conversations changing members) and
//! lines that do not parse.
//!
//! Every event the harness writes is folded into a copy of the reference model
//! as it is generated, so a membership change or a rule break is chosen against
//! the conversation as the log will have it at that point.

use std::collections::BTreeMap;

use courier_app::bench::load::{Shape, Workload};
use courier_chaos::model::{Model, Outcome};
use courier_chaos::rng::Rng;
use courier_chaos::schedule::Schedule;
use courier_schemas::Event;
use courier_schemas::json::{parse_line, to_line};
use courier_schemas::proto::event::Body;
use courier_schemas::proto::message_sent::Content;
use serde_json::json;

/// The generator of one schedule's traffic.
pub struct Traffic {
    workload: Workload,
    rng: Rng,
    users: usize,
    /// The next `at_ms`: the wall clock, never going back, so file and gateway
    /// events interleave as they would live.
    clock: i64,
    /// Numbers for the harness's own ids.
    next: u64,
    /// Every valid line produced so far: what duplicates copy.
    produced: Vec<String>,
    setup_done: bool,
}

/// A file's lines.
pub struct FileTraffic {
    pub lines: Vec<String>,
    /// The `event_id`s of the lines that parse, in order.
    pub valid: Vec<String>,
    /// Lines that do not parse (`produce --skip-invalid` skips them).
    pub malformed: usize,
}

/// A request an HTTP client makes, as the user it is signed in as.
#[derive(Debug, Clone)]
pub enum Request {
    Send {
        conversation: String,
        message: String,
        text: String,
    },
    Edit {
        conversation: String,
        message: String,
        text: String,
    },
    Delete {
        conversation: String,
        message: String,
    },
}

/// What the gateway must answer (DESIGN, "Gateway": bad input gets a 4xx and
/// nothing is written; a retry with the client's id gets the first answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// 201 with the client's `message_id`.
    Created,
    /// 200.
    Ok,
    /// A 4xx that is neither 409 nor 429.
    Refused,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Traffic {
    pub fn new(s: &Schedule) -> Traffic {
        Traffic {
            workload: Workload::new(Shape {
                users: s.users,
                conversations: s.conversations,
                zipf: 1.0,
                seed: s.seed,
            }),
            rng: Rng::new(s.seed ^ 0x7AFF_1C00),
            users: s.users,
            clock: 0,
            next: 0,
            produced: Vec::new(),
            setup_done: false,
        }
    }

    fn tick(&mut self) -> i64 {
        self.clock = (self.clock + 1).max(now_ms());
        self.clock
    }

    fn id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }

    fn user(&mut self) -> String {
        format!("u{}", self.rng.below(self.users as u64))
    }

    /// A file phase: (first) the conversations and who is online, then
    /// `messages` messages of the generator with `churn` membership changes,
    /// `duplicates` repeats and `invalid` bad events at drawn places.
    pub fn file(
        &mut self,
        model: &Model,
        messages: usize,
        churn: usize,
        duplicates: usize,
        invalid: usize,
    ) -> FileTraffic {
        let mut m = model.clone();
        let mut out = FileTraffic {
            lines: Vec::new(),
            valid: Vec::new(),
            malformed: 0,
        };
        if !self.setup_done {
            self.setup_done = true;
            let at = self.tick();
            for e in self.workload.setup(at) {
                self.emit(&mut m, &mut out, to_line(&e));
            }
        }
        // Extras go between the generator's messages, at drawn slots.
        let mut extras: Vec<(u64, u8)> = Vec::new();
        for (n, kind) in [(churn, 0u8), (duplicates, 1), (invalid, 2)] {
            for _ in 0..n {
                extras.push((self.rng.below(messages as u64 + 1), kind));
            }
        }
        extras.sort();
        let mut extras = extras.into_iter().peekable();
        for slot in 0..=messages as u64 {
            while let Some((_, kind)) = extras.next_if(|(s, _)| *s == slot) {
                match kind {
                    0 => {
                        if let Some(l) = self.membership_change(&m) {
                            self.emit(&mut m, &mut out, l);
                        }
                    }
                    1 => {
                        if let Some(l) = self.duplicate() {
                            self.emit(&mut m, &mut out, l);
                        }
                    }
                    _ => {
                        let l = self.invalid(&m);
                        self.emit(&mut m, &mut out, l);
                    }
                }
            }
            if slot < messages as u64 {
                let at = self.tick();
                let mut events = Vec::new();
                self.workload.message(at, &mut events);
                for mut e in events {
                    // Some messages are end-to-end encrypted: never indexed,
                    // previewed as "".
                    if let Some(Body::MessageSent(s)) = &mut e.body
                        && let Some(Content::Text(t)) = &s.content
                        && self.rng.chance(0.05)
                    {
                        s.content = Some(Content::Ciphertext(t.clone().into_bytes()));
                    }
                    self.emit(&mut m, &mut out, to_line(&e));
                }
            }
        }
        out
    }

    fn emit(&mut self, m: &mut Model, out: &mut FileTraffic, line: String) {
        match parse_line(&line) {
            Ok(e) => {
                m.apply(&e);
                out.valid.push(e.event_id.clone());
                self.produced.push(line.clone());
            }
            Err(_) => out.malformed += 1,
        }
        out.lines.push(line);
    }

    /// A member of a group adds someone or removes someone (themselves too).
    fn membership_change(&mut self, m: &Model) -> Option<String> {
        let groups: Vec<&String> = m
            .conversation_ids()
            .filter(|c| c.starts_with('g') && m.exists(c))
            .collect();
        if groups.is_empty() {
            return None;
        }
        let c = (*self.rng.pick(&groups)).clone();
        let members = m.members(&c);
        if members.is_empty() {
            return None;
        }
        let actor = self.rng.pick(&members).clone();
        let (kind, user) = if members.len() <= 2 || self.rng.chance(0.5) {
            ("added", self.user())
        } else {
            ("removed", self.rng.pick(&members).clone())
        };
        let (id, at) = (self.id("x"), self.tick());
        Some(
            json!({"type": format!("members_{kind}"), "event_id": id, "conversation_id": c,
                   "actor_id": actor, "user_ids": [user], "at_ms": at})
            .to_string(),
        )
    }

    /// An event published again: the same line (a producer's retry), or a
    /// message id used again with another text (the first one wins).
    fn duplicate(&mut self) -> Option<String> {
        if self.produced.is_empty() {
            return None;
        }
        let line = self.rng.pick(&self.produced).clone();
        if self.rng.chance(0.8) {
            return Some(line);
        }
        let mut e: Event = parse_line(&line).ok()?;
        let Some(Body::MessageSent(s)) = &mut e.body else {
            return Some(line);
        };
        s.content = Some(Content::Text("a second text under a used id".into()));
        e.event_id = self.id("x");
        e.at_ms = self.tick();
        Some(to_line(&e))
    }

    /// An event that breaks a rule (parses, then is rejected), or a line that
    /// does not parse.
    fn invalid(&mut self, m: &Model) -> String {
        let (id, at) = (self.id("x"), self.tick());
        let created: Vec<String> = m
            .conversation_ids()
            .filter(|c| m.exists(c))
            .cloned()
            .collect();
        let c = self.rng.pick(&created).clone();
        let user = self.user();
        let word = self
            .rng
            .pick(&["late", "lunch", "deploy", "pizza"])
            .to_string();
        let v = match self.rng.below(9) {
            0 => {
                json!({"type": "message_sent", "event_id": id, "conversation_id": format!("nowhere{id}"),
                        "message_id": id, "sender_id": user, "text": format!("lost {word}"), "at_ms": at})
            }
            1 if !m.is_member(&c, &user) => {
                json!({"type": "message_sent", "event_id": id, "conversation_id": c,
                       "message_id": id, "sender_id": user, "text": format!("intruder {word}"), "at_ms": at})
            }
            2 => json!({"type": "receipt", "event_id": id, "conversation_id": c,
                        "message_id": format!("never{id}"), "user_id": user, "status": "read", "at_ms": at}),
            3 => {
                // Someone else's message edited: the sender of no message is `x`.
                json!({"type": "message_edited", "event_id": id, "conversation_id": c,
                       "message_id": "m1", "editor_id": format!("x{user}"), "text": "not mine", "at_ms": at})
            }
            4 if c.starts_with('d') => {
                json!({"type": "members_added", "event_id": id, "conversation_id": c,
                       "actor_id": m.members(&c)[0], "user_ids": [user], "at_ms": at})
            }
            5 => json!({"type": "conversation_created", "event_id": id, "conversation_id": c,
                        "kind": "group", "creator_id": user, "member_ids": [user], "at_ms": at}),
            6 => {
                return format!(
                    r#"{{"type":"message_sent","event_id":"{id}","conversation_id":"{c}""#
                );
            }
            7 => {
                return json!({"type": "message_sent", "event_id": id, "conversation_id": c,
                              "message_id": id, "text": "no sender", "at_ms": at})
                .to_string();
            }
            _ => {
                return json!({"type": "message_exploded", "event_id": id, "at_ms": at})
                    .to_string();
            }
        };
        v.to_string()
    }

    /// A gateway phase's requests, by user: the generator's next `messages`
    /// messages with their edits and deletes (receipts and presence stay out:
    /// their validity would depend on how clients interleave), plus sends the
    /// gateway must refuse; each with the answer it must get, judged on a copy
    /// of the model. Users' requests do not affect each other's outcome (no
    /// membership changes, edits and deletes only of one's own messages), so
    /// judging each user's in order is judging any interleaving.
    pub fn http(
        &mut self,
        model: &Model,
        messages: usize,
    ) -> BTreeMap<String, Vec<(Request, Expect)>> {
        let mut out: BTreeMap<String, Vec<Request>> = BTreeMap::new();
        for _ in 0..messages {
            let at = self.tick();
            let mut events = Vec::new();
            self.workload.message(at, &mut events);
            for e in events {
                let (user, r) = match e.body {
                    Some(Body::MessageSent(s)) => {
                        let Some(Content::Text(text)) = s.content else {
                            continue;
                        };
                        let r = Request::Send {
                            conversation: s.conversation_id,
                            message: s.message_id,
                            text,
                        };
                        (s.sender_id, r)
                    }
                    Some(Body::MessageEdited(x)) => (
                        x.editor_id,
                        Request::Edit {
                            conversation: x.conversation_id,
                            message: x.message_id,
                            text: x.text,
                        },
                    ),
                    Some(Body::MessageDeleted(x)) => (
                        x.actor_id,
                        Request::Delete {
                            conversation: x.conversation_id,
                            message: x.message_id,
                        },
                    ),
                    _ => continue,
                };
                out.entry(user).or_default().push(r);
            }
        }
        // Sends the gateway must refuse: to a conversation that does not exist,
        // and as someone who is not a member.
        let created: Vec<String> = model
            .conversation_ids()
            .filter(|c| model.exists(c))
            .cloned()
            .collect();
        for _ in 0..1 + messages / 15 {
            let user = self.user();
            let c = if self.rng.chance(0.5) {
                self.id("nowhere")
            } else {
                self.rng.pick(&created).clone()
            };
            let message = self.id("h");
            out.entry(user).or_default().push(Request::Send {
                conversation: c,
                message,
                text: "knock knock".into(),
            });
        }
        let mut judge = model.clone();
        out.into_iter()
            .map(|(user, list)| {
                let judged = list
                    .into_iter()
                    .map(|r| {
                        let outcome =
                            judge.apply(&parse_line(&r.line(&user)).expect("a valid line"));
                        let expect = match (&r, outcome) {
                            (_, Outcome::Rejected(_)) => Expect::Refused,
                            (Request::Send { .. }, Outcome::Applied) => Expect::Created,
                            // A retried send of an applied id answers as the first.
                            (Request::Send { .. }, Outcome::Ignored) => Expect::Created,
                            _ => Expect::Ok,
                        };
                        (r, expect)
                    })
                    .collect();
                (user, judged)
            })
            .collect()
    }
}

impl Request {
    /// The event the gateway would publish for it (for judging; the gateway
    /// picks its own `event_id` and `at_ms`).
    pub fn line(&self, user: &str) -> String {
        let id = format!("judge-{}", next_judge_id());
        match self {
            Request::Send {
                conversation,
                message,
                text,
            } => json!({"type": "message_sent", "event_id": id, "conversation_id": conversation,
                        "message_id": message, "sender_id": user, "text": text, "at_ms": 1}),
            Request::Edit {
                conversation,
                message,
                text,
            } => json!({"type": "message_edited", "event_id": id, "conversation_id": conversation,
                        "message_id": message, "editor_id": user, "text": text, "at_ms": 1}),
            Request::Delete {
                conversation,
                message,
            } => json!({"type": "message_deleted", "event_id": id, "conversation_id": conversation,
                        "message_id": message, "actor_id": user, "at_ms": 1}),
        }
        .to_string()
    }

    pub fn conversation(&self) -> &str {
        match self {
            Request::Send { conversation, .. }
            | Request::Edit { conversation, .. }
            | Request::Delete { conversation, .. } => conversation,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Request::Send { message, .. }
            | Request::Edit { message, .. }
            | Request::Delete { message, .. } => message,
        }
    }
}

fn next_judge_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
