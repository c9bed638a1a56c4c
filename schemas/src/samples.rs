//! One canonical JSON line for every event type and content variant. They seed the
//! golden fixtures (`schemas/fixtures/v1/<name>.{json,bin}`) and are handy test
//! input for other crates. Each line is canonical: `to_line(parse_line(line)) == line`.

/// A named example event.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// File stem of its golden fixture, e.g. `message_sent_media`.
    pub name: &'static str,
    pub line: &'static str,
}

/// Every sample; a test checks each [`crate::EventKind`] has at least one.
pub const ALL: &[Sample] = &[
    Sample {
        name: "conversation_created",
        line: r#"{"type":"conversation_created","event_id":"e1","conversation_id":"c1","kind":"group","creator_id":"u1","member_ids":["u1","u2","u3"],"title":"team","at_ms":1764000000000}"#,
    },
    Sample {
        name: "conversation_created_direct",
        line: r#"{"type":"conversation_created","event_id":"e0","conversation_id":"d1","kind":"direct","creator_id":"u1","member_ids":["u1","u2"],"at_ms":1764000000000}"#,
    },
    Sample {
        name: "members_added",
        line: r#"{"type":"members_added","event_id":"e2","conversation_id":"c1","actor_id":"u1","user_ids":["u4"],"at_ms":1764000001000}"#,
    },
    Sample {
        name: "members_removed",
        line: r#"{"type":"members_removed","event_id":"e3","conversation_id":"c1","actor_id":"u1","user_ids":["u2"],"at_ms":1764000002000}"#,
    },
    Sample {
        name: "message_sent",
        line: r#"{"type":"message_sent","event_id":"e4","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"hello \"world\" ☕","at_ms":1764000003000}"#,
    },
    Sample {
        name: "message_sent_ciphertext",
        line: r#"{"type":"message_sent","event_id":"e4c","conversation_id":"c1","message_id":"m2","sender_id":"u1","ciphertext":"AAECA/7/","at_ms":1764000003100}"#,
    },
    Sample {
        name: "message_sent_media",
        line: r#"{"type":"message_sent","event_id":"e4m","conversation_id":"c1","message_id":"m3","sender_id":"u3","media":{"url":"https://media.example/m3.jpg","mime_type":"image/jpeg","size_bytes":48213,"sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},"at_ms":1764000003200}"#,
    },
    Sample {
        name: "message_edited",
        line: r#"{"type":"message_edited","event_id":"e5","conversation_id":"c1","message_id":"m1","editor_id":"u1","text":"hello!","at_ms":1764000004000}"#,
    },
    Sample {
        name: "message_deleted",
        line: r#"{"type":"message_deleted","event_id":"e6","conversation_id":"c1","message_id":"m1","actor_id":"u1","at_ms":1764000005000}"#,
    },
    Sample {
        name: "receipt",
        line: r#"{"type":"receipt","event_id":"e7","conversation_id":"c1","message_id":"m1","user_id":"u2","status":"delivered","at_ms":1764000006000}"#,
    },
    Sample {
        name: "receipt_read",
        line: r#"{"type":"receipt","event_id":"e7r","conversation_id":"c1","message_id":"m1","user_id":"u2","status":"read","at_ms":1764000006500}"#,
    },
    Sample {
        name: "presence",
        line: r#"{"type":"presence","event_id":"e8","user_id":"u2","status":"online","at_ms":1764000007000}"#,
    },
    Sample {
        name: "push_job",
        line: r#"{"type":"push_job","event_id":"e9","job_id":"push:c1:m1:u2","user_id":"u2","conversation_id":"c1","message_id":"m1","sender_id":"u1","preview":"hello","collapse_key":"c1","at_ms":1764000008000}"#,
    },
    Sample {
        name: "dead_letter",
        line: r#"{"type":"dead_letter","event_id":"e10","source_topic":"courier.conversations.v1","source_partition":3,"source_offset":1042,"source_key":"c1","reason":"sender u9 is not a member of c1","payload":"CgJlNBCA","at_ms":1764000009000}"#,
    },
];
