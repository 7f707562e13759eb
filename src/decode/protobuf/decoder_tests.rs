//! The Protobuf decoder over framed values: records of followed message types become rows with
//! their meta columns, every other record is refused with a reason that names what is wrong, and
//! a message type that needs more columns is held until the table grows.

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};

use super::fixtures::{FULL, READING, SPARSE, hex, imports};
use super::{ProtobufDecoder, evolve, schema, table_schema};
use crate::decode::Message;

/// A Confluent frame: magic byte, schema id, the indexes as Confluent writes them, the body.
fn framed(id: u32, indexes: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = vec![0];
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(indexes);
    v.extend_from_slice(body);
    v
}

fn msg(offset: i64, value: Option<&[u8]>) -> Message<'_> {
    Message { partition: 3, offset, timestamp_ms: 1_700_000_000_000, key: Some(b"k"), value }
}

/// A decoder for a table made from `Reading` (schema id 1), told schema id 1 and following it.
fn reading_decoder() -> ProtobufDecoder {
    let file = schema::compile(READING, &imports()).unwrap();
    let table = table_schema(&schema::message_at(&file, &[0]).unwrap()).unwrap();
    let mut d = ProtobufDecoder::new(&table).unwrap();
    d.know(1, Ok((READING, &imports())));
    d.follow(1, &[0], None);
    d
}

#[test]
fn followed_records_become_rows_with_their_meta_columns() {
    let mut d = reading_decoder();
    let (full, sparse) = (framed(1, &[0], &hex(FULL)), framed(1, &[2, 0], &hex(SPARSE)));
    d.push(&msg(10, Some(&full))).unwrap();
    d.push(&msg(11, Some(&sparse))).unwrap();
    assert_eq!(d.len(), 2);
    let flushed = d.flush().unwrap();
    assert!(flushed.rejected.is_empty());
    let batch = flushed.batch.unwrap();
    assert_eq!(batch.schema(), d.arrow_schema());
    let device = batch.column_by_name("device").unwrap().as_string::<i32>();
    assert_eq!((device.value(0), device.value(1)), ("gw-01", "gw-02"));
    let offsets = batch.column_by_name("_kafka_offset").unwrap().as_primitive::<Int64Type>();
    assert_eq!(offsets.values().to_vec(), [10, 11]);
    let partitions = batch.column_by_name("_kafka_partition").unwrap().as_primitive::<Int32Type>();
    assert_eq!(partitions.values().to_vec(), [3, 3]);
    assert!(d.is_empty(), "a flush takes everything");
}

#[test]
fn every_bad_record_is_refused_with_what_is_wrong() {
    let mut d = reading_decoder();
    d.know(2, Err("schema id 2 is not in the schema registry"));
    d.follow(2, &[0], None);
    d.know(3, Ok(("syntax = \"proto3\";\nmessage M { string a = 1 }\n", &imports())));
    d.follow(3, &[0], None);
    d.follow(1, &[7], None);
    let mut cut = framed(1, &[0], &hex(FULL));
    cut.truncate(cut.len() - 3);
    let cases: Vec<(Option<Vec<u8>>, &str)> = vec![
        (None, "tombstone"),
        (Some(br#"{"device": "gw"}"#.to_vec()), "magic byte 123"),
        (Some(vec![0, 0, 0]), "too short"),
        (Some(framed(9, &[0], &hex(FULL))), "schema id 9, message indexes [0]: never looked up"),
        (Some(framed(1, &[2, 2], &hex(FULL))), "never looked up"),
        (Some(framed(2, &[0], &hex(FULL))), "schema id 2 is not in the schema registry"),
        (Some(framed(3, &[0], b"")), "does not compile"),
        (Some(framed(1, &[2, 14], &hex(FULL))), "no message at indexes [7]"),
        (Some(cut), "the body is not a plant.v1.Reading message"),
    ];
    for (i, (value, reason)) in cases.iter().enumerate() {
        let got = d.push(&msg(i as i64, value.as_deref())).unwrap_err().reason;
        assert!(got.contains(reason), "case {i}: {got:?} should say {reason:?}");
    }
    assert!(d.is_empty(), "nothing refused is kept");
}

#[test]
fn a_message_type_with_new_fields_waits_for_the_table_to_grow() {
    let mut d = reading_decoder();
    // `plant.v1.Other` (the file's second message) has a field the table lacks.
    d.follow(1, &[1], None);
    let other = framed(1, &[2, 2], &[0x08, 0x01]); // flag: true
    let reason = d.push(&msg(1, Some(&other))).unwrap_err().reason;
    assert!(reason.contains("message plant.v1.Other (indexes [1]) does not fit the table"), "{reason}");

    let file = schema::compile(READING, &imports()).unwrap();
    let table = table_schema(&schema::message_at(&file, &[0]).unwrap()).unwrap();
    let other_type = schema::message_at(&file, &[1]).unwrap();
    let grown = evolve(&table, &other_type, table.highest_field_id(), None).unwrap().expect("a new column");
    assert!(grown.as_struct().field_by_name("flag").is_some());
    d.grow(&grown).unwrap();

    let reading = framed(1, &[0], &hex(SPARSE));
    d.push(&msg(2, Some(&reading))).unwrap();
    d.push(&msg(3, Some(&other))).unwrap();
    let batch = d.flush().unwrap().batch.unwrap();
    let flag = batch.column_by_name("flag").unwrap().as_boolean();
    assert!(flag.is_null(0) && flag.value(1), "Reading has no flag; Other's is true");
    let device = batch.column_by_name("device").unwrap().as_string::<i32>();
    assert!(device.value(0) == "gw-02" && device.is_null(1), "Other has no device");
}

#[test]
fn a_type_refused_for_the_tables_rules_stays_refused_when_the_table_grows() {
    let mut d = reading_decoder();
    d.follow(1, &[1], Some("it would break the table's rules: too many columns".into()));
    let other = framed(1, &[2, 2], &[0x08, 0x01]);
    let file = schema::compile(READING, &imports()).unwrap();
    let table = table_schema(&schema::message_at(&file, &[0]).unwrap()).unwrap();
    let grown = evolve(&table, &schema::message_at(&file, &[1]).unwrap(), 100, None).unwrap().unwrap();
    d.grow(&grown).unwrap();
    let reason = d.push(&msg(1, Some(&other))).unwrap_err().reason;
    assert!(reason.contains("too many columns"), "{reason}");
}

#[test]
fn columns_built_before_the_table_grew_get_its_new_columns() {
    let mut d = reading_decoder();
    d.follow(1, &[1], None);
    // More than a chunk: the first rows become columns of the table as it was.
    let reading = framed(1, &[0], &hex(FULL));
    for offset in 0..1100 {
        d.push(&msg(offset, Some(&reading))).unwrap();
    }
    let file = schema::compile(READING, &imports()).unwrap();
    let table = table_schema(&schema::message_at(&file, &[0]).unwrap()).unwrap();
    let grown = evolve(&table, &schema::message_at(&file, &[1]).unwrap(), table.highest_field_id(), None).unwrap();
    d.grow(&grown.unwrap()).unwrap();
    d.push(&msg(1100, Some(&framed(1, &[2, 2], &[0x08, 0x01])))).unwrap();
    assert_eq!(d.len(), 1101);
    let flushed = d.flush().unwrap();
    assert!(flushed.rejected.is_empty());
    let batch = flushed.batch.unwrap();
    assert_eq!(batch.num_rows(), 1101);
    let flag = batch.column_by_name("flag").unwrap().as_boolean();
    assert_eq!((flag.null_count(), flag.value(1100)), (1100, true));
    let offsets = batch.column_by_name("_kafka_offset").unwrap().as_primitive::<Int64Type>();
    assert!(offsets.values().iter().copied().eq(0..1101), "rows in the order taken");
    let device = batch.column_by_name("device").unwrap().as_string::<i32>();
    assert_eq!((device.value(0), device.value(1099)), ("gw-01", "gw-01"));
}

#[test]
fn a_message_type_without_fields_fills_a_table_of_meta_columns_alone() {
    let meta_alone = crate::decode::infer_schema([b"{}".as_slice()]).unwrap();
    let mut d = ProtobufDecoder::new(&meta_alone).unwrap();
    d.know(1, Ok(("syntax = \"proto3\";\nmessage Tick {}\n", &imports())));
    d.follow(1, &[0], None);
    for offset in 0..3 {
        d.push(&msg(offset, Some(&framed(1, &[0], b"")))).unwrap();
    }
    let batch = d.flush().unwrap().batch.unwrap();
    assert_eq!(batch.num_rows(), 3);
    let offsets = batch.column_by_name("_kafka_offset").unwrap().as_primitive::<Int64Type>();
    assert_eq!(offsets.values().to_vec(), [0, 1, 2]);
}
