//! The "effectively once" guarantee as a property: random streams of every event
//! type (valid, invalid, retried) give the same views, states and dead letters
//! when replayed with random redeliveries and crash/restore points as in one
//! clean pass; and the views agree with their own definitions.

use std::collections::{BTreeMap, BTreeSet};

use courier_schemas::Event;
use courier_schemas::json::parse_line;
use proptest::prelude::*;
use serde_json::json;

use super::view::preview;
use super::*;

const USERS: u8 = 4;
const CONVERSATIONS: u8 = 3;
const MESSAGE_IDS: u8 = 8;

/// One generated event, before ids and times are given to it.
#[derive(Debug, Clone)]
enum Act {
    Create {
        c: u8,
        direct: bool,
        creator: u8,
        /// The others; for a direct conversation only the first counts.
        members: Vec<u8>,
        /// Whether the creator is listed (mostly: otherwise it is a rule break).
        listed: bool,
    },
    Add {
        c: u8,
        actor: u8,
        users: Vec<u8>,
    },
    Remove {
        c: u8,
        actor: u8,
        users: Vec<u8>,
    },
    Send {
        c: u8,
        m: u8,
        sender: u8,
        text: String,
    },
    /// Edits, deletes and receipts name an earlier send (`pick`), or they
    /// would almost never name a message that exists.
    Edit {
        pick: usize,
        /// Whether the sender edits (else `editor`, maybe the sender anyway).
        own: bool,
        editor: u8,
        text: String,
    },
    Delete {
        pick: usize,
        own: bool,
        actor: u8,
    },
    Receipt {
        pick: usize,
        user: u8,
        read: bool,
    },
    /// Does not belong on the topic.
    Presence {
        user: u8,
    },
    /// A producer retry: an earlier event again (same id, same body).
    Retry {
        back: usize,
    },
}

fn user() -> impl Strategy<Value = u8> {
    0..USERS
}

fn users() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(user(), 1..=3)
}

fn conv() -> impl Strategy<Value = u8> {
    0..CONVERSATIONS
}

fn msg() -> impl Strategy<Value = u8> {
    0..MESSAGE_IDS
}

fn text() -> impl Strategy<Value = String> {
    // Long enough to be cut, with multi-byte characters.
    prop_oneof!["[a-c ]{0,8}", "[é😀x]{95,110}",]
}

fn create() -> impl Strategy<Value = Act> {
    (
        conv(),
        prop::bool::weighted(0.3),
        user(),
        users(),
        prop::bool::weighted(0.9),
    )
        .prop_map(|(c, direct, creator, members, listed)| Act::Create {
            c,
            direct,
            creator,
            members,
            listed,
        })
}

/// A stream: most conversations are created first (or nothing else could
/// apply), then anything goes.
fn stream() -> impl Strategy<Value = Vec<(Act, i64)>> {
    (
        prop::collection::vec((create(), 0i64..1_000), 0..=3),
        prop::collection::vec((act(), 0i64..1_000), 1..120),
    )
        .prop_map(|(mut start, rest)| {
            start.extend(rest);
            start
        })
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        2 => create(),
        2 => (conv(), user(), users()).prop_map(|(c, actor, users)| Act::Add { c, actor, users }),
        2 => (conv(), user(), users()).prop_map(|(c, actor, users)| Act::Remove { c, actor, users }),
        6 => (conv(), msg(), user(), text()).prop_map(|(c, m, sender, text)| Act::Send { c, m, sender, text }),
        2 => (any::<usize>(), prop::bool::weighted(0.8), user(), text()).prop_map(|(pick, own, editor, text)| Act::Edit { pick, own, editor, text }),
        2 => (any::<usize>(), prop::bool::weighted(0.8), user()).prop_map(|(pick, own, actor)| Act::Delete { pick, own, actor }),
        5 => (any::<usize>(), user(), any::<bool>()).prop_map(|(pick, user, read)| Act::Receipt { pick, user, read }),
        1 => user().prop_map(|user| Act::Presence { user }),
        2 => any::<usize>().prop_map(|back| Act::Retry { back }),
    ]
}

/// How the chaotic run goes through the log.
#[derive(Debug, Clone)]
enum Op {
    /// Apply the next record.
    Next,
    /// Redeliver an already applied record at its position.
    Redeliver(usize),
    /// Persist the state of one conversation (another batch's write).
    Save(u8),
    /// Lose everything in memory; restore saved states and resume from the
    /// earliest record some state has not seen.
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => Just(Op::Next),
        2 => any::<usize>().prop_map(Op::Redeliver),
        2 => (0..CONVERSATIONS).prop_map(Op::Save),
        1 => Just(Op::Crash),
    ]
}

/// The records of a log: events at their positions. Conversation `c` lives on
/// partition `c % 2`, as a partitioner would put several on one partition.
fn log(acts: &[(Act, i64)]) -> Vec<(Position, Event)> {
    let mut events: Vec<Event> = Vec::new();
    // (conversation, message, sender) of every send so far, valid or not.
    let mut sends: Vec<(u8, u8, u8)> = Vec::new();
    let picked = |sends: &[(u8, u8, u8)], pick: usize| {
        if sends.is_empty() {
            (0, 0, 0)
        } else {
            sends[pick % sends.len()]
        }
    };
    let mut next_offset = [0u64; 2];
    let mut log = Vec::new();
    for (i, (act, at_ms)) in acts.iter().enumerate() {
        let u = |u: &u8| format!("u{u}");
        let us = |v: &Vec<u8>| v.iter().map(u).collect::<Vec<_>>();
        let (id, at_ms) = (format!("e{i}"), *at_ms);
        let v = match act {
            Act::Create {
                c,
                direct,
                creator,
                members,
                listed,
            } => {
                let mut members = if *direct {
                    // The other may be the creator again: a rule break.
                    vec![u(&members[0])]
                } else {
                    us(members)
                };
                if *listed {
                    members.insert(0, u(creator));
                } else if *direct {
                    members.push(u(&((creator + 1) % USERS)));
                }
                json!({"type":"conversation_created","event_id":id,"conversation_id":format!("c{c}"),"kind":if *direct {"direct"} else {"group"},"creator_id":u(creator),"member_ids":members,"at_ms":at_ms})
            }
            Act::Add { c, actor, users } => {
                json!({"type":"members_added","event_id":id,"conversation_id":format!("c{c}"),"actor_id":u(actor),"user_ids":us(users),"at_ms":at_ms})
            }
            Act::Remove { c, actor, users } => {
                json!({"type":"members_removed","event_id":id,"conversation_id":format!("c{c}"),"actor_id":u(actor),"user_ids":us(users),"at_ms":at_ms})
            }
            Act::Send { c, m, sender, text } => {
                sends.push((*c, *m, *sender));
                json!({"type":"message_sent","event_id":id,"conversation_id":format!("c{c}"),"message_id":format!("m{m}"),"sender_id":u(sender),"text":text,"at_ms":at_ms})
            }
            Act::Edit {
                pick,
                own,
                editor,
                text,
            } => {
                let (c, m, sender) = picked(&sends, *pick);
                let editor = if *own { sender } else { *editor };
                json!({"type":"message_edited","event_id":id,"conversation_id":format!("c{c}"),"message_id":format!("m{m}"),"editor_id":u(&editor),"text":text,"at_ms":at_ms})
            }
            Act::Delete { pick, own, actor } => {
                let (c, m, sender) = picked(&sends, *pick);
                let actor = if *own { sender } else { *actor };
                json!({"type":"message_deleted","event_id":id,"conversation_id":format!("c{c}"),"message_id":format!("m{m}"),"actor_id":u(&actor),"at_ms":at_ms})
            }
            Act::Receipt { pick, user, read } => {
                let (c, m, _) = picked(&sends, *pick);
                json!({"type":"receipt","event_id":id,"conversation_id":format!("c{c}"),"message_id":format!("m{m}"),"user_id":u(user),"status":if *read {"read"} else {"delivered"},"at_ms":at_ms})
            }
            Act::Presence { user } => {
                json!({"type":"presence","event_id":id,"user_id":u(user),"status":"online","at_ms":at_ms})
            }
            Act::Retry { back } => {
                if events.is_empty() {
                    json!({"type":"presence","event_id":id,"user_id":"u0","status":"offline","at_ms":at_ms})
                } else {
                    serde_json::from_str(&courier_schemas::json::to_line(
                        &events[back % events.len()],
                    ))
                    .unwrap()
                }
            }
        };
        let event = parse_line(&v.to_string()).unwrap_or_else(|e| panic!("{v}: {e}"));
        let partition = match event.conversation_id() {
            Some(c) => u32::from(c.as_bytes()[1] - b'0') % 2,
            None => 0,
        };
        let offset = next_offset[partition as usize];
        next_offset[partition as usize] += 1;
        log.push((Position::new(partition, offset), event.clone()));
        events.push(event);
    }
    log
}

/// What a run leaves: the views, the states, the dead letters (by position, as
/// their ids are derived from it).
#[derive(Debug, Default)]
struct World {
    view: ViewModel,
    states: BTreeMap<String, ConversationState>,
    dead: BTreeSet<(Position, String)>,
}

impl World {
    fn feed(&mut self, position: Position, event: &Event) {
        let c = match route(event) {
            Ok(c) => c.to_owned(),
            Err(reason) => {
                self.dead.insert((position, reason));
                return;
            }
        };
        let state = self
            .states
            .entry(c.clone())
            .or_insert_with(|| ConversationState::new(c));
        let outcome = apply(state, event, position);
        if let Some(reason) = outcome.rejection() {
            self.dead.insert((position, reason.to_owned()));
        }
        self.view.apply(&outcome);
    }

    fn states_json(&self) -> BTreeMap<String, String> {
        self.states
            .iter()
            .map(|(c, s)| (c.clone(), serde_json::to_string(s).unwrap()))
            .collect()
    }
}

fn clean(log: &[(Position, Event)]) -> World {
    let mut w = World::default();
    for (p, e) in log {
        w.feed(*p, e);
    }
    w
}

fn chaotic(log: &[(Position, Event)], ops: &[Op]) -> World {
    let mut w = World::default();
    // Per conversation: the state as last saved and the log index after it.
    let mut saved: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut next = 0;
    let mut ops = ops.iter();
    while next < log.len() {
        match ops.next().unwrap_or(&Op::Next) {
            Op::Next => {
                w.feed(log[next].0, &log[next].1);
                next += 1;
            }
            Op::Redeliver(k) if next > 0 => {
                let (p, e) = &log[k % next];
                w.feed(*p, e);
            }
            Op::Redeliver(_) => {}
            Op::Save(c) => {
                let c = format!("c{c}");
                if let Some(s) = w.states.get(&c) {
                    saved.insert(c, (next, serde_json::to_string(s).unwrap()));
                }
            }
            Op::Crash => {
                // The views survive (they were written); states come back as
                // saved; the log is re-read from the oldest point any
                // conversation could be missing.
                w.states = saved
                    .iter()
                    .map(|(c, (_, json))| (c.clone(), serde_json::from_str(json).unwrap()))
                    .collect();
                let all_saved = (0..CONVERSATIONS).all(|c| saved.contains_key(&format!("c{c}")));
                next = if all_saved {
                    saved.values().map(|(at, _)| *at).min().unwrap_or(0)
                } else {
                    0
                };
            }
        }
    }
    w
}

/// The views against their definitions in docs/DESIGN.md, where they can be computed
/// from the views themselves.
fn check_consistent(view: &ViewModel) -> Result<(), TestCaseError> {
    for user in view.users() {
        for row in view.inbox(user) {
            let c = &row.conversation_id;
            let messages = view
                .messages(c, user)
                .map_err(|e| TestCaseError::fail(format!("inbox row without membership: {e}")))?;
            let last = messages.last();
            prop_assert_eq!(
                row.last_message_id.as_deref(),
                last.map(|m| m.message_id.as_str())
            );
            prop_assert_eq!(
                row.last_message_preview.clone(),
                last.map(|m| preview(m.text.as_deref().unwrap_or("")))
            );
            prop_assert_eq!(row.last_message_deleted, last.map(|m| m.deleted));
            if let Some(m) = last {
                prop_assert!(row.last_activity_ms >= m.sent_at_ms);
            }
            let unread = messages
                .iter()
                .filter(|m| {
                    m.sender_id != user && !m.deleted && !m.read_by.iter().any(|r| r == user)
                })
                .count() as u64;
            prop_assert_eq!(row.unread_count, unread, "unread of {} in {}", user, c);
            for m in &messages {
                // Read implies delivered; nobody receives their own message.
                prop_assert!(m.read_by.iter().all(|r| m.delivered_to.contains(r)));
                prop_assert!(!m.delivered_to.contains(&m.sender_id));
                prop_assert_eq!(m.deleted, m.text.is_none());
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn redeliveries_and_crashes_give_the_views_of_one_clean_pass(
        acts in stream(),
        ops in prop::collection::vec(op(), 0..160),
    ) {
        let log = log(&acts);
        let once = clean(&log);
        let chaos = chaotic(&log, &ops);
        prop_assert_eq!(&once.dead, &chaos.dead);
        prop_assert_eq!(once.states_json(), chaos.states_json());
        for user in once.view.users() {
            prop_assert_eq!(once.view.inbox(user), chaos.view.inbox(user));
        }
        prop_assert!(once.view == chaos.view, "views differ");
        check_consistent(&once.view)?;
    }

    /// The search view's fold (no inbox rows) keeps the same states but for the
    /// previews (which only inbox rows show) and gives the same outcomes but for
    /// the inbox rows.
    #[test]
    fn the_fold_without_inbox_rows_differs_only_by_them(acts in stream()) {
        let log = log(&acts);
        let mut with: BTreeMap<String, ConversationState> = BTreeMap::new();
        let mut without: BTreeMap<String, ConversationState> = BTreeMap::new();
        for (position, event) in &log {
            let c = &event.conversation_id().unwrap_or_default().to_owned();
            let a = with.entry(c.clone()).or_insert_with(|| ConversationState::new(c.clone()));
            let mut full = apply(a, event, *position);
            let b = without.entry(c.clone()).or_insert_with(|| ConversationState::new(c.clone()));
            let lean = apply_without_inbox_rows(b, event, *position);
            prop_assert!(lean.effects.inbox.is_empty());
            full.effects.inbox.clear();
            prop_assert_eq!(full, lean);
        }
        prop_assert!(without.values().all(|s| s.previews.is_empty()));
        let json = |m: &BTreeMap<String, ConversationState>| -> BTreeMap<String, String> {
            m.iter()
                .map(|(c, s)| {
                    let mut s = s.clone();
                    s.previews.clear();
                    (c.clone(), serde_json::to_string(&s).unwrap())
                })
                .collect()
        };
        prop_assert_eq!(json(&with), json(&without));
    }

    /// A store that keeps states in parts, writing after every event only the
    /// head and the chunks that changed, reads back the state as it is, through
    /// edits and deletes of messages in chunks written long before.
    #[test]
    fn states_stored_in_parts_read_back_as_they_are(acts in stream()) {
        let log = log(&acts);
        let mut states: BTreeMap<String, ConversationState> = BTreeMap::new();
        // Per conversation: the head, and the chunks by index.
        type Parts = (Vec<u8>, BTreeMap<u32, Vec<u8>>);
        let mut stored: BTreeMap<String, Parts> = BTreeMap::new();
        for (position, event) in &log {
            let c = &event.conversation_id().unwrap_or_default().to_owned();
            let s = states.entry(c.clone()).or_insert_with(|| ConversationState::new(c.clone()));
            apply(s, event, *position);
            let (head, chunks) = stored.entry(c.clone()).or_default();
            head.clear();
            for (k, bytes) in s.encode_parts(head) {
                chunks.insert(k, bytes);
            }
            s.mark_written();
            let n = ConversationState::chunks_of(head).map_err(TestCaseError::fail)?;
            prop_assert_eq!(n, Some(chunks.len() as u32));
            prop_assert!(chunks.keys().copied().eq(0..chunks.len() as u32));
            let all: Vec<Vec<u8>> = chunks.values().cloned().collect();
            let mut back = ConversationState::decode_parts(head, &all).map_err(TestCaseError::fail)?;
            let (mut want, mut got) = (Vec::new(), Vec::new());
            s.encode_into(&mut want);
            back.encode_into(&mut got);
            prop_assert_eq!(&want, &got);
            // Read back, it has nothing to write until it changes.
            let mut again = Vec::new();
            prop_assert!(back.encode_parts(&mut again).is_empty());
            prop_assert_eq!(&again, &*head);
            back.mark_written();
        }
    }

    /// The binary encoding of every state a stream folds to (after every event,
    /// so states mid-way too) is what encoding it afresh gives, decodes to the
    /// same state, and no truncation of a final one (nor one with a byte too
    /// many) decodes or panics.
    #[test]
    fn binary_states_round_trip_and_truncations_are_refused(acts in stream()) {
        let log = log(&acts);
        let mut states: BTreeMap<String, ConversationState> = BTreeMap::new();
        for (position, event) in &log {
            let c = &event.conversation_id().unwrap_or_default().to_owned();
            let s = states.entry(c.clone()).or_insert_with(|| ConversationState::new(c.clone()));
            apply(s, event, *position);
            let mut bytes = Vec::new();
            s.encode_into(&mut bytes);
            // The fold keeps the messages' encoding as it goes: it must be what
            // encoding them afresh gives.
            let mut fresh = s.clone();
            fresh.encoded = Default::default();
            let mut afresh = Vec::new();
            fresh.encode_into(&mut afresh);
            prop_assert_eq!(&bytes, &afresh);
            let back = ConversationState::decode(&bytes).map_err(TestCaseError::fail)?;
            // And a state read back keeps encoding as it was written.
            let mut again = Vec::new();
            back.encode_into(&mut again);
            prop_assert_eq!(&bytes, &again);
            prop_assert_eq!(serde_json::to_string(&back).unwrap(), serde_json::to_string(&*s).unwrap());
            prop_assert_eq!(back.message_index.len(), back.messages.len());
            prop_assert_eq!(back.user_index.len(), back.users.len());
        }
        for s in states.values() {
            let mut bytes = Vec::new();
            s.encode_into(&mut bytes);
            for cut in 0..bytes.len() {
                prop_assert!(ConversationState::decode(&bytes[..cut]).is_err());
            }
            bytes.push(0);
            prop_assert!(ConversationState::decode(&bytes).is_err());
        }
    }
}
