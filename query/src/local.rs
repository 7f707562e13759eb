//! A table's local rows as DataFusion reads them: one stream per kept spool file, read through
//! the handle opened before the tables were loaded, and one over the hot rows. Each stream keeps
//! only its planned offsets and projects batch by batch onto the answer's schema, so a query over a
//! spool of gigabytes holds a few batches per stream in memory, never the spool.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::reader::{ChunkReader, Length};
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::streaming::PartitionStream;

use crate::answer::keep_offsets;
use crate::error::{Error, Result};

/// Where one piece's rows are.
#[derive(Clone)]
pub enum Rows {
    /// A spool file, already open: the agent may remove it once committed, the rows stay readable.
    /// Its footer is read once, when the piece is made: every scan of it reuses `footer`.
    File { file: Pread, path: PathBuf, footer: ArrowReaderMetadata },
    /// A hot buffer's batches, copied by the agent into the read state.
    Hot(Vec<RecordBatch>),
}

/// One local piece with the offsets an answer keeps from it.
#[derive(Clone)]
pub struct Piece {
    pub rows: Rows,
    pub from: i64,
    pub to: i64,
}

impl Rows {
    /// An opened spool file's rows; reads its footer.
    pub fn file(file: File, path: PathBuf) -> Result<Rows> {
        let file = Pread::new(file);
        let footer = ArrowReaderMetadata::load(&file, Default::default()).map_err(|e| read_error(&path, e))?;
        Ok(Rows::File { file, path, footer })
    }
}

impl Piece {
    /// The piece's own schema: the file's footer, or its first batch's.
    pub fn schema(&self) -> Option<SchemaRef> {
        match &self.rows {
            Rows::File { footer, .. } => Some(footer.schema().clone()),
            Rows::Hot(batches) => batches.first().map(RecordBatch::schema),
        }
    }

    /// Sends the kept rows, projected onto `target`, until done or until nobody listens.
    fn send(&self, target: &SchemaRef, count: &AtomicUsize, send: impl Fn(RecordBatch) -> bool) -> Result<()> {
        let each = |b: &RecordBatch| -> Result<bool> {
            let kept = frazil::decode::conform_batch(&keep_offsets(b, self.from, self.to)?, target)?;
            count.fetch_add(kept.num_rows(), Ordering::Relaxed);
            Ok(kept.num_rows() == 0 || send(kept))
        };
        match &self.rows {
            Rows::File { file, path, footer } => {
                let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file.clone(), footer.clone())
                    .build()
                    .map_err(|e| read_error(path, e))?;
                for b in reader {
                    if !each(&b.map_err(|e| read_error(path, e))?)? {
                        break;
                    }
                }
            }
            Rows::Hot(batches) => {
                for b in batches {
                    if !each(b)? {
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

fn read_error(path: &std::path::Path, e: impl fmt::Display) -> Error {
    Error::data(format!("spool file {}", path.display()), e)
}

/// One piece as a DataFusion partition. Reading is blocking file I/O, so it runs on the runtime's
/// blocking pool and hands batches over a channel of two.
pub struct Partition {
    piece: Piece,
    target: SchemaRef,
    /// The rows this table's local partitions have produced, for the coverage report.
    count: Arc<AtomicUsize>,
}

impl Partition {
    pub fn new(piece: Piece, target: SchemaRef, count: Arc<AtomicUsize>) -> Partition {
        Partition { piece, target, count }
    }
}

impl fmt::Debug for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.piece.rows {
            Rows::File { path, .. } => path.display().to_string(),
            Rows::Hot(b) => format!("{} hot batches", b.len()),
        };
        write!(f, "local rows {}..={} of {what}", self.piece.from, self.piece.to)
    }
}

impl PartitionStream for Partition {
    fn schema(&self) -> &SchemaRef {
        &self.target
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let mut builder = RecordBatchReceiverStreamBuilder::new(self.target.clone(), 2);
        let tx = builder.tx();
        let (piece, target, count) = (self.piece.clone(), self.target.clone(), self.count.clone());
        builder.spawn_blocking(move || {
            piece
                .send(&target, &count, |b| tx.blocking_send(Ok(b)).is_ok())
                .map_err(|e| DataFusionError::External(Box::new(e)))
        });
        builder.build()
    }
}

/// A file read with positioned reads (`pread`): streams of one file never move each other's
/// offset, as `File::try_clone` handles would when a query reads a table twice at once.
#[derive(Clone)]
pub struct Pread(Arc<File>);

impl Pread {
    pub fn new(file: File) -> Pread {
        Pread(Arc::new(file))
    }
}

impl Length for Pread {
    fn len(&self) -> u64 {
        self.0.metadata().map(|m| m.len()).unwrap_or(0)
    }
}

impl ChunkReader for Pread {
    type T = PreadFrom;

    fn get_read(&self, start: u64) -> Result<PreadFrom, ParquetError> {
        Ok(PreadFrom { file: self.0.clone(), at: start })
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes, ParquetError> {
        let mut buf = vec![0; length];
        self.0.read_exact_at(&mut buf, start).map_err(|e| ParquetError::External(Box::new(e)))?;
        Ok(buf.into())
    }
}

/// A reader from one position of a [`Pread`] file.
pub struct PreadFrom {
    file: Arc<File>,
    at: u64,
}

impl Read for PreadFrom {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::parquet::arrow::ArrowWriter;

    fn batch(offsets: std::ops::Range<i64>) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new(frazil::decode::META_OFFSET, DataType::Int64, false),
            Field::new("v", DataType::Utf8, true),
        ]);
        let v: StringArray = offsets.clone().map(|o| Some(format!("v{o}"))).collect();
        RecordBatch::try_new(Arc::new(schema), vec![Arc::new(Int64Array::from_iter_values(offsets)), Arc::new(v)])
            .unwrap()
    }

    fn offsets(b: &RecordBatch) -> Vec<i64> {
        let c = b.column_by_name(frazil::decode::META_OFFSET).unwrap();
        c.as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec()
    }

    /// Two readers of one file interleave their reads: each sees its own rows, in order.
    #[test]
    fn two_readers_of_one_file_do_not_move_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.parquet");
        let props =
            datafusion::parquet::file::properties::WriterProperties::builder().set_max_row_group_row_count(Some(10));
        let mut w =
            ArrowWriter::try_new(File::create(&path).unwrap(), batch(0..1).schema(), Some(props.build())).unwrap();
        w.write(&batch(0..100)).unwrap();
        w.close().unwrap();
        let file = Pread::new(File::open(&path).unwrap());
        let open = || ParquetRecordBatchReaderBuilder::try_new(file.clone()).unwrap().with_batch_size(10).build();
        let (mut a, mut b) = (open().unwrap(), open().unwrap());
        let (mut seen_a, mut seen_b) = (Vec::new(), Vec::new());
        for _ in 0..10 {
            seen_a.extend(offsets(&a.next().unwrap().unwrap()));
            seen_b.extend(offsets(&b.next().unwrap().unwrap()));
        }
        assert_eq!(seen_a, (0..100).collect::<Vec<_>>());
        assert_eq!(seen_b, seen_a);
    }

    /// A piece sends only its kept offsets, projected onto the target, and counts them.
    #[test]
    fn a_piece_keeps_its_offsets_and_counts_them() {
        let piece = Piece { rows: Rows::Hot(vec![batch(0..10), batch(10..20)]), from: 5, to: 14 };
        // The answer's schema has a column these rows lack: it reads as nulls.
        let target = Arc::new(Schema::new(vec![
            Field::new(frazil::decode::META_OFFSET, DataType::Int64, false),
            Field::new("v", DataType::Utf8, true),
            Field::new("extra", DataType::Int64, true),
        ]));
        let (count, sent) = (AtomicUsize::new(0), std::cell::RefCell::new(Vec::new()));
        piece
            .send(&target, &count, |b| {
                assert_eq!(b.schema(), target);
                assert_eq!(b.column_by_name("extra").unwrap().null_count(), b.num_rows());
                sent.borrow_mut().extend(offsets(&b));
                true
            })
            .unwrap();
        assert_eq!(sent.into_inner(), (5..15).collect::<Vec<_>>());
        assert_eq!(count.load(Ordering::Relaxed), 10);
        // A listener that leaves after the first batch stops the reading.
        let count = AtomicUsize::new(0);
        piece.send(&target, &count, |_| false).unwrap();
        assert_eq!(count.load(Ordering::Relaxed), 5);
    }
}
