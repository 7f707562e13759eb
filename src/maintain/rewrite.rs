//! One compaction rewrite: small files of one partition read, made batches of the table's current
//! schema, and written as one file near the target size (see `compact.rs` for when and why).

use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use async_compat::Compat;
use iceberg::io::FileIO;
use iceberg::spec::DataFile;
use iceberg::table::Table;
use iceberg::writer::file_writer::{FileWriter, FileWriterBuilder, ParquetWriterBuilder};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::Tools;
use super::compact::Rewrite;
use super::replace::{self, uuid_v4};
use crate::decode::conform_batch;
use crate::{Error, Result};

/// Rows per row group of a compacted file: small spool files make row groups of a few rows,
/// which readers pay for; a writer holds one row group (encoded) in memory.
const ROW_GROUP_ROWS: usize = 64 * 1024;

/// Rewrites `files` (one partition, in this order) into one file on the table's current schema:
/// each is downloaded into `scratch`, read batch by batch, made a batch of the current schema
/// (`decode::conform`: columns it lacks are nulls, narrower types widened) and written with
/// iceberg's Parquet writer, which also gathers the new file's column statistics. The file is
/// uploaded to a name made from the sources and the schema, unless that object exists: then a
/// rival maintainer wrote it, byte for byte the same (the same rows, schema and writer settings),
/// and it may already be committed, so it is never overwritten.
pub(super) async fn rewrite_group(
    tools: &Tools<'_>,
    table: &Table,
    spec_id: i32,
    files: &[&DataFile],
    scratch: &Path,
) -> Result<Rewrite> {
    let md = table.metadata();
    let mut sources: Vec<String> = files.iter().map(|f| f.file_path().to_string()).collect();
    sources.sort();
    let url = output_url(table, spec_id, files[0], &sources);
    let context = || format!("compact {} files of {} into {url}", files.len(), table.identifier());
    let schema = md.current_schema().clone();
    let arrow = Arc::new(iceberg::arrow::schema_to_arrow_schema(&schema).map_err(|e| Error::iceberg(context(), e))?);
    let local = scratch.join(format!("{}.parquet", uuid_v4()));
    let local_url = local.to_str().ok_or_else(|| Error::merge(context(), "the scratch path is not UTF-8"))?.to_string();
    let builders = Compat::new(async {
        let out = FileIO::new_with_fs().new_output(&local_url).map_err(|e| Error::iceberg(context(), e))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("3 is a valid zstd level")))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .build();
        let mut writer = ParquetWriterBuilder::new(props, schema.clone())
            .build(out)
            .await
            .map_err(|e| Error::iceberg(context(), e))?;
        for f in files {
            let input = scratch.join(format!("{}.parquet", uuid_v4()));
            tools.stores.download_file(f.file_path(), &input).await?;
            let mut batches = Batches::open(&input)?;
            while let Some(batch) = batches.next().await? {
                let batch = conform_batch(&batch, &arrow)
                    .map_err(|e| Error::merge(format!("{}: {}", context(), f.file_path()), e))?;
                writer.write(&batch).await.map_err(|e| Error::iceberg(context(), e))?;
            }
            let _ = std::fs::remove_file(&input);
        }
        writer.close().await.map_err(|e| Error::iceberg(context(), e))
    })
    .await;
    let mut builder = match builders {
        Ok(mut b) => b.pop().ok_or_else(|| Error::merge(context(), "the Parquet writer produced no file"))?,
        Err(e) => {
            let _ = std::fs::remove_file(&local);
            return Err(e);
        }
    };
    builder.file_path(url.clone()).partition(files[0].partition().clone()).partition_spec_id(spec_id);
    let output = builder.build().map_err(|e| Error::merge(context(), e))?;
    let sent = async {
        if !Compat::new(tools.stores.exists(&url)).await? {
            Compat::new(tools.stores.upload_file(&local, &url)).await?;
        }
        Ok::<_, Error>(())
    }
    .await;
    let _ = std::fs::remove_file(&local);
    sent?;
    Ok(Rewrite { sources, spec_id, output })
}

/// A local Parquet file read batch by batch, each read on the blocking pool.
struct Batches {
    reader: Option<parquet::arrow::arrow_reader::ParquetRecordBatchReader>,
}

impl Batches {
    fn open(path: &Path) -> Result<Batches> {
        let context = || format!("read {}", path.display());
        let file = std::fs::File::open(path).map_err(|e| Error::io(context(), e))?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.with_batch_size(8192).build())
            .map_err(|e| Error::merge(context(), e))?;
        Ok(Batches { reader: Some(reader) })
    }

    async fn next(&mut self) -> Result<Option<RecordBatch>> {
        let Some(mut reader) = self.reader.take() else { return Ok(None) };
        let (batch, reader) = blocking::unblock(move || (reader.next(), reader)).await;
        match batch {
            None => Ok(None),
            Some(b) => {
                self.reader = Some(reader);
                b.map(Some).map_err(|e| Error::merge("read a Parquet file to compact", e))
            }
        }
    }
}

/// Where the file replacing `sources` goes: the table's data directory, in the partition's
/// Hive-style directory, named after the sources.
fn output_url(table: &Table, spec_id: i32, first: &DataFile, sources: &[String]) -> String {
    let md = table.metadata();
    // The schema is part of the name: a file of the same sources on another schema differs.
    let schema = md.current_schema_id().to_string();
    let id = replace::step_id(md, "compact-output", sources.iter().map(String::as_str).chain([schema.as_str()]));
    let dir = md
        .partition_spec_by_id(spec_id)
        // partition_to_path panics when a source column of an old spec left the schema.
        .filter(|spec| !spec.is_unpartitioned() && spec.partition_type(md.current_schema()).is_ok())
        .map(|spec| format!("{}/", spec.partition_to_path(first.partition(), md.current_schema().clone())))
        .unwrap_or_default();
    format!("{}/data/{dir}compacted-{id}.parquet", md.location())
}
