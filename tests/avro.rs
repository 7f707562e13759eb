//! Avro topics end to end: Confluent-framed messages made by fastavro (an encoder that shares no
//! code with frazil) are produced to the real broker, their writer schemas are served by a schema
//! registry stand-in with basic auth, and the table is read back by pyiceberg and DuckDB.

mod common;

use std::collections::BTreeMap;

use common::registry::{Registry, assert_dead_letters, python_frames, with_id};
use common::*;
use serde_json::{Value, json};

fn v1_schema() -> Value {
    json!({"type": "record", "name": "Reading", "namespace": "edge", "fields": [
        {"name": "id", "type": "int"},
        {"name": "device", "type": "string"},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
        {"name": "uid", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "state", "type": {"type": "enum", "name": "State", "symbols": ["OK", "WARN", "FAIL"]}},
        {"name": "tags", "type": {"type": "array", "items": "string"}}
    ]})
}

/// A compatible evolution of v1: `id` widened to long, an optional struct and a map added.
fn v2_schema() -> Value {
    let mut s = v1_schema();
    let fields = s["fields"].as_array_mut().unwrap();
    fields[0] = json!({"name": "id", "type": "long"});
    fields.push(json!({"name": "pos", "type": ["null", {"type": "record", "name": "Pos", "fields": [
        {"name": "lat", "type": "double"}, {"name": "lon", "type": "double"}]}], "default": null}));
    fields.push(json!({"name": "attrs", "type": {"type": "map", "values": "long"}, "default": {}}));
    s
}

/// v1 with a field whose name differs from `device` only in case: a table with both could not be
/// read by DuckDB, so this writer schema is refused and its records are dead letters.
fn v3_schema() -> Value {
    let mut s = v1_schema();
    s["fields"].as_array_mut().unwrap().push(json!({"name": "Device", "type": "string"}));
    s
}

fn v1(id: i64, device: &str) -> Value {
    json!({"id": id, "device": device, "at": 1_700_000_000_123i64 + id, "day": 19675, "price": "12.30",
           "uid": "0b8c5f4e-3c1a-4d7e-9a65-2f1d3e4c5b6a", "state": "WARN", "tags": ["a", "b"]})
}

fn v2(id: i64, pos: Option<(f64, f64)>, attrs: Value) -> Value {
    let mut r = v1(id, "gw-2");
    r["price"] = json!("-0.05");
    r["state"] = json!("OK");
    r["tags"] = json!([]);
    r["pos"] = pos.map_or(Value::Null, |(lat, lon)| json!({"lat": lat, "lon": lon}));
    r["attrs"] = attrs;
    r
}

/// The row read_table.py prints for a record (its conventions: ISO timestamps, decimal strings,
/// maps as key/value lists), with the record's offset.
fn row(record: &Value, offset: i64) -> Value {
    let at = chrono::DateTime::from_timestamp_millis(record["at"].as_i64().unwrap()).unwrap();
    let attrs = match record.get("attrs") {
        Some(Value::Object(m)) => Value::Array(m.iter().map(|(k, v)| json!({"key": k, "value": v})).collect()),
        _ => Value::Null,
    };
    json!({
        "id": record["id"], "device": record["device"],
        "at": at.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string(), "day": "2023-11-14",
        "price": record["price"], "uid": record["uid"], "state": record["state"], "tags": record["tags"],
        "pos": record.get("pos").cloned().unwrap_or(Value::Null), "attrs": attrs, "_kafka_offset": offset,
    })
}

/// Confluent frames of `messages` (schema id, record), encoded by tests/check/avro_encode.py.
fn encode(dir: &std::path::Path, schemas: &BTreeMap<u32, String>, messages: &[(u32, Value)]) -> Vec<Vec<u8>> {
    let spec = json!({
        "schemas": schemas.iter().map(|(id, s)| (id.to_string(), serde_json::from_str::<Value>(s).unwrap())).collect::<serde_json::Map<_, _>>(),
        "messages": messages.iter().map(|(id, r)| json!({"schema_id": id, "record": r})).collect::<Vec<_>>(),
    });
    python_frames(dir, "avro_encode.py", &spec)
}

#[test]
fn avro_with_two_schema_versions_lands_typed_and_bad_records_become_dead_letters() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let schemas: BTreeMap<u32, String> =
        [(1, v1_schema().to_string()), (2, v2_schema().to_string()), (3, v3_schema().to_string())].into();
    let registry = Registry::start("frazil", "s3cret", schemas.clone());

    let good = [
        (1, v1(1, "gw-1")),
        (1, v1(2, "gw-1")),
        (2, v2(1 << 40, Some((52.5, 13.4)), json!({"rssi": -70, "snr": 9}))),
        (2, v2(4, None, json!({}))),
        (1, v1(5, "gw-1")),
        (3, {
            let mut r = v1(6, "gw-3");
            r["Device"] = json!("shadow");
            r
        }),
    ];
    let frames = encode(servers.dir.path(), &schemas, &good);
    let mut truncated = frames[2].clone();
    truncated.truncate(truncated.len() - 4);
    let unknown_id = with_id(&frames[0], 99);
    // Above kafka.max_record_bytes (1 MiB by default), whatever its contents, and larger than
    // one fetch (2 MiB below), so the partition's fetch size has to grow to reach it. (The test
    // broker never returns more than 5 MiB in one fetch.)
    let mut huge = frames[0].clone();
    huge.resize(3 * 1024 * 1024, b'x');
    // (value, what the dead letter's reason must say); `None` in the reason column: a good record.
    let values: Vec<(Vec<u8>, Option<&str>)> = vec![
        (frames[0].clone(), None),
        (frames[1].clone(), None),
        (br#"{"id": 3}"#.to_vec(), Some("first byte is 0x7b")),
        (frames[2].clone(), None),
        (truncated, Some("truncated")),
        (unknown_id, Some("schema id 99 is not in the schema registry")),
        (huge, Some("larger than kafka.max_record_bytes")),
        (frames[3].clone(), None),
        (frames[4].clone(), None),
        (frames[5].clone(), Some("schema id 3 would break the table's rules: key `Device` differs only in case")),
    ];
    block_on(create_topic(&kafka, "readings", 1));
    let offsets = block_on(produce_raw(&kafka, "readings", 0, values.iter().map(|(v, _)| Some(v.clone())).collect()));

    let password = servers.dir.path().join("registry-password");
    write_config(&password, "wrong\n");
    let config = servers.config(&["readings"], "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[kafka]\n", "[kafka]\nformat = \"avro\"\nfetch_max_bytes = \"2MiB\"\n")
        + &format!(
            "\n[schema_registry]\nurl = \"{}\"\nusername = \"frazil\"\npassword_file = \"{}\"\n",
            registry.url,
            password.display()
        );
    write_config(&config, &text);

    // Refused credentials stop the flush at once with a config error; nothing is taken.
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 78, "{log}");
    assert!(log.contains("schema_registry.password") && log.contains("HTTP 401"), "{log}");
    assert!(registry.requests().iter().all(|(_, status)| *status == 401));
    assert_eq!(servers.rows_now("readings"), 0);

    write_config(&password, "s3cret\n");
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("(5 to dead-letter tables)"), "{log}");
    assert!(log.contains("writer schema id 2 adds pos (struct), attrs (map); widens id (long)"), "{log}");
    // Each schema id is asked for once (then cached); id 99 got the registry's 404.
    let mut asked: Vec<(String, u16)> = registry.requests().into_iter().filter(|(_, s)| *s != 401).collect();
    asked.sort();
    let ids = |id: u32, status: u16| (format!("/schemas/ids/{id}"), status);
    assert_eq!(asked, [ids(1, 200), ids(2, 200), ids(3, 200), ids(99, 404)]);

    let mut good_rows = good.iter();
    let expected: Vec<Value> = values
        .iter()
        .zip(&offsets)
        .filter(|((_, why), _)| why.is_none())
        .map(|(_, offset)| row(&good_rows.next().unwrap().1, *offset))
        .collect();
    let columns = ["id", "device", "at", "day", "price", "uid", "state", "tags", "pos", "attrs", "_kafka_offset"];
    for reader in ["pyiceberg", "duckdb"] {
        let (mut rows, _) = servers.read_columns("readings", reader, &columns);
        rows.sort_by_key(|r| r["_kafka_offset"].as_i64());
        assert_eq!(rows.len(), expected.len(), "{reader}: {rows:?}");
        for (got, want) in rows.iter().zip(&expected) {
            for c in columns {
                assert!(
                    same_json(&want[c], &got[c]),
                    "{reader}: column {c}: got {} want {}\nrow {got}",
                    got[c],
                    want[c]
                );
            }
        }
        assert_dead_letters(&servers, "readings", reader, &offsets, &values);
    }
    // `frazil status` counts them from the catalog.
    let status = status_json(&config, &[]);
    let table =
        status["tables"].as_array().unwrap().iter().find(|t| t["table"] == "readings").cloned().unwrap_or_default();
    assert_eq!(table["dead_letters"], json!({"table": "readings__dlq", "rows": 5}), "{status}");
    // id, device, at, day, price, uid, state, tags, pos {lat, lon}, attrs: never `Device`.
    assert_eq!(table["columns"], json!({"count": 12, "max": 1000, "fixed": false}), "{status}");
}

#[test]
fn a_registry_over_https_is_trusted_through_its_ca_file_only() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let schemas: BTreeMap<u32, String> = [(1, v1_schema().to_string())].into();
    let registry = Registry::start("frazil", "s3cret", schemas.clone());
    let upstream = registry.url.trim_start_matches("http://").parse().unwrap();
    let tls = common::tls::TlsProxy::start(upstream, servers.dir.path());
    let frames = encode(servers.dir.path(), &schemas, &[(1, v1(1, "gw-1")), (1, v1(2, "gw-1"))]);
    block_on(create_topic(&kafka, "secure", 1));
    block_on(produce_raw(&kafka, "secure", 0, frames.into_iter().map(Some).collect()));

    let password = servers.dir.path().join("registry-password");
    write_config(&password, "s3cret");
    let config = servers.config(&["secure"], "");
    let base = std::fs::read_to_string(&config).unwrap().replace("[kafka]\n", "[kafka]\nformat = \"avro\"\n");
    let with_ca = |ca: &std::path::Path| {
        let registry = format!(
            "\n[schema_registry]\nurl = \"{}\"\nusername = \"frazil\"\npassword_file = \"{}\"\nca_file = \"{}\"\n",
            tls.url(),
            password.display(),
            ca.display()
        );
        write_config(&config, &(base.clone() + &registry));
    };

    // A CA that did not sign the registry's certificate: a config error naming the key, at once.
    with_ca(&tls.other_ca_file);
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 78, "{log}");
    assert!(log.contains("schema_registry.ca_file") && log.contains("not trusted"), "{log}");
    assert!(registry.requests().is_empty(), "no request got through the TLS handshake: {:?}", registry.requests());
    // `frazil check` says the same on the registry's own line.
    let (code, out) = frazil_out(&["check", "--config", path_str(&config)]);
    assert_ne!(code, 0, "{out}");
    assert!(out.lines().any(|l| l.starts_with("FAIL schema registry:") && l.contains("not trusted")), "{out}");

    with_ca(&tls.ca_file);
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(registry.requests(), [("/schemas/ids/1".to_string(), 200)]);
    let (code, out) = frazil_out(&["check", "--config", path_str(&config)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("ok   schema registry: {} answers (0 subjects)", tls.url())), "{out}");
    let (rows, _) = servers.read_columns("secure", "duckdb", &["id", "device"]);
    assert_eq!(rows.len(), 2, "{rows:?}");
}
