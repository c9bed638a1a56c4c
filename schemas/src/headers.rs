//! Record headers that name the schema of a record value, so a consumer can refuse
//! a record it would misread (another producer's topic, a newer courier) instead of
//! decoding garbage or silently skipping fields that matter.

use crate::{Event, SCHEMA_NAME, SCHEMA_VERSION};

/// Header whose value is the fully qualified schema name, `courier.v1.Event`.
pub const SCHEMA: &str = "courier-schema";
/// Header whose value is the schema version as decimal ASCII, e.g. `1`.
pub const VERSION: &str = "courier-schema-version";
/// Header whose value is the event `type` (`message_sent`, ...): lets tools filter
/// by type without decoding. Informational: [`check`] does not require it.
pub const EVENT_TYPE: &str = "courier-event-type";

/// Why a record's headers say we must not decode it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("record has no `{0}` header; it was not written by a courier producer")]
    Missing(&'static str),
    #[error("record header `{0}` is not UTF-8")]
    NotUtf8(&'static str),
    #[error(
        "record schema is `{found}`, not `{SCHEMA_NAME}`; it does not belong on a courier topic"
    )]
    WrongSchema { found: String },
    #[error("record header `{VERSION}` must be a positive integer, got `{found}`")]
    BadVersion { found: String },
    #[error(
        "record is {SCHEMA_NAME} version {found}, newer than version {SCHEMA_VERSION} that this build understands; upgrade courier"
    )]
    Newer { found: u32 },
}

/// The headers every courier record carries. No event type header for an event
/// without a body (there is nothing true to say).
pub fn for_event(event: &Event) -> Vec<(String, Vec<u8>)> {
    let mut headers = vec![
        (SCHEMA.to_owned(), SCHEMA_NAME.as_bytes().to_vec()),
        (VERSION.to_owned(), SCHEMA_VERSION.to_string().into_bytes()),
    ];
    if let Some(kind) = event.kind() {
        headers.push((EVENT_TYPE.to_owned(), kind.as_str().as_bytes().to_vec()));
    }
    headers
}

/// Accepts a record whose schema is ours at this version or an older one.
/// Kafka allows repeated headers; as Kafka's `lastHeader`, the last one wins.
pub fn check(headers: &[(String, Vec<u8>)]) -> Result<(), SchemaError> {
    check_with(|name| {
        headers
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    })
}

/// [`check`] over any header representation: `last` returns the value of the last
/// header with a name. Lets readers that keep headers encoded check them without
/// building owned pairs per record.
pub fn check_with<'h>(last: impl Fn(&'static str) -> Option<&'h [u8]>) -> Result<(), SchemaError> {
    let value = |name: &'static str| -> Result<&'h str, SchemaError> {
        let raw = last(name).ok_or(SchemaError::Missing(name))?;
        std::str::from_utf8(raw).map_err(|_| SchemaError::NotUtf8(name))
    };
    let schema = value(SCHEMA)?;
    if schema != SCHEMA_NAME {
        return Err(SchemaError::WrongSchema {
            found: schema.to_owned(),
        });
    }
    let version = value(VERSION)?;
    match version.parse::<u32>() {
        Ok(v) if v > SCHEMA_VERSION => Err(SchemaError::Newer { found: v }),
        Ok(v) if v >= 1 => Ok(()),
        _ => Err(SchemaError::BadVersion {
            found: version.to_owned(),
        }),
    }
}
