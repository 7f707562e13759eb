//! Small files in, big files out: merges spool files of one table into one Parquet file for
//! upload, and derives the merged file's Iceberg `DataFile` from the parts' `DataFile`s.
//!
//! Spool files are small to keep gateways' memory low; object stores and query engines want
//! files near the table's target size. Merging copies each input's row groups byte for byte
//! (column chunks, their statistics, page indexes and bloom filters) with parquet's
//! [`SerializedRowGroupWriter::append_column`]: no page is decoded, decompressed or re-encoded,
//! so memory stays at a copy buffer plus the inputs' footers, whatever the output size.
//! The merged file has as many row groups as its inputs had in total.
//!
//! A merge takes three calls, all synchronous and free of async runtimes:
//! ```text
//! let size = merge_files(&inputs, &tmp)?;             // writes tmp; caller fsyncs and renames
//! let offsets = split_offsets(&tmp)?;                 // row-group offsets from tmp's footer
//! let data_file = merge_data_files(&parts, spec_id, path, size, offsets)?; // pure
//! ```
//! [`merge_data_files`] takes the split offsets rather than reading them, so that it stays pure
//! and `path` can be the name the file will have (an object URL) rather than where it lies now.
//!
//! [`SerializedRowGroupWriter::append_column`]: parquet::file::writer::SerializedRowGroupWriter::append_column

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use iceberg::spec::{DataContentType, DataFile, DataFileBuilder, DataFileFormat, Datum};
use parquet::bloom_filter::Sbbf;
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::{WriterProperties, WriterVersion};
use parquet::file::writer::SerializedFileWriter;

use crate::{Error, Result};

#[cfg(test)]
#[path = "merge_tests.rs"]
mod tests;

/// Merges spool Parquet files of one table (same Arrow/Iceberg schema, same field ids) into one
/// Parquet file at `out`, in the order given, copying row groups without decoding rows.
///
/// The merged file has the Parquet schema (field ids included), key-value metadata (including
/// `ARROW:schema`), `created_by` and format version of the first input. Every input must have a
/// Parquet schema identical to the first's (names, types, repetition, logical types and field
/// ids), else nothing is written and `Err` is returned. Page indexes and bloom filters are
/// carried over; row-group `sorting_columns` are not (iceberg's writer never sets them).
///
/// Writes `out` (created or truncated; it must not be one of the inputs) and flushes it, but
/// does not fsync: temporary names, fsync and rename are the caller's. On `Err` a partial `out`
/// may be left behind. Returns the bytes written, which is the size of `out`.
pub fn merge_files(inputs: &[PathBuf], out: &Path) -> Result<u64> {
    let ctx = |what: &str| format!("merge {} spool files into {}: {what}", inputs.len(), out.display());
    let Some(first_path) = inputs.first() else {
        return Err(Error::merge(ctx("inputs"), "no input files"));
    };
    // Read every footer before writing anything, so that a bad input leaves `out` untouched.
    let mut files = Vec::with_capacity(inputs.len());
    for path in inputs {
        let file = File::open(path).map_err(|e| Error::io(ctx(&format!("open {}", path.display())), e))?;
        let metadata = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Optional)
            .parse_and_finish(&file)
            .map_err(|e| Error::merge(ctx(&format!("read the footer of {}", path.display())), e))?;
        files.push((path, file, metadata));
    }
    let first = files[0].2.file_metadata();
    for (path, _, metadata) in &files[1..] {
        if metadata.file_metadata().schema() != first.schema() {
            return Err(Error::merge(
                ctx(&format!("check the schema of {}", path.display())),
                format!(
                    "its Parquet schema differs from that of {}:\n{}\nvs\n{}",
                    first_path.display(),
                    schema_text(&files[0].2),
                    schema_text(metadata)
                ),
            ));
        }
    }
    if let Some(same) = same_file(out, inputs) {
        return Err(Error::merge(ctx("check the output path"), format!("it is the input {}", same.display())));
    }

    let mut props = WriterProperties::builder()
        .set_key_value_metadata(first.key_value_metadata().cloned())
        .set_writer_version(if first.version() >= 2 { WriterVersion::PARQUET_2_0 } else { WriterVersion::PARQUET_1_0 });
    if let Some(created_by) = first.created_by() {
        // The pages were encoded by the input's writer: readers that work around known writer
        // bugs (e.g. in statistics) go by this.
        props = props.set_created_by(created_by.to_string());
    }
    let schema = first.schema_descr().root_schema_ptr();
    let out_file = File::create(out).map_err(|e| Error::io(ctx("create the output"), e))?;
    let mut writer = SerializedFileWriter::new(out_file, schema, Arc::new(props.build()))
        .map_err(|e| Error::merge(ctx("start the output"), e))?;

    for (path, file, metadata) in &files {
        let fail = |e| Error::merge(ctx(&format!("copy the row groups of {}", path.display())), e);
        for (rg_idx, rg) in metadata.row_groups().iter().enumerate() {
            let column_indexes = metadata.column_index().and_then(|ci| ci.get(rg_idx));
            let offset_indexes = metadata.offset_index().and_then(|oi| oi.get(rg_idx));
            let mut rg_out = writer.next_row_group().map_err(fail)?;
            for (col_idx, column) in rg.columns().iter().enumerate() {
                let bloom_filter = if column.bloom_filter_offset().is_some() {
                    Sbbf::read_from_column_chunk(column, file).map_err(fail)?
                } else {
                    None
                };
                let close = ColumnCloseResult {
                    bytes_written: column.compressed_size() as u64,
                    rows_written: rg.num_rows() as u64,
                    metadata: column.clone(),
                    bloom_filter,
                    column_index: column_indexes.and_then(|c| c.get(col_idx)).cloned(),
                    offset_index: offset_indexes.and_then(|o| o.get(col_idx)).cloned(),
                };
                rg_out.append_column(file, close).map_err(fail)?;
            }
            rg_out.close().map_err(fail)?;
        }
    }
    writer.finish().map_err(|e| Error::merge(ctx("write the footer"), e))?;
    Ok(writer.bytes_written() as u64)
}

/// The Iceberg split offsets of a Parquet file: where each row group starts, read from its
/// footer (what iceberg's own writer records). Pass them to [`merge_data_files`].
pub fn split_offsets(file: &Path) -> Result<Vec<i64>> {
    let ctx = || format!("read the row groups of {}", file.display());
    let f = File::open(file).map_err(|e| Error::io(ctx(), e))?;
    let metadata = ParquetMetaDataReader::new().parse_and_finish(&f).map_err(|e| Error::merge(ctx(), e))?;
    Ok(metadata.row_groups().iter().filter_map(|rg| rg.file_offset()).collect())
}

/// The Iceberg `DataFile` of a file merged from files described by `parts` (in any order).
///
/// - `record_count` and the per-field `column_sizes`, `value_counts`, `null_value_counts` and
///   `nan_value_counts` are sums. A field missing from one part's map is unknown there, so it is
///   left out of the merged map (an absent count means "unknown" in Iceberg, a wrong one lies).
/// - `lower_bounds` is the minimum and `upper_bounds` the maximum per field id. A part without a
///   bound for a field does not count when it has no non-null, non-NaN value of that field
///   (`value_count == null_count + nan_count`: its lack of a bound loses nothing); otherwise its
///   bound is unknown (e.g. Parquet truncated a long string) and the merged file gets none.
/// - `split_offsets` is taken as given (see [`split_offsets`]), `file_size_in_bytes` is `size`,
///   `file_path` is `path`; content Data, format Parquet, the parts' partition tuple (which all
///   parts share) and `spec_id`, no sort order (rows of sorted parts are not sorted as a whole).
///
/// Fails when `parts` is empty, when a part is not a Parquet data file, when the parts are not
/// all in one partition, or when two parts have bounds of different types for one field.
pub fn merge_data_files(
    parts: &[DataFile],
    spec_id: i32,
    path: &str,
    size: u64,
    split_offsets: Vec<i64>,
) -> Result<DataFile> {
    let ctx = format!("merge the data files of {} spool files into {path}", parts.len());
    check_parts(parts).map_err(|problem| Error::merge(ctx.clone(), problem))?;
    let mut record_count = 0u64;
    for p in parts {
        record_count = record_count
            .checked_add(p.record_count())
            .ok_or_else(|| Error::merge(ctx.clone(), "record count overflows"))?;
    }
    let sum = |get| summed(parts, get).map_err(|problem| Error::merge(ctx.clone(), problem));
    let bound = |get, keep| bounds(parts, get, keep).map_err(|problem| Error::merge(ctx.clone(), problem));
    let mut builder = DataFileBuilder::default();
    builder
        .content(DataContentType::Data)
        .file_path(path.to_string())
        .file_format(DataFileFormat::Parquet)
        .partition(parts[0].partition().clone())
        .partition_spec_id(spec_id)
        .record_count(record_count)
        .file_size_in_bytes(size)
        .column_sizes(sum(DataFile::column_sizes)?)
        .value_counts(sum(DataFile::value_counts)?)
        .null_value_counts(sum(DataFile::null_value_counts)?)
        .nan_value_counts(sum(DataFile::nan_value_counts)?)
        .lower_bounds(bound(DataFile::lower_bounds, Ordering::Less)?)
        .upper_bounds(bound(DataFile::upper_bounds, Ordering::Greater)?)
        .split_offsets(Some(split_offsets));
    builder.build().map_err(|e| Error::merge(ctx, e))
}

/// Refuses parts that cannot be merged: none at all, a part that is not Parquet data, or parts
/// of different partitions.
fn check_parts(parts: &[DataFile]) -> std::result::Result<(), String> {
    let Some(first) = parts.first() else { return Err("no data files".into()) };
    for p in parts {
        let problem = if p.content_type() != DataContentType::Data {
            format!("is {:?}, not data", p.content_type())
        } else if p.file_format() != DataFileFormat::Parquet {
            format!("is {:?}, not Parquet", p.file_format())
        } else if p.partition() != first.partition() {
            format!("is in partition {:?}, not in {:?} like the first part", p.partition(), first.partition())
        } else {
            continue;
        };
        return Err(format!("{} {problem}", p.file_path()));
    }
    Ok(())
}

/// Per field id, the sum of a count over the parts; a field some part does not count is left
/// out (an absent count means "unknown").
fn summed(
    parts: &[DataFile],
    get: fn(&DataFile) -> &HashMap<i32, u64>,
) -> std::result::Result<HashMap<i32, u64>, String> {
    let mut out = HashMap::new();
    'fields: for &id in get(&parts[0]).keys() {
        let mut total = 0u64;
        for p in parts {
            let Some(&n) = get(p).get(&id) else {
                continue 'fields;
            };
            total = total.checked_add(n).ok_or_else(|| format!("a count of field {id} overflows"))?;
        }
        out.insert(id, total);
    }
    Ok(out)
}

/// Per field id, the bound that `keep` prefers (`Less`: the lowest) over the parts; a part
/// without one counts only when it holds no value the bound would cover.
fn bounds(
    parts: &[DataFile],
    get: fn(&DataFile) -> &HashMap<i32, Datum>,
    keep: Ordering,
) -> std::result::Result<HashMap<i32, Datum>, String> {
    let mut merged = HashMap::new();
    let ids: std::collections::BTreeSet<i32> = parts.iter().flat_map(|p| get(p).keys().copied()).collect();
    'fields: for id in ids {
        let mut best: Option<&Datum> = None;
        for p in parts {
            let candidate = match get(p).get(&id) {
                Some(d) => d,
                None if has_no_values(p, id) => continue,
                None => continue 'fields,
            };
            best = Some(match best {
                None => candidate,
                Some(b) => match candidate.partial_cmp(b) {
                    Some(o) if o == keep => candidate,
                    Some(_) => b,
                    None => return Err(format!("bounds of field {id} cannot be compared: {b:?} and {candidate:?}")),
                },
            });
        }
        if let Some(b) = best {
            merged.insert(id, b.clone());
        }
    }
    Ok(merged)
}

/// True when `part` is known to hold no value of field `id` that a bound would cover: every
/// value counted is null or NaN. Unknown counts count as "may have values".
fn has_no_values(part: &DataFile, id: i32) -> bool {
    let Some(&values) = part.value_counts().get(&id) else {
        return false;
    };
    let nulls = part.null_value_counts().get(&id).copied().unwrap_or(0);
    let nans = part.nan_value_counts().get(&id).copied().unwrap_or(0);
    values <= nulls.saturating_add(nans)
}

/// Whether `out` names the same file as one of `inputs` (only checkable when `out` exists).
fn same_file<'a>(out: &Path, inputs: &'a [PathBuf]) -> Option<&'a PathBuf> {
    let out = std::fs::canonicalize(out).ok()?;
    inputs.iter().find(|i| std::fs::canonicalize(i).is_ok_and(|i| i == out))
}

/// The Parquet schema of a spool file as text (names, types, repetition, field ids): files merge
/// only when theirs are equal.
pub fn file_schema(path: &Path) -> Result<String> {
    let file = File::open(path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    let metadata = ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(|e| Error::merge(format!("read the footer of {}", path.display()), e))?;
    Ok(schema_text(&metadata))
}

fn schema_text(metadata: &ParquetMetaData) -> String {
    let mut buf = Vec::new();
    parquet::schema::printer::print_schema(&mut buf, metadata.file_metadata().schema());
    String::from_utf8_lossy(&buf).into_owned()
}
