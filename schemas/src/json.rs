//! The canonical JSON form of events: what `courier produce` reads and
//! `courier replay --format json` writes, one object per line.
//!
//! Shape: `type` first, then `event_id`, the body's fields in the order of
//! docs (docs/DESIGN.md "Events"), then `at_ms`. Optional fields (`title`,
//! `media.sha256`) are absent when unset, never `null`; on input `null` counts as
//! absent for every field. `ciphertext` and dead-letter `payload` are standard
//! base64 with padding. `push_job` and `dead_letter` follow the same pattern with
//! their protobuf fields in field-number order.
//!
//! Parsing goes through `serde_json::Value` and hand-written field checks rather
//! than `#[derive(Deserialize)]`: serde's messages ("unknown variant", "missing
//! field") don't name the event, and its internally tagged enums lose positions
//! anyway. Writing is by hand for the same reason plus field order: a `Value`'s
//! map is sorted unless the workspace-wide `preserve_order` feature is enabled.
//!
//! Only structure is checked (types, required fields, enum values, non-empty ids,
//! base64, two members for a direct conversation). Whether an event may be applied
//! (membership, duplicates) is the processors' business.

use crate::EventKind;
use crate::proto::{
    ConversationCreated, ConversationKind, DeadLetter, Event, MediaRef, MembersAdded,
    MembersRemoved, MessageDeleted, MessageEdited, MessageSent, Presence, PresenceStatus, PushJob,
    Receipt, ReceiptStatus, event::Body, message_sent::Content,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// Why a line is not a valid event. The messages are meant for the person who
/// wrote the line; callers reading a file prefix them with the line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("empty line: expected a JSON object describing one event")]
    Empty,
    #[error("invalid JSON at {position}: {message}")]
    Syntax { position: String, message: String },
    #[error("expected a JSON object describing one event, got {got}")]
    NotAnObject { got: &'static str },
    #[error("missing `type` (one of {})", type_list())]
    MissingType,
    #[error("`type` must be a string (one of {}), got {got}", type_list())]
    TypeNotString { got: String },
    #[error("unknown event type `{0}` (expected one of {types})", types = type_list())]
    UnknownType(String),
    #[error("{event} is missing `{field}`")]
    Missing { event: EventKind, field: String },
    #[error("unknown field `{field}` in {event}")]
    UnknownField { event: EventKind, field: String },
    /// A field of the wrong JSON type, an empty id, or a value outside its enum.
    #[error("{event}: `{field}` must be {expected}, got {got}")]
    Invalid {
        event: EventKind,
        field: String,
        expected: String,
        got: String,
    },
    #[error("{event}: `{field}` is not valid base64 ({reason})")]
    Base64 {
        event: EventKind,
        field: String,
        reason: String,
    },
    /// An id holding a character `crate::ids` forbids.
    #[error("{event}: `{field}` {reason}")]
    BadId {
        event: EventKind,
        field: String,
        reason: String,
    },
    #[error("{event} must have exactly one of `text`, `ciphertext`, `media`")]
    ContentChoice { event: EventKind },
    #[error("{event}: a direct conversation has exactly two `member_ids`, got {got}")]
    DirectMembers { event: EventKind, got: usize },
}

fn type_list() -> String {
    EventKind::ALL.map(EventKind::as_str).join(", ")
}

/// Parses one line of canonical JSON. A missing `event_id` gets a fresh UUIDv7 and
/// a missing `at_ms` the current time, so hand-written lines stay short.
pub fn parse_line(line: &str) -> Result<Event, JsonError> {
    if line.trim().is_empty() {
        return Err(JsonError::Empty);
    }
    let value: Value = serde_json::from_str(line).map_err(syntax_error)?;
    let Value::Object(map) = value else {
        return Err(JsonError::NotAnObject {
            got: json_kind(&value),
        });
    };
    let kind = match map.get("type") {
        None | Some(Value::Null) => return Err(JsonError::MissingType),
        Some(Value::String(s)) => {
            EventKind::from_type(s).ok_or_else(|| JsonError::UnknownType(s.clone()))?
        }
        Some(other) => {
            return Err(JsonError::TypeNotString { got: show(other) });
        }
    };
    let mut obj = Obj::new(kind, "", map, body_fields(kind))?;
    let event_id = match obj.opt_id("event_id")? {
        Some(id) => id,
        None => uuid::Uuid::now_v7().to_string(),
    };
    let at_ms = match obj.opt_int("at_ms", 0, i64::MAX)? {
        Some(ms) => ms,
        None => now_ms(),
    };
    let body = parse_body(kind, &mut obj)?;
    Ok(Event {
        event_id,
        at_ms,
        body: Some(body),
    })
}

/// The canonical one-line JSON of an event (no trailing newline). An event without
/// a body (unknown type from a newer writer) is written as `"type":"unknown"`,
/// which `parse_line` rejects; an unspecified enum is written as `"unspecified"`.
pub fn to_line(event: &Event) -> String {
    let mut w = Writer::default();
    let kind = event.kind();
    w.str("type", kind.map_or("unknown", EventKind::as_str));
    w.str("event_id", &event.event_id);
    if let Some(body) = &event.body {
        write_body(&mut w, body);
    }
    w.int("at_ms", event.at_ms);
    w.finish()
}

/// The canonical JSON as a `serde_json::Value` (for embedding in HTTP responses).
/// Key order is whatever `serde_json::Map` keeps; use [`to_line`] for the line form.
pub fn to_value(event: &Event) -> Value {
    // to_line always produces valid JSON; the fallback is unreachable but not a panic.
    serde_json::from_str(&to_line(event)).unwrap_or(Value::Null)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn syntax_error(e: serde_json::Error) -> JsonError {
    // serde_json appends " at line L column C"; we say it first and drop the line
    // number when, as usual, the input is a single line.
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
    let position = if e.line() > 1 {
        format!("line {} column {}", e.line(), e.column())
    } else {
        format!("column {}", e.column())
    };
    JsonError::Syntax { position, message }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The offending value as JSON, shortened so one bad field can't flood a terminal.
fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() <= 40 {
        s
    } else {
        format!("{}…", s.chars().take(40).collect::<String>())
    }
}

/// The fields each type accepts besides `type`, `event_id` and `at_ms`.
fn body_fields(kind: EventKind) -> &'static [&'static str] {
    match kind {
        EventKind::ConversationCreated => &[
            "conversation_id",
            "kind",
            "creator_id",
            "member_ids",
            "title",
        ],
        EventKind::MembersAdded | EventKind::MembersRemoved => {
            &["conversation_id", "actor_id", "user_ids"]
        }
        EventKind::MessageSent => &[
            "conversation_id",
            "message_id",
            "sender_id",
            "text",
            "ciphertext",
            "media",
        ],
        EventKind::MessageEdited => &["conversation_id", "message_id", "editor_id", "text"],
        EventKind::MessageDeleted => &["conversation_id", "message_id", "actor_id"],
        EventKind::Receipt => &["conversation_id", "message_id", "user_id", "status"],
        EventKind::Presence => &["user_id", "status"],
        EventKind::PushJob => &[
            "job_id",
            "user_id",
            "conversation_id",
            "message_id",
            "sender_id",
            "preview",
            "collapse_key",
        ],
        EventKind::DeadLetter => &[
            "source_topic",
            "source_partition",
            "source_offset",
            "source_key",
            "reason",
            "payload",
        ],
    }
}

const MEDIA_FIELDS: &[&str] = &["url", "mime_type", "size_bytes", "sha256"];

fn parse_body(kind: EventKind, o: &mut Obj) -> Result<Body, JsonError> {
    Ok(match kind {
        EventKind::ConversationCreated => {
            let conversation_id = o.name("conversation_id")?;
            let kind_value = o.enumeration(
                "kind",
                &[
                    ("direct", ConversationKind::Direct as i32),
                    ("group", ConversationKind::Group as i32),
                ],
            )?;
            let creator_id = o.name("creator_id")?;
            let member_ids = o.ids("member_ids")?;
            if kind_value == ConversationKind::Direct as i32 && member_ids.len() != 2 {
                return Err(JsonError::DirectMembers {
                    event: kind,
                    got: member_ids.len(),
                });
            }
            Body::ConversationCreated(ConversationCreated {
                conversation_id,
                kind: kind_value,
                creator_id,
                member_ids,
                title: o.opt_text("title")?,
            })
        }
        EventKind::MembersAdded => Body::MembersAdded(MembersAdded {
            conversation_id: o.name("conversation_id")?,
            actor_id: o.name("actor_id")?,
            user_ids: o.ids("user_ids")?,
        }),
        EventKind::MembersRemoved => Body::MembersRemoved(MembersRemoved {
            conversation_id: o.name("conversation_id")?,
            actor_id: o.name("actor_id")?,
            user_ids: o.ids("user_ids")?,
        }),
        EventKind::MessageSent => {
            let conversation_id = o.name("conversation_id")?;
            let message_id = o.name("message_id")?;
            let sender_id = o.name("sender_id")?;
            let present = ["text", "ciphertext", "media"]
                .iter()
                .filter(|f| o.has(f))
                .count();
            if present != 1 {
                return Err(JsonError::ContentChoice { event: kind });
            }
            let content = if o.has("text") {
                Content::Text(o.text("text")?)
            } else if o.has("ciphertext") {
                Content::Ciphertext(o.base64("ciphertext")?)
            } else {
                let m = o.object("media", "media.", MEDIA_FIELDS)?;
                Content::Media(MediaRef {
                    url: m.id("url")?,
                    mime_type: m.id("mime_type")?,
                    size_bytes: m.int("size_bytes", 0, i64::MAX)?,
                    sha256: m.opt_text("sha256")?,
                })
            };
            Body::MessageSent(MessageSent {
                conversation_id,
                message_id,
                sender_id,
                content: Some(content),
            })
        }
        EventKind::MessageEdited => Body::MessageEdited(MessageEdited {
            conversation_id: o.name("conversation_id")?,
            message_id: o.name("message_id")?,
            editor_id: o.name("editor_id")?,
            text: o.text("text")?,
        }),
        EventKind::MessageDeleted => Body::MessageDeleted(MessageDeleted {
            conversation_id: o.name("conversation_id")?,
            message_id: o.name("message_id")?,
            actor_id: o.name("actor_id")?,
        }),
        EventKind::Receipt => Body::Receipt(Receipt {
            conversation_id: o.name("conversation_id")?,
            message_id: o.name("message_id")?,
            user_id: o.name("user_id")?,
            status: o.enumeration(
                "status",
                &[
                    ("delivered", ReceiptStatus::Delivered as i32),
                    ("read", ReceiptStatus::Read as i32),
                ],
            )?,
        }),
        EventKind::Presence => Body::Presence(Presence {
            user_id: o.name("user_id")?,
            status: o.enumeration(
                "status",
                &[
                    ("online", PresenceStatus::Online as i32),
                    ("offline", PresenceStatus::Offline as i32),
                ],
            )?,
        }),
        EventKind::PushJob => Body::PushJob(PushJob {
            job_id: o.name("job_id")?,
            user_id: o.name("user_id")?,
            conversation_id: o.name("conversation_id")?,
            message_id: o.name("message_id")?,
            sender_id: o.name("sender_id")?,
            // A ciphertext or media message has no text to preview.
            preview: o.text("preview")?,
            collapse_key: o.id("collapse_key")?,
        }),
        EventKind::DeadLetter => Body::DeadLetter(DeadLetter {
            source_topic: o.id("source_topic")?,
            source_partition: i32::try_from(o.int("source_partition", 0, i64::from(i32::MAX))?)
                .unwrap_or(i32::MAX),
            source_offset: o.int("source_offset", 0, i64::MAX)?,
            // A record may have had no key at all.
            source_key: o.text("source_key")?,
            reason: o.id("reason")?,
            payload: o.base64("payload")?,
        }),
    })
}

fn write_body(w: &mut Writer, body: &Body) {
    match body {
        Body::ConversationCreated(b) => {
            w.str("conversation_id", &b.conversation_id);
            w.str(
                "kind",
                match b.kind() {
                    ConversationKind::Direct => "direct",
                    ConversationKind::Group => "group",
                    ConversationKind::Unspecified => "unspecified",
                },
            );
            w.str("creator_id", &b.creator_id);
            w.strs("member_ids", &b.member_ids);
            if let Some(title) = &b.title {
                w.str("title", title);
            }
        }
        Body::MembersAdded(MembersAdded {
            conversation_id,
            actor_id,
            user_ids,
        })
        | Body::MembersRemoved(MembersRemoved {
            conversation_id,
            actor_id,
            user_ids,
        }) => {
            w.str("conversation_id", conversation_id);
            w.str("actor_id", actor_id);
            w.strs("user_ids", user_ids);
        }
        Body::MessageSent(b) => {
            w.str("conversation_id", &b.conversation_id);
            w.str("message_id", &b.message_id);
            w.str("sender_id", &b.sender_id);
            match &b.content {
                Some(Content::Text(t)) => w.str("text", t),
                Some(Content::Ciphertext(c)) => w.str("ciphertext", &BASE64.encode(c)),
                Some(Content::Media(m)) => {
                    let mut mw = Writer::default();
                    mw.str("url", &m.url);
                    mw.str("mime_type", &m.mime_type);
                    mw.int("size_bytes", m.size_bytes);
                    if let Some(sha) = &m.sha256 {
                        mw.str("sha256", sha);
                    }
                    w.raw("media", &mw.finish());
                }
                // Only a buggy producer writes this; leaving it out makes the line
                // fail parse_line loudly instead of inventing content.
                None => {}
            }
        }
        Body::MessageEdited(b) => {
            w.str("conversation_id", &b.conversation_id);
            w.str("message_id", &b.message_id);
            w.str("editor_id", &b.editor_id);
            w.str("text", &b.text);
        }
        Body::MessageDeleted(b) => {
            w.str("conversation_id", &b.conversation_id);
            w.str("message_id", &b.message_id);
            w.str("actor_id", &b.actor_id);
        }
        Body::Receipt(b) => {
            w.str("conversation_id", &b.conversation_id);
            w.str("message_id", &b.message_id);
            w.str("user_id", &b.user_id);
            w.str(
                "status",
                match b.status() {
                    ReceiptStatus::Delivered => "delivered",
                    ReceiptStatus::Read => "read",
                    ReceiptStatus::Unspecified => "unspecified",
                },
            );
        }
        Body::Presence(b) => {
            w.str("user_id", &b.user_id);
            w.str(
                "status",
                match b.status() {
                    PresenceStatus::Online => "online",
                    PresenceStatus::Offline => "offline",
                    PresenceStatus::Unspecified => "unspecified",
                },
            );
        }
        Body::PushJob(b) => {
            w.str("job_id", &b.job_id);
            w.str("user_id", &b.user_id);
            w.str("conversation_id", &b.conversation_id);
            w.str("message_id", &b.message_id);
            w.str("sender_id", &b.sender_id);
            w.str("preview", &b.preview);
            w.str("collapse_key", &b.collapse_key);
        }
        Body::DeadLetter(b) => {
            w.str("source_topic", &b.source_topic);
            w.int("source_partition", b.source_partition);
            w.int("source_offset", b.source_offset);
            w.str("source_key", &b.source_key);
            w.str("reason", &b.reason);
            w.str("payload", &BASE64.encode(&b.payload));
        }
    }
}

/// Builds one JSON object with keys in the order they are written.
#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    /// Starts the next member: `{` or `,`, then the quoted key and `:`.
    fn key(&mut self, key: &str) {
        self.0.push(if self.0.is_empty() { b'{' } else { b',' });
        quote(&mut self.0, key);
        self.0.push(b':');
    }

    fn raw(&mut self, key: &str, json: &str) {
        self.key(key);
        self.0.extend_from_slice(json.as_bytes());
    }

    fn int(&mut self, key: &str, n: impl std::fmt::Display) {
        use std::io::Write as _;
        self.key(key);
        // Writing into a Vec cannot fail.
        let _ = write!(self.0, "{n}");
    }

    fn str(&mut self, key: &str, s: &str) {
        self.key(key);
        quote(&mut self.0, s);
    }

    fn strs(&mut self, key: &str, items: &[String]) {
        self.key(key);
        self.0.push(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.0.push(b',');
            }
            quote(&mut self.0, item);
        }
        self.0.push(b']');
    }

    fn finish(mut self) -> String {
        if self.0.is_empty() {
            self.0.push(b'{');
        }
        self.0.push(b'}');
        // Only UTF-8 went in: keys and values are `str`s, escaped by serde_json.
        String::from_utf8(self.0).expect("JSON of str is UTF-8")
    }
}

/// Appends `s` as a JSON string, escaped exactly as serde_json escapes it (the
/// canonical form), without the two allocations of going through a `Value`:
/// replays write millions of these.
fn quote(out: &mut Vec<u8>, s: &str) {
    // A str always serializes; writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// One JSON object being read, with what is needed to say where a problem is.
struct Obj {
    event: EventKind,
    /// `""` at the top level, `"media."` inside `media`: prefixes field names in errors.
    prefix: &'static str,
    map: Map<String, Value>,
}

impl Obj {
    /// Rejects unknown fields up front: a typo like `sender` for `sender_id` is
    /// better reported as itself than as the field it failed to provide.
    fn new(
        event: EventKind,
        prefix: &'static str,
        map: Map<String, Value>,
        fields: &[&str],
    ) -> Result<Obj, JsonError> {
        let top = prefix.is_empty();
        let known =
            |k: &str| fields.contains(&k) || (top && matches!(k, "type" | "event_id" | "at_ms"));
        if let Some(unknown) = map.keys().find(|k| !known(k)) {
            return Err(JsonError::UnknownField {
                event,
                field: format!("{prefix}{unknown}"),
            });
        }
        Ok(Obj { event, prefix, map })
    }

    fn has(&self, field: &str) -> bool {
        self.map.get(field).is_some_and(|v| !v.is_null())
    }

    fn get(&self, field: &str) -> Option<&Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    fn path(&self, field: &str) -> String {
        format!("{}{field}", self.prefix)
    }

    fn missing(&self, field: &str) -> JsonError {
        JsonError::Missing {
            event: self.event,
            field: self.path(field),
        }
    }

    fn invalid(&self, field: &str, expected: &str, got: &Value) -> JsonError {
        JsonError::Invalid {
            event: self.event,
            field: self.path(field),
            expected: expected.to_owned(),
            got: show(got),
        }
    }

    fn opt_text(&self, field: &str) -> Result<Option<String>, JsonError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.invalid(field, "a string", v)),
        }
    }

    fn text(&self, field: &str) -> Result<String, JsonError> {
        self.opt_text(field)?.ok_or_else(|| self.missing(field))
    }

    fn opt_id(&self, field: &str) -> Result<Option<String>, JsonError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(v) => Err(self.invalid(field, "a non-empty string", v)),
        }
    }

    fn id(&self, field: &str) -> Result<String, JsonError> {
        self.opt_id(field)?.ok_or_else(|| self.missing(field))
    }

    /// An id of a conversation, message, user or job: non-empty, and without the
    /// characters `crate::ids` forbids (so two ids that look alike are alike).
    fn name(&self, field: &str) -> Result<String, JsonError> {
        let id = self.id(field)?;
        self.check_name(field, &id)?;
        Ok(id)
    }

    fn check_name(&self, field: &str, id: &str) -> Result<(), JsonError> {
        match crate::ids::first_forbidden(id) {
            None => Ok(()),
            Some(found) => Err(JsonError::BadId {
                event: self.event,
                field: self.path(field),
                reason: crate::ids::explain(&found),
            }),
        }
    }

    /// A non-empty list of non-empty ids: an empty membership change means nothing.
    fn ids(&self, field: &str) -> Result<Vec<String>, JsonError> {
        let v = self.get(field).ok_or_else(|| self.missing(field))?;
        let expected = "a non-empty array of non-empty strings";
        let Value::Array(items) = v else {
            return Err(self.invalid(field, expected, v));
        };
        if items.is_empty() {
            return Err(self.invalid(field, expected, v));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) if !s.is_empty() => {
                    self.check_name(&format!("{field}[{i}]"), s)?;
                    Ok(s.clone())
                }
                _ => Err(self.invalid(&format!("{field}[{i}]"), "a non-empty string", item)),
            })
            .collect()
    }

    fn opt_int(&self, field: &str, min: i64, max: i64) -> Result<Option<i64>, JsonError> {
        let Some(v) = self.get(field) else {
            return Ok(None);
        };
        match v.as_i64() {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ if max == i64::MAX => Err(self.invalid(field, &format!("an integer ≥ {min}"), v)),
            _ => Err(self.invalid(field, &format!("an integer from {min} to {max}"), v)),
        }
    }

    fn int(&self, field: &str, min: i64, max: i64) -> Result<i64, JsonError> {
        self.opt_int(field, min, max)?
            .ok_or_else(|| self.missing(field))
    }

    /// Canonical base64 only, so that JSON → protobuf → JSON gives the same line.
    fn base64(&self, field: &str) -> Result<Vec<u8>, JsonError> {
        match self.get(field) {
            None => Err(self.missing(field)),
            Some(Value::String(s)) => BASE64.decode(s).map_err(|e| JsonError::Base64 {
                event: self.event,
                field: self.path(field),
                reason: e.to_string(),
            }),
            Some(v) => Err(self.invalid(field, "a base64 string", v)),
        }
    }

    /// Returns the protobuf value of the symbol; UNSPECIFIED is never accepted.
    fn enumeration(&self, field: &str, symbols: &[(&str, i32)]) -> Result<i32, JsonError> {
        let v = self.get(field).ok_or_else(|| self.missing(field))?;
        if let Value::String(s) = v
            && let Some((_, n)) = symbols.iter().find(|(name, _)| name == s)
        {
            return Ok(*n);
        }
        let quoted: Vec<String> = symbols.iter().map(|(s, _)| format!("\"{s}\"")).collect();
        let expected = match quoted.as_slice() {
            [a, b] => format!("{a} or {b}"),
            _ => format!("one of {}", quoted.join(", ")),
        };
        Err(self.invalid(field, &expected, v))
    }

    /// A nested object; `prefix` is how its fields are named in errors (`"media."`).
    fn object(
        &mut self,
        field: &str,
        prefix: &'static str,
        fields: &[&str],
    ) -> Result<Obj, JsonError> {
        match self.map.remove(field) {
            Some(Value::Object(map)) => Obj::new(self.event, prefix, map, fields),
            None | Some(Value::Null) => Err(self.missing(field)),
            Some(v) => Err(self.invalid(field, "an object", &v)),
        }
    }
}

#[cfg(test)]
mod id_tests {
    use super::parse_line;

    /// Issue 16: canonical JSON (so `courier produce`) took ids with zero-width
    /// and bidirectional characters; the gateway's rule is now its rule too.
    #[test]
    fn an_id_with_an_invisible_character_is_refused_naming_the_field() {
        let line = r#"{"type":"members_added","event_id":"e1","at_ms":1,"conversation_id":"c1","actor_id":"alice","user_ids":["carol","bob\u200b"]}"#;
        let e = parse_line(line).unwrap_err().to_string();
        assert!(e.contains("`user_ids[1]` contains U+200B"), "{e}");
        let line = r#"{"type":"message_sent","event_id":"e2","at_ms":1,"conversation_id":"c1","message_id":"m1","sender_id":"\u202ebob","text":"hi"}"#;
        let e = parse_line(line).unwrap_err().to_string();
        assert!(e.contains("`sender_id` contains U+202E"), "{e}");
    }
}
