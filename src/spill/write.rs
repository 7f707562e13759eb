//! Spool files written one column at a time.
//!
//! parquet's `ArrowWriter` (which iceberg's `ParquetWriter` wraps) keeps a writer for every leaf
//! column of the row group alive until the row group closes, and each holds its own zstd
//! contexts and dictionary encoder. At the bench table's 28 leaves that was 22 MB of heap for one
//! small spool file, the largest part of the agent's peak. Here the leaves of one top-level field
//! are encoded, closed and appended before the next field's writers exist, so one field's
//! encoders are alive at a time; what stays is the encoded column chunks, the size of the file.
//!
//! The file is what `ArrowWriter` would write with the same properties: the same Parquet schema
//! (field ids included), the Arrow schema in the footer, the same encoders in the same order.
//! The Iceberg metrics come from its footer (`metrics.rs`).

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema as ArrowSchema};
use iceberg::spec::{DataFileBuilder, Schema};
use parquet::arrow::ArrowSchemaConverter;
use parquet::arrow::arrow_writer::compute_leaves;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedFileWriter, SerializedRowGroupWriter};
use parquet::schema::types::SchemaDescriptor;

use super::metrics;
use crate::{Error, Result};

/// Writes `batches` (rows of `schema`, in its Arrow form) to a new Parquet file at `path`, in
/// row groups of at most the properties' row count, and returns the file's Iceberg `DataFile`
/// (no partition yet). The file is flushed, not fsynced: the spool index does that.
pub fn write_file(
    path: &Path,
    schema: &Schema,
    batches: &[RecordBatch],
    props: WriterProperties,
) -> Result<DataFileBuilder> {
    let at = || format!("write spool file {}", path.display());
    let arrow = Arc::new(
        iceberg::arrow::schema_to_arrow_schema(schema)
            .map_err(|e| Error::iceberg(format!("{}: its Arrow schema", at()), e))?,
    );
    let mut props = props;
    parquet::arrow::add_encoded_arrow_schema_to_metadata(&arrow, &mut props);
    let props = Arc::new(props);
    let parquet_schema = descriptor(&arrow, &props).map_err(|e| parquet_error(at(), e))?;
    let file = File::create(path).map_err(|e| Error::io(at(), e))?;
    let mut writer = SerializedFileWriter::new(file, parquet_schema.root_schema_ptr(), props.clone())
        .map_err(|e| parquet_error(at(), e))?;
    let max_rows = props.max_row_group_row_count().unwrap_or(usize::MAX).max(1);
    for group in row_groups(batches, max_rows) {
        let mut rows = writer.next_row_group().map_err(|e| parquet_error(at(), e))?;
        for (i, field) in arrow.fields().iter().enumerate() {
            write_field(&mut rows, field, i, &group, &props)
                .map_err(|e| parquet_error(format!("{}: column `{}`", at(), field.name()), e))?;
        }
        rows.close().map_err(|e| parquet_error(at(), e))?;
    }
    // Writes the footer and flushes the writer's buffer to the file.
    let metadata = writer.finish().map_err(|e| parquet_error(at(), e))?;
    let size = writer.bytes_written() as u64;
    metrics::data_file(
        schema,
        &metadata,
        size,
        metrics::nan_counts(&arrow, batches),
        path.to_string_lossy().into_owned(),
    )
}

/// The Parquet schema `ArrowWriter` would write for `arrow`.
fn descriptor(arrow: &ArrowSchema, props: &WriterProperties) -> parquet::errors::Result<SchemaDescriptor> {
    ArrowSchemaConverter::new().with_coerce_types(props.coerce_types()).convert(arrow)
}

/// Encodes the leaves of top-level field `i` over `batches` and appends them to the row group.
/// The writers come from a schema of this field alone: its leaves have the same paths, levels
/// and field ids as in the whole file's schema, which `append_column` checks.
fn write_field<W: Write + Send>(
    rows: &mut SerializedRowGroupWriter<'_, W>,
    field: &Arc<Field>,
    i: usize,
    batches: &[RecordBatch],
    props: &Arc<WriterProperties>,
) -> parquet::errors::Result<()> {
    let alone = Arc::new(ArrowSchema::new(vec![field.clone()]));
    let parquet = descriptor(&alone, props)?;
    // Deprecated for `ArrowRowGroupWriterFactory`, which makes the writers of every field at once.
    #[allow(deprecated)]
    let mut writers = parquet::arrow::arrow_writer::get_column_writers(&parquet, props, &alone)?;
    for batch in batches {
        let leaves = compute_leaves(field, batch.column(i))?;
        for (writer, leaf) in writers.iter_mut().zip(&leaves) {
            writer.write(leaf)?;
        }
    }
    for writer in writers {
        writer.close()?.append_to_row_group(rows)?;
    }
    Ok(())
}

/// `batches` cut into groups of at most `max_rows` rows, slicing a batch where a group ends.
fn row_groups(batches: &[RecordBatch], max_rows: usize) -> Vec<Vec<RecordBatch>> {
    let mut groups: Vec<Vec<RecordBatch>> = Vec::new();
    let mut room = 0; // no rows, no row group: as ArrowWriter writes an empty file
    for batch in batches {
        let mut at = 0;
        while at < batch.num_rows() {
            if room == 0 {
                groups.push(Vec::new());
                room = max_rows;
            }
            let n = room.min(batch.num_rows() - at);
            groups.last_mut().expect("never empty").push(batch.slice(at, n));
            at += n;
            room -= n;
        }
    }
    groups
}

/// A Parquet error with its context; an I/O error (a full disk among them) stays one.
fn parquet_error(context: String, e: ParquetError) -> Error {
    match e {
        ParquetError::External(inner) => match inner.downcast::<std::io::Error>() {
            Ok(io) => Error::io(context, *io),
            Err(other) => Error::encode(context, other),
        },
        other => Error::encode(context, other),
    }
}

#[cfg(test)]
#[path = "write_tests.rs"]
mod tests;
