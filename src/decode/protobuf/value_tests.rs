//! Messages encoded by Python's protobuf package, decoded and turned into columns of the types
//! `schema.rs` gives their fields: every value is checked, and the columns make a batch of the
//! table's Arrow schema exactly.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use prost_reflect::DynamicMessage;

use super::super::fixtures::{FULL, READING, SPARSE, hex, imports};
use super::super::schema::{compile, iceberg_fields, message_at};
use super::columns;

fn batch() -> RecordBatch {
    let file = compile(READING, &imports()).unwrap();
    let desc = message_at(&file, &[0]).unwrap();
    let mut n = 0;
    let fields = iceberg_fields(
        &desc,
        &mut || {
            n += 1;
            n
        },
        &|name| name.to_string(),
    )
    .unwrap();
    let schema = iceberg::spec::Schema::builder().with_fields(fields).build().unwrap();
    let arrow = Arc::new(iceberg::arrow::schema_to_arrow_schema(&schema).unwrap());
    let messages: Vec<DynamicMessage> =
        [FULL, SPARSE].iter().map(|h| DynamicMessage::decode(desc.clone(), hex(h).as_slice()).unwrap()).collect();
    let cols = columns(&desc, messages, arrow.fields(), &|name| name.to_string()).unwrap();
    RecordBatch::try_new(arrow, cols).expect("the columns have the table's types")
}

/// Column `name`'s two rows as text.
fn rows(batch: &RecordBatch, name: &str) -> [String; 2] {
    let col = batch.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"));
    let f = ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default().with_null("null")).unwrap();
    [f.value(0).to_string(), f.value(1).to_string()]
}

#[test]
fn every_field_of_a_full_message_reads_as_python_wrote_it() {
    let b = batch();
    let full = |name: &str| rows(&b, name)[0].clone();
    assert_eq!(full("device"), "gw-01");
    assert_eq!(full("at"), "2023-11-14T22:13:20.123456Z", "to the microsecond, in UTC");
    assert_eq!(full("temp_c"), "21.5");
    assert_eq!(full("counter"), "18446744073709551615", "the largest uint64, exactly");
    assert_eq!(full("delta"), "-3");
    assert_eq!(full("seq"), "42");
    assert_eq!(full("alarms"), "[A1, B2]");
    assert_eq!(full("gauges"), "{flow: 3.5, rpm: 1200.0}", "keys in order");
    assert_eq!(full("status"), "STATUS_OK");
    assert_eq!(full("site"), "{name: north, position: [1.5, -2.0]}");
    assert_eq!(full("battery"), "87", "a wrapper is the value it wraps");
    let extra: serde_json::Value = serde_json::from_str(&full("extra")).unwrap();
    assert_eq!(extra, serde_json::json!({"note": "ok", "n": 2.0}), "a Struct is its JSON");
    assert_eq!(full("payload"), "{type_url: type.googleapis.com/plant.v1.Other, value: 0801}");
    assert_eq!((full("gateway"), full("line")), ("null".into(), "7".into()), "one oneof member set");
    assert_eq!(full("inner"), r#"{children: [{"label":"kid"}], label: top}"#, "recursion is its canonical JSON");
    assert_eq!(full("raw"), "00ff");
    assert_eq!(full("code"), "4000000000", "fixed32 past i32");
}

#[test]
fn unset_fields_are_null_where_protobuf_tracks_presence_and_defaults_where_it_does_not() {
    let b = batch();
    let sparse = |name: &str| rows(&b, name)[1].clone();
    assert_eq!(sparse("device"), "gw-02");
    for tracked in ["at", "seq", "site", "battery", "extra", "payload", "line", "inner"] {
        assert_eq!(sparse(tracked), "null", "{tracked}");
    }
    for (plain, default) in [("temp_c", "0.0"), ("counter", "0"), ("delta", "0"), ("raw", ""), ("code", "0")] {
        assert_eq!(sparse(plain), default, "{plain}: a proto3 scalar without presence");
    }
    assert_eq!((sparse("alarms"), sparse("gauges")), ("[]".into(), "{}".into()), "unset repeated fields are empty");
    assert_eq!(sparse("status"), "5", "an open enum's number without a name");
    assert_eq!(sparse("gateway"), "g9");
}
