//! Avro mirrors of the protobuf events, for analysts (`courier replay --format
//! avro` writes object container files with [`schema`]).
//!
//! One `.avsc` per record in `schemas/avro/`, named by full name. The envelope
//! refers to the event records by name; [`schema`] inlines them so a container file
//! carries one self-contained schema (a file header cannot carry references).
//! Field names are the protobuf names; a test fails when they drift apart.

use crate::EventKind;
use crate::proto::{
    ConversationCreated, DeadLetter, Event, MediaRef, MembersAdded, MembersRemoved, MessageDeleted,
    MessageEdited, MessageSent, Presence, PushJob, Receipt, event::Body, message_sent::Content,
};
use apache_avro::Schema;
use apache_avro::types::Value;
use std::sync::OnceLock;

/// The `.avsc` sources by file name, envelope first: for publishing to a schema
/// registry, and for the test that checks nothing in `schemas/avro/` is left out.
pub const SOURCES: &[(&str, &str)] = &[
    (
        "courier.v1.Event.avsc",
        include_str!("../avro/courier.v1.Event.avsc"),
    ),
    (
        "courier.v1.ConversationCreated.avsc",
        include_str!("../avro/courier.v1.ConversationCreated.avsc"),
    ),
    (
        "courier.v1.MembersAdded.avsc",
        include_str!("../avro/courier.v1.MembersAdded.avsc"),
    ),
    (
        "courier.v1.MembersRemoved.avsc",
        include_str!("../avro/courier.v1.MembersRemoved.avsc"),
    ),
    (
        "courier.v1.MessageSent.avsc",
        include_str!("../avro/courier.v1.MessageSent.avsc"),
    ),
    (
        "courier.v1.MessageEdited.avsc",
        include_str!("../avro/courier.v1.MessageEdited.avsc"),
    ),
    (
        "courier.v1.MessageDeleted.avsc",
        include_str!("../avro/courier.v1.MessageDeleted.avsc"),
    ),
    (
        "courier.v1.Receipt.avsc",
        include_str!("../avro/courier.v1.Receipt.avsc"),
    ),
    (
        "courier.v1.Presence.avsc",
        include_str!("../avro/courier.v1.Presence.avsc"),
    ),
    (
        "courier.v1.PushJob.avsc",
        include_str!("../avro/courier.v1.PushJob.avsc"),
    ),
    (
        "courier.v1.DeadLetter.avsc",
        include_str!("../avro/courier.v1.DeadLetter.avsc"),
    ),
];

/// Enum symbols, indexed by protobuf enum number (0 is UNSPECIFIED).
const CONVERSATION_KIND: &[&str] = &["unspecified", "direct", "group"];
const RECEIPT_STATUS: &[&str] = &["unspecified", "delivered", "read"];
const PRESENCE_STATUS: &[&str] = &["unspecified", "online", "offline"];

/// An Avro value that does not have the shape of a courier.v1.Event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AvroError {
    #[error("avro value at `{at}`: expected {expected}, got {got}")]
    Unexpected {
        at: String,
        expected: String,
        got: String,
    },
    #[error("avro record at `{at}` has no field `{field}`")]
    MissingField { at: String, field: String },
}

/// The envelope schema, `courier.v1.Event`, with every event record inlined.
pub fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        // The sources are compiled in and covered by tests, so failing here is a bug
        // in this crate, not bad input.
        load().unwrap_or_else(|e| panic!("courier-schemas: bundled Avro schemas are broken: {e}"))
    })
}

fn load() -> Result<Schema, String> {
    let parse =
        |text: &str| serde_json::from_str::<serde_json::Value>(text).map_err(|e| e.to_string());
    let mut envelope = parse(SOURCES[0].1)?;
    let records = SOURCES[1..]
        .iter()
        .map(|(_, text)| parse(text))
        .collect::<Result<Vec<_>, _>>()?;
    let body = envelope["fields"]
        .as_array_mut()
        .and_then(|fields| fields.iter_mut().find(|f| f["name"] == "body"))
        .and_then(|f| f["type"].as_array_mut())
        .ok_or("envelope has no `body` union")?;
    for branch in body.iter_mut() {
        let Some(full) = branch.as_str().and_then(|s| s.strip_prefix("courier.v1.")) else {
            continue;
        };
        let record = records
            .iter()
            .find(|r| r["name"] == full)
            .ok_or_else(|| format!("body refers to unknown record courier.v1.{full}"))?;
        *branch = record.clone();
    }
    Schema::parse(&envelope).map_err(|e| e.to_string())
}

/// The Avro value of an event, matching [`schema`].
pub fn to_value(event: &Event) -> Value {
    let body = match &event.body {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(body) => {
            let branch = EventKind::ALL
                .iter()
                .position(|k| *k == body.kind())
                .map_or(0, |i| i + 1);
            Value::Union(
                u32::try_from(branch).unwrap_or(0),
                Box::new(body_value(body)),
            )
        }
    };
    record(vec![
        ("event_id", string(&event.event_id)),
        ("at_ms", Value::Long(event.at_ms)),
        ("body", body),
    ])
}

fn body_value(body: &Body) -> Value {
    match body {
        Body::ConversationCreated(b) => record(vec![
            ("conversation_id", string(&b.conversation_id)),
            ("kind", enumeration(b.kind, CONVERSATION_KIND)),
            ("creator_id", string(&b.creator_id)),
            ("member_ids", strings(&b.member_ids)),
            ("title", optional(b.title.as_deref().map(string))),
        ]),
        Body::MembersAdded(MembersAdded {
            conversation_id,
            actor_id,
            user_ids,
        })
        | Body::MembersRemoved(MembersRemoved {
            conversation_id,
            actor_id,
            user_ids,
        }) => record(vec![
            ("conversation_id", string(conversation_id)),
            ("actor_id", string(actor_id)),
            ("user_ids", strings(user_ids)),
        ]),
        Body::MessageSent(b) => {
            let (mut text, mut ciphertext, mut media) = (None, None, None);
            match &b.content {
                Some(Content::Text(t)) => text = Some(string(t)),
                Some(Content::Ciphertext(c)) => ciphertext = Some(Value::Bytes(c.clone())),
                Some(Content::Media(m)) => {
                    media = Some(record(vec![
                        ("url", string(&m.url)),
                        ("mime_type", string(&m.mime_type)),
                        ("size_bytes", Value::Long(m.size_bytes)),
                        ("sha256", optional(m.sha256.as_deref().map(string))),
                    ]));
                }
                None => {}
            }
            record(vec![
                ("conversation_id", string(&b.conversation_id)),
                ("message_id", string(&b.message_id)),
                ("sender_id", string(&b.sender_id)),
                ("text", optional(text)),
                ("ciphertext", optional(ciphertext)),
                ("media", optional(media)),
            ])
        }
        Body::MessageEdited(b) => record(vec![
            ("conversation_id", string(&b.conversation_id)),
            ("message_id", string(&b.message_id)),
            ("editor_id", string(&b.editor_id)),
            ("text", string(&b.text)),
        ]),
        Body::MessageDeleted(b) => record(vec![
            ("conversation_id", string(&b.conversation_id)),
            ("message_id", string(&b.message_id)),
            ("actor_id", string(&b.actor_id)),
        ]),
        Body::Receipt(b) => record(vec![
            ("conversation_id", string(&b.conversation_id)),
            ("message_id", string(&b.message_id)),
            ("user_id", string(&b.user_id)),
            ("status", enumeration(b.status, RECEIPT_STATUS)),
        ]),
        Body::Presence(b) => record(vec![
            ("user_id", string(&b.user_id)),
            ("status", enumeration(b.status, PRESENCE_STATUS)),
        ]),
        Body::PushJob(b) => record(vec![
            ("job_id", string(&b.job_id)),
            ("user_id", string(&b.user_id)),
            ("conversation_id", string(&b.conversation_id)),
            ("message_id", string(&b.message_id)),
            ("sender_id", string(&b.sender_id)),
            ("preview", string(&b.preview)),
            ("collapse_key", string(&b.collapse_key)),
        ]),
        Body::DeadLetter(b) => record(vec![
            ("source_topic", string(&b.source_topic)),
            ("source_partition", Value::Int(b.source_partition)),
            ("source_offset", Value::Long(b.source_offset)),
            ("source_key", string(&b.source_key)),
            ("reason", string(&b.reason)),
            ("payload", Value::Bytes(b.payload.clone())),
        ]),
    }
}

fn record(fields: Vec<(&str, Value)>) -> Value {
    Value::Record(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn string(s: &str) -> Value {
    Value::String(s.to_owned())
}

fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| string(s)).collect())
}

fn optional(v: Option<Value>) -> Value {
    match v {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(v) => Value::Union(1, Box::new(v)),
    }
}

/// Numbers this build does not know (a newer writer's enum value) become
/// "unspecified", as prost's own getters do.
fn enumeration(n: i32, symbols: &[&str]) -> Value {
    let i = usize::try_from(n)
        .ok()
        .filter(|i| *i < symbols.len())
        .unwrap_or(0);
    Value::Enum(u32::try_from(i).unwrap_or(0), symbols[i].to_owned())
}

/// Reads back a value of [`schema`] (as [`to_value`] makes it or a container file
/// reader returns it).
pub fn from_value(v: &Value) -> Result<Event, AvroError> {
    let r = Rec::new(v, "Event".to_owned())?;
    let body = match r.get("body")? {
        Value::Union(0, _) => None,
        Value::Union(i, inner) => {
            let kind = usize::try_from(*i)
                .ok()
                .and_then(|i| EventKind::ALL.get(i - 1))
                .ok_or_else(|| unexpected("Event.body", "a known union branch", v))?;
            Some(body_from(
                *kind,
                &Rec::new(inner, format!("Event.body.{}", kind.record_name()))?,
            )?)
        }
        other => return Err(unexpected("Event.body", "a union", other)),
    };
    Ok(Event {
        event_id: r.string("event_id")?,
        at_ms: r.long("at_ms")?,
        body,
    })
}

fn body_from(kind: EventKind, r: &Rec) -> Result<Body, AvroError> {
    Ok(match kind {
        EventKind::ConversationCreated => Body::ConversationCreated(ConversationCreated {
            conversation_id: r.string("conversation_id")?,
            kind: r.enumeration("kind", CONVERSATION_KIND)?,
            creator_id: r.string("creator_id")?,
            member_ids: r.strings("member_ids")?,
            title: r.optional("title", |v, at| as_string(v, &at))?,
        }),
        EventKind::MembersAdded => Body::MembersAdded(MembersAdded {
            conversation_id: r.string("conversation_id")?,
            actor_id: r.string("actor_id")?,
            user_ids: r.strings("user_ids")?,
        }),
        EventKind::MembersRemoved => Body::MembersRemoved(MembersRemoved {
            conversation_id: r.string("conversation_id")?,
            actor_id: r.string("actor_id")?,
            user_ids: r.strings("user_ids")?,
        }),
        EventKind::MessageSent => {
            let text = r.optional("text", |v, at| as_string(v, &at))?;
            let ciphertext = r.optional("ciphertext", |v, at| as_bytes(v, &at))?;
            let media = r.optional("media", |v, at| {
                let m = Rec::new(v, at)?;
                Ok(MediaRef {
                    url: m.string("url")?,
                    mime_type: m.string("mime_type")?,
                    size_bytes: m.long("size_bytes")?,
                    sha256: m.optional("sha256", |v, at| as_string(v, &at))?,
                })
            })?;
            let content = text
                .map(Content::Text)
                .or(ciphertext.map(Content::Ciphertext))
                .or(media.map(Content::Media));
            Body::MessageSent(MessageSent {
                conversation_id: r.string("conversation_id")?,
                message_id: r.string("message_id")?,
                sender_id: r.string("sender_id")?,
                content,
            })
        }
        EventKind::MessageEdited => Body::MessageEdited(MessageEdited {
            conversation_id: r.string("conversation_id")?,
            message_id: r.string("message_id")?,
            editor_id: r.string("editor_id")?,
            text: r.string("text")?,
        }),
        EventKind::MessageDeleted => Body::MessageDeleted(MessageDeleted {
            conversation_id: r.string("conversation_id")?,
            message_id: r.string("message_id")?,
            actor_id: r.string("actor_id")?,
        }),
        EventKind::Receipt => Body::Receipt(Receipt {
            conversation_id: r.string("conversation_id")?,
            message_id: r.string("message_id")?,
            user_id: r.string("user_id")?,
            status: r.enumeration("status", RECEIPT_STATUS)?,
        }),
        EventKind::Presence => Body::Presence(Presence {
            user_id: r.string("user_id")?,
            status: r.enumeration("status", PRESENCE_STATUS)?,
        }),
        EventKind::PushJob => Body::PushJob(PushJob {
            job_id: r.string("job_id")?,
            user_id: r.string("user_id")?,
            conversation_id: r.string("conversation_id")?,
            message_id: r.string("message_id")?,
            sender_id: r.string("sender_id")?,
            preview: r.string("preview")?,
            collapse_key: r.string("collapse_key")?,
        }),
        EventKind::DeadLetter => Body::DeadLetter(DeadLetter {
            source_topic: r.string("source_topic")?,
            source_partition: match r.get("source_partition")? {
                Value::Int(n) => *n,
                other => return Err(unexpected(&r.path("source_partition"), "an int", other)),
            },
            source_offset: r.long("source_offset")?,
            source_key: r.string("source_key")?,
            reason: r.string("reason")?,
            payload: as_bytes(r.get("payload")?, &r.path("payload"))?,
        }),
    })
}

fn unexpected(at: &str, expected: &str, got: &Value) -> AvroError {
    let got = format!("{got:?}");
    let got = if got.chars().count() > 60 {
        format!("{}…", got.chars().take(60).collect::<String>())
    } else {
        got
    };
    AvroError::Unexpected {
        at: at.to_owned(),
        expected: expected.to_owned(),
        got,
    }
}

fn as_string(v: &Value, at: &str) -> Result<String, AvroError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(unexpected(at, "a string", other)),
    }
}

fn as_bytes(v: &Value, at: &str) -> Result<Vec<u8>, AvroError> {
    match v {
        Value::Bytes(b) => Ok(b.clone()),
        other => Err(unexpected(at, "bytes", other)),
    }
}

/// A record being read, with its path for error messages.
struct Rec<'a> {
    at: String,
    fields: &'a [(String, Value)],
}

impl<'a> Rec<'a> {
    fn new(v: &'a Value, at: String) -> Result<Rec<'a>, AvroError> {
        match v {
            Value::Record(fields) => Ok(Rec { at, fields }),
            other => Err(unexpected(&at, "a record", other)),
        }
    }

    fn path(&self, field: &str) -> String {
        format!("{}.{field}", self.at)
    }

    fn get(&self, field: &str) -> Result<&'a Value, AvroError> {
        self.fields
            .iter()
            .find(|(k, _)| k == field)
            .map(|(_, v)| v)
            .ok_or_else(|| AvroError::MissingField {
                at: self.at.clone(),
                field: field.to_owned(),
            })
    }

    fn string(&self, field: &str) -> Result<String, AvroError> {
        as_string(self.get(field)?, &self.path(field))
    }

    fn long(&self, field: &str) -> Result<i64, AvroError> {
        match self.get(field)? {
            Value::Long(n) => Ok(*n),
            other => Err(unexpected(&self.path(field), "a long", other)),
        }
    }

    fn strings(&self, field: &str) -> Result<Vec<String>, AvroError> {
        let at = self.path(field);
        match self.get(field)? {
            Value::Array(items) => items.iter().map(|v| as_string(v, &at)).collect(),
            other => Err(unexpected(&at, "an array", other)),
        }
    }

    /// Matched by symbol, not index, so a reader schema that reorders symbols
    /// still maps to the right protobuf number.
    fn enumeration(&self, field: &str, symbols: &[&str]) -> Result<i32, AvroError> {
        let at = self.path(field);
        match self.get(field)? {
            Value::Enum(_, sym) => symbols
                .iter()
                .position(|s| s == sym)
                .and_then(|i| i32::try_from(i).ok())
                .ok_or_else(|| {
                    unexpected(
                        &at,
                        &format!("one of {symbols:?}"),
                        &Value::String(sym.clone()),
                    )
                }),
            other => Err(unexpected(&at, "an enum", other)),
        }
    }

    /// A `["null", T]` union.
    fn optional<T>(
        &self,
        field: &str,
        read: impl FnOnce(&'a Value, String) -> Result<T, AvroError>,
    ) -> Result<Option<T>, AvroError> {
        let at = self.path(field);
        match self.get(field)? {
            Value::Union(_, inner) if matches!(**inner, Value::Null) => Ok(None),
            Value::Union(_, inner) => read(inner, at).map(Some),
            Value::Null => Ok(None),
            other => Err(unexpected(&at, "a [\"null\", …] union", other)),
        }
    }
}
