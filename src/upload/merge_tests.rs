//! Merge tests: spool files written by iceberg's writer (as `spill` does), merged, read back row
//! by row, and their merged DataFile checked against iceberg's own for the same rows in one file.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, Int64Array, RecordBatch, StringArray};
use async_compat::Compat;
use iceberg::io::FileIO;
use iceberg::spec::{
    DataContentType, DataFile, DataFileBuilder, DataFileFormat, Datum, NestedField, PrimitiveType, Schema,
};
use iceberg::writer::file_writer::{FileWriter, FileWriterBuilder, ParquetWriterBuilder};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::Type as ParquetType;
use serde_json::{Value, json};

use super::*;
use crate::decode::{BatchDecoder, Message, infer_schema};

/// Writes `batches` as `spill` does (iceberg's ParquetWriter, zstd 3); `max_rows` makes row
/// groups smaller, to get inputs with several row groups.
fn write_spool(path: &Path, schema: &Arc<Schema>, batches: &[RecordBatch], max_rows: Option<usize>) -> DataFile {
    let mut props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap()));
    if max_rows.is_some() {
        props = props.set_max_row_group_row_count(max_rows);
    }
    let path = path.to_str().unwrap().to_string();
    smol::block_on(Compat::new(async {
        let out = FileIO::new_with_fs().new_output(&path).unwrap();
        let mut writer = ParquetWriterBuilder::new(props.build(), schema.clone()).build(out).await.unwrap();
        for b in batches {
            writer.write(b).await.unwrap();
        }
        let mut builders = writer.close().await.unwrap();
        assert_eq!(builders.len(), 1);
        builders.pop().unwrap().build().unwrap()
    }))
}

/// Row `i`: longs, doubles (negative too), strings (one longer than Parquet's 64-byte statistics
/// limit), a nested struct, a list with null elements, nulls and missing keys; `note` is null in
/// every row of the middle file.
fn record(i: usize) -> Value {
    let mut r = json!({ "id": i, "ok": i.is_multiple_of(3) });
    if !i.is_multiple_of(7) {
        r["name"] = if i.is_multiple_of(5) { Value::Null } else { json!(format!("n{i:03}")) };
    }
    r["score"] = if i.is_multiple_of(11) { Value::Null } else { json!(i as f64 * 1.5 - 40.25) };
    r["note"] = if (40..70).contains(&i) { Value::Null } else { json!(format!("note {i}")) };
    r["text"] = if i == 17 { json!("z".repeat(100)) } else { json!(format!("t{i}")) };
    if !i.is_multiple_of(4) {
        let mut tags: Vec<Value> = (0..i % 3).map(|j| json!(format!("g{i}_{j}"))).collect();
        if i.is_multiple_of(9) {
            tags.push(Value::Null);
        }
        r["tags"] = json!(tags);
    }
    r["geo"] = if i.is_multiple_of(6) {
        Value::Null
    } else {
        let zip = if i.is_multiple_of(10) { Value::Null } else { json!(10_000 + i) };
        json!({ "lat": i as f64 / 10.0 - 3.0, "addr": { "city": format!("c{}", i % 13), "zip": zip } })
    };
    r
}

const FILES: [std::ops::Range<usize>; 3] = [0..40, 40..70, 70..120];

struct Fixture {
    _dir: tempfile::TempDir,
    schema: Arc<Schema>,
    /// One batch per input file.
    batches: Vec<RecordBatch>,
    inputs: Vec<PathBuf>,
    parts: Vec<DataFile>,
    /// All rows in one file, written by iceberg: the reference for the metrics.
    reference: DataFile,
    reference_path: PathBuf,
    out: PathBuf,
}

fn fixture() -> Fixture {
    let values: Vec<Vec<u8>> = (0..FILES[2].end).map(|i| record(i).to_string().into_bytes()).collect();
    let schema = Arc::new(infer_schema(values.iter().map(Vec::as_slice)).unwrap());
    let mut decoder = BatchDecoder::new(&schema).unwrap();
    let keys: Vec<Vec<u8>> = (0..values.len()).map(|i| format!("k{i}").into_bytes()).collect();
    let batches: Vec<RecordBatch> = FILES
        .iter()
        .map(|range| {
            for i in range.clone() {
                let msg = Message {
                    partition: (i % 3) as i32,
                    offset: 1000 + i as i64,
                    timestamp_ms: if i.is_multiple_of(8) { -1 } else { 1_700_000_000_000 + i as i64 },
                    key: (!i.is_multiple_of(5)).then_some(keys[i].as_slice()),
                    value: Some(&values[i]),
                };
                decoder.push(&msg).unwrap();
            }
            let flushed = decoder.flush().unwrap();
            assert!(flushed.rejected.is_empty(), "{:?}", flushed.rejected);
            flushed.batch.unwrap()
        })
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let inputs: Vec<PathBuf> = (0..FILES.len()).map(|n| dir.path().join(format!("spool-{n}.parquet"))).collect();
    let parts = inputs
        .iter()
        .zip(&batches)
        .enumerate()
        // The last file gets row groups of 16 rows: inputs with several row groups are merged too.
        .map(|(n, (path, b))| write_spool(path, &schema, std::slice::from_ref(b), (n == 2).then_some(16)))
        .collect();
    let reference_path = dir.path().join("reference.parquet");
    let reference = write_spool(&reference_path, &schema, &batches, None);
    let out = dir.path().join("merged.parquet");
    Fixture { _dir: dir, schema, batches, inputs, parts, reference, reference_path, out }
}

fn footer(path: &Path) -> ParquetMetaData {
    ParquetMetaDataReader::new()
        .with_page_index_policy(PageIndexPolicy::Optional)
        .parse_and_finish(&File::open(path).unwrap())
        .unwrap()
}

/// `(name, field id)` of every node below the root of a Parquet schema.
fn field_ids(t: &ParquetType, out: &mut Vec<(String, Option<i32>)>) {
    for f in t.get_fields() {
        let info = f.get_basic_info();
        out.push((info.name().to_string(), info.has_id().then(|| info.id())));
        if f.is_group() {
            field_ids(f, out);
        }
    }
}

#[test]
fn merged_rows_schema_and_metadata() {
    let f = fixture();
    let size = merge_files(&f.inputs, &f.out).unwrap();
    assert_eq!(size, std::fs::metadata(&f.out).unwrap().len());
    let input_sizes: u64 = f.inputs.iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
    println!("merged {} files, {input_sizes} bytes, into {size} bytes", f.inputs.len());

    // Every row, in order, as written.
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&f.out).unwrap())
        .unwrap()
        .with_batch_size(7)
        .build()
        .unwrap();
    let read: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
    let want_schema = f.batches[0].schema();
    let rows = |batches: &[RecordBatch]| -> Vec<RecordBatch> {
        batches.iter().flat_map(|b| (0..b.num_rows()).map(move |r| b.slice(r, 1))).collect()
    };
    let (got, want) = (rows(&read), rows(&f.batches));
    assert_eq!(got.len(), FILES[2].end);
    assert_eq!(got.len(), want.len());
    for (n, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.schema().fields(), want_schema.fields(), "schema (types, nullability, PARQUET:field_id)");
        for (c, field) in want_schema.fields().iter().enumerate() {
            assert_eq!(g.column(c).as_ref(), w.column(c).as_ref(), "row {n}, column {}", field.name());
        }
    }

    // File schema with field ids, key-value metadata (ARROW:schema), as in the inputs and in
    // iceberg's own one-file output.
    let merged = footer(&f.out);
    let first = footer(&f.inputs[0]);
    let reference = footer(&f.reference_path);
    assert_eq!(merged.file_metadata().schema(), first.file_metadata().schema());
    assert_eq!(merged.file_metadata().schema(), reference.file_metadata().schema());
    let kv = merged.file_metadata().key_value_metadata().unwrap();
    assert_eq!(Some(kv), first.file_metadata().key_value_metadata());
    assert!(kv.iter().any(|e| e.key == "ARROW:schema"));
    assert_eq!(merged.file_metadata().created_by(), first.file_metadata().created_by());
    let mut ids = Vec::new();
    field_ids(merged.file_metadata().schema(), &mut ids);
    let mut seen = BTreeSet::new();
    for (name, id) in &ids {
        // Parquet's LIST wrapper (`list`) has no Iceberg field; every other node has its id.
        let Some(id) = id else {
            assert_eq!(name, "list", "{ids:?}");
            continue;
        };
        assert_eq!(&f.schema.field_by_id(*id).unwrap().name, name, "field id {id}");
        assert!(seen.insert(*id), "field id {id} twice");
    }
    assert_eq!(seen, (1..=f.schema.highest_field_id()).collect(), "every Iceberg field id is in the merged file");

    // Row groups: all of the inputs', copied with their page indexes moved to the new offsets.
    let input_groups: usize = f.inputs.iter().map(|p| footer(p).num_row_groups()).sum();
    assert!(input_groups > f.inputs.len());
    assert_eq!(merged.num_row_groups(), input_groups);
    assert_eq!(merged.file_metadata().num_rows(), FILES[2].end as i64);
    let offset_index = merged.offset_index().expect("the page indexes were carried over");
    assert!(merged.column_index().is_some());
    for (rg_idx, rg) in merged.row_groups().iter().enumerate() {
        for (col_idx, column) in rg.columns().iter().enumerate() {
            let pages = offset_index[rg_idx][col_idx].page_locations();
            assert_eq!(pages[0].offset, column.data_page_offset(), "row group {rg_idx}, column {col_idx}");
        }
    }
}

#[test]
fn merged_data_file_matches_icebergs_for_one_file() {
    let f = fixture();
    let size = merge_files(&f.inputs, &f.out).unwrap();
    let offsets = split_offsets(&f.out).unwrap();
    let merged = merge_data_files(&f.parts, 0, "s3://bucket/t/data/merged.parquet", size, offsets.clone()).unwrap();
    let want = &f.reference;

    assert_eq!(merged.record_count(), FILES[2].end as u64);
    assert_eq!(merged.record_count(), want.record_count());
    assert_eq!(merged.value_counts(), want.value_counts());
    assert_eq!(merged.null_value_counts(), want.null_value_counts());
    assert_eq!(merged.nan_value_counts(), want.nan_value_counts());
    assert_eq!(merged.lower_bounds(), want.lower_bounds());
    assert_eq!(merged.upper_bounds(), want.upper_bounds());

    // The cases the bounds rule is about, as iceberg reports them for one file: `note` (all null
    // in the middle file) keeps its bounds; `text` has no upper bound (the 100-byte string's
    // statistic is truncated, so inexact), but a lower one.
    let id = |name: &str| f.schema.field_by_name(name).unwrap().id;
    assert_eq!(merged.lower_bounds().get(&id("note")), Some(&Datum::string("note 0")));
    assert_eq!(merged.upper_bounds().get(&id("note")), Some(&Datum::string("note 99")));
    assert!(f.parts[1].lower_bounds().get(&id("note")).is_none());
    assert_eq!(merged.lower_bounds().get(&id("text")), Some(&Datum::string("t0")));
    assert!(!merged.upper_bounds().contains_key(&id("text")));
    assert_eq!(merged.lower_bounds().get(&id("id")), Some(&Datum::long(0)));
    assert_eq!(merged.upper_bounds().get(&id("id")), Some(&Datum::long(119)));

    // Column sizes: the parts' sums, and what the merged footer says the copied chunks take.
    let mut footer_sizes: HashMap<i32, u64> = HashMap::new();
    for rg in footer(&f.out).row_groups() {
        for c in rg.columns() {
            *footer_sizes.entry(c.column_descr().self_type().get_basic_info().id()).or_default() +=
                c.compressed_size() as u64;
        }
    }
    assert_eq!(merged.column_sizes(), &footer_sizes);

    // Split offsets: where the merged file's row groups start.
    let starts: Vec<i64> = footer(&f.out).row_groups().iter().map(|rg| rg.file_offset().unwrap()).collect();
    assert_eq!(offsets, starts);
    assert_eq!(offsets[0], 4, "after the magic bytes");
    assert_eq!(merged.split_offsets(), Some(offsets.as_slice()));

    assert_eq!(merged.file_path(), "s3://bucket/t/data/merged.parquet");
    assert_eq!(merged.file_size_in_bytes(), size);
    assert_eq!(merged.content_type(), DataContentType::Data);
    assert_eq!(merged.file_format(), DataFileFormat::Parquet);
    assert_eq!(merged.partition(), &iceberg::spec::Struct::empty());
    assert!(format!("{merged:?}").contains("partition_spec_id: 0"));
    // It is kept beside the spool file like any other.
    crate::spill::datafile::to_json(merged, &iceberg::spec::StructType::new(vec![])).unwrap();
}

/// Writes one row `(a, b)` with iceberg's writer for a schema `a: long (id a_id), b: string (id b_id)`.
fn write_ab(path: &Path, a_id: i32, b_id: i32, b_type: PrimitiveType) -> DataFile {
    let schema = Schema::builder()
        .with_fields(vec![
            NestedField::optional(a_id, "a", PrimitiveType::Long.into()).into(),
            NestedField::optional(b_id, "b", b_type.clone().into()).into(),
        ])
        .build()
        .unwrap();
    let arrow = Arc::new(iceberg::arrow::schema_to_arrow_schema(&schema).unwrap());
    let b: Arc<dyn Array> = match b_type {
        PrimitiveType::String => Arc::new(StringArray::from(vec!["x"])),
        _ => Arc::new(Int64Array::from(vec![7])),
    };
    let batch = RecordBatch::try_new(arrow, vec![Arc::new(Int64Array::from(vec![1])), b]).unwrap();
    write_spool(path, &Arc::new(schema), &[batch], None)
}

#[test]
fn mismatched_schemas_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    write_ab(&p("base"), 1, 2, PrimitiveType::String);
    write_ab(&p("same"), 1, 2, PrimitiveType::String);
    write_ab(&p("other-id"), 1, 3, PrimitiveType::String);
    write_ab(&p("other-type"), 1, 2, PrimitiveType::Long);

    assert!(merge_files(&[p("base"), p("same")], &p("ok")).is_ok());
    for other in ["other-id", "other-type"] {
        let err = merge_files(&[p("base"), p("same"), p(other)], &p("out")).unwrap_err();
        assert!(matches!(err, Error::Merge { .. }), "{err}");
        assert!(err.to_string().contains("Parquet schema differs"), "{err}");
        assert!(err.to_string().contains(other), "{err}");
        assert!(!p("out").exists(), "nothing is written when an input does not fit");
    }
}

#[test]
fn bad_inputs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    write_ab(&base, 1, 2, PrimitiveType::String);
    let before = std::fs::read(&base).unwrap();

    assert!(merge_files(&[], &dir.path().join("out")).is_err());
    // The output must not overwrite an input.
    assert!(merge_files(&[base.clone(), base.clone()], &base).is_err());
    assert_eq!(std::fs::read(&base).unwrap(), before);
    // A missing input, and one that is not Parquet.
    assert!(matches!(
        merge_files(&[base.clone(), dir.path().join("nope")], &dir.path().join("out")),
        Err(Error::Io { .. })
    ));
    std::fs::write(dir.path().join("junk"), b"not parquet at all").unwrap();
    assert!(matches!(merge_files(&[base, dir.path().join("junk")], &dir.path().join("out")), Err(Error::Merge { .. })));
}

/// A bare DataFile for the metrics rules.
fn part(
    values: &[(i32, u64)],
    nulls: &[(i32, u64)],
    nans: &[(i32, u64)],
    lower: &[(i32, Datum)],
    upper: &[(i32, Datum)],
) -> DataFile {
    let mut b = DataFileBuilder::default();
    b.content(DataContentType::Data)
        .file_path("p".to_string())
        .file_format(DataFileFormat::Parquet)
        .record_count(5)
        .file_size_in_bytes(100)
        .column_sizes(values.iter().map(|&(id, _)| (id, 10)).collect())
        .value_counts(values.iter().copied().collect())
        .null_value_counts(nulls.iter().copied().collect())
        .nan_value_counts(nans.iter().copied().collect())
        .lower_bounds(lower.iter().cloned().collect())
        .upper_bounds(upper.iter().cloned().collect());
    b.build().unwrap()
}

#[test]
fn bounds_and_counts_rules() {
    let (l, d) = (Datum::long, Datum::double);
    let a = part(
        &[(1, 5), (2, 5), (3, 5)],
        &[(1, 0), (2, 1), (3, 0)],
        &[(2, 0)],
        &[(1, l(5)), (2, d(-1.5)), (3, l(1))],
        &[(1, l(9)), (2, d(2.0)), (3, l(1))],
    );
    // Field 1 all null, field 2 all null or NaN: no bounds, and none needed.
    let b = part(&[(1, 5), (2, 5), (3, 5)], &[(1, 5), (2, 2), (3, 0)], &[(2, 3)], &[(3, l(0))], &[(3, l(0))]);
    let c = part(
        &[(1, 5), (2, 5), (3, 5)],
        &[(1, 0), (2, 0), (3, 0)],
        &[(2, 0)],
        &[(1, l(2)), (2, d(0.5)), (3, l(7))],
        &[(1, l(4)), (2, d(8.0)), (3, l(8))],
    );
    let m = merge_data_files(&[a.clone(), b.clone(), c.clone()], 0, "m", 1, vec![4]).unwrap();
    assert_eq!(m.record_count(), 15);
    assert_eq!(m.value_counts(), &HashMap::from([(1, 15), (2, 15), (3, 15)]));
    assert_eq!(m.null_value_counts(), &HashMap::from([(1, 5), (2, 3), (3, 0)]));
    assert_eq!(m.nan_value_counts(), &HashMap::from([(2, 3)]));
    assert_eq!(m.column_sizes(), &HashMap::from([(1, 30), (2, 30), (3, 30)]));
    assert_eq!(m.lower_bounds(), &HashMap::from([(1, l(2)), (2, d(-1.5)), (3, l(0))]));
    assert_eq!(m.upper_bounds(), &HashMap::from([(1, l(9)), (2, d(8.0)), (3, l(8))]));

    // A part with values but no bound (truncated, or metrics off): the bound is unknown.
    let unknown = part(&[(1, 5), (2, 5), (3, 5)], &[(1, 0), (2, 0), (3, 0)], &[(2, 0)], &[(1, l(0))], &[(3, l(100))]);
    let m = merge_data_files(&[a.clone(), unknown.clone(), c.clone()], 0, "m", 1, vec![]).unwrap();
    assert_eq!(m.lower_bounds(), &HashMap::from([(1, l(0))]));
    assert_eq!(m.upper_bounds(), &HashMap::from([(3, l(100))]));
    // A count unknown in one part is unknown in the merged file.
    let no_nulls = part(&[(1, 5), (2, 5)], &[(1, 0)], &[], &[(1, l(3))], &[(1, l(3))]);
    let m = merge_data_files(&[a.clone(), no_nulls], 0, "m", 1, vec![]).unwrap();
    assert_eq!(m.value_counts(), &HashMap::from([(1, 10), (2, 10)]));
    assert_eq!(m.null_value_counts(), &HashMap::from([(1, 0)]));
    assert!(m.nan_value_counts().is_empty());
    // Field 2 has no null count in the second part, so it may hold values: its bounds go.
    assert_eq!(m.lower_bounds(), &HashMap::from([(1, l(3))]));

    // Refused: nothing to merge, bounds of different types, a part that is not a data file.
    assert!(merge_data_files(&[], 0, "m", 1, vec![]).is_err());
    let text = part(&[(1, 5)], &[(1, 0)], &[], &[(1, Datum::string("x"))], &[(1, Datum::string("y"))]);
    let err = merge_data_files(&[a.clone(), text], 0, "m", 1, vec![]).unwrap_err();
    assert!(err.to_string().contains("cannot be compared"), "{err}");
    let mut deletes = DataFileBuilder::default();
    deletes
        .content(DataContentType::PositionDeletes)
        .file_path("d".to_string())
        .file_format(DataFileFormat::Parquet)
        .record_count(1)
        .file_size_in_bytes(1);
    let err = merge_data_files(&[a, deletes.build().unwrap()], 0, "m", 1, vec![]).unwrap_err();
    assert!(err.to_string().contains("not data"), "{err}");
}
