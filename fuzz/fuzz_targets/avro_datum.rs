//! Avro, as analysts' files hold events: a datum of courier's envelope schema
//! decodes to an event or is refused, never a panic; an event turned back into
//! Avro reads as the same event.
#![no_main]

use std::sync::OnceLock;

use apache_avro::reader::datum::GenericDatumReader;
use libfuzzer_sys::fuzz_target;

/// Resolving the schema once, not per input.
fn datum_reader() -> &'static GenericDatumReader<'static> {
    static READER: OnceLock<GenericDatumReader<'static>> = OnceLock::new();
    READER.get_or_init(|| {
        GenericDatumReader::builder(courier_schemas::avro::schema())
            .build()
            .expect("courier's Avro schema resolves")
    })
}

fuzz_target!(|data: &[u8]| {
    let mut reader = data;
    let Ok(value) = datum_reader().read_value(&mut reader) else {
        return;
    };
    if let Ok(event) = courier_schemas::avro::from_value(&value) {
        let again = courier_schemas::avro::from_value(&courier_schemas::avro::to_value(&event))
            .expect("an event's own Avro value reads");
        assert_eq!(again, event, "the datum round-trips");
    }
});
