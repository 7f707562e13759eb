//! A spool file's Iceberg metrics, read from its Parquet footer: what iceberg's own
//! `ParquetWriter` records for a file it writes (its `parquet_to_data_file_builder` is private to
//! the crate in 0.10.1). The values are iceberg's own types (`Datum::try_from_bytes` reads each
//! bound), and `write_tests.rs` checks the result against iceberg's writer on the same rows.
//!
//! One difference: a field whose lower (or upper) bound some row group cannot give exactly (no
//! statistics, or a truncated value) while holding values gets no such bound at all, since the
//! other row groups' bound would not cover it. iceberg's writer keeps the others'. Spool files have one row
//! group, so the two agree there.

use std::collections::{HashMap, HashSet};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema as ArrowSchema};
use iceberg::spec::{DataContentType, DataFileBuilder, DataFileFormat, Datum, PrimitiveType, Schema, Struct, Type};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;

use crate::{Error, Result};

/// The `DataFile` of the Parquet file at `path`, `size` bytes long, whose footer is `metadata`
/// and whose float columns hold `nan_counts` NaNs (see [`nan_counts`]). No partition is set.
pub fn data_file(
    schema: &Schema,
    metadata: &ParquetMetaData,
    size: u64,
    nan_counts: HashMap<i32, u64>,
    path: String,
) -> Result<DataFileBuilder> {
    let mut sizes: HashMap<i32, u64> = HashMap::new();
    let mut values: HashMap<i32, u64> = HashMap::new();
    let mut nulls: HashMap<i32, u64> = HashMap::new();
    let mut lower: HashMap<i32, Datum> = HashMap::new();
    let mut upper: HashMap<i32, Datum> = HashMap::new();
    let mut nulls_unknown: HashSet<i32> = HashSet::new();
    let mut lower_unknown: HashSet<i32> = HashSet::new();
    let mut upper_unknown: HashSet<i32> = HashSet::new();
    for group in metadata.row_groups() {
        for column in group.columns() {
            let info = column.column_descr().self_type().get_basic_info();
            if !info.has_id() {
                continue;
            }
            let id = info.id();
            // As iceberg: a column whose field the schema lacks is not described.
            let Some(field) = schema.field_by_id(id) else { continue };
            let Type::Primitive(ty) = field.field_type.as_ref() else { continue };
            *sizes.entry(id).or_default() += column.compressed_size() as u64;
            *values.entry(id).or_default() += column.num_values() as u64;
            let stats = column.statistics();
            match stats.and_then(Statistics::null_count_opt) {
                Some(n) => *nulls.entry(id).or_default() += n,
                None => {
                    nulls_unknown.insert(id);
                }
            }
            let holds_values = stats.and_then(Statistics::null_count_opt) != Some(column.num_values() as u64);
            let bound = |min| {
                stats
                    .map(|s| bound(ty, s, min))
                    .transpose()
                    .map(Option::flatten)
                    .map_err(|e| Error::encode(format!("the bounds of field {id} in {path}"), e))
            };
            for (bounds, unknown, min, wanted) in [
                (&mut lower, &mut lower_unknown, true, std::cmp::Ordering::Less),
                (&mut upper, &mut upper_unknown, false, std::cmp::Ordering::Greater),
            ] {
                match bound(min)? {
                    Some(b) => keep(bounds, id, b, wanted),
                    None if holds_values => {
                        unknown.insert(id);
                    }
                    None => {}
                }
            }
        }
    }
    for id in &nulls_unknown {
        nulls.remove(id);
    }
    for id in &lower_unknown {
        lower.remove(id);
    }
    for id in &upper_unknown {
        upper.remove(id);
    }
    let mut builder = DataFileBuilder::default();
    builder
        .content(DataContentType::Data)
        .file_path(path)
        .file_format(DataFileFormat::Parquet)
        .partition(Struct::empty())
        .record_count(metadata.file_metadata().num_rows() as u64)
        .file_size_in_bytes(size)
        .column_sizes(sizes)
        .value_counts(values)
        .null_value_counts(nulls)
        .nan_value_counts(nan_counts)
        .lower_bounds(lower)
        .upper_bounds(upper)
        .split_offsets(Some(metadata.row_groups().iter().filter_map(|g| g.file_offset()).collect()));
    Ok(builder)
}

/// Keeps in `bounds` whichever of its bound for `id` and `candidate` compares as `wanted`.
fn keep(bounds: &mut HashMap<i32, Datum>, id: i32, candidate: Datum, wanted: std::cmp::Ordering) {
    match bounds.get(&id) {
        Some(held) if candidate.partial_cmp(held) != Some(wanted) => {}
        _ => {
            bounds.insert(id, candidate);
        }
    }
}

/// A column chunk's exact lower (`min`) or upper bound as an Iceberg value; `None` when the
/// statistics have none or only a truncated one.
fn bound(ty: &PrimitiveType, stats: &Statistics, min: bool) -> std::result::Result<Option<Datum>, String> {
    let exact = if min { stats.min_is_exact() } else { stats.max_is_exact() };
    if !exact {
        return Ok(None);
    }
    let decimal = |v: Option<i128>| v.map(|v| v.to_be_bytes().to_vec());
    let bytes = match (ty, stats) {
        // Decimals of up to 18 digits are stored as INT32 or INT64, little-endian; Iceberg's
        // bytes for a decimal are big-endian.
        (PrimitiveType::Decimal { .. }, Statistics::Int32(s)) => {
            decimal(if min { s.min_opt() } else { s.max_opt() }.map(|v| i128::from(*v)))
        }
        (PrimitiveType::Decimal { .. }, Statistics::Int64(s)) => {
            decimal(if min { s.min_opt() } else { s.max_opt() }.map(|v| i128::from(*v)))
        }
        // Every other type's Parquet plain bytes are its Iceberg single-value bytes.
        _ => (if min { stats.min_bytes_opt() } else { stats.max_bytes_opt() }).map(<[u8]>::to_vec),
    };
    bytes.map(|b| Datum::try_from_bytes(&b, ty.clone()).map_err(|e| format!("{ty} from {b:?}: {e}"))).transpose()
}

/// NaNs per float field id (Parquet statistics leave NaN out, so they are counted from the
/// rows), at every depth; a float field with none counts 0, as iceberg's writer records.
pub fn nan_counts(arrow: &ArrowSchema, batches: &[RecordBatch]) -> HashMap<i32, u64> {
    let mut out = HashMap::new();
    for batch in batches {
        for (field, column) in arrow.fields().iter().zip(batch.columns()) {
            count_nans(field, column, &mut out);
        }
    }
    out
}

fn count_nans(field: &Field, array: &ArrayRef, out: &mut HashMap<i32, u64>) {
    let id = field.metadata().get(parquet::arrow::PARQUET_FIELD_ID_META_KEY).and_then(|v| v.parse::<i32>().ok());
    let mut add = |n: usize| {
        if let Some(id) = id {
            *out.entry(id).or_default() += n as u64;
        }
    };
    match array.data_type() {
        DataType::Float32 => {
            add(array.as_primitive::<Float32Type>().iter().filter(|v| v.is_some_and(f32::is_nan)).count())
        }
        DataType::Float64 => {
            add(array.as_primitive::<Float64Type>().iter().filter(|v| v.is_some_and(f64::is_nan)).count())
        }
        DataType::Struct(fields) => {
            for (f, child) in fields.iter().zip(array.as_struct().columns()) {
                count_nans(f, child, out);
            }
        }
        DataType::List(f) => count_nans(f, array.as_list::<i32>().values(), out),
        DataType::LargeList(f) => count_nans(f, array.as_list::<i64>().values(), out),
        DataType::Map(entries, _) => {
            let map = array.as_map();
            if let DataType::Struct(kv) = entries.data_type() {
                count_nans(&kv[0], map.keys(), out);
                count_nans(&kv[1], map.values(), out);
            }
        }
        _ => {}
    }
}
