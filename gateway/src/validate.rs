//! Structural checks on what clients send, before anything is published: ids,
//! text sizes, member lists. Whether an event may *apply* (membership, sender,
//! visibility) is judged by the inbox fold itself (see `conversations`).

use crate::error::ApiError;

/// Longest id (conversation, message, user), in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// Longest conversation title, in characters.
pub const MAX_TITLE_CHARS: usize = 256;

/// An id is 1..=128 bytes without `/`, so it can sit in a URL path segment, a
/// log line and a RocksDB key without surprises, and without the whitespace,
/// control, format and other invisible characters `courier_schemas::ids`
/// forbids (the rule canonical JSON, so `courier produce`, applies too), so an
/// id cannot look like another.
pub fn id(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() {
        return Err(ApiError::invalid(format!("`{field}` must not be empty")));
    }
    if value.len() > MAX_ID_BYTES {
        return Err(ApiError::invalid(format!(
            "`{field}` is {} bytes long; ids are at most {MAX_ID_BYTES} bytes",
            value.len()
        )));
    }
    if let Some(found) = courier_schemas::ids::first_forbidden(value) {
        return Err(ApiError::invalid(format!(
            "`{field}` {}",
            courier_schemas::ids::explain(&found)
        )));
    }
    if value.contains('/') {
        return Err(ApiError::invalid(format!(
            "`{field}` contains '/'; ids may not contain `/`"
        )));
    }
    Ok(())
}

/// A message text: not empty (after trimming), at most `max_bytes` of UTF-8.
pub fn text(value: &str, max_bytes: usize) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::invalid("`text` must not be empty"));
    }
    if value.len() > max_bytes {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "`text` is {} bytes; the limit is {max_bytes} bytes",
                value.len()
            ),
        ));
    }
    Ok(())
}

/// A list of user ids: each valid, no duplicates, at most `max`.
pub fn user_ids(field: &str, ids: &[String], max: usize) -> Result<(), ApiError> {
    if ids.len() > max {
        return Err(ApiError::invalid(format!(
            "`{field}` has {} entries; at most {max} are allowed",
            ids.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, u) in ids.iter().enumerate() {
        id(&format!("{field}[{i}]"), u)?;
        if !seen.insert(u.as_str()) {
            return Err(ApiError::invalid(format!(
                "`{field}` names {u} twice (at {i})"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_texts_and_lists_are_checked_with_a_message_naming_the_field() {
        assert!(super::id("conversation_id", "c-1").is_ok());
        let e = super::id("conversation_id", "a b").unwrap_err();
        assert!(e.message.contains("conversation_id"), "{}", e.message);
        assert!(super::id("x", &"a".repeat(129)).is_err());
        assert!(super::id("x", "").is_err());
        assert_eq!(super::text(&"é".repeat(9), 16).unwrap_err().status, 413);
        assert!(super::text("  ", 16).is_err());
        let e = super::user_ids("member_ids", &["a".into(), "a".into()], 10).unwrap_err();
        assert!(e.message.contains("twice"), "{}", e.message);
        assert!(super::id("x", "a/b").is_err());
    }

    /// Issue 16: `member_ids` could hold `bob\u{200B}` or `\u{202E}bob`, ids
    /// that look like another user's.
    #[test]
    fn ids_with_invisible_or_bidirectional_characters_are_refused_naming_the_field() {
        for (value, shown) in [
            ("bob\u{200B}", "U+200B"),
            ("\u{202E}bob", "U+202E"),
            ("b\u{2067}ob", "U+2067"),
            ("bob\u{FEFF}", "U+FEFF"),
            ("bo\u{AD}b", "U+00AD"),
        ] {
            let e = super::user_ids("member_ids", &["alice".into(), value.into()], 10).unwrap_err();
            assert_eq!(e.status, 422, "{value:?}");
            assert!(
                e.message
                    .starts_with(&format!("`member_ids[1]` contains {shown}")),
                "{value:?}: {}",
                e.message
            );
        }
    }
}
