//! The wire-format contract: JSON ⇄ protobuf round trips, error messages people
//! read, headers, Avro kept in step with protobuf, and golden fixtures that must
//! decode forever.

use apache_avro::Schema;
use courier_schemas::proto::{self, event::Body, message_sent::Content};
use courier_schemas::{
    Event, EventKind, SCHEMA_NAME, avro, decode, encode, headers, json, samples,
};
use prost::Message;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn parse(line: &str) -> Event {
    json::parse_line(line).unwrap_or_else(|e| panic!("{line}\n  should parse: {e}"))
}

// ---------------------------------------------------------------- JSON ⇄ protobuf

#[test]
fn every_sample_round_trips_json_protobuf_json() {
    for s in samples::ALL {
        let event = parse(s.line);
        let decoded = decode(&encode(&event)).expect("own encoding decodes");
        assert_eq!(decoded, event, "{}", s.name);
        assert_eq!(json::to_line(&decoded), s.line, "{}", s.name);
        // to_value is the same object, just not ordered.
        let reparsed: serde_json::Value = serde_json::from_str(s.line).expect("sample is JSON");
        assert_eq!(json::to_value(&decoded), reparsed, "{}", s.name);
    }
}

#[test]
fn samples_cover_every_kind_and_content_variant() {
    let events: Vec<Event> = samples::ALL.iter().map(|s| parse(s.line)).collect();
    for kind in EventKind::ALL {
        assert!(
            events.iter().any(|e| e.kind() == Some(kind)),
            "no sample of {kind}"
        );
    }
    let contents: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.body {
            Some(Body::MessageSent(m)) => match m.content {
                Some(Content::Text(_)) => Some("text"),
                Some(Content::Ciphertext(_)) => Some("ciphertext"),
                Some(Content::Media(_)) => Some("media"),
                None => None,
            },
            _ => None,
        })
        .collect();
    for variant in ["text", "ciphertext", "media"] {
        assert!(
            contents.contains(&variant),
            "no message_sent sample with {variant}"
        );
    }
}

#[test]
fn missing_event_id_and_at_ms_are_filled_in() {
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    let e = parse(r#"{"type":"presence","user_id":"u2","status":"offline"}"#);
    let id = uuid::Uuid::parse_str(&e.event_id).expect("event_id is a UUID");
    assert_eq!(id.get_version_num(), 7);
    assert!(
        e.at_ms >= before && e.at_ms < before + 60_000,
        "at_ms {}",
        e.at_ms
    );
    // Two omissions give two different ids: each is a distinct event.
    let e2 = parse(r#"{"type":"presence","user_id":"u2","status":"offline"}"#);
    assert_ne!(e.event_id, e2.event_id);
}

#[test]
fn optional_fields_are_absent_and_null_means_absent() {
    let e = parse(
        r#"{"type":"conversation_created","event_id":"e","conversation_id":"d","kind":"direct","creator_id":"a","member_ids":["a","b"],"title":null,"at_ms":5}"#,
    );
    assert_eq!(
        json::to_line(&e),
        r#"{"type":"conversation_created","event_id":"e","conversation_id":"d","kind":"direct","creator_id":"a","member_ids":["a","b"],"at_ms":5}"#
    );
}

#[test]
fn bad_input_says_what_and_where() {
    let cases: &[(&str, &str)] = &[
        (
            r#"{"type":"message_sent","event_id":"e","conversation_id":"c1","message_id":"m1","text":"hi","at_ms":1}"#,
            "message_sent is missing `sender_id`",
        ),
        (
            r#"{"type":"foo","event_id":"e"}"#,
            "unknown event type `foo` (expected one of conversation_created, members_added, members_removed, message_sent, message_edited, message_deleted, receipt, presence, push_job, dead_letter)",
        ),
        (
            r#"{"type":"receipt","conversation_id":"c1","message_id":"m1","user_id":"u2","status":"seen"}"#,
            r#"receipt: `status` must be "delivered" or "read", got "seen""#,
        ),
        (
            r#"{"type":"message_sent","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"a","ciphertext":"AA=="}"#,
            "message_sent must have exactly one of `text`, `ciphertext`, `media`",
        ),
        (
            r#"{"type":"message_sent","conversation_id":"c1","message_id":"m1","sender_id":"u1"}"#,
            "message_sent must have exactly one of `text`, `ciphertext`, `media`",
        ),
        (
            r#"{"type":"presence",,"user_id":"u2"}"#,
            "invalid JSON at column 20: key must be a string",
        ),
        (
            r#"{"type":"message_sent","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"hi","colour":"red"}"#,
            "unknown field `colour` in message_sent",
        ),
        (
            r#"{"type":"message_sent","conversation_id":"c1","message_id":"m1","sender_id":"u1","ciphertext":"not base64!"}"#,
            "message_sent: `ciphertext` is not valid base64 (Invalid symbol 32, offset 3.)",
        ),
        (
            r#"{"type":"conversation_created","conversation_id":"d","kind":"direct","creator_id":"a","member_ids":["a","b","c"]}"#,
            "conversation_created: a direct conversation has exactly two `member_ids`, got 3",
        ),
        (
            r#"{"type":"conversation_created","conversation_id":"d","kind":"unspecified","creator_id":"a","member_ids":["a"]}"#,
            r#"conversation_created: `kind` must be "direct" or "group", got "unspecified""#,
        ),
        (
            r#"{"type":"conversation_created","conversation_id":"d","kind":"group","creator_id":"a","member_ids":["a",7]}"#,
            "conversation_created: `member_ids[1]` must be a non-empty string, got 7",
        ),
        (
            r#"{"type":"members_added","conversation_id":"c","actor_id":"a","user_ids":[]}"#,
            "members_added: `user_ids` must be a non-empty array of non-empty strings, got []",
        ),
        (
            r#"{"type":"message_deleted","conversation_id":"c","message_id":"","actor_id":"a"}"#,
            r#"message_deleted: `message_id` must be a non-empty string, got """#,
        ),
        (
            r#"{"type":"presence","user_id":"u","status":"online","at_ms":"yesterday"}"#,
            r#"presence: `at_ms` must be an integer ≥ 0, got "yesterday""#,
        ),
        (
            r#"{"type":"dead_letter","source_topic":"t","source_partition":-1,"source_offset":0,"source_key":"","reason":"r","payload":""}"#,
            "dead_letter: `source_partition` must be an integer from 0 to 2147483647, got -1",
        ),
        (
            r#"{"type":"message_sent","conversation_id":"c1","message_id":"m1","sender_id":"u1","media":{"mime_type":"image/png","size_bytes":1}}"#,
            "message_sent is missing `media.url`",
        ),
        (
            r#"{"type":"message_sent","conversation_id":"c1","message_id":"m1","sender_id":"u1","media":{"url":"u","mime_type":"m","size_bytes":1,"width":3}}"#,
            "unknown field `media.width` in message_sent",
        ),
        (
            r#"{"event_id":"e"}"#,
            "missing `type` (one of conversation_created, members_added, members_removed, message_sent, message_edited, message_deleted, receipt, presence, push_job, dead_letter)",
        ),
        (
            r#"[1,2]"#,
            "expected a JSON object describing one event, got an array",
        ),
        (
            "  ",
            "empty line: expected a JSON object describing one event",
        ),
    ];
    for (line, expected) in cases {
        match json::parse_line(line) {
            Ok(e) => panic!("{line}\n  parsed as {e:?}, expected error: {expected}"),
            Err(e) => assert_eq!(e.to_string(), *expected, "input: {line}"),
        }
    }
}

#[test]
fn unknown_body_is_visible_not_silent() {
    // What a record from a newer writer with a new event type decodes to.
    let e = Event {
        event_id: "e".into(),
        at_ms: 1,
        body: None,
    };
    let line = json::to_line(&e);
    assert_eq!(line, r#"{"type":"unknown","event_id":"e","at_ms":1}"#);
    assert!(json::parse_line(&line).is_err());
}

// ---------------------------------------------------------------- headers

#[test]
fn headers_name_schema_version_and_type() {
    let e = parse(samples::ALL[4].line);
    let h = headers::for_event(&e);
    let get = |name: &str| {
        h.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(get(headers::SCHEMA).as_deref(), Some(SCHEMA_NAME));
    assert_eq!(get(headers::VERSION).as_deref(), Some("1"));
    assert_eq!(get(headers::EVENT_TYPE).as_deref(), Some("message_sent"));
    assert_eq!(headers::check(&h), Ok(()));
}

#[test]
fn headers_reject_foreign_newer_and_missing() {
    let h = |schema: &str, version: &str| {
        vec![
            (headers::SCHEMA.to_owned(), schema.as_bytes().to_vec()),
            (headers::VERSION.to_owned(), version.as_bytes().to_vec()),
        ]
    };
    let err = |hs: &[(String, Vec<u8>)]| headers::check(hs).expect_err("rejected").to_string();
    assert_eq!(
        err(&h("acme.Order", "1")),
        "record schema is `acme.Order`, not `courier.v1.Event`; it does not belong on a courier topic"
    );
    assert_eq!(
        err(&h(SCHEMA_NAME, "2")),
        "record is courier.v1.Event version 2, newer than version 1 that this build understands; upgrade courier"
    );
    assert_eq!(
        err(&h(SCHEMA_NAME, "one")),
        "record header `courier-schema-version` must be a positive integer, got `one`"
    );
    assert_eq!(
        err(&h(SCHEMA_NAME, "0")),
        "record header `courier-schema-version` must be a positive integer, got `0`"
    );
    assert_eq!(
        err(&[]),
        "record has no `courier-schema` header; it was not written by a courier producer"
    );
    // As Kafka's lastHeader: the last value of a repeated header counts.
    let mut repeated = h("acme.Order", "1");
    repeated.push((headers::SCHEMA.to_owned(), SCHEMA_NAME.as_bytes().to_vec()));
    assert_eq!(headers::check(&repeated), Ok(()));
}

// ---------------------------------------------------------------- Avro

/// Every named type of the envelope schema: records by full name with their fields
/// described, enums with their symbols.
#[derive(Default)]
struct AvroTypes {
    records: BTreeMap<String, BTreeMap<String, String>>,
    enums: BTreeMap<String, Vec<String>>,
}

fn describe(s: &Schema, types: &mut AvroTypes) -> String {
    match s {
        Schema::String => "string".into(),
        Schema::Bytes => "bytes".into(),
        Schema::Long => "long".into(),
        Schema::Int => "int".into(),
        Schema::Null => "null".into(),
        Schema::Array(a) => format!("array<{}>", describe(&a.items, types)),
        Schema::Union(u) => u
            .variants()
            .iter()
            .map(|v| describe(v, types))
            .collect::<Vec<_>>()
            .join("|"),
        Schema::Enum(e) => {
            let name = e.name.fullname(None);
            types.enums.insert(name.clone(), e.symbols.clone());
            format!("enum {name}")
        }
        Schema::Record(r) => {
            let name = r.name.fullname(None);
            let fields = r
                .fields
                .iter()
                .map(|f| (f.name.clone(), describe(&f.schema, types)))
                .collect();
            types.records.insert(name.clone(), fields);
            format!("record {name}")
        }
        other => panic!("Avro type not used by courier schemas: {other:?}"),
    }
}

/// What the Avro field for a protobuf field must look like.
fn expected_avro(f: &prost_types::FieldDescriptorProto, nullable: bool) -> String {
    use prost_types::field_descriptor_proto::{Label, Type};
    let named = f.type_name().trim_start_matches('.');
    let base = match f.r#type() {
        Type::String => "string".to_owned(),
        Type::Bytes => "bytes".to_owned(),
        Type::Int64 => "long".to_owned(),
        Type::Int32 => "int".to_owned(),
        Type::Enum => format!("enum {named}"),
        Type::Message => format!("record {named}"),
        other => panic!("protobuf type {other:?} has no Avro mapping yet in this test"),
    };
    let base = if f.label() == Label::Repeated {
        format!("array<{base}>")
    } else {
        base
    };
    if nullable {
        format!("null|{base}")
    } else {
        base
    }
}

#[test]
fn avro_mirrors_every_protobuf_message_field_and_enum() {
    let fds = prost_types::FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET)
        .expect("descriptor set decodes");
    let file = fds
        .file
        .iter()
        .find(|f| f.package() == "courier.v1")
        .expect("courier.v1 file");
    let mut types = AvroTypes::default();
    describe(avro::schema(), &mut types);

    let mut problems = Vec::new();
    for msg in &file.message_type {
        let full = format!("courier.v1.{}", msg.name());
        let Some(avro_fields) = types.records.get(&full) else {
            problems.push(format!("protobuf message {full} has no Avro record"));
            continue;
        };
        let mut accounted = Vec::new();
        for f in &msg.field {
            // A oneof (other than proto3 `optional`) becomes, in the envelope, one
            // union field named after the oneof; elsewhere, one nullable field per case.
            let real_oneof = f
                .oneof_index
                .filter(|_| !f.proto3_optional())
                .map(|i| msg.oneof_decl[i as usize].name().to_owned());
            let (avro_name, want) = match (&real_oneof, msg.name()) {
                (Some(oneof), "Event") => (oneof.clone(), expected_avro(f, false)),
                _ => (
                    f.name().to_owned(),
                    expected_avro(f, real_oneof.is_some() || f.proto3_optional()),
                ),
            };
            accounted.push(avro_name.clone());
            match avro_fields.get(&avro_name) {
                None => problems.push(format!(
                    "{full}.{} has no Avro field `{avro_name}`",
                    f.name()
                )),
                Some(got) if avro_name != f.name() => {
                    if !got.split('|').any(|branch| branch == want) {
                        problems.push(format!(
                            "{full}.{avro_name} has no union branch {want}: {got}"
                        ));
                    }
                }
                Some(got) if *got != want => problems.push(format!(
                    "{full}.{}: protobuf wants Avro `{want}`, .avsc has `{got}`",
                    f.name()
                )),
                Some(_) => {}
            }
        }
        for name in avro_fields.keys() {
            if !accounted.contains(name) {
                problems.push(format!(
                    "Avro {full} has field `{name}` that protobuf lacks"
                ));
            }
        }
    }
    for e in &file.enum_type {
        let full = format!("courier.v1.{}", e.name());
        let Some(symbols) = types.enums.get(&full) else {
            problems.push(format!("protobuf enum {full} has no Avro enum"));
            continue;
        };
        // Symbol i must be protobuf value number i, minus the type prefix.
        for v in &e.value {
            let symbol = v.name().rsplit('_').next().unwrap_or("").to_lowercase();
            if symbols.get(v.number() as usize) != Some(&symbol) {
                problems.push(format!(
                    "Avro {full} symbol {} should be `{symbol}`: {symbols:?}",
                    v.number()
                ));
            }
        }
        if symbols.len() != e.value.len() {
            problems.push(format!(
                "Avro {full} has {} symbols, protobuf {}",
                symbols.len(),
                e.value.len()
            ));
        }
    }
    // The body union's branch order is what avro::to_value relies on.
    let Schema::Record(env) = avro::schema() else {
        panic!("envelope is not a record")
    };
    let body = env
        .fields
        .iter()
        .find(|f| f.name == "body")
        .expect("body field");
    let Schema::Union(u) = &body.schema else {
        panic!("body is not a union")
    };
    for (i, kind) in EventKind::ALL.iter().enumerate() {
        match &u.variants()[i + 1] {
            Schema::Record(r) if r.name.name() == kind.record_name() => {}
            other => problems.push(format!("body branch {} should be {kind}: {other:?}", i + 1)),
        }
    }
    assert!(
        problems.is_empty(),
        "Avro drifted from protobuf:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn every_avsc_file_is_bundled() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("avro");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("schemas/avro exists")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".avsc"))
        .collect();
    on_disk.sort();
    let mut bundled: Vec<String> = avro::SOURCES.iter().map(|(n, _)| (*n).to_owned()).collect();
    bundled.sort();
    assert_eq!(on_disk, bundled);
}

#[test]
fn avro_container_file_round_trip() {
    let mut events: Vec<Event> = samples::ALL.iter().map(|s| parse(s.line)).collect();
    events.push(Event {
        event_id: "from-the-future".into(),
        at_ms: 7,
        body: None,
    });
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let mut writer =
        apache_avro::Writer::new(avro::schema(), file.reopen().expect("reopen")).expect("writer");
    for e in &events {
        writer
            .append_value(avro::to_value(e))
            .expect("value matches schema");
    }
    writer.flush().expect("flush");
    drop(writer);

    let reader = apache_avro::Reader::new(std::io::BufReader::new(file.reopen().expect("reopen")))
        .expect("container header");
    let back: Vec<Event> = reader
        .map(|v| avro::from_value(&v.expect("record reads")).expect("record is an Event"))
        .collect();
    assert_eq!(back, events);
}

#[test]
fn avro_rejects_values_of_the_wrong_shape() {
    let err = avro::from_value(&apache_avro::types::Value::Record(vec![(
        "event_id".into(),
        apache_avro::types::Value::Long(3),
    )]))
    .expect_err("no body");
    assert_eq!(
        err.to_string(),
        "avro record at `Event` has no field `body`"
    );
}

// ---------------------------------------------------------------- golden fixtures

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v1")
}

const BLESS: &str =
    "run `cargo run -p courier-schemas --example bless_fixtures` and commit the result";

#[test]
fn every_sample_has_a_committed_fixture() {
    let missing: Vec<String> = samples::ALL
        .iter()
        .flat_map(|s| [format!("{}.json", s.name), format!("{}.bin", s.name)])
        .filter(|f| !fixtures_dir().join(f).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "missing golden fixtures {missing:?}: {BLESS}"
    );
}

/// Fixtures are never regenerated: each .bin was written by some past version and
/// must decode to exactly its .json, forever.
#[test]
fn golden_fixtures_decode_forever() {
    let mut checked = 0;
    for entry in std::fs::read_dir(fixtures_dir()).expect("fixtures/v1 exists") {
        let path = entry.expect("dir entry").path();
        let other = match path.extension().and_then(|e| e.to_str()) {
            Some("bin") => path.with_extension("json"),
            Some("json") => path.with_extension("bin"),
            _ => continue,
        };
        assert!(
            other.exists(),
            "{} has no {}: {BLESS}",
            path.display(),
            other.display()
        );
        if other.extension().and_then(|e| e.to_str()) == Some("bin") {
            continue; // each pair is checked once, from its .bin
        }
        let bytes = std::fs::read(&path).expect("read .bin");
        let expected = std::fs::read_to_string(&other).expect("read .json");
        let event = decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            json::to_line(&event),
            expected.trim_end(),
            "{}",
            path.display()
        );
        assert_eq!(parse(expected.trim_end()), event, "{}", other.display());
        checked += 1;
    }
    assert!(
        checked >= samples::ALL.len(),
        "only {checked} fixtures checked"
    );
}
