//! JSON Schema topics end to end: Confluent-framed values, each checked by an independent
//! validator (Python's jsonschema package), are produced to the real broker; their schemas, and
//! the schema they reference, are served by a schema registry stand-in as a registry answers
//! (`schemaType: JSON`, `references`); the table is read back by pyiceberg and DuckDB, every
//! field compared.

mod common;

use std::collections::BTreeMap;

use common::registry::{Registry, assert_dead_letters, python_frames, registry_config, with_id};
use common::*;
use serde_json::{Value, json};

fn site() -> Value {
    json!({"type": "object", "properties": {"name": {"type": "string"}, "zone": {"type": "integer"}}})
}

fn v1() -> Value {
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "required": ["device"],
        "properties": {
            "device": {"type": "string"},
            "at": {"type": "string", "format": "date-time"},
            "temp": {"type": "number", "minimum": -60},
            "count": {"type": "integer"},
            "small": {"type": "integer", "connect.type": "int32"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "attrs": {"type": "object", "additionalProperties": {"type": "integer"}},
            "level": {"enum": ["LOW", "HIGH"]},
            "site": {"$ref": "site.json"},
            "maybe": {"oneOf": [{"type": "null"}, {"type": "number"}]}
        }
    })
}

/// v1 with one more property.
fn v2() -> Value {
    let mut s = v1();
    s["properties"]["firmware"] = json!({"type": "string"});
    s
}

fn registry_answers() -> BTreeMap<String, Value> {
    let site_ref = json!([{"name": "site.json", "subject": "site", "version": 1}]);
    let json_schema =
        |s: &Value, refs: &Value| json!({"schemaType": "JSON", "schema": s.to_string(), "references": refs});
    BTreeMap::from([
        ("/schemas/ids/1".into(), json_schema(&v1(), &site_ref)),
        ("/schemas/ids/2".into(), json_schema(&v2(), &site_ref)),
        (
            "/schemas/ids/3".into(),
            json_schema(
                &json!({"type": "object", "properties": {"a": {"$ref": "gone.json"}}}),
                &json!([{"name": "gone.json", "subject": "gone", "version": 1}]),
            ),
        ),
        ("/schemas/ids/4".into(), json!({"schemaType": "PROTOBUF", "schema": "syntax = \"proto3\";\nmessage M {}\n"})),
        (
            "/subjects/site/versions/1".into(),
            json!({"subject": "site", "version": 1, "id": 10, "schemaType": "JSON", "schema": site().to_string()}),
        ),
    ])
}

/// Confluent frames of `messages` (schema id, value, whether the value matches its schema), made
/// by tests/check/json_schema_encode.py, which checks each value's validity first.
fn encode(dir: &std::path::Path, messages: &[(u32, Value, bool)]) -> Vec<Vec<u8>> {
    let refs = json!({"site.json": site()});
    let spec = json!({
        "schemas": {"1": {"schema": v1(), "references": refs}, "2": {"schema": v2(), "references": refs}},
        "messages": messages.iter().map(|(id, v, ok)| json!({"schema_id": id, "value": v, "valid": ok})).collect::<Vec<_>>(),
    });
    python_frames(dir, "json_schema_encode.py", &spec)
}

const COLUMNS: [&str; 12] =
    ["device", "at", "temp", "count", "small", "tags", "attrs", "level", "site", "maybe", "firmware", "_kafka_offset"];

#[test]
fn json_schema_values_land_typed_and_values_that_do_not_match_become_dead_letters() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let registry = Registry::serving("frazil", "s3cret", registry_answers());
    let messages = [
        (
            1,
            json!({"device": "gw-1", "at": "2024-05-06T07:08:09.123456Z", "temp": 21.5, "count": 1_i64 << 40,
                   "small": 7, "tags": ["a", "b"], "attrs": {"rssi": -70, "snr": 9}, "level": "HIGH",
                   "site": {"name": "north", "zone": 3}, "maybe": 0.25}),
            true,
        ),
        // A key the schema allows but does not name is left out.
        (1, json!({"device": "gw-2", "maybe": null, "note": "not a column"}), true),
        (2, json!({"device": "gw-3", "firmware": "1.2"}), true),
        (1, json!({"temp": 20.0}), false),
        (1, json!({"device": "gw-4", "temp": -100}), false),
        (1, json!({"device": "gw-5", "site": {"zone": "three"}}), false),
    ];
    let frames = encode(servers.dir.path(), &messages);
    let rows = [
        json!({"device": "gw-1", "at": "2024-05-06T07:08:09.123456+00:00", "temp": 21.5, "count": 1_i64 << 40,
               "small": 7, "tags": ["a", "b"], "attrs": [{"key": "rssi", "value": -70}, {"key": "snr", "value": 9}],
               "level": "HIGH", "site": {"name": "north", "zone": 3}, "maybe": 0.25}),
        json!({"device": "gw-2"}),
        json!({"device": "gw-3", "firmware": "1.2"}),
    ];
    let values: Vec<(Vec<u8>, Option<&str>)> = vec![
        (frames[0].clone(), None),
        (frames[3].clone(), Some("at '': missing properties 'device'")),
        (frames[1].clone(), None),
        (frames[4].clone(), Some("at '/temp'")),
        (frames[5].clone(), Some("at '/site/zone'")),
        (with_id(&frames[0], 99), Some("schema id 99 is not in the schema registry")),
        (with_id(&frames[0], 3), Some("its reference `gone.json` (subject gone, version 1) is not in")),
        (with_id(&frames[0], 4), Some("schema id 4 is a Protobuf schema; the topic's format needs a JSON Schema")),
        (b"\0\0\0\0\x01{\"device\": ".to_vec(), Some("invalid JSON")),
        (br#"{"device": "gw-9"}"#.to_vec(), Some("magic byte 123")),
        (frames[2].clone(), None),
    ];
    block_on(create_topic(&kafka, "plant", 1));
    let offsets = block_on(produce_raw(&kafka, "plant", 0, values.iter().map(|(v, _)| Some(v.clone())).collect()));

    let config = registry_config(&servers, "plant", "json_schema", &registry.url);
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("(8 to dead-letter tables)"), "{log}");
    assert!(log.contains("writer schema id 2 adds firmware (string)"), "{log}");
    let mut asked = registry.requests();
    asked.sort();
    let ok = |p: &str| (p.to_string(), 200);
    let missing = |p: &str| (p.to_string(), 404);
    assert_eq!(
        asked,
        [
            ok("/schemas/ids/1"),
            ok("/schemas/ids/2"),
            ok("/schemas/ids/3"),
            ok("/schemas/ids/4"),
            missing("/schemas/ids/99"),
            missing("/subjects/gone/versions/1?deleted=true"),
            ok("/subjects/site/versions/1?deleted=true"),
        ]
    );

    let good: Vec<i64> = offsets.iter().zip(&values).filter(|(_, (_, why))| why.is_none()).map(|(o, _)| *o).collect();
    for reader in ["pyiceberg", "duckdb"] {
        let (mut got, _) = servers.read_columns("plant", reader, &COLUMNS);
        got.sort_by_key(|r| r["_kafka_offset"].as_i64());
        assert_eq!(got.len(), rows.len(), "{reader}: {got:?}");
        for ((got, want), offset) in got.iter().zip(&rows).zip(&good) {
            assert_eq!(got["_kafka_offset"].as_i64(), Some(*offset), "{reader}");
            for c in &COLUMNS[..COLUMNS.len() - 1] {
                assert!(
                    same_json(&want[c], &got[c]),
                    "{reader}: column {c}: got {} want {}\nrow {got}",
                    got[c],
                    want[c]
                );
            }
        }
        assert_dead_letters(&servers, "plant", reader, &offsets, &values);
    }
}
