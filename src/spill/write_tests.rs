//! The column-at-a-time writer against iceberg's own `ParquetWriter` on the same random rows of
//! every Iceberg type, nested ones included: the same bytes, the same metrics, the rows back.

use std::sync::Arc;

use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int32Type, Int64Type, Time64MicrosecondType,
    TimestampMicrosecondType, TimestampNanosecondType,
};
use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, FixedSizeBinaryArray, LargeBinaryArray, LargeStringArray, ListArray, MapArray,
    PrimitiveArray, StringArray, StructArray,
};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, TimeUnit};
use async_compat::Compat;
use iceberg::io::FileIO;
use iceberg::spec::{DataFile, Datum, ListType, MapType, NestedField, PrimitiveType, StructType, Type};
use iceberg::writer::file_writer::{FileWriter, FileWriterBuilder, ParquetWriterBuilder};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::*;

fn all_types() -> Arc<Schema> {
    let p = |id, name: &str, t| Arc::new(NestedField::optional(id, name, Type::Primitive(t)));
    use PrimitiveType::*;
    let fields = vec![
        p(1, "b", Boolean),
        p(2, "i", Int),
        p(3, "l", Long),
        p(4, "f", Float),
        p(5, "d", Double),
        p(6, "d9", Decimal { precision: 9, scale: 2 }),
        p(7, "d18", Decimal { precision: 18, scale: 3 }),
        p(8, "d20", Decimal { precision: 20, scale: 0 }),
        p(9, "date", Date),
        p(10, "time", Time),
        p(11, "ts", Timestamp),
        p(12, "tstz", Timestamptz),
        p(13, "tsns", TimestampNs),
        p(14, "s", String),
        p(15, "u", Uuid),
        p(16, "fx", Fixed(4)),
        p(17, "bin", Binary),
        Arc::new(NestedField::optional(
            18,
            "st",
            Type::Struct(StructType::new(vec![p(19, "x", Double), p(20, "name", String)])),
        )),
        Arc::new(NestedField::optional(
            21,
            "li",
            Type::List(ListType::new(Arc::new(NestedField::list_element(22, Type::Primitive(Float), false)))),
        )),
        Arc::new(NestedField::optional(
            23,
            "m",
            Type::Map(MapType::new(
                Arc::new(NestedField::map_key_element(24, Type::Primitive(String))),
                Arc::new(NestedField::map_value_element(25, Type::Primitive(Double), false)),
            )),
        )),
        Arc::new(NestedField::required(26, "req", Type::Primitive(Long))),
    ];
    Arc::new(Schema::builder().with_fields(fields).build().unwrap())
}

/// A random column of `dt`: about one value in six null where nulls are allowed, NaNs among the
/// floats, strings up to 90 bytes (past the statistics' truncation), lists and maps of 0-3.
fn column(dt: &DataType, rows: usize, nullable: bool, rng: &mut fastrand::Rng) -> ArrayRef {
    let valid: Vec<bool> = (0..rows).map(|_| !nullable || rng.u8(..) >= 43).collect();
    let nulls = nullable.then(|| NullBuffer::from(valid.clone()));
    let mut gen_ = |f: &mut dyn FnMut(&mut fastrand::Rng) -> i128| -> Vec<Option<i128>> {
        valid.iter().map(|&v| v.then(|| f(rng))).collect()
    };
    fn prim<T: arrow_array::ArrowPrimitiveType>(
        v: Vec<Option<i128>>,
        f: impl Fn(i128) -> T::Native,
    ) -> PrimitiveArray<T> {
        v.into_iter().map(|x| x.map(&f)).collect()
    }
    let text = |rng: &mut fastrand::Rng| -> std::string::String {
        let len = if rng.u8(..) < 20 { rng.usize(65..90) } else { rng.usize(0..12) };
        (0..len).map(|_| rng.choice(['a', 'q', 'z', 'é', '7', ' ']).unwrap()).collect()
    };
    match dt {
        DataType::Boolean => Arc::new(BooleanArray::from(
            gen_(&mut |r| r.bool() as i128).into_iter().map(|v| v.map(|b| b == 1)).collect::<Vec<_>>(),
        )),
        DataType::Int32 => Arc::new(prim::<Int32Type>(gen_(&mut |r| r.i32(..).into()), |v| v as i32)),
        DataType::Int64 => Arc::new(prim::<Int64Type>(gen_(&mut |r| r.i64(..).into()), |v| v as i64)),
        DataType::Float32 => Arc::new(prim::<Float32Type>(gen_(&mut |r| r.i32(-1000..1000).into()), |v| {
            if v % 9 == 0 { f32::NAN } else { v as f32 / 8.0 }
        })),
        DataType::Float64 => Arc::new(prim::<Float64Type>(gen_(&mut |r| r.i32(-1000..1000).into()), |v| {
            if v % 9 == 0 { f64::NAN } else { v as f64 / 3.0 }
        })),
        DataType::Decimal128(precision, scale) => {
            let max = 10i128.pow(*precision as u32) - 1;
            Arc::new(
                prim::<Decimal128Type>(gen_(&mut |r| r.i128(-max..=max)), |v| v)
                    .with_precision_and_scale(*precision, *scale)
                    .unwrap(),
            )
        }
        DataType::Date32 => Arc::new(prim::<Date32Type>(gen_(&mut |r| r.i32(-40_000..40_000).into()), |v| v as i32)),
        DataType::Time64(TimeUnit::Microsecond) => {
            Arc::new(prim::<Time64MicrosecondType>(gen_(&mut |r| r.i64(0..86_400_000_000).into()), |v| v as i64))
        }
        DataType::Timestamp(TimeUnit::Microsecond, tz) => Arc::new(
            prim::<TimestampMicrosecondType>(gen_(&mut |r| r.i64(..).into()), |v| v as i64)
                .with_timezone_opt(tz.clone()),
        ),
        DataType::Timestamp(TimeUnit::Nanosecond, tz) => Arc::new(
            prim::<TimestampNanosecondType>(gen_(&mut |r| r.i64(..).into()), |v| v as i64)
                .with_timezone_opt(tz.clone()),
        ),
        DataType::Utf8 => Arc::new(valid.iter().map(|&v| v.then(|| text(rng))).collect::<StringArray>()),
        DataType::LargeUtf8 => Arc::new(valid.iter().map(|&v| v.then(|| text(rng))).collect::<LargeStringArray>()),
        DataType::Binary => Arc::new(valid.iter().map(|&v| v.then(|| text(rng).into_bytes())).collect::<BinaryArray>()),
        DataType::LargeBinary => {
            Arc::new(valid.iter().map(|&v| v.then(|| text(rng).into_bytes())).collect::<LargeBinaryArray>())
        }
        DataType::FixedSizeBinary(n) => {
            let values = valid.iter().map(|&v| v.then(|| (0..*n).map(|_| rng.u8(..)).collect::<Vec<u8>>()));
            Arc::new(FixedSizeBinaryArray::try_from_sparse_iter_with_size(values, *n).unwrap())
        }
        DataType::Struct(fields) => {
            let children = fields.iter().map(|f| column(f.data_type(), rows, f.is_nullable(), rng)).collect();
            Arc::new(StructArray::new(fields.clone(), children, nulls))
        }
        DataType::List(element) => {
            let lengths: Vec<usize> = valid.iter().map(|&v| if v { rng.usize(0..4) } else { 0 }).collect();
            let values = column(element.data_type(), lengths.iter().sum(), element.is_nullable(), rng);
            Arc::new(ListArray::new(element.clone(), OffsetBuffer::from_lengths(lengths), values, nulls))
        }
        DataType::Map(entries, sorted) => {
            let DataType::Struct(kv) = entries.data_type() else { panic!("map entries are a struct") };
            let lengths: Vec<usize> = valid.iter().map(|&v| if v { rng.usize(0..4) } else { 0 }).collect();
            let n = lengths.iter().sum();
            let children = kv.iter().map(|f| column(f.data_type(), n, f.is_nullable(), rng)).collect();
            let entries_array = StructArray::new(kv.clone(), children, None);
            Arc::new(MapArray::new(entries.clone(), OffsetBuffer::from_lengths(lengths), entries_array, nulls, *sorted))
        }
        other => panic!("no generator for {other}"),
    }
}

fn batches(schema: &Schema, sizes: &[usize], seed: u64) -> Vec<RecordBatch> {
    let arrow = Arc::new(iceberg::arrow::schema_to_arrow_schema(schema).unwrap());
    let mut rng = fastrand::Rng::with_seed(seed);
    sizes
        .iter()
        .map(|&rows| {
            let columns =
                arrow.fields().iter().map(|f| column(f.data_type(), rows, f.is_nullable(), &mut rng)).collect();
            RecordBatch::try_new(arrow.clone(), columns).unwrap()
        })
        .collect()
}

/// The file and DataFile that iceberg's `ParquetWriter` makes of the same rows and properties.
fn icebergs(path: &Path, schema: &Arc<Schema>, batches: &[RecordBatch], props: WriterProperties) -> DataFile {
    let path = path.to_str().unwrap().to_string();
    smol::block_on(Compat::new(async {
        let out = FileIO::new_with_fs().new_output(&path).unwrap();
        let mut writer = ParquetWriterBuilder::new(props, schema.clone()).build(out).await.unwrap();
        for b in batches {
            writer.write(b).await.unwrap();
        }
        writer.close().await.unwrap().pop().unwrap().build().unwrap()
    }))
}

fn read_back(path: &Path) -> Vec<RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Everything in a DataFile but its path, with `upper` for its upper bounds.
fn described(f: &DataFile, upper: &std::collections::HashMap<i32, Datum>) -> impl PartialEq + std::fmt::Debug {
    (
        f.record_count(),
        f.file_size_in_bytes(),
        f.column_sizes().clone(),
        f.value_counts().clone(),
        f.null_value_counts().clone(),
        f.nan_value_counts().clone(),
        f.lower_bounds().clone(),
        upper.clone(),
        f.split_offsets().map(<[i64]>::to_vec),
    )
}

/// Writes random rows of every type both ways, checks that the files are the same bytes and read
/// back as the rows, and returns both DataFiles (ours, iceberg's) per seed.
fn both_ways(
    props: impl Fn() -> WriterProperties,
    sizes: &[usize],
    seeds: std::ops::Range<u64>,
) -> Vec<(DataFile, DataFile)> {
    let schema = all_types();
    let dir = tempfile::tempdir().unwrap();
    let mut out = Vec::new();
    for seed in seeds {
        let batches = batches(&schema, sizes, seed);
        let (theirs, ours) = (dir.path().join(format!("{seed}.theirs")), dir.path().join(format!("{seed}.ours")));
        let expected = icebergs(&theirs, &schema, &batches, props());
        let got = write_file(&ours, &schema, &batches, props()).unwrap().build().unwrap();
        assert_eq!(got.file_path(), ours.to_str().unwrap());
        assert!(std::fs::read(&ours).unwrap() == std::fs::read(&theirs).unwrap(), "seed {seed}: the files differ");
        let all = arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap();
        let back = read_back(&ours);
        assert_eq!(arrow_select::concat::concat_batches(&back[0].schema(), &back).unwrap(), all, "seed {seed}");
        out.push((got, expected));
    }
    out
}

#[test]
fn the_file_and_its_metrics_are_what_icebergs_writer_makes_of_the_same_rows() {
    for (seed, (ours, theirs)) in both_ways(super::super::properties, &[1000, 37, 1500], 0..4).iter().enumerate() {
        assert_eq!(described(ours, ours.upper_bounds()), described(theirs, theirs.upper_bounds()), "seed {seed}");
    }
}

#[test]
fn row_groups_end_at_the_row_limit_inside_a_batch() {
    let props = || WriterProperties::builder().set_max_row_group_row_count(Some(700)).build();
    let mut left_out = std::collections::BTreeSet::new();
    for (ours, theirs) in both_ways(props, &[1000, 400, 1300], 10..14) {
        assert_eq!(ours.split_offsets().unwrap().len(), 4, "2,700 rows in groups of 700");
        // Strings and binaries of over 64 bytes have truncated, inexact maxima: where a row
        // group's is, iceberg's writer keeps the other groups' maximum, which does not cover
        // it, and ours keeps none. Every other bound and count is the same.
        let mut upper = theirs.upper_bounds().clone();
        for id in theirs.upper_bounds().keys() {
            if !ours.upper_bounds().contains_key(id) {
                left_out.insert(*id);
                upper.remove(id);
            }
        }
        assert_eq!(described(&ours, ours.upper_bounds()), described(&theirs, &upper));
    }
    assert!(!left_out.is_empty(), "some row group had a truncated maximum");
    assert!(left_out.iter().all(|id| [14, 17, 20, 24].contains(id)), "only strings and binaries: {left_out:?}");
}

#[test]
fn a_bound_one_row_group_cannot_give_exactly_is_left_out() {
    // Statistics cut at 4 bytes: a row group of short names has exact bounds, one of long
    // names has not. The file's lower bound would not cover the long names, so it has none.
    let schema = Arc::new(
        Schema::builder()
            .with_fields(vec![
                NestedField::optional(1, "name", Type::Primitive(PrimitiveType::String)).into(),
                NestedField::optional(2, "n", Type::Primitive(PrimitiveType::Long)).into(),
            ])
            .build()
            .unwrap(),
    );
    let arrow = Arc::new(iceberg::arrow::schema_to_arrow_schema(&schema).unwrap());
    let batch = |names: &[&str], n: &[i64]| {
        let names: ArrayRef = Arc::new(StringArray::from(names.to_vec()));
        RecordBatch::try_new(arrow.clone(), vec![names, Arc::new(arrow_array::Int64Array::from(n.to_vec()))]).unwrap()
    };
    let rows = [batch(&["bb", "cc"], &[5, 6]), batch(&["aaaaaaaa", "dddddddd"], &[1, 9])];
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(2))
        .set_statistics_truncate_length(Some(4))
        .build();
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(&dir.path().join("f"), &schema, &rows, props).unwrap().build().unwrap();
    assert_eq!(file.lower_bounds().get(&1), None, "the second group's min is cut short");
    assert_eq!(file.upper_bounds().get(&1), None, "and so is its max");
    assert_eq!(file.lower_bounds().get(&2), Some(&Datum::long(1)));
    assert_eq!(file.upper_bounds().get(&2), Some(&Datum::long(9)));
    assert_eq!(file.value_counts().get(&1), Some(&4));
}

#[test]
fn a_full_disk_stays_an_io_error() {
    let full = ParquetError::External(Box::new(std::io::Error::from_raw_os_error(28)));
    assert!(super::super::is_disk_full(&parquet_error("write".into(), full)));
    assert!(!super::super::is_disk_full(&parquet_error("write".into(), ParquetError::General("bad".into()))));
}
