//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz, nightly) and for the stable test that
//! replays their corpus. Each splits the input into up to 16 record values at newlines, runs them
//! through a decoder, and panics only when an invariant breaks: every record is accounted for as
//! a row or a dead letter, and batches have the decoder's schema.

use std::collections::BTreeMap;

use iceberg::spec::Schema;

use super::{BatchDecoder, Limits, Message, UnknownKeys, evolve_schema, infer_schema, raw};

fn records(data: &[u8]) -> Vec<&[u8]> {
    data.split(|b| *b == b'\n').take(16).collect()
}

fn message(offset: usize, value: &[u8]) -> Message<'_> {
    Message {
        partition: 0,
        offset: offset as i64,
        timestamp_ms: offset as i64 - 1,
        key: Some(b"k"),
        value: Some(value),
    }
}

/// Schema inference, decoding, schema growth from the refused keys, and flushing; then again with
/// tight limits on growth (the table stays within them), and with the schema fixed, unknown keys
/// going to dead letters or to the `_extra` column (the table never grows).
pub fn json(data: &[u8]) {
    let values = records(data);
    let schema = infer_schema(values.iter().copied())
        .or_else(|_| infer_schema([br#"{"a": 1, "b": "x", "c": [1.5], "d": {"e": true}}"#.as_slice()]))
        .expect("the fallback sample is an object");
    let tight = Limits { max_columns: 12, max_new_fields: 4, max_depth: 3, max_name_length: 16 };
    json_with(&values, &schema, None, UnknownKeys::Grow);
    json_with(&values, &schema, Some(tight), UnknownKeys::Grow);
    json_with(&values, &schema, None, UnknownKeys::DeadLetter);
    // Unless the records have an `_extra` key of another type: then the table cannot keep them.
    if let Ok(with_extra) = super::unknown::with_extra_column(&schema, 0) {
        json_with(&values, &with_extra.unwrap_or_else(|| schema.clone()), None, UnknownKeys::Extra);
    }
}

fn json_with(values: &[&[u8]], schema: &Schema, limits: Option<Limits>, unknown_keys: UnknownKeys) {
    let mut decoder = BatchDecoder::new(schema).expect("an inferred schema is decodable");
    if let Some(limits) = limits {
        decoder = decoder.with_limits(limits);
    }
    let mut decoder = decoder.with_unknown_keys(unknown_keys).expect("the schema has what the choice needs");
    let mut refused = 0;
    for (i, v) in values.iter().enumerate() {
        if decoder.push(&message(i, v)).is_err() {
            refused += 1;
        }
    }
    assert!(!(unknown_keys.fixed() && decoder.has_fresh_keys()), "a fixed schema never needs to grow");
    if decoder.has_fresh_keys() {
        let samples: Vec<&[u8]> = decoder.fresh_samples().collect();
        let grown = evolve_schema(schema, samples, schema.highest_field_id(), None)
            .expect("growing from samples that parsed")
            .expect("fresh keys give new fields");
        if let Some(limits) = limits {
            let (before, after) = (super::guard::column_count(schema), super::guard::column_count(&grown));
            assert!(
                after <= limits.max_columns.max(before),
                "{after} columns, past the limit of {}",
                limits.max_columns
            );
        }
        decoder.grow(&grown).expect("a grown schema is decodable");
        assert!(!decoder.has_fresh_keys(), "the grown schema has every key");
    }
    let accepted = decoder.len();
    let flushed = decoder.flush().expect("rows that parsed either decode or are refused");
    let rows = flushed.batch.as_ref().map_or(0, |b| b.num_rows());
    if let Some(b) = &flushed.batch {
        assert_eq!(b.schema(), decoder.arrow_schema(), "a batch has the decoder's schema");
        if unknown_keys == UnknownKeys::Extra {
            let extra = b.column_by_name(super::EXTRA).expect("the column for unknown keys");
            let extra = extra.as_any().downcast_ref::<arrow_array::StringArray>().expect("a string column");
            for text in extra.iter().flatten() {
                assert!(serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v.is_object()), "{text}");
            }
        }
    }
    assert_eq!(rows + flushed.rejected.len(), accepted, "every accepted record is a row or a dead letter");
    assert_eq!(accepted + refused, values.len(), "every record is accepted or refused");
}

/// Raw (never refuses) and text (refuses exactly what is not UTF-8).
pub fn raw(data: &[u8]) {
    let values = records(data);
    let headers: BTreeMap<String, Vec<u8>> =
        [("h".to_string(), data.iter().take(8).copied().collect())].into_iter().collect();
    for text in [false, true] {
        let mut d = raw::RawDecoder::new(&raw::raw_schema(text)).expect("the fixed schema");
        let mut refused = 0;
        for (i, v) in values.iter().enumerate() {
            let r = d.push(&message(i, v), &headers);
            assert_eq!(r.is_err(), text && std::str::from_utf8(v).is_err(), "refused exactly what is not UTF-8 text");
            refused += usize::from(r.is_err());
        }
        let rows = d.flush().expect("raw rows always build").map_or(0, |b| b.num_rows());
        assert_eq!(rows + refused, values.len());
    }
}

/// Writer schema 1 of the Avro target: every type and logical type frazil maps.
pub const AVRO_W1: &str = r#"{"type":"record","name":"R","fields":[
 {"name":"i","type":"int"},{"name":"l","type":"long"},{"name":"f","type":"float"},{"name":"d","type":"double"},
 {"name":"b","type":"boolean"},{"name":"s","type":"string"},{"name":"y","type":"bytes"},
 {"name":"x","type":{"type":"fixed","name":"F4","size":4}},
 {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B","C"]}},
 {"name":"a","type":{"type":"array","items":"long"}},
 {"name":"m","type":{"type":"map","values":"string"}},
 {"name":"n","type":["null",{"type":"record","name":"N","fields":[{"name":"v","type":"double"}]}]},
 {"name":"o","type":["string","null"]},
 {"name":"day","type":{"type":"int","logicalType":"date"}},
 {"name":"t","type":{"type":"long","logicalType":"timestamp-micros"}},
 {"name":"tm","type":{"type":"int","logicalType":"time-millis"}},
 {"name":"dec","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}},
 {"name":"u","type":{"type":"string","logicalType":"uuid"}}]}"#;

/// Writer schema 2: schema 1 with `i` widened to long and a field added inside `n`.
pub const AVRO_W2: &str = r#"{"type":"record","name":"R","fields":[
 {"name":"i","type":"long"},{"name":"l","type":"long"},{"name":"f","type":"double"},{"name":"d","type":"double"},
 {"name":"b","type":"boolean"},{"name":"s","type":"string"},{"name":"y","type":"bytes"},
 {"name":"x","type":{"type":"fixed","name":"F4","size":4}},
 {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B","C"]}},
 {"name":"a","type":{"type":"array","items":"long"}},
 {"name":"m","type":{"type":"map","values":"string"}},
 {"name":"n","type":["null",{"type":"record","name":"N","fields":[{"name":"v","type":"double"},{"name":"w","type":["null","string"],"default":null}]}]},
 {"name":"o","type":["string","null"]},
 {"name":"day","type":{"type":"int","logicalType":"date"}},
 {"name":"t","type":{"type":"long","logicalType":"timestamp-micros"}},
 {"name":"tm","type":{"type":"int","logicalType":"time-millis"}},
 {"name":"dec","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}},
 {"name":"u","type":{"type":"string","logicalType":"uuid"}}]}"#;

/// Avro: input starting with `{` is a schema text (parsed and mapped, never a panic). Anything
/// else is up to 16 records, each `[schema byte][length byte][body]`: the schema byte's low bits
/// pick writer id 1, 2 or an unknown id 3, and the body is framed and decoded with the table made
/// from schema 1. Every record ends as a row or a dead letter; the batch has the decoder's schema;
/// a body the checker passes never fails in arrow-avro. Returns the rows and the refused records.
pub fn avro(data: &[u8]) -> (usize, usize) {
    use super::avro::{self as a, AvroDecoder};
    if data.first() == Some(&b'{') {
        if let Ok(schema) = std::str::from_utf8(data).map_err(|e| e.to_string()).and_then(a::parse)
            && let Ok(table) = a::table_schema(&schema)
        {
            let _ = AvroDecoder::new(&table)
                .map(|mut d| d.know(1, Ok(&std::sync::Arc::from(std::str::from_utf8(data).unwrap()))));
            let _ = a::check::check(&schema, &data[1..]);
        }
        return (0, 0);
    }
    let w1 = a::parse(AVRO_W1).expect("schema 1 parses");
    let table = a::table_schema(&w1).expect("schema 1 maps");
    let mut decoder = AvroDecoder::new(&table).expect("a table from schema 1");
    decoder.know(1, Ok(&std::sync::Arc::from(AVRO_W1)));
    decoder.know(2, Ok(&std::sync::Arc::from(AVRO_W2)));
    decoder.know(3, Err("schema id 3 is not in the schema registry"));
    if let Ok(Some(grown)) =
        a::evolve(&table, &a::parse(AVRO_W2).expect("schema 2 parses"), table.highest_field_id(), None)
    {
        decoder.grow(&grown).expect("a grown schema is decodable");
    }
    let mut rest = data;
    let (mut n, mut refused) = (0, 0);
    while rest.len() >= 2 && n < 16 {
        let (id, len) = (u32::from(rest[0] % 3) + 1, usize::from(rest[1]).min(rest.len() - 2));
        let mut value = vec![0];
        value.extend(id.to_be_bytes());
        value.extend(&rest[2..2 + len]);
        rest = &rest[2 + len..];
        if decoder.push(&message(n, &value)).is_err() {
            refused += 1;
        }
        n += 1;
    }
    let accepted = decoder.len();
    let flushed = decoder.flush().expect("checked records decode or are refused");
    let rows = flushed.batch.as_ref().map_or(0, |b| b.num_rows());
    if let Some(b) = &flushed.batch {
        assert_eq!(b.schema(), decoder.arrow_schema(), "a batch has the decoder's schema");
    }
    assert!(
        flushed.rejected.is_empty(),
        "a body the checker passed failed to decode: {:?}",
        flushed.rejected.first().map(|d| &d.reason)
    );
    assert_eq!(rows + flushed.rejected.len(), accepted, "every accepted record is a row or a dead letter");
    assert_eq!(accepted + refused, n, "every record is accepted or refused");
    (rows, refused)
}

/// The Protobuf target's schema (and the unit tests'): every kind of field frazil maps, an
/// import, a nested message that contains itself, and a second top-level message.
pub const PROTO_READING: &str = r#"
syntax = "proto3";
package plant.v1;

import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";
import "google/protobuf/struct.proto";
import "google/protobuf/any.proto";
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
  google.protobuf.Any payload = 13;
  oneof source {
    string gateway = 14;
    int32 line = 15;
  }
  Inner inner = 16;
  bytes raw = 17;
  fixed32 code = 18;

  message Inner {
    repeated Inner children = 1;
    string label = 2;
  }
}

enum Status {
  STATUS_UNKNOWN = 0;
  STATUS_OK = 1;
}

message Other {
  bool flag = 1;
}
"#;

/// The file `PROTO_READING` imports as `plant/v1/site.proto`.
pub const PROTO_SITE: &str = r#"
syntax = "proto3";
package plant.v1;

message Site {
  string name = 1;
  repeated double position = 2;
}
"#;

/// Protobuf: input starting with `syntax` is a `.proto` text (compiled with `PROTO_SITE` to
/// import, every message mapped; never a panic). Anything else is up to 16 records, each
/// `[kind byte][length byte][bytes]`: the kind's low bits frame the bytes as a body of
/// `plant.v1.Reading`, `Reading.Inner` or `Other` (schema id 1), or take them as the whole frame
/// after the magic byte (schema id, indexes, body). The table is made from `Reading` and grown by
/// the other two. Every record ends as a row or a dead letter, with a reason; the batch has the
/// decoder's schema. (A body that parses can still be a dead letter: a `Struct` holding NaN has
/// no JSON text.) Returns the rows and the refused records.
pub fn protobuf(data: &[u8]) -> (usize, usize) {
    use super::protobuf::{ProtobufDecoder, evolve, schema, table_schema};
    let imports: BTreeMap<String, String> = [("plant/v1/site.proto".to_string(), PROTO_SITE.to_string())].into();
    if data.starts_with(b"syntax") {
        if let Ok(file) =
            std::str::from_utf8(data).map_err(|e| e.to_string()).and_then(|t| schema::compile(t, &imports))
        {
            for (i, m) in file.messages().enumerate().take(8) {
                if let Ok(table) = table_schema(&m) {
                    let mut d = ProtobufDecoder::new(&table).expect("a table from a message type");
                    d.know(1, Ok((std::str::from_utf8(data).unwrap(), &imports)));
                    d.follow(1, &[i as i32], None);
                }
            }
        }
        return (0, 0);
    }
    let file = schema::compile(PROTO_READING, &imports).expect("the target's schema compiles");
    let kinds = [vec![0], vec![0, 0], vec![1]];
    let mut table = table_schema(&schema::message_at(&file, &kinds[0]).expect("Reading")).expect("Reading maps");
    for k in &kinds[1..] {
        let m = schema::message_at(&file, k).expect("the target's message types");
        if let Some(grown) = evolve(&table, &m, table.highest_field_id(), None).expect("no conflicting fields") {
            table = grown;
        }
    }
    let mut decoder = ProtobufDecoder::new(&table).expect("a table from Reading");
    decoder.know(1, Ok((PROTO_READING, &imports)));
    decoder.know(2, Err("schema id 2 is not in the schema registry"));
    for k in &kinds {
        decoder.follow(1, k, None);
    }
    decoder.follow(2, &[0], None);
    let mut rest = data;
    let (mut n, mut refused) = (0, 0);
    while rest.len() >= 2 && n < 16 {
        let (kind, len) = (usize::from(rest[0] % 4), usize::from(rest[1]).min(rest.len() - 2));
        let bytes = &rest[2..2 + len];
        rest = &rest[2 + len..];
        let mut value = vec![0];
        if let Some(indexes) = kinds.get(kind) {
            value.extend(1u32.to_be_bytes());
            value.push(2 * indexes.len() as u8); // the count, zigzag
            value.extend(indexes.iter().map(|i| 2 * *i as u8));
        }
        value.extend(bytes);
        if decoder.push(&message(n, &value)).is_err() {
            refused += 1;
        }
        n += 1;
    }
    let accepted = decoder.len();
    let flushed = decoder.flush().expect("parsed records become rows or are refused");
    let rows = flushed.batch.as_ref().map_or(0, |b| b.num_rows());
    if let Some(b) = &flushed.batch {
        assert_eq!(b.schema(), decoder.arrow_schema(), "a batch has the decoder's schema");
    }
    assert!(flushed.rejected.iter().all(|d| !d.reason.is_empty()), "a dead letter says why");
    assert_eq!(rows + flushed.rejected.len(), accepted, "every accepted record is a row or a dead letter");
    assert_eq!(accepted + refused, n, "every record is accepted or refused");
    (rows, refused + flushed.rejected.len())
}
