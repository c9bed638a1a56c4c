//! The simulated users of `courier bench`: who talks in which conversation, and
//! the valid docs/DESIGN.md events that traffic becomes.
//!
//! The model, stated so numbers from it can be compared:
//! - `users` users; `conversations` conversations (default: one per user), a
//!   quarter of them groups and the rest direct. A group's size k is drawn from
//!   P(k) ∝ k⁻² on 3..=256 (capped at the number of users): median 5, mean ~12,
//!   about 1.6% of groups of 100 or more.
//! - Which conversation the next message goes to is Zipf-distributed over the
//!   conversations (P(rank r) ∝ 1/r^s, s = `--zipf`, default 1): a few busy
//!   conversations carry much of the traffic, most are quiet.
//! - Each message comes from a random member. It gets a `delivered` receipt from
//!   a random other member with probability 0.8 and a `read` one with 0.4. Before
//!   a message, with probability 0.02 the conversation's previous message is
//!   edited by its sender, with 0.01 deleted by its sender. With probability 0.1
//!   per message, a random user goes online or offline; 20% are online at start.
//!
//! Membership is fixed after creation, so every event is valid by construction:
//! a run that dead-letters anything has found a bug.

use courier_schemas::Event;
use courier_schemas::proto::event::Body;
use courier_schemas::proto::message_sent::Content;
use courier_schemas::proto::{
    ConversationCreated, ConversationKind, MessageDeleted, MessageEdited, MessageSent, Presence,
    PresenceStatus, Receipt, ReceiptStatus,
};

use super::summary::Population;

/// Largest group (docs/DESIGN.md's scale target; the gateway may cap it lower).
pub const MAX_GROUP: usize = 256;
/// Share of conversations that are groups.
const GROUP_SHARE: f64 = 0.25;
/// Exponent of the group-size power law.
const GROUP_SIZE_EXPONENT: f64 = 2.0;
const P_DELIVERED: f64 = 0.8;
const P_READ: f64 = 0.4;
const P_EDIT: f64 = 0.02;
const P_DELETE: f64 = 0.01;
const P_PRESENCE: f64 = 0.1;
const ONLINE_AT_START: f64 = 0.2;

/// Words messages are made of: searchable, with some words far more common than
/// others as in real text (earlier words are drawn more often).
const WORDS: &[&str] = &[
    "the",
    "ok",
    "yes",
    "no",
    "see",
    "you",
    "tomorrow",
    "lunch",
    "meeting",
    "coffee",
    "call",
    "later",
    "thanks",
    "great",
    "photo",
    "weekend",
    "train",
    "late",
    "home",
    "party",
    "deadline",
    "review",
    "deploy",
    "release",
    "kafka",
    "cassandra",
    "inbox",
    "search",
    "pizza",
    "football",
    "concert",
    "ticket",
    "birthday",
    "holiday",
    "beach",
    "snow",
    "rain",
    "doctor",
    "school",
    "homework",
    "project",
    "budget",
    "invoice",
    "flight",
    "hotel",
    "museum",
    "recipe",
    "garden",
    "bicycle",
    "marathon",
    "guitar",
    "piano",
    "chess",
    "movie",
    "series",
    "episode",
    "podcast",
    "newsletter",
    "quarterly",
    "roadmap",
    "postmortem",
    "latency",
    "throughput",
];

/// A small deterministic generator (splitmix64): the same seed gives the same
/// traffic, and no dependency is needed for it.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// Samples index i with probability weights[i] / sum, by binary search in the
/// cumulative weights.
struct Weighted(Vec<f64>);

impl Weighted {
    fn new(weights: impl Iterator<Item = f64>) -> Self {
        let mut acc = 0.0;
        Weighted(
            weights
                .map(|w| {
                    acc += w;
                    acc
                })
                .collect(),
        )
    }

    fn sample(&self, rng: &mut Rng) -> usize {
        let total = self.0.last().copied().unwrap_or(0.0);
        let x = rng.unit() * total;
        self.0.partition_point(|&c| c <= x).min(self.0.len() - 1)
    }
}

struct Conversation {
    id: String,
    members: Vec<u32>,
    /// The latest message: id, sender, deleted.
    last: Option<(String, u32, bool)>,
}

/// How the simulated population is shaped.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub users: usize,
    pub conversations: usize,
    pub zipf: f64,
    pub seed: u64,
}

/// The simulated users and their conversations.
pub struct Workload {
    rng: Rng,
    users: usize,
    conversations: Vec<Conversation>,
    activity: Weighted,
    words: Weighted,
    online: Vec<bool>,
    /// Sequence numbers for event and message ids (unique in the run's fresh
    /// namespace).
    next_event: u64,
    next_message: u64,
}

fn event(id: String, at_ms: i64, body: Body) -> Event {
    Event {
        event_id: id,
        at_ms,
        body: Some(body),
    }
}

impl Workload {
    /// The population of `shape`: conversations with their members, and who is
    /// online at start. Nothing is published yet ([`Workload::setup`]).
    pub fn new(shape: Shape) -> Self {
        let mut rng = Rng::new(shape.seed);
        let users = shape.users.max(2);
        let max_group = MAX_GROUP.min(users);
        let sizes = Weighted::new((0..=max_group).map(|k| {
            if k < 3 {
                0.0
            } else {
                (k as f64).powf(-GROUP_SIZE_EXPONENT)
            }
        }));
        let mut conversations = Vec::with_capacity(shape.conversations);
        for i in 0..shape.conversations.max(1) {
            let group = max_group >= 3 && rng.chance(GROUP_SHARE);
            let size = if group { sizes.sample(&mut rng) } else { 2 };
            // Distinct members by rejection: sizes are small next to `users`, or
            // `users` is small.
            let mut members: Vec<u32> = Vec::with_capacity(size);
            while members.len() < size {
                let u = rng.below(users) as u32;
                if !members.contains(&u) {
                    members.push(u);
                }
            }
            conversations.push(Conversation {
                id: format!("{}{i}", if group { "g" } else { "d" }),
                members,
                last: None,
            });
        }
        let s = shape.zipf;
        let activity = Weighted::new((1..=conversations.len()).map(|r| (r as f64).powf(-s)));
        let words = Weighted::new((1..=WORDS.len()).map(|r| 1.0 / r as f64));
        let online = (0..users).map(|_| rng.chance(ONLINE_AT_START)).collect();
        Workload {
            rng,
            users,
            conversations,
            activity,
            words,
            online,
            next_event: 0,
            next_message: 0,
        }
    }

    pub fn population(&self) -> Population {
        let groups: Vec<usize> = self
            .conversations
            .iter()
            .filter(|c| c.id.starts_with('g'))
            .map(|c| c.members.len())
            .collect();
        Population {
            users: self.users,
            direct: self.conversations.len() - groups.len(),
            groups: groups.len(),
            group_size_mean: if groups.is_empty() {
                0.0
            } else {
                groups.iter().sum::<usize>() as f64 / groups.len() as f64
            },
            group_size_max: groups.iter().copied().max().unwrap_or(0),
        }
    }

    fn event_id(&mut self) -> String {
        self.next_event += 1;
        format!("b{}", self.next_event)
    }

    /// Every conversation's creation and the presence of the users online at
    /// start: published before the measured load.
    pub fn setup(&mut self, at_ms: i64) -> Vec<Event> {
        let mut out = Vec::with_capacity(self.conversations.len() + self.users / 4);
        for i in 0..self.conversations.len() {
            let id = self.event_id();
            let c = &self.conversations[i];
            let group = c.id.starts_with('g');
            out.push(event(
                id,
                at_ms,
                Body::ConversationCreated(ConversationCreated {
                    conversation_id: c.id.clone(),
                    kind: if group {
                        ConversationKind::Group
                    } else {
                        ConversationKind::Direct
                    } as i32,
                    creator_id: user(c.members[0]),
                    member_ids: c.members.iter().map(|&u| user(u)).collect(),
                    title: group.then(|| format!("group {i}")),
                }),
            ));
        }
        for u in 0..self.users {
            if self.online[u] {
                let id = self.event_id();
                out.push(presence(id, at_ms, u as u32, true));
            }
        }
        out
    }

    /// One message, with what happens around it (receipts, an edit or delete of
    /// the previous message, a presence change), appended to `out`.
    pub fn message(&mut self, at_ms: i64, out: &mut Vec<Event>) {
        let ci = self.activity.sample(&mut self.rng);
        if let Some((mid, sender, false)) = self.conversations[ci].last.clone() {
            let conversation_id = self.conversations[ci].id.clone();
            if self.rng.chance(P_DELETE) {
                let id = self.event_id();
                out.push(event(
                    id,
                    at_ms,
                    Body::MessageDeleted(MessageDeleted {
                        conversation_id,
                        message_id: mid,
                        actor_id: user(sender),
                    }),
                ));
                if let Some(last) = &mut self.conversations[ci].last {
                    last.2 = true;
                }
            } else if self.rng.chance(P_EDIT / (1.0 - P_DELETE)) {
                let (id, text) = (self.event_id(), self.text());
                out.push(event(
                    id,
                    at_ms,
                    Body::MessageEdited(MessageEdited {
                        conversation_id,
                        message_id: mid,
                        editor_id: user(sender),
                        text,
                    }),
                ));
            }
        }

        self.next_message += 1;
        let message_id = format!("m{}", self.next_message);
        let n = self.conversations[ci].members.len();
        let s = self.rng.below(n);
        let sender = self.conversations[ci].members[s];
        let conversation_id = self.conversations[ci].id.clone();
        let (id, text) = (self.event_id(), self.text());
        out.push(event(
            id,
            at_ms,
            Body::MessageSent(MessageSent {
                conversation_id: conversation_id.clone(),
                message_id: message_id.clone(),
                sender_id: user(sender),
                content: Some(Content::Text(text)),
            }),
        ));
        for (p, status) in [
            (P_DELIVERED, ReceiptStatus::Delivered),
            (P_READ, ReceiptStatus::Read),
        ] {
            if self.rng.chance(p) {
                // Any member but the sender.
                let r = (s + 1 + self.rng.below(n - 1)) % n;
                let id = self.event_id();
                out.push(event(
                    id,
                    at_ms,
                    Body::Receipt(Receipt {
                        conversation_id: conversation_id.clone(),
                        message_id: message_id.clone(),
                        user_id: user(self.conversations[ci].members[r]),
                        status: status as i32,
                    }),
                ));
            }
        }
        self.conversations[ci].last = Some((message_id, sender, false));

        if self.rng.chance(P_PRESENCE) {
            let u = self.rng.below(self.users);
            self.online[u] = !self.online[u];
            let id = self.event_id();
            out.push(presence(id, at_ms, u as u32, self.online[u]));
        }
    }

    fn text(&mut self) -> String {
        let n = 3 + self.rng.below(10);
        let mut s = String::with_capacity(n * 8);
        for i in 0..n {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(WORDS[self.words.sample(&mut self.rng)]);
        }
        s
    }
}

fn user(u: u32) -> String {
    format!("u{u}")
}

fn presence(id: String, at_ms: i64, u: u32, online: bool) -> Event {
    event(
        id,
        at_ms,
        Body::Presence(Presence {
            user_id: user(u),
            status: if online {
                PresenceStatus::Online
            } else {
                PresenceStatus::Offline
            } as i32,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(users: usize, conversations: usize) -> Workload {
        Workload::new(Shape {
            users,
            conversations,
            zipf: 1.0,
            seed: 7,
        })
    }

    #[test]
    fn every_event_is_valid_canonical_json() {
        let mut w = workload(300, 200);
        let mut events = w.setup(1_764_000_000_000);
        for i in 0..2000 {
            w.message(1_764_000_000_001 + i, &mut events);
        }
        for e in &events {
            let line = courier_schemas::json::to_line(e);
            courier_schemas::json::parse_line(&line).unwrap_or_else(|err| panic!("{line}: {err}"));
        }
        let kinds = |k: &str| {
            events
                .iter()
                .filter(|e| e.kind().is_some_and(|x| x.as_str() == k))
                .count()
        };
        assert_eq!(kinds("message_sent"), 2000);
        assert_eq!(kinds("conversation_created"), 200);
        for k in ["receipt", "message_edited", "message_deleted", "presence"] {
            assert!(kinds(k) > 0, "no {k} in 2000 messages");
        }
    }

    #[test]
    fn groups_follow_the_stated_size_distribution() {
        let p = workload(10_000, 20_000).population();
        let share = p.groups as f64 / (p.groups + p.direct) as f64;
        assert!((0.22..0.28).contains(&share), "{share}");
        assert!((8.0..16.0).contains(&p.group_size_mean), "{p:?}");
        assert!(
            p.group_size_max > 100 && p.group_size_max <= MAX_GROUP,
            "{p:?}"
        );
    }
}
