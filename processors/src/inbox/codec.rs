//! A compact binary encoding of [`ConversationState`], for a store that writes
//! many states at once (the search shards write every changed state at each
//! commit). Against the JSON encoding: a quarter of the bytes for a typical
//! conversation (239 against 975 for four members and ten messages, see the
//! test), and several times cheaper to write and read, since there are no field
//! names, no escaping and no number formatting. A message costs its id plus 3–6
//! bytes.
//!
//! Layout (varints are LEB128; `opt` is a 0 byte for none, else 1 then the
//! value; `str` is a varint length then UTF-8; `zz` is a zigzag varint):
//!
//! ```text
//! magic 0xC5 | format varint | conversation_id str | applied opt varint
//! | kind u8 (0 none, 1 direct, 2 group)
//! | users: count, each: id str | spans: count, each (from varint, to opt varint,
//!          joined at_ms opt zz [format ≥ 2])
//!          | joined_at_ms zz | delivered opt | read opt | unread varint | last opt
//! | messages: count, each: id str | sender << 2 | edited << 1 | deleted varint
//!          | offset − previous offset zz | at_ms − previous at_ms zz
//! | previews: count, each: message index varint | str
//! | seen_event_ids: count, each str
//! | [format ≥ 2] title opt str | created_by opt str | created_at_ms opt zz
//! ```
//!
//! This build writes [`STATE_FORMAT`] and reads it and format 1.
//!
//! A store that rewrites states often keeps them in parts instead
//! ([`ConversationState::encode_parts`]): a head, `0xC6 | message count`
//! followed by the above without its magic byte and with no message bytes,
//! and the messages' bytes in chunks of [`CHUNK`] messages under keys of
//! their own. A batch then rewrites the head and the chunks from the first
//! message changed since the last write on (usually the last chunk: messages
//! are appended, and edits and deletes are mostly of recent ones), not the
//! whole conversation.
//!
//! Decoding checks everything it relies on (lengths against what is left,
//! indexes against the collections they point into, UTF-8, no trailing bytes),
//! so a corrupt state is an error naming what is wrong, never a panic or a
//! state that breaks the fold later.

use std::borrow::Cow;

use super::effects::Span;
use super::state::{ConversationState, Kind, MessageMeta, STATE_FORMAT, UserState};

/// The first byte of every encoding: never `{`, so it cannot be taken for JSON.
const MAGIC: u8 = 0xC5;

/// The first byte of the head of a state stored in parts
/// ([`ConversationState::encode_parts`]).
const MAGIC_PARTS: u8 = 0xC6;

/// Messages per chunk of a state stored in parts (3 in this crate's tests, so
/// that their conversations of a few messages span several chunks).
#[cfg(not(test))]
pub const CHUNK: usize = 256;
#[cfg(test)]
pub const CHUNK: usize = 3;

impl ConversationState {
    /// Appends this state's binary encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(MAGIC);
        self.encode_body(out, true);
    }

    /// For a store that keeps a state in parts, so that a batch rewrites only
    /// what changed of a conversation's messages: appends to `head` everything
    /// but the messages' bytes (`0xC6`, the message count, then the body of
    /// [`Self::encode_into`] with no message bytes), and returns the chunks of
    /// [`CHUNK`] messages that changed since [`Self::mark_written`] (index,
    /// bytes). A chunk's bytes depend only on its own messages and the one
    /// before it, which never change but for flags.
    pub fn encode_parts(&self, head: &mut Vec<u8>) -> Vec<(u32, Vec<u8>)> {
        head.push(MAGIC_PARTS);
        varint(head, self.messages.len() as u64);
        self.encode_body(head, false);
        let first = self.encoded.written / CHUNK;
        let chunks = self.messages.len().div_ceil(CHUNK);
        if self.encoded.written >= self.messages.len() {
            return Vec::new();
        }
        // The kept encoding, unless the fold has not caught up with the
        // messages (a state read whole, never folded since): then a copy.
        let all = if self.encoded.starts.len() == self.messages.len() {
            Cow::Borrowed(&self.encoded)
        } else {
            let mut all = self.encoded.clone();
            all.extend(&self.messages);
            Cow::Owned(all)
        };
        (first..chunks)
            .map(|k| {
                let from = all.starts[k * CHUNK] as usize;
                let to = all
                    .starts
                    .get((k + 1) * CHUNK)
                    .map_or(all.bytes.len(), |&t| t as usize);
                (k as u32, all.bytes[from..to].to_vec())
            })
            .collect()
    }

    /// After a store holds what [`Self::encode_parts`] gave: only chunks
    /// changed from now on need writing.
    pub fn mark_written(&mut self) {
        self.encoded.written = self.messages.len();
    }

    /// How many chunks a state stored in parts has, from its head; `None` for a
    /// state stored whole (binary or JSON).
    pub fn chunks_of(head: &[u8]) -> Result<Option<u32>, String> {
        if head.first() != Some(&MAGIC_PARTS) {
            return Ok(None);
        }
        let mut r = Reader { bytes: head, at: 1 };
        let n = r.varint("the message count")?;
        u32::try_from(n.div_ceil(CHUNK as u64))
            .map(Some)
            .map_err(|_| r.error("a message count over 32 bits of chunks"))
    }

    /// Decodes a state stored in parts: its head and all its chunks, in order.
    /// The state knows its messages are stored, so only what changes from now
    /// on is written again.
    pub fn decode_parts(head: &[u8], chunks: &[Vec<u8>]) -> Result<ConversationState, String> {
        let mut r = Reader { bytes: head, at: 0 };
        if r.byte("the magic byte")? != MAGIC_PARTS {
            return Err("not the head of a state stored in parts (wrong first byte)".into());
        }
        let n = r.varint("the message count")?;
        let messages = chunks.concat();
        let mut m = Reader {
            bytes: &messages,
            at: 0,
        };
        let mut s = Self::decode_body(&mut r, Some((n, &mut m)))
            .map_err(|e| format!("{e} (of the head)"))?;
        if m.at != m.bytes.len() {
            return Err(m.error(&format!(
                "{} bytes after the messages (of the chunks)",
                m.bytes.len() - m.at
            )));
        }
        s.encoded.written = s.messages.len();
        Ok(s)
    }

    /// Everything after the first byte; the messages' bytes only if `inline`.
    fn encode_body(&self, out: &mut Vec<u8>, inline: bool) {
        // Always this build's format: what follows is in its layout, whatever
        // format the state was read in.
        varint(out, u64::from(STATE_FORMAT));
        string(out, &self.conversation_id);
        option(out, self.applied);
        out.push(match self.kind {
            None => 0,
            Some(Kind::Direct) => 1,
            Some(Kind::Group) => 2,
        });
        varint(out, self.users.len() as u64);
        for u in &self.users {
            string(out, &u.id);
            varint(out, u.spans.len() as u64);
            for (i, s) in u.spans.iter().enumerate() {
                varint(out, s.from);
                option(out, s.to);
                option(out, u.joined_ms(i).map(zigzag));
            }
            varint(out, zigzag(u.joined_at_ms));
            option(out, u.delivered);
            option(out, u.read);
            varint(out, u.unread);
            option(out, u.last.map(u64::from));
        }
        varint(out, self.messages.len() as u64);
        if inline {
            // The messages the fold keeps encoded, then any it has not caught
            // up with (a state not yet folded since it was read as JSON).
            let cached = self.encoded.starts.len();
            out.extend_from_slice(&self.encoded.bytes);
            for i in cached..self.messages.len() {
                let previous = i.checked_sub(1).map(|p| &self.messages[p]);
                encode_message(out, previous, &self.messages[i]);
            }
        }
        varint(out, self.previews.len() as u64);
        for (i, p) in &self.previews {
            varint(out, u64::from(*i));
            string(out, p);
        }
        varint(out, self.seen_event_ids.len() as u64);
        for id in &self.seen_event_ids {
            string(out, id);
        }
        optional_string(out, self.title.as_deref());
        optional_string(out, self.created_by.as_deref());
        option(out, self.created_at_ms.map(zigzag));
    }

    /// Decodes a state written by [`Self::encode_into`]; the error says what is
    /// wrong and at which byte.
    pub fn decode(bytes: &[u8]) -> Result<ConversationState, String> {
        let mut r = Reader { bytes, at: 0 };
        if r.byte("the magic byte")? != MAGIC {
            return Err("not a binary conversation state (wrong first byte)".into());
        }
        Self::decode_body(&mut r, None)
    }

    /// Decodes what [`Self::encode_body`] wrote; with `parts`, the messages
    /// (as many as it says) are read from its reader instead of `r`.
    fn decode_body<'a>(
        r: &mut Reader<'a>,
        mut parts: Option<(u64, &mut Reader<'a>)>,
    ) -> Result<ConversationState, String> {
        let format = u32::try_from(r.varint("the format")?)
            .map_err(|_| "the format does not fit 32 bits".to_string())?;
        let mut s = ConversationState::new(r.string("the conversation id")?);
        s.format = format;
        s.applied = r.option("the applied offset")?;
        s.kind = match r.byte("the kind")? {
            0 => None,
            1 => Some(Kind::Direct),
            2 => Some(Kind::Group),
            k => return Err(r.error(&format!("kind {k} is none of 0, 1, 2"))),
        };
        // Every element takes at least one byte, so a count over what is left
        // is corrupt, and checking it first bounds every allocation.
        let users = r.count("users")?;
        s.users.reserve(users);
        for _ in 0..users {
            let id = r.string("a user id")?;
            let spans = r.count("spans")?;
            let mut user = UserState {
                id,
                spans: Vec::with_capacity(spans),
                joined_at_ms: 0,
                joins_ms: Vec::new(),
                delivered: None,
                read: None,
                unread: 0,
                last: None,
            };
            for _ in 0..spans {
                let from = r.varint("a span's start")?;
                let to = r.option("a span's end")?;
                user.spans.push(Span { from, to });
                if format >= 2 {
                    let at = r.option("a span's join at_ms")?.map(unzigzag);
                    user.joins_ms.push(at);
                }
            }
            user.joined_at_ms = unzigzag(r.varint("joined_at_ms")?);
            user.delivered = r.option("a delivered watermark")?;
            user.read = r.option("a read watermark")?;
            user.unread = r.varint("an unread count")?;
            user.last = r
                .option("a last message")?
                .map(|l| u32::try_from(l).map_err(|_| r.error("a last message over 32 bits")))
                .transpose()?;
            s.users.push(user);
        }
        let messages = match &mut parts {
            None => r.count("messages")?,
            Some((n, m)) => {
                if r.varint("the message count")? != *n {
                    return Err(r.error("the two message counts differ"));
                }
                m.count_of(*n, "messages")?
            }
        };
        s.messages.reserve(messages);
        let m: &mut Reader<'a> = match parts {
            None => &mut *r,
            Some((_, m)) => m,
        };
        let (mut offset, mut at_ms) = (0u64, 0i64);
        for _ in 0..messages {
            let id = m.string("a message id")?;
            let packed = m.varint("a message's sender and flags")?;
            let sender = u32::try_from(packed >> 2)
                .ok()
                .filter(|&u| (u as usize) < s.users.len())
                .ok_or_else(|| m.error(&format!("message {id}'s sender is not a user")))?;
            offset = offset.wrapping_add(unzigzag(m.varint("a message offset")?) as u64);
            at_ms = at_ms.wrapping_add(unzigzag(m.varint("a message's at_ms")?));
            s.messages.push(MessageMeta {
                id,
                sender,
                offset,
                at_ms,
                edited: packed & 2 != 0,
                deleted: packed & 1 != 0,
            });
        }
        if let Some(u) = s
            .users
            .iter()
            .find(|u| u.last.is_some_and(|l| l as usize >= s.messages.len()))
        {
            return Err(r.error(&format!("user {}'s last message is not a message", u.id)));
        }
        let previews = r.count("previews")?;
        for _ in 0..previews {
            let i = u32::try_from(r.varint("a preview's message")?)
                .ok()
                .filter(|&i| (i as usize) < s.messages.len())
                .ok_or_else(|| r.error("a preview of no message"))?;
            let p = r.string("a preview")?;
            s.previews.insert(i, p);
        }
        let seen = r.count("seen event ids")?;
        for _ in 0..seen {
            let id = r.string("a seen event id")?;
            s.seen_event_ids.insert(id);
        }
        if format >= 2 {
            s.title = r.optional_string("the title")?;
            s.created_by = r.optional_string("the creator")?;
            s.created_at_ms = r.option("created_at_ms")?.map(unzigzag);
        }
        if r.at != r.bytes.len() {
            return Err(r.error(&format!("{} bytes after the state", r.bytes.len() - r.at)));
        }
        // Encodes the messages again rather than keeping the bytes read: once
        // per load, and the kept encoding is then canonical whatever was read.
        s.ensure_indexes();
        Ok(s)
    }
}

/// The encoding of the first messages of a state, kept by the fold as it
/// appends and flags messages, so that writing a state copies it in one piece.
/// A state holds every message of its conversation and the stores rewrite a
/// state whenever a batch changes it: encoding each message again every time
/// was a quarter of the inbox and notify processors' time at 11,600 msg/s.
#[derive(Debug, Clone, Default)]
pub(crate) struct EncodedMessages {
    /// Messages `0..starts.len()`, encoded as in the module doc.
    bytes: Vec<u8>,
    /// Where each one starts in `bytes`.
    starts: Vec<u32>,
    /// Messages `0..written` are in the store as they are now, in chunks
    /// ([`ConversationState::encode_parts`]); only later chunks need writing.
    written: usize,
}

impl EncodedMessages {
    /// Encodes `messages` past those already encoded.
    fn extend(&mut self, messages: &[MessageMeta]) {
        for i in self.starts.len()..messages.len() {
            self.starts.push(self.bytes.len() as u32);
            let previous = i.checked_sub(1).map(|p| &messages[p]);
            encode_message(&mut self.bytes, previous, &messages[i]);
        }
    }

    /// Rewrites message `i`'s flags in place. The varint of `sender << 2 |
    /// flags` has the same length whatever the flags (its length changes only
    /// at multiples of 128, which are multiples of 4), so nothing moves.
    pub(super) fn reflag(&mut self, i: usize, m: &MessageMeta) {
        self.written = self.written.min(i);
        let Some(&start) = self.starts.get(i) else {
            return;
        };
        let mut patch = Vec::with_capacity(10);
        varint(&mut patch, m.id.len() as u64);
        let at = start as usize + patch.len() + m.id.len();
        patch.clear();
        varint(&mut patch, packed(m));
        self.bytes[at..at + patch.len()].copy_from_slice(&patch);
    }
}

impl ConversationState {
    /// Encodes the messages the cache does not cover yet.
    pub(super) fn encode_new_messages(&mut self) {
        self.encoded.extend(&self.messages);
    }
}

fn packed(m: &MessageMeta) -> u64 {
    (u64::from(m.sender) << 2) | (u64::from(m.edited) << 1) | u64::from(m.deleted)
}

/// Appends message `m`: its id, sender and flags, then its offset and `at_ms`
/// as deltas from the `previous` message's.
fn encode_message(out: &mut Vec<u8>, previous: Option<&MessageMeta>, m: &MessageMeta) {
    let (offset, at_ms) = previous.map_or((0, 0), |p| (p.offset, p.at_ms));
    string(out, &m.id);
    varint(out, packed(m));
    varint(out, zigzag(m.offset.wrapping_sub(offset) as i64));
    varint(out, zigzag(m.at_ms.wrapping_sub(at_ms)));
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn string(out: &mut Vec<u8>, s: &str) {
    varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn option(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            varint(out, v);
        }
    }
}

fn optional_string(out: &mut Vec<u8>, v: Option<&str>) {
    match v {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            string(out, v);
        }
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A cursor over an encoding; every read names what it reads, for the error.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn error(&self, what: &str) -> String {
        format!("at byte {} of {}: {what}", self.at, self.bytes.len())
    }

    fn byte(&mut self, what: &str) -> Result<u8, String> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| self.error(&format!("ends before {what}")))?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self, what: &str) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte(what)?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                if shift == 63 && b > 1 {
                    break;
                }
                return Ok(v);
            }
        }
        Err(self.error(&format!("{what} is a varint over 64 bits")))
    }

    /// A count of elements, each at least a byte long.
    fn count(&mut self, what: &str) -> Result<usize, String> {
        let n = self.varint(what)?;
        self.count_of(n, what)
    }

    /// `n` elements of at least a byte each, if that many bytes are left.
    fn count_of(&self, n: u64, what: &str) -> Result<usize, String> {
        if n > (self.bytes.len() - self.at) as u64 {
            return Err(self.error(&format!("{n} {what}, more than the bytes left")));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        let n = self.count(what)?;
        let raw = &self.bytes[self.at..self.at + n];
        let s = std::str::from_utf8(raw)
            .map_err(|e| self.error(&format!("{what} is not UTF-8: {e}")))?;
        self.at += n;
        Ok(s.to_owned())
    }

    fn optional_string(&mut self, what: &str) -> Result<Option<String>, String> {
        match self.byte(what)? {
            0 => Ok(None),
            1 => self.string(what).map(Some),
            b => Err(self.error(&format!("{what}: presence byte {b} is neither 0 nor 1"))),
        }
    }

    fn option(&mut self, what: &str) -> Result<Option<u64>, String> {
        match self.byte(what)? {
            0 => Ok(None),
            1 => self.varint(what).map(Some),
            b => Err(self.error(&format!("{what}: presence byte {b} is neither 0 nor 1"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_zigzag_round_trip_at_the_edges() {
        for v in [
            0,
            1,
            127,
            128,
            300,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            varint(&mut out, v);
            let mut r = Reader { bytes: &out, at: 0 };
            assert_eq!(r.varint("v"), Ok(v));
            assert_eq!(r.at, out.len());
        }
        for v in [0, 1, -1, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        // Eleven continuation bytes: over 64 bits.
        let long = [0xffu8; 11];
        let mut r = Reader {
            bytes: &long,
            at: 0,
        };
        assert!(r.varint("v").unwrap_err().contains("over 64 bits"));
    }

    /// What the module doc promises, on a conversation like the search
    /// benchmark's: four members, ten messages.
    #[test]
    fn a_typical_state_takes_a_fraction_of_its_json() {
        use courier_schemas::json::parse_line;

        use crate::inbox::{Position, apply};
        let mut s = ConversationState::new("c12345");
        let created = r#"{"type":"conversation_created","event_id":"cc-c12345","conversation_id":"c12345","kind":"group","creator_id":"u1","member_ids":["u1","u2","u3","u4"],"title":"","at_ms":1764000000000}"#;
        apply(&mut s, &parse_line(created).unwrap(), Position::new(0, 100));
        for i in 0..10u64 {
            let sent = format!(
                r#"{{"type":"message_sent","event_id":"e{i}","conversation_id":"c12345","message_id":"m{}","sender_id":"u{}","text":"w1x w2x","at_ms":{}}}"#,
                1_000_000 + i * 100_000,
                1 + i % 4,
                1_764_000_000_000 + i * 1_000
            );
            let outcome = apply(
                &mut s,
                &parse_line(&sent).unwrap(),
                Position::new(0, 101 + i * 12),
            );
            assert!(outcome.rejection().is_none());
        }
        let mut binary = Vec::new();
        s.encode_into(&mut binary);
        let json = serde_json::to_vec(&s).unwrap();
        assert!(
            binary.len() * 3 < json.len(),
            "binary {} bytes, JSON {} bytes",
            binary.len(),
            json.len()
        );
    }

    /// A state written before format 2 is read: what it did not keep is
    /// unknown (the latest join's time it did keep), and it is written back in
    /// this build's format.
    #[test]
    fn a_state_of_format_1_is_read_with_what_it_kept() {
        let mut v1 = vec![MAGIC, 1];
        string(&mut v1, "c1");
        option(&mut v1, Some(5));
        v1.push(2); // group
        varint(&mut v1, 2);
        for (id, spans, joined) in [
            ("u1", &[(1, None)][..], 1),
            ("u2", &[(1, Some(3)), (4, None)], 40),
        ] {
            string(&mut v1, id);
            varint(&mut v1, spans.len() as u64);
            for (from, to) in spans {
                varint(&mut v1, *from);
                option(&mut v1, *to);
            }
            varint(&mut v1, zigzag(joined));
            v1.extend([0, 0, 0, 0]); // delivered, read, unread, last
        }
        v1.extend([0, 0, 0]); // messages, previews, seen event ids
        let s = ConversationState::decode(&v1).unwrap();
        assert_eq!(s.format(), 1);
        let seen = s.seen_by("u2").unwrap();
        assert_eq!(
            (seen.title, seen.created_by, seen.created_at_ms),
            (None, None, None)
        );
        let joined: Vec<_> = seen.members.iter().map(|m| m.joined_at_ms).collect();
        assert_eq!(joined, [Some(1), Some(40)]);
        assert_eq!(
            s.users[1].joined_ms(0),
            None,
            "an earlier join's time was not kept"
        );
        let mut v2 = Vec::new();
        s.encode_into(&mut v2);
        let again = ConversationState::decode(&v2).unwrap();
        assert_eq!(again.format(), STATE_FORMAT);
        assert_eq!(again.seen_by("u2"), s.seen_by("u2"));
        assert_eq!(again.users[1].joins_ms, [None, Some(40)]);
    }

    #[test]
    fn json_is_not_taken_for_a_binary_state() {
        let e = ConversationState::decode(br#"{"format":1}"#).unwrap_err();
        assert!(e.contains("wrong first byte"), "{e}");
    }
}
