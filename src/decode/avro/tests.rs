//! The Avro decoder over hand-encoded Confluent frames (the binary encoding is small enough to
//! write out; `tests/avro.rs` uses an independent encoder, fastavro, end to end).

use std::sync::Arc;

use arrow_array::{Array, Int64Array, ListArray, MapArray, StringArray, StructArray, TimestampMicrosecondArray};
use iceberg::spec::{PrimitiveType, Schema, Type};

use super::*;
use crate::decode::Message;

fn long(v: i64) -> Vec<u8> {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

fn string(s: &str) -> Vec<u8> {
    let mut b = long(s.len() as i64);
    b.extend(s.as_bytes());
    b
}

fn frame(id: u32, parts: &[Vec<u8>]) -> Vec<u8> {
    let mut b = vec![0];
    b.extend(id.to_be_bytes());
    for p in parts {
        b.extend(p);
    }
    b
}

const V1: &str = r#"{"type":"record","name":"Reading","namespace":"edge","fields":[
    {"name":"id","type":"int"},
    {"name":"device","type":"string"},
    {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
    {"name":"tags","type":{"type":"array","items":"string"}}
]}"#;

/// V1 plus a nullable struct and a map, with `id` widened to long.
const V2: &str = r#"{"type":"record","name":"Reading","namespace":"edge","fields":[
    {"name":"id","type":"long"},
    {"name":"device","type":"string"},
    {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
    {"name":"tags","type":{"type":"array","items":"string"}},
    {"name":"pos","type":["null",{"type":"record","name":"Pos","fields":[{"name":"lat","type":"double"}]}],"default":null},
    {"name":"attrs","type":{"type":"map","values":"int"},"default":{}}
]}"#;

fn v1(id: i64, device: &str, at_ms: i64, tags: &[&str]) -> Vec<u8> {
    let mut arr = Vec::new();
    if !tags.is_empty() {
        arr.extend(long(tags.len() as i64));
        for t in tags {
            arr.extend(string(t));
        }
    }
    arr.extend(long(0));
    frame(1, &[long(id), string(device), long(at_ms), arr])
}

fn v2(id: i64, lat: Option<f64>, attrs: &[(&str, i64)]) -> Vec<u8> {
    let pos = match lat {
        None => long(0),
        Some(l) => [long(1), l.to_le_bytes().to_vec()].concat(),
    };
    let mut map = Vec::new();
    if !attrs.is_empty() {
        map.extend(long(attrs.len() as i64));
        for (k, v) in attrs {
            map.extend(string(k));
            map.extend(long(*v));
        }
    }
    map.extend(long(0));
    frame(2, &[long(id), string("gw"), long(1_700_000_000_000), long(0), pos, map])
}

fn msg(offset: i64, value: &[u8]) -> Message<'_> {
    Message { partition: 0, offset, timestamp_ms: 1_700_000_000_000, key: None, value: Some(value) }
}

fn text(s: &str) -> Arc<str> {
    Arc::from(s)
}

#[test]
fn schema_ids_come_from_the_frame() {
    assert_eq!(schema_id(&[0, 0, 0, 1, 2, 9]), Some(258));
    assert_eq!(schema_id(&[0, 0, 0, 1]), None);
    assert_eq!(schema_id(&[1, 0, 0, 0, 1]), None);
}

#[test]
fn records_of_two_schema_versions_land_in_one_grown_table() {
    let table = table_schema(&parse(V1).unwrap()).unwrap();
    let mut d = AvroDecoder::new(&table).unwrap();
    d.know(1, Ok(&text(V1)));
    d.know(9, Err("schema id 9 is not in the schema registry"));
    let r0 = v1(7, "gw-1", 1_700_000_000_123, &["a", "b"]);
    d.push(&msg(0, &r0)).unwrap();

    // v2 widens `id` and adds two fields: the table grows first, then the decoder follows.
    let grown = evolve(&table, &parse(V2).unwrap(), table.highest_field_id(), None).unwrap().expect("v2 adds fields");
    assert_eq!(grown.field_by_name("id").unwrap().field_type.as_ref(), &Type::Primitive(PrimitiveType::Long));
    assert!(grown.field_by_name("pos.lat").is_some() && grown.field_by_name("attrs").is_some());
    let old_ids: Vec<i32> = table.as_struct().fields().iter().map(|f| f.id).collect();
    assert!(
        grown.as_struct().fields().iter().take(old_ids.len()).map(|f| f.id).eq(old_ids),
        "old fields keep their ids"
    );
    assert!(
        evolve(&grown, &parse(V2).unwrap(), grown.highest_field_id(), None).unwrap().is_none(),
        "nothing new the second time"
    );
    assert!(
        evolve(&grown, &parse(V1).unwrap(), grown.highest_field_id(), None).unwrap().is_none(),
        "v1 fits the grown table"
    );
    d.grow(&grown).unwrap();
    d.know(2, Ok(&text(V2)));

    let r1 = v2(1 << 40, Some(52.5), &[("rssi", -70)]);
    let r2 = v2(9, None, &[]);
    d.push(&msg(1, &r1)).unwrap();
    d.push(&msg(2, &r2)).unwrap();
    let r3 = v1(8, "gw-2", -5, &[]);
    d.push(&msg(3, &r3)).unwrap();
    assert_eq!(d.len(), 4);

    let mut refused = |v: &[u8]| d.push(&msg(9, v)).unwrap_err().reason;
    let mut truncated = r1.clone();
    truncated.truncate(r1.len() - 3);
    let why = refused(&truncated);
    assert!(why.starts_with("schema id 2: ") && why.contains("truncated"), "{why}");
    assert!(refused(&frame(9, &[long(1)])).contains("not in the schema registry"));
    assert!(refused(b"{\"json\": 1}").contains("first byte is 0x7b"));
    assert!(refused(&[0, 0, 1]).contains("too short"));
    assert!(refused(&frame(3, &[long(1)])).contains("never looked up"));

    let flushed = d.flush().unwrap();
    assert!(flushed.rejected.is_empty());
    let b = flushed.batch.unwrap();
    assert_eq!(b.num_rows(), 4);
    assert_eq!(b.schema(), d.arrow_schema());
    let ids = b.column_by_name("id").unwrap().as_any().downcast_ref::<Int64Array>().unwrap();
    assert_eq!(ids.values(), &[7, 1 << 40, 9, 8]);
    let at = b.column_by_name("at").unwrap().as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap();
    assert_eq!(at.value(0), 1_700_000_000_123_000, "milliseconds became microseconds");
    assert_eq!(at.value(3), -5_000);
    let dev = b.column_by_name("device").unwrap().as_any().downcast_ref::<StringArray>().unwrap();
    assert_eq!((dev.value(0), dev.value(1)), ("gw-1", "gw"));
    let tags = b.column_by_name("tags").unwrap().as_any().downcast_ref::<ListArray>().unwrap();
    assert_eq!(
        tags.value(0).as_any().downcast_ref::<StringArray>().unwrap().iter().flatten().collect::<Vec<_>>(),
        ["a", "b"]
    );
    let pos = b.column_by_name("pos").unwrap().as_any().downcast_ref::<StructArray>().unwrap();
    assert!(pos.is_null(0) && pos.is_valid(1) && pos.is_null(2) && pos.is_null(3), "v1 rows have no pos");
    let attrs = b.column_by_name("attrs").unwrap().as_any().downcast_ref::<MapArray>().unwrap();
    assert!(attrs.is_null(0) && attrs.value(1).len() == 1 && attrs.value(2).is_empty());
    let offsets = b.column_by_name(crate::decode::META_OFFSET).unwrap().as_any().downcast_ref::<Int64Array>().unwrap();
    assert_eq!(offsets.values(), &[0, 1, 2, 3]);
    assert!(d.is_empty() && d.flush().unwrap().batch.is_none());
}

#[test]
fn a_writer_whose_types_conflict_is_refused_and_the_table_kept() {
    let table = table_schema(&parse(V1).unwrap()).unwrap();
    let conflicting = V1.replace(r#"{"name":"device","type":"string"}"#, r#"{"name":"device","type":"long"}"#);
    let err = evolve(&table, &parse(&conflicting).unwrap(), 99, None).unwrap_err();
    assert_eq!(err, "field `device` is long in this schema but string in the table");
    let mut d = AvroDecoder::new(&table).unwrap();
    d.know(4, Ok(&text(&conflicting)));
    let r = frame(4, &[long(1), long(2), long(3), long(0)]);
    let reason = d.push(&msg(0, &r)).unwrap_err().reason;
    assert!(reason.starts_with("schema id 4 does not fit the table: field `device`"), "{reason}");
    // An unreadable schema text is refused with the parser's reason.
    d.know(5, Ok(&text("{\"type\":\"record\"")));
    assert!(d.push(&msg(1, &frame(5, &[]))).unwrap_err().reason.contains("schema id 5 cannot be read: not JSON"));
}

#[test]
fn another_writers_top_level_fields_are_kept() {
    let table = table_schema(&parse(V1).unwrap()).unwrap();
    let with_attrs = V2.replace(r#"{"name":"pos","type":["null",{"type":"record","name":"Pos","fields":[{"name":"lat","type":"double"}]}],"default":null},"#, "");
    let grown = evolve(&table, &parse(&with_attrs).unwrap(), 40, None).unwrap().unwrap();
    assert!(grown.field_by_name("pos").is_none());
    // The catalog's schema already has `attrs` (another agent added it): its field is adopted.
    let adopted = evolve(&table, &parse(V2).unwrap(), 60, Some(&grown)).unwrap().unwrap();
    assert_eq!(adopted.field_by_name("attrs").unwrap().id, grown.field_by_name("attrs").unwrap().id);
    assert!(adopted.field_by_name("pos").unwrap().id > 60);
}

#[test]
fn meta_named_fields_are_escaped() {
    let s = r#"{"type":"record","name":"R","fields":[{"name":"_kafka_offset","type":"long"}]}"#;
    let table: Schema = table_schema(&parse(s).unwrap()).unwrap();
    assert!(table.field_by_name("__kafka_offset").is_some());
    let mut d = AvroDecoder::new(&table).unwrap();
    d.know(1, Ok(&text(s)));
    d.push(&msg(5, &frame(1, &[long(77)]))).unwrap();
    let b = d.flush().unwrap().batch.unwrap();
    let user = b.column_by_name("__kafka_offset").unwrap().as_any().downcast_ref::<Int64Array>().unwrap();
    let meta = b.column_by_name("_kafka_offset").unwrap().as_any().downcast_ref::<Int64Array>().unwrap();
    assert_eq!((user.value(0), meta.value(0)), (77, 5));
}

#[test]
fn records_decoded_before_the_table_grew_take_its_new_columns_at_the_flush() {
    let table = table_schema(&parse(V1).unwrap()).unwrap();
    let mut d = AvroDecoder::new(&table).unwrap();
    d.know(1, Ok(&text(V1)));
    // More than a chunk: the first 1,024 become columns of the v1 table before it grows.
    let n = CHUNK as i64 + 5;
    let old: Vec<Vec<u8>> = (0..n).map(|i| v1(i, "gw-1", 1_700_000_000_000 + i, &["t"])).collect();
    for (i, r) in old.iter().enumerate() {
        d.push(&msg(i as i64, r)).unwrap();
    }
    assert_eq!((d.pending.len(), d.converted.len(), d.len()), (5, 1, n as usize));
    let grown = evolve(&table, &parse(V2).unwrap(), table.highest_field_id(), None).unwrap().unwrap();
    d.grow(&grown).unwrap();
    d.know(2, Ok(&text(V2)));
    let r = v2(1 << 40, Some(1.5), &[]);
    d.push(&msg(n, &r)).unwrap();
    let flushed = d.flush().unwrap();
    assert!(flushed.rejected.is_empty());
    let b = flushed.batch.unwrap();
    assert_eq!((b.num_rows(), b.schema()), (n as usize + 1, d.arrow_schema()));
    let ids = b.column_by_name("id").unwrap().as_any().downcast_ref::<Int64Array>().unwrap();
    assert!(ids.values().iter().copied().eq((0..n).chain([1 << 40])), "int ids widened to long, in order");
    let pos = b.column_by_name("pos").unwrap().as_any().downcast_ref::<StructArray>().unwrap();
    assert_eq!(pos.null_count(), n as usize, "only the v2 row has a pos");
    let offsets = b.column_by_name(crate::decode::META_OFFSET).unwrap().as_any().downcast_ref::<Int64Array>().unwrap();
    assert!(offsets.values().iter().copied().eq(0..=n));
    assert!(d.is_empty());
}
