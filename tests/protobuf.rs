//! Protobuf topics end to end: Confluent-framed messages made by Google's protobuf package (an
//! encoder that shares no code with frazil; protoc from grpcio-tools compiles the schemas) are
//! produced to the real broker, their `.proto` schemas and the files they import are served by a
//! schema registry stand-in as a registry answers (`schemaType`, `references`), and the table is
//! read back by pyiceberg and DuckDB, every field compared.

mod common;

use std::collections::BTreeMap;

use common::registry::{Registry, assert_dead_letters, python_frames, registry_config, with_id};
use common::*;
use serde_json::{Value, json};

const SITE: &str = r#"syntax = "proto3";
package plant.v1;

message Site {
  string name = 1;
  repeated double position = 2;
}
"#;

const READING_V1: &str = r#"syntax = "proto3";
package plant.v1;

import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";
import "google/protobuf/struct.proto";
import "plant/v1/site.proto";

message Reading {
  string device = 1;
  google.protobuf.Timestamp at = 2;
  double temp_c = 3;
  uint64 counter = 4;
  sint32 delta = 5;
  optional int64 seq = 6;
  repeated string alarms = 7;
  map<string, double> gauges = 8;
  Status status = 9;
  Site site = 10;
  google.protobuf.Int64Value battery = 11;
  google.protobuf.Struct extra = 12;
  oneof source {
    string gateway = 13;
    int32 line = 14;
  }
  Inner inner = 15;
  bytes raw = 16;

  message Inner {
    repeated Inner children = 1;
    string label = 2;
  }
}

enum Status {
  STATUS_UNKNOWN = 0;
  STATUS_OK = 1;
}
"#;

/// A compatible evolution of v1: `delta` widened to 64 bits, `firmware` added, and a second
/// message type in the file.
fn reading_v2() -> String {
    READING_V1
        .replace("sint32 delta = 5;", "sint64 delta = 5;")
        .replace("bytes raw = 16;", "bytes raw = 16;\n  string firmware = 17;")
        + "\nmessage Alarm {\n  string device = 1;\n  string code = 2;\n  Level level = 3;\n\n  enum Level {\n    LOW = 0;\n    HIGH = 1;\n  }\n}\n"
}

/// The registry's answers: schema ids 1 and 2 (v1, v2) import `plant/v1/site.proto`, registered
/// under its own subject; id 3 imports a subject the registry lacks; id 4 makes `device` a number;
/// id 5 is a JSON Schema.
fn registry_answers() -> BTreeMap<String, Value> {
    let site_ref = json!([{"name": "plant/v1/site.proto", "subject": "plant-site", "version": 1}]);
    let proto = |text: &str, refs: &Value| json!({"schemaType": "PROTOBUF", "schema": text, "references": refs});
    BTreeMap::from([
        ("/schemas/ids/1".into(), proto(READING_V1, &site_ref)),
        ("/schemas/ids/2".into(), proto(&reading_v2(), &site_ref)),
        (
            "/schemas/ids/3".into(),
            proto(
                "syntax = \"proto3\";\nimport \"plant/v1/gone.proto\";\nmessage R { string device = 1; }\n",
                &json!([{"name": "plant/v1/gone.proto", "subject": "gone", "version": 1}]),
            ),
        ),
        ("/schemas/ids/4".into(), proto("syntax = \"proto3\";\nmessage Reading { int32 device = 1; }\n", &json!([]))),
        ("/schemas/ids/5".into(), json!({"schemaType": "JSON", "schema": "{\"type\": \"object\"}"})),
        (
            "/subjects/plant-site/versions/1".into(),
            json!({"subject": "plant-site", "version": 1, "id": 10, "schemaType": "PROTOBUF", "schema": SITE}),
        ),
    ])
}

/// Confluent frames of `messages` (schema id, message type, value in Protobuf's JSON mapping),
/// encoded by tests/check/protobuf_encode.py.
fn encode(dir: &std::path::Path, messages: &[(u32, &str, Value)]) -> Vec<Vec<u8>> {
    let imports = json!({"plant/v1/site.proto": SITE});
    let spec = json!({
        "schemas": {"1": {"text": READING_V1, "imports": imports}, "2": {"text": reading_v2(), "imports": imports}},
        "messages": messages.iter().map(|(id, t, v)| json!({"schema_id": id, "type": t, "value": v})).collect::<Vec<_>>(),
    });
    python_frames(dir, "protobuf_encode.py", &spec)
}

const COLUMNS: [&str; 20] = [
    "device",
    "at",
    "temp_c",
    "counter",
    "delta",
    "seq",
    "alarms",
    "gauges",
    "status",
    "site",
    "battery",
    "extra",
    "gateway",
    "line",
    "inner",
    "raw",
    "firmware",
    "code",
    "level",
    "_kafka_offset",
];

#[test]
fn protobuf_with_imports_and_two_schema_versions_lands_typed_and_bad_records_become_dead_letters() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let registry = Registry::serving("frazil", "s3cret", registry_answers());

    let messages = [
        (
            1,
            "plant.v1.Reading",
            json!({
            "device": "gw-1", "at": "2023-11-14T22:13:20.123456Z", "tempC": 21.5,
            "counter": "18446744073709551615", "delta": -3, "seq": "42", "alarms": ["A1", "B2"],
            "gauges": {"rpm": 1200, "flow": 3.5}, "status": "STATUS_OK",
            "site": {"name": "north", "position": [1.5, -2]}, "battery": "87",
            "extra": {"note": "ok", "n": 2}, "line": 7,
            "inner": {"label": "top", "children": [{"label": "kid"}]}, "raw": "AP8="}),
        ),
        (1, "plant.v1.Reading", json!({"device": "gw-2", "gateway": "g9"})),
        (2, "plant.v1.Reading", json!({"device": "gw-3", "delta": "-5000000000", "firmware": "1.2"})),
        (2, "plant.v1.Alarm", json!({"device": "gw-3", "code": "E7", "level": "HIGH"})),
    ];
    let frames = encode(servers.dir.path(), &messages);
    // What each good record reads back as (read_table.py's conventions); absent columns are null.
    let unset = json!({"temp_c": 0.0, "counter": "0", "delta": 0, "alarms": [], "gauges": [],
                       "status": "STATUS_UNKNOWN", "raw": ""});
    let with = |base: &Value, more: Value| {
        let mut v = base.clone();
        v.as_object_mut().unwrap().extend(more.as_object().unwrap().clone());
        v
    };
    let rows = [
        json!({"device": "gw-1", "at": "2023-11-14T22:13:20.123456+00:00", "temp_c": 21.5,
               "counter": "18446744073709551615", "delta": -3, "seq": 42, "alarms": ["A1", "B2"],
               "gauges": [{"key": "flow", "value": 3.5}, {"key": "rpm", "value": 1200.0}],
               "status": "STATUS_OK", "site": {"name": "north", "position": [1.5, -2.0]}, "battery": 87,
               "extra": {"note": "ok", "n": 2.0}, "line": 7,
               "inner": {"children": [{"label": "kid"}], "label": "top"}, "raw": "AP8="}),
        with(&unset, json!({"device": "gw-2", "gateway": "g9"})),
        with(&unset, json!({"device": "gw-3", "delta": -5_000_000_000i64, "firmware": "1.2"})),
        json!({"device": "gw-3", "code": "E7", "level": "HIGH"}),
    ];
    let mut cut = frames[0].clone();
    cut.truncate(cut.len() - 3);
    let mut wrong_index = frames[1].clone();
    wrong_index[5] = 0x02; // one index...
    wrong_index.insert(6, 0x0a); // ...of 5: the file has two top-level messages
    // (value, what the dead letter's reason must say); `None`: a good record.
    let values: Vec<(Vec<u8>, Option<&str>)> = vec![
        (frames[0].clone(), None),
        (br#"{"device": "gw-9"}"#.to_vec(), Some("magic byte 123")),
        (frames[1].clone(), None),
        (with_id(&frames[1], 99), Some("schema id 99 is not in the schema registry")),
        (cut, Some("the body is not a plant.v1.Reading message")),
        (wrong_index, Some("no message at indexes [5]")),
        (frames[2].clone(), None),
        (with_id(&frames[1], 3), Some("its reference `plant/v1/gone.proto` (subject gone, version 1) is not in")),
        (with_id(&frames[1], 4), Some("field `device` is int in this schema but string in the table")),
        (with_id(&frames[1], 5), Some("schema id 5 is a JSON Schema; the topic's format needs a Protobuf schema")),
        (frames[3].clone(), None),
    ];
    block_on(create_topic(&kafka, "plant", 1));
    let offsets = block_on(produce_raw(&kafka, "plant", 0, values.iter().map(|(v, _)| Some(v.clone())).collect()));

    let config = registry_config(&servers, "plant", "protobuf", &registry.url);
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("(7 to dead-letter tables)"), "{log}");
    assert!(log.contains("schema id 2, message plant.v1.Reading adds firmware (string); widens delta (long)"), "{log}");
    assert!(log.contains("schema id 2, message plant.v1.Alarm adds code (string), level (string)"), "{log}");
    // Each schema id is asked for once, and the imported file once for both ids that import it.
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
            ok("/schemas/ids/5"),
            missing("/schemas/ids/99"),
            missing("/subjects/gone/versions/1?deleted=true"),
            ok("/subjects/plant-site/versions/1?deleted=true"),
        ]
    );

    let good: Vec<i64> = offsets.iter().zip(&values).filter(|(_, (_, why))| why.is_none()).map(|(o, _)| *o).collect();
    let expected: Vec<Value> = rows.iter().zip(&good).map(|(r, o)| with(r, json!({"_kafka_offset": o}))).collect();
    for reader in ["pyiceberg", "duckdb"] {
        let (mut got, _) = servers.read_columns("plant", reader, &COLUMNS);
        got.sort_by_key(|r| r["_kafka_offset"].as_i64());
        assert_eq!(got.len(), expected.len(), "{reader}: {got:?}");
        for (got, want) in got.iter_mut().zip(&expected) {
            // JSON text columns are compared as JSON: a Struct's keys have no order.
            if let Some(text) = got["extra"].as_str() {
                got["extra"] = serde_json::from_str(text).unwrap();
            }
            if let Some(children) =
                got.get_mut("inner").and_then(|i| i.get_mut("children")).and_then(Value::as_array_mut)
            {
                for c in children {
                    *c = serde_json::from_str(c.as_str().expect("a child that recurs is JSON text")).unwrap();
                }
            }
            for c in COLUMNS {
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
