//! The JSON Schema decoder over framed values: values that match their schema become rows of
//! the table's columns, keys the schema allows but the table lacks are left out, and every other
//! record is refused with what is wrong, its framed value kept whole.

use std::collections::BTreeMap;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use serde_json::json;

use super::{JsonSchema, JsonSchemaDecoder, evolve, table_schema};
use crate::decode::{EpochUnit, Message};

fn v1() -> String {
    json!({"type": "object", "required": ["device"], "properties": {
        "device": {"type": "string"},
        "temp": {"type": "number", "minimum": -60},
        "at": {"type": "string", "format": "date-time"},
        "count": {"type": "integer"}
    }})
    .to_string()
}

fn v2() -> String {
    let mut s: serde_json::Value = serde_json::from_str(&v1()).unwrap();
    s["properties"]["firmware"] = json!({"type": "string"});
    s.to_string()
}

fn framed(id: u32, value: &str) -> Vec<u8> {
    let mut v = vec![0];
    v.extend(id.to_be_bytes());
    v.extend(value.as_bytes());
    v
}

fn msg(offset: i64, value: &[u8]) -> Message<'_> {
    Message { partition: 0, offset, timestamp_ms: 1_700_000_000_000, key: None, value: Some(value) }
}

fn decoder() -> JsonSchemaDecoder {
    let table = table_schema(&JsonSchema::parse(&v1(), &BTreeMap::new()).unwrap()).unwrap();
    let mut d = JsonSchemaDecoder::new(&table, EpochUnit::Millis).unwrap();
    d.know(1, Ok((&v1(), &BTreeMap::new())));
    d
}

#[test]
fn matching_values_become_rows_and_keys_the_table_lacks_are_left_out() {
    let mut d = decoder();
    let a = framed(1, r#"{"device": "gw-1", "temp": 21.5, "at": "2024-05-06T07:08:09Z", "count": 3}"#);
    let b = framed(1, r#"{"device": "gw-2", "note": "not in the schema"}"#);
    d.push(&msg(0, &a)).unwrap();
    d.push(&msg(1, &b)).unwrap();
    let flushed = d.flush().unwrap();
    assert!(flushed.rejected.is_empty(), "{:?}", flushed.rejected);
    let batch = flushed.batch.unwrap();
    assert_eq!(batch.num_rows(), 2);
    assert!(batch.column_by_name("note").is_none());
    let count = batch.column_by_name("count").unwrap().as_primitive::<Int64Type>();
    assert!(count.value(0) == 3 && count.is_null(1));
}

#[test]
fn every_bad_record_is_refused_with_what_is_wrong_and_kept_whole() {
    let mut d = decoder();
    d.know(2, Err("schema id 2 is not in the schema registry"));
    d.know(3, Ok(("{\"type\": \"object\", \"properties\": {\"a\": {\"$ref\": \"gone.json\"}}}", &BTreeMap::new())));
    let cases = [
        (framed(1, r#"{"temp": 1}"#), "does not match the schema"),
        (framed(1, r#"{"device": "gw", "temp": -100}"#), "does not match the schema"),
        (framed(1, r#"{"device": 7}"#), "does not match the schema"),
        (framed(1, "{not json"), "invalid JSON"),
        (br#"{"device": "gw"}"#.to_vec(), "magic byte 123"),
        (vec![0, 0, 1], "too short"),
        (framed(9, r#"{"device": "gw"}"#), "schema id 9 was never looked up"),
        (framed(2, r#"{"device": "gw"}"#), "schema id 2 is not in the schema registry"),
        (framed(3, r#"{"a": 1}"#), "does not compile"),
    ];
    for (i, (value, reason)) in cases.iter().enumerate() {
        let got = d.push(&msg(i as i64, value)).unwrap_err().reason;
        assert!(got.contains(reason), "case {i}: {got:?} should say {reason:?}");
    }
    let reason = d.push(&msg(10, &framed(1, r#"{"device": "gw", "at": "yesterday"}"#))).unwrap_err().reason;
    assert!(reason.contains("'yesterday' is not valid date-time"), "formats are checked: {reason}");
    assert!(!reason.contains("frazil.invalid"), "no made-up schema location: {reason}");
    // The schema takes 1e30 as an integer, the `long` column cannot: the record is a dead letter
    // at the flush, with its framed value.
    let too_big = framed(1, r#"{"device": "gw", "count": 1e30}"#);
    d.push(&msg(20, &too_big)).unwrap();
    let flushed = d.flush().unwrap();
    assert!(flushed.batch.is_none());
    assert_eq!(flushed.rejected.len(), 1);
    assert_eq!(flushed.rejected[0].value.as_deref(), Some(too_big.as_slice()), "the whole framed value");
}

#[test]
fn a_schema_with_new_properties_waits_for_the_table_to_grow() {
    let mut d = decoder();
    d.know(2, Ok((&v2(), &BTreeMap::new())));
    let value = framed(2, r#"{"device": "gw-3", "firmware": "1.2"}"#);
    let reason = d.push(&msg(0, &value)).unwrap_err().reason;
    assert!(reason.contains("schema id 2 does not fit the table"), "{reason}");
    let table = table_schema(&JsonSchema::parse(&v1(), &BTreeMap::new()).unwrap()).unwrap();
    let v2 = JsonSchema::parse(&v2(), &BTreeMap::new()).unwrap();
    let grown = evolve(&table, &v2, table.highest_field_id(), None).unwrap().expect("a new column");
    d.grow(&grown).unwrap();
    d.push(&msg(1, &value)).unwrap();
    let batch = d.flush().unwrap().batch.unwrap();
    assert_eq!(batch.column_by_name("firmware").unwrap().as_string::<i32>().value(0), "1.2");
}

#[test]
fn a_schema_never_makes_the_agent_read_a_file() {
    // A readable schema file on this machine: loading it would make the schema compile.
    let path = std::env::temp_dir().join(format!("frazil-schema-{}.json", std::process::id()));
    std::fs::write(&path, r#"{"type": "integer"}"#).unwrap();
    let mut d = decoder();
    let schema = json!({"type": "object", "properties": {"a": {"$ref": format!("file://{}", path.display())}}});
    d.know(5, Ok((&schema.to_string(), &BTreeMap::new())));
    let reason = d.push(&msg(0, &framed(5, r#"{"a": 1}"#))).unwrap_err().reason;
    std::fs::remove_file(&path).unwrap();
    assert!(reason.contains("does not compile: error loading file://"), "{reason}");
}

#[test]
fn references_resolve_against_the_schemas_own_id_as_confluent_resolves_them() {
    let customer = json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]});
    let order = json!({"$id": "http://example.com/schemas/order.json", "type": "object", "properties": {
        "device": {"type": "string"}, "customer": {"$ref": "customer.json"}}});
    let refs = BTreeMap::from([("customer.json".to_string(), customer.to_string())]);
    let parsed = JsonSchema::parse(&order.to_string(), &refs).unwrap();
    let mut d = JsonSchemaDecoder::new(&table_schema(&parsed).unwrap(), EpochUnit::Millis).unwrap();
    d.know(7, Ok((&order.to_string(), &refs)));
    d.push(&msg(0, &framed(7, r#"{"device": "gw", "customer": {"name": "acme"}}"#))).unwrap();
    let reason = d.push(&msg(1, &framed(7, r#"{"device": "gw", "customer": {}}"#))).unwrap_err().reason;
    assert!(reason.contains("missing properties 'name'"), "the reference is checked too: {reason}");
    let batch = d.flush().unwrap().batch.unwrap();
    let customer = batch.column_by_name("customer").unwrap().as_struct();
    assert_eq!(customer.column_by_name("name").unwrap().as_string::<i32>().value(0), "acme");
}
