//! The JSON body a push provider receives for one job.

use courier_schemas::proto::PushJob;

/// `{job_id, user_id, conversation_id, message_id, sender_id, preview,
/// collapse_key, at_ms}`, fields in that order.
pub fn json(job: &PushJob, at_ms: i64) -> Vec<u8> {
    // Built by hand to fix the field order and avoid a serde mirror of the proto.
    let s = |v: &str| escape(v);
    format!(
        r#"{{"job_id":{},"user_id":{},"conversation_id":{},"message_id":{},"sender_id":{},"preview":{},"collapse_key":{},"at_ms":{at_ms}}}"#,
        s(&job.job_id),
        s(&job.user_id),
        s(&job.conversation_id),
        s(&job.message_id),
        s(&job.sender_id),
        s(&job.preview),
        s(&job.collapse_key),
    )
    .into_bytes()
}

/// A JSON string literal.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_valid_json_with_every_field() {
        let job = PushJob {
            job_id: "j".into(),
            user_id: "u\"2".into(),
            conversation_id: "c1".into(),
            message_id: "m1".into(),
            sender_id: "u1".into(),
            preview: "line\nbreak \u{1} ✓".into(),
            collapse_key: "c1".into(),
        };
        let v: serde_json::Value = serde_json::from_slice(&json(&job, 7)).unwrap();
        assert_eq!(v["user_id"], "u\"2");
        assert_eq!(v["preview"], "line\nbreak \u{1} ✓");
        assert_eq!(v["at_ms"], 7);
        assert_eq!(v.as_object().unwrap().len(), 8);
    }
}
