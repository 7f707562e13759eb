//! BatchDecoder tests: a mixed round trip checked cell by cell, and bad rows.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use serde_json::{Value, json};

use super::*;

pub(super) fn msg<'a>(
    partition: i32,
    offset: i64,
    timestamp_ms: i64,
    key: Option<&'a [u8]>,
    value: &'a [u8],
) -> Message<'a> {
    Message { partition, offset, timestamp_ms, key, value: Some(value) }
}

pub(super) fn leak(v: &Value) -> &'static [u8] {
    Box::leak(v.to_string().into_bytes().into_boxed_slice())
}

/// Record `i` of the round trip: nested structs, lists of structs, nulls, missing fields, conflicts.
pub(super) fn record(i: usize) -> Value {
    let mut r = json!({ "id": i, "ok": i.is_multiple_of(3), "order": { "items": [] } });
    if !i.is_multiple_of(7) {
        r["name"] = if i.is_multiple_of(5) { Value::Null } else { json!(format!("n{i}")) };
    }
    r["score"] = if i.is_multiple_of(2) { json!(i as f64 + 0.5) } else { json!(i) };
    if !i.is_multiple_of(4) {
        r["tags"] = json!((0..i % 3).map(|j| format!("t{i}_{j}")).collect::<Vec<_>>());
    }
    r["geo"] = if i.is_multiple_of(6) {
        Value::Null
    } else {
        let zip = if i.is_multiple_of(10) { Value::Null } else { json!(i) };
        json!({ "lat": i as f64 / 10.0, "addr": { "city": format!("c{i}"), "zip": zip } })
    };
    let mut items: Vec<Value> = (0..i % 3).map(|j| json!({ "sku": format!("s{i}_{j}"), "dims": { "w": j } })).collect();
    if i.is_multiple_of(9) {
        items.push(Value::Null);
    }
    r["order"]["items"] = json!(items);
    r["mixed"] = match i {
        _ if i.is_multiple_of(2) => json!(format!("s{i}")),
        _ if i % 10 == 3 => json!({ "k": i }),
        _ => json!(i),
    };
    if i.is_multiple_of(10) {
        r["_kafka_offset"] = json!(format!("user{i}"));
    }
    r
}

fn key_of(i: usize) -> Option<&'static [u8]> {
    (!i.is_multiple_of(3)).then(|| &*Box::leak(format!("k{i}").into_bytes().into_boxed_slice()))
}

fn timestamp_of(i: usize) -> i64 {
    if i == 50 { -1 } else { 1_700_000_000_000 + i as i64 }
}

fn col<'b>(batch: &'b RecordBatch, name: &str) -> &'b Arc<dyn Array> {
    batch.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"))
}

#[test]
fn round_trip_cell_by_cell() {
    let values: Vec<&'static [u8]> = (0..100).map(|i| leak(&record(i))).collect();
    let schema = infer_schema(values.iter().copied()).unwrap();
    let mut decoder = BatchDecoder::new(&schema).unwrap();
    for (i, v) in values.iter().enumerate() {
        decoder.push(&msg(i as i32 % 3, 1000 + i as i64, timestamp_of(i), key_of(i), v)).unwrap();
    }
    assert_eq!(decoder.len(), 100);
    let input_bytes: usize =
        values.iter().map(|v| v.len()).sum::<usize>() + (0..100).filter_map(key_of).map(<[u8]>::len).sum::<usize>();
    assert_eq!(decoder.buffered_bytes(), input_bytes);

    let flushed = decoder.flush().unwrap();
    assert!(decoder.is_empty() && decoder.buffered_bytes() == 0);
    assert_eq!(flushed.rejected, vec![]);
    assert!(flushed.unknown_fields.is_empty());
    let b = flushed.batch.unwrap();
    assert_eq!(b.schema(), decoder.arrow_schema());
    assert_eq!(b.num_rows(), 100);
    // User columns first, meta columns last.
    let names: Vec<_> = b.schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(&names[names.len() - 4..], [META_PARTITION, META_OFFSET, META_TIMESTAMP, META_KEY]);

    let id = col(&b, "id").as_primitive::<Int64Type>();
    let ok = col(&b, "ok").as_boolean();
    let name = col(&b, "name").as_string::<i32>();
    let score = col(&b, "score").as_primitive::<Float64Type>();
    let tags = col(&b, "tags").as_list::<i32>();
    let geo = col(&b, "geo").as_struct();
    let lat = geo.column_by_name("lat").unwrap().as_primitive::<Float64Type>();
    let addr = geo.column_by_name("addr").unwrap().as_struct();
    let city = addr.column_by_name("city").unwrap().as_string::<i32>();
    let zip = addr.column_by_name("zip").unwrap().as_primitive::<Int64Type>();
    let items = col(&b, "order").as_struct().column_by_name("items").unwrap().as_list::<i32>();
    let mixed = col(&b, "mixed").as_string::<i32>();
    let user_offset = col(&b, "__kafka_offset").as_string::<i32>();
    let partition = col(&b, META_PARTITION).as_primitive::<Int32Type>();
    let offset = col(&b, META_OFFSET).as_primitive::<Int64Type>();
    let ts = col(&b, META_TIMESTAMP).as_primitive::<TimestampMicrosecondType>();
    let key = col(&b, META_KEY).as_binary::<i64>();
    assert_eq!(ts.timezone(), Some("+00:00"));

    for i in 0..100usize {
        assert_eq!(id.value(i), i as i64);
        assert_eq!(ok.value(i), i.is_multiple_of(3));
        if i.is_multiple_of(7) || i.is_multiple_of(5) {
            assert!(name.is_null(i), "row {i}");
        } else {
            assert_eq!(name.value(i), format!("n{i}"));
        }
        assert_eq!(score.value(i), if i.is_multiple_of(2) { i as f64 + 0.5 } else { i as f64 });
        if i.is_multiple_of(4) {
            assert!(tags.is_null(i));
        } else {
            let t = tags.value(i);
            let got: Vec<_> = t.as_string::<i32>().iter().map(|s| s.unwrap().to_string()).collect();
            assert_eq!(got, (0..i % 3).map(|j| format!("t{i}_{j}")).collect::<Vec<_>>());
        }
        if i.is_multiple_of(6) {
            assert!(geo.is_null(i));
        } else {
            assert_eq!(lat.value(i), i as f64 / 10.0);
            assert_eq!(city.value(i), format!("c{i}"));
            assert_eq!(zip.is_null(i), i.is_multiple_of(10));
            if !i.is_multiple_of(10) {
                assert_eq!(zip.value(i), i as i64);
            }
        }
        let list = items.value(i);
        let elems = list.as_struct();
        let n = i % 3 + usize::from(i.is_multiple_of(9));
        assert_eq!(elems.len(), n, "row {i}");
        let sku = elems.column_by_name("sku").unwrap().as_string::<i32>();
        let w =
            elems.column_by_name("dims").unwrap().as_struct().column_by_name("w").unwrap().as_primitive::<Int64Type>();
        for j in 0..i % 3 {
            assert_eq!(sku.value(j), format!("s{i}_{j}"));
            assert_eq!(w.value(j), j as i64);
        }
        if i.is_multiple_of(9) {
            assert!(elems.is_null(n - 1));
        }
        let want_mixed = match i {
            _ if i.is_multiple_of(2) => format!("s{i}"),
            _ if i % 10 == 3 => format!("{{\"k\":{i}}}"),
            _ => i.to_string(),
        };
        assert_eq!(mixed.value(i), want_mixed);
        assert_eq!(user_offset.is_null(i), !i.is_multiple_of(10));
        if i.is_multiple_of(10) {
            assert_eq!(user_offset.value(i), format!("user{i}"));
        }
        assert_eq!(partition.value(i), i as i32 % 3);
        assert_eq!(offset.value(i), 1000 + i as i64);
        if i == 50 {
            assert!(ts.is_null(i));
        } else {
            assert_eq!(ts.value(i), (1_700_000_000_000 + i as i64) * 1000);
        }
        match key_of(i) {
            None => assert!(key.is_null(i)),
            Some(k) => assert_eq!(key.value(i), k),
        }
    }
}

#[test]
fn bad_rows_are_rejected_others_kept() {
    let schema = infer_schema([br#"{"n": 1, "s": "x", "o": {"v": [1]}}"#.as_slice()]).unwrap();
    let mut d = BatchDecoder::new(&schema).unwrap();
    let deep: &'static [u8] =
        Box::leak(format!("{{\"o\": {}1{}}}", "[".repeat(300), "]".repeat(300)).into_bytes().into_boxed_slice());
    let cases: [(&[u8], bool); 15] = [
        (br#"{"n": 1, "s": "a"}"#, true),
        (br#"{"n": "abc", "s": "b"}"#, true),
        (b"[1, 2]", false),
        (b"", false), // replaced by a tombstone below
        (b"null", false),
        (b"{bad", false),
        (br#"{"n": 2, "extra": true, "_kafka_offset": 5}"#, true),
        (br#"{"o": {"v": ["x"]}}"#, true),
        (br#"{"n": 1.5}"#, true),
        (br#"{"n": 99999999999999999999}"#, true),
        (br#"{"n": "42"}"#, true),
        (br#"{"n": 3.0, "s": 7}"#, true),
        (br#"{"o": 5}"#, true),
        (deep, false),
        (b"{}", true),
    ];
    for (offset, (value, accept)) in cases.iter().enumerate() {
        let mut m = msg(0, offset as i64, 0, None, value);
        if offset == 3 {
            m.value = None;
        }
        let got = d.push(&m);
        assert_eq!(got.is_ok(), *accept, "offset {offset}: {got:?}");
        if let Err(r) = got {
            assert!(!r.reason.is_empty());
        }
    }
    assert_eq!(d.len(), 10);
    let f = d.flush().unwrap();
    let rejected: Vec<_> = f.rejected.iter().map(|d| (d.partition, d.offset)).collect();
    assert_eq!(rejected, [(0, 1), (0, 7), (0, 8), (0, 9), (0, 12)]);
    let reason = |o: i64| f.rejected.iter().find(|r| r.offset == o).unwrap().reason.clone();
    // A refused row keeps its raw value, byte for byte, for the dead-letter table.
    for r in &f.rejected {
        assert_eq!(r.value.as_deref(), Some(cases[r.offset as usize].0), "offset {}", r.offset);
    }
    assert!(reason(1).contains("column `n`") && reason(1).contains("abc"), "{}", reason(1));
    assert!(reason(7).contains("column `o`"), "{}", reason(7));
    assert!(reason(8).contains("field `n`: 1.5 is not a whole number"), "{}", reason(8));
    assert!(reason(9).contains("field `n`"), "{}", reason(9));
    assert!(reason(12).contains("column `o`"), "{}", reason(12));
    assert_eq!(f.unknown_fields.iter().collect::<Vec<_>>(), ["_kafka_offset", "extra"]);

    let b = f.batch.unwrap();
    let offsets: Vec<_> = b.column_by_name(META_OFFSET).unwrap().as_primitive::<Int64Type>().values().to_vec();
    assert_eq!(offsets, [0, 6, 10, 11, 14]);
    let n = b.column_by_name("n").unwrap().as_primitive::<Int64Type>();
    assert_eq!(n.iter().collect::<Vec<_>>(), [Some(1), Some(2), Some(42), Some(3), None]);
    let s = b.column_by_name("s").unwrap().as_string::<i32>();
    assert_eq!(s.iter().collect::<Vec<_>>(), [Some("a"), None, None, Some("7"), None]);

    // A batch in which nothing survives, then an empty one.
    d.push(&msg(2, 5, 0, None, br#"{"n": "x"}"#)).unwrap();
    d.push(&msg(1, 9, 0, None, br#"{"n": 0.5}"#)).unwrap();
    let f = d.flush().unwrap();
    assert!(f.batch.is_none());
    assert_eq!(f.rejected.iter().map(|r| (r.partition, r.offset)).collect::<Vec<_>>(), [(1, 9), (2, 5)]);
    let f = d.flush().unwrap();
    assert!(f.batch.is_none() && f.rejected.is_empty() && f.unknown_fields.is_empty());
}

/// The fuzz corpus (`fuzz/corpus/`, grown by `cargo +nightly fuzz run ...`) replayed on stable:
/// every input that ever reached new code stays a regression test.
#[test]
fn the_fuzz_corpus_decodes_without_panicking() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut n = 0;
    for (target, run) in [
        ("decode_json", super::fuzz::json as fn(&[u8])),
        ("decode_raw", super::fuzz::raw),
        ("decode_avro", |d| {
            let _ = super::fuzz::avro(d);
        }),
        ("decode_protobuf", |d| {
            let _ = super::fuzz::protobuf(d);
        }),
    ] {
        for entry in std::fs::read_dir(root.join(target)).expect("the corpus directory") {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            if let Err(panic) = std::panic::catch_unwind(|| run(&data)) {
                panic!("{} panicked: {panic:?}", path.display());
            }
            n += 1;
        }
    }
    assert!(n >= 3, "the corpus holds at least the seeds");
}

/// The Avro seeds (made with fastavro, an independent encoder) decode as they should, so the
/// fuzzer starts from bodies that reach the decoder and not only the checker.
#[test]
fn the_avro_fuzz_seeds_are_rows_and_refusals() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode_avro");
    let run = |name: &str| super::fuzz::avro(&std::fs::read(root.join(name)).unwrap());
    assert_eq!(run("seed_w1_one"), (1, 0));
    assert_eq!(run("seed_w1_w2_mixed"), (3, 0));
    // An unknown schema id and a truncated body around one good record.
    assert_eq!(run("seed_unknown_and_truncated"), (1, 2));
}

/// The Protobuf seeds (made with Google's protobuf package, `fuzz/protobuf_seeds.py`) decode as
/// they should, so the fuzzer starts from bodies that reach every part of the decoder.
#[test]
fn the_protobuf_fuzz_seeds_are_rows_and_refusals() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode_protobuf");
    let run = |name: &str| super::fuzz::protobuf(&std::fs::read(root.join(name)).unwrap());
    assert_eq!(run("seed_reading"), (2, 0));
    assert_eq!(run("seed_three_types"), (3, 0));
    // A good frame, then an unknown schema id and a truncated body.
    assert_eq!(run("seed_frames"), (1, 2));
    assert_eq!(run("seed_schema"), (0, 0));
}

#[test]
fn time_fields_read_rfc3339_and_epoch_numbers() {
    use super::{EpochUnit, TimeFields, with_time_fields};
    use arrow_array::{Array, TimestampMicrosecondArray};
    let time = TimeFields { names: vec!["ts".into()], epoch_unit: EpochUnit::Millis };
    let inferred = infer_schema([br#"{"ts": "2024-05-06T07:08:09Z", "n": 1}"#.as_slice()]).unwrap();
    let schema = with_time_fields(inferred, &time, 0).unwrap();
    let ts = schema.as_struct().field_by_name("ts").unwrap();
    assert_eq!(ts.field_type.to_string(), "timestamptz");
    assert_eq!(schema.as_struct().field_by_name("n").unwrap().field_type.to_string(), "long", "only the named field");

    let mut d = BatchDecoder::new(&schema).unwrap().with_epoch_unit(EpochUnit::Millis);
    let values: [&[u8]; 5] = [
        br#"{"ts": "2024-05-06T07:08:09.123Z"}"#,
        br#"{"ts": "2024-05-06T09:08:09.123+02:00"}"#,
        br#"{"ts": 1714979289123}"#,
        br#"{"ts": "yesterday"}"#,
        br#"{"ts": 1.5}"#,
    ];
    for (i, v) in values.iter().enumerate() {
        d.push(&msg(0, i as i64, 0, None, v)).unwrap();
    }
    let f = d.flush().unwrap();
    let rejected: Vec<i64> = f.rejected.iter().map(|r| r.offset).collect();
    assert_eq!(rejected, [3, 4], "{:?}", f.rejected);
    let batch = f.batch.unwrap();
    let col = batch.column_by_name("ts").unwrap();
    let col = col.as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap();
    let us = 1_714_979_289_123_000;
    assert_eq!((col.value(0), col.value(1), col.value(2), col.len()), (us, us, us, 3));
    // A field already in a table keeps its type.
    let kept = with_time_fields(infer_schema([br#"{"ts": "x"}"#.as_slice()]).unwrap(), &time, 100).unwrap();
    assert_eq!(kept.as_struct().field_by_name("ts").unwrap().field_type.to_string(), "string");
}

#[test]
fn batches_decoded_before_a_struct_grew_are_widened_with_nulls() {
    use super::{conform_batch, evolve_schema};
    use arrow_array::{Array, Int64Array, StructArray};
    let old = infer_schema([br#"{"a": {"b": 1}, "l": [{"x": 1}]}"#.as_slice()]).unwrap();
    let mut d = BatchDecoder::new(&old).unwrap();
    d.push(&msg(0, 0, 0, None, br#"{"a": {"b": 7}, "l": [{"x": 3}]}"#)).unwrap();
    let before = d.flush().unwrap().batch.unwrap();
    let grown =
        evolve_schema(&old, [br#"{"a": {"b": 8, "c": {"d": "x"}}, "l": [{"x": 4, "y": true}]}"#.as_slice()], 9, None)
            .unwrap()
            .unwrap();
    let target = BatchDecoder::new(&grown).unwrap().arrow_schema();
    let widened = conform_batch(&before, &target).unwrap();
    assert_eq!(widened.schema(), target);
    let a = widened.column_by_name("a").unwrap().as_any().downcast_ref::<StructArray>().unwrap().clone();
    assert_eq!(
        a.column_by_name("b").unwrap().as_any().downcast_ref::<Int64Array>().unwrap().value(0),
        7,
        "old values stay"
    );
    assert!(a.column_by_name("c").unwrap().is_null(0), "the new field is null");
}

/// A fixed schema on both paths: records with known keys alone (the fast path) and with unknown
/// ones (the general path), dead letters or `_extra` as chosen, and the schema never asks to grow.
#[test]
fn a_fixed_schema_refuses_or_keeps_unknown_keys_and_never_grows() {
    use super::unknown::with_extra_column;
    let schema = infer_schema([br#"{"num": 1, "site": {"zone": "n"}}"#.as_slice()]).unwrap();
    let records: [&[u8]; 4] = [
        br#"{"num": 1, "site": {"zone": "n"}}"#,
        br#"{"num": 2, "color": "red"}"#,
        br#"{"num": 3, "site": {"zone": "s", "rack": 7}}"#,
        br#"{"_extra": "mine"}"#,
    ];
    let mut d = BatchDecoder::new(&schema).unwrap().with_unknown_keys(UnknownKeys::DeadLetter).unwrap();
    let refused: Vec<String> = records
        .iter()
        .enumerate()
        .filter_map(|(i, r)| d.push(&msg(0, i as i64, 0, None, r)).err().map(|e| e.reason))
        .collect();
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert!(refused[0].contains("key `color` is not a column"), "{refused:?}");
    assert!(refused[1].contains("key `site.rack`"), "{refused:?}");
    assert!(!d.has_fresh_keys() && d.fast_rows() == 1);
    assert_eq!(d.flush().unwrap().batch.unwrap().num_rows(), 1);

    assert!(BatchDecoder::new(&schema).unwrap().with_unknown_keys(UnknownKeys::Extra).is_err(), "no `_extra` column");
    let with_extra = with_extra_column(&schema, 0).unwrap().unwrap();
    let mut d = BatchDecoder::new(&with_extra).unwrap().with_unknown_keys(UnknownKeys::Extra).unwrap();
    for (i, r) in records.iter().enumerate() {
        d.push(&msg(0, i as i64, 0, None, r)).unwrap();
    }
    assert!(!d.has_fresh_keys());
    assert_eq!(d.fast_rows(), 1, "a record with known keys alone still takes the fast path");
    let batch = d.flush().unwrap().batch.unwrap();
    let extra = batch.column_by_name(EXTRA).unwrap().as_string::<i32>();
    let got: Vec<Option<Value>> =
        (0..4).map(|i| extra.is_valid(i).then(|| serde_json::from_str(extra.value(i)).unwrap())).collect();
    assert_eq!(
        got,
        [None, Some(json!({"color": "red"})), Some(json!({"site": {"rack": 7}})), Some(json!({"_extra": "mine"}))]
    );
    let num = batch.column_by_name("num").unwrap().as_primitive::<Int64Type>();
    assert_eq!(num.iter().collect::<Vec<_>>(), [Some(1), Some(2), Some(3), None]);
}
