//! Records as the processors read them from the log: the protobuf value and the
//! header block. Anything decodes or is refused, never a panic; what decodes
//! encodes back to a value that decodes to the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = courier_schemas::decode(data) {
        let again = courier_schemas::decode(&courier_schemas::encode(&event))
            .expect("an encoded event decodes");
        assert_eq!(again, event, "the record round-trips");
    }
    if let Ok(headers) =
        courier_pipeline::RecordHeaders::from_block(bytes::Bytes::copy_from_slice(data))
    {
        // Every name it accepted is looked up as it lists it.
        for (name, value) in headers.iter() {
            assert!(headers.first(name).is_some(), "{name:?} -> {value:?}");
        }
    }
});
