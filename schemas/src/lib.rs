//! courier's wire format: the protobuf `Event` envelope and everything that reads or
//! writes it (canonical JSON, Avro for analysts, record headers).
//!
//! Architecture invariant: this crate knows nothing of Kafka, RocksDB or Cassandra,
//! and nothing of membership rules. It answers "is this a well-formed event?" and
//! "what does it look like in format X?"; whether an event may be applied is the
//! processors' business.

pub mod avro;
mod event;
pub mod headers;
pub mod ids;
pub mod json;
mod kind;
pub mod samples;

pub use kind::EventKind;
pub use proto::Event;

/// The prost-generated types of `proto/courier/v1/events.proto`.
pub mod proto {
    // Generated code: its doc comments come from the .proto and are not ours to lint.
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/courier.v1.rs"));

    /// The encoded `FileDescriptorSet` of events.proto, for tools that decode records
    /// dynamically and for the test that keeps the Avro schemas in step.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/courier_v1_descriptor.bin"));
}

/// Fully qualified protobuf name of the record value type, as carried in headers.
pub const SCHEMA_NAME: &str = "courier.v1.Event";
/// Bumped only for a change old readers cannot safely skip; adding fields or event
/// types is not such a change (protobuf readers ignore what they don't know).
pub const SCHEMA_VERSION: u32 = 1;

/// A record value that is not a protobuf `Event`.
#[derive(Debug, thiserror::Error)]
#[error("record value is not a valid {SCHEMA_NAME}: {0}")]
pub struct DecodeError(#[from] prost::DecodeError);

/// Encodes an event as the record value.
pub fn encode(event: &Event) -> Vec<u8> {
    prost::Message::encode_to_vec(event)
}

/// Decodes a record value. A record from a newer writer with an event type this
/// build does not know decodes fine with `body: None` (see [`Event::kind`]).
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    Ok(<Event as prost::Message>::decode(bytes)?)
}
