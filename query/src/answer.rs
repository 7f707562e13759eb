//! Each table as the answer sees it: the table's current snapshot, plus the local rows (spool
//! files, then hot rows) at offsets the snapshot does not hold, each offset once, projected by name
//! onto the newest schema. Registered in DataFusion under the table's name.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, Int64Array, RecordBatch};
use datafusion::arrow::compute::kernels::cmp::{gt_eq, lt_eq};
use datafusion::arrow::compute::{and, filter_record_batch};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{Expr, cast, lit};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::prelude::SessionContext;
use frazil::read::{HotPiece, Piece, Plan, plan};
use frazil::topic::TopicPartition;
use iceberg_datafusion::IcebergStaticTableProvider;

use crate::error::{Error, Result};
use crate::sources::{Committed, OpenFile, Sources};

/// What one table's answer covers, for the report beside the rows.
pub struct Coverage {
    pub table: String,
    /// The snapshot read (`None`: no table in the catalog, an empty one, or offline).
    pub snapshot_id: Option<i64>,
    /// Per partition: the next offset the answer does not hold.
    pub watermark: BTreeMap<TopicPartition, i64>,
    /// Per partition: the oldest offset held locally (what an offline answer reaches back to).
    pub horizon: BTreeMap<TopicPartition, i64>,
    pub local_rows: usize,
    pub files: usize,
    pub hot: usize,
}

/// One table's local pieces (indexes of its spool files, then of its hot pieces, in the sources)
/// and the plan that says which offsets of each an answer keeps.
pub struct TablePlan {
    pub files: Vec<usize>,
    pub hot: Vec<usize>,
    /// `keep` holds the files' entries first, then the hot pieces'.
    pub plan: Plan,
    /// Per partition: the oldest offset held locally.
    pub horizon: BTreeMap<TopicPartition, i64>,
}

impl TablePlan {
    pub fn new(name: &str, files: &[OpenFile], hot: &[HotPiece], committed: Option<&Committed>) -> TablePlan {
        let file_idx: Vec<usize> = (0..files.len()).filter(|&i| files[i].entry.span.table == name).collect();
        let hot_idx: Vec<usize> = (0..hot.len()).filter(|&i| hot[i].span.table == name).collect();
        let spans = file_idx.iter().map(|&i| &files[i].entry.span).chain(hot_idx.iter().map(|&i| &hot[i].span));
        let pieces: Vec<Piece> = spans.map(|s| s.piece()).collect();
        let mut horizon: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        for p in &pieces {
            let h = horizon.entry(p.tp.clone()).or_insert(p.first);
            *h = (*h).min(p.first);
        }
        let offsets = committed.map(|c| c.offsets.clone()).unwrap_or_default();
        TablePlan { files: file_idx, hot: hot_idx, plan: plan(&offsets, &pieces), horizon }
    }

    /// The kept offsets of the `n`th hot piece of this table.
    pub fn hot_keep(&self, n: usize) -> Option<(i64, i64)> {
        self.plan.keep[self.files.len() + n]
    }
}

/// Registers every table of `sources` in `ctx`; returns what each covers.
pub async fn register(ctx: &SessionContext, sources: Sources) -> Result<Vec<Coverage>> {
    let mut out = Vec::new();
    let Sources { hot, files, tables, dead_letter_tables, .. } = sources;
    for (name, committed) in tables {
        let tp = TablePlan::new(&name, &files, &hot, committed.as_ref());
        let mut kept = Vec::new();
        for (n, &i) in tp.files.iter().enumerate() {
            let Some((from, to)) = tp.plan.keep[n] else { continue };
            let f = &files[i];
            let path = f.entry.path.display();
            let file = f.file.try_clone().map_err(|e| Error::data(format!("spool file {path}"), e))?;
            for b in read_parquet(file).map_err(|e| Error::data(format!("spool file {path}"), e))? {
                kept.push(keep_offsets(&b, from, to)?);
            }
        }
        for (n, &i) in tp.hot.iter().enumerate() {
            let Some((from, to)) = tp.hot_keep(n) else { continue };
            for b in &hot[i].batches {
                kept.push(keep_offsets(b, from, to)?);
            }
        }
        let local_rows = kept.iter().map(RecordBatch::num_rows).sum();
        let snapshot_id = committed.as_ref().and_then(|c| c.snapshot_id);
        let dead_letters = dead_letter_tables.contains(&name);
        if register_one(ctx, &name, committed, kept, dead_letters).await? {
            out.push(Coverage {
                table: name,
                snapshot_id,
                watermark: tp.plan.watermark,
                horizon: tp.horizon,
                local_rows,
                files: tp.files.len(),
                hot: tp.hot.len(),
            });
        }
    }
    Ok(out)
}

/// Registers `name` as the union of the table's snapshot and `local`. A table with neither yet
/// (nothing arrived so far) is registered empty, with the columns every such table has: the
/// meta columns, or the dead-letter columns; `false` only if even that fails.
async fn register_one(
    ctx: &SessionContext,
    name: &str,
    committed: Option<Committed>,
    local: Vec<RecordBatch>,
    dead_letters: bool,
) -> Result<bool> {
    let table_schema = committed
        .as_ref()
        .map(|c| iceberg::arrow::schema_to_arrow_schema(c.table.metadata().current_schema()).map(Arc::new));
    let table_schema = table_schema.transpose().map_err(|e| Error::data(format!("{name}'s schema"), e))?;
    let Some(target) = newest_schema(&local, table_schema.as_ref()).or_else(|| empty_schema(dead_letters)) else {
        return Ok(false);
    };
    let local = local.iter().map(|b| frazil::decode::conform_batch(b, &target)).collect::<frazil::Result<Vec<_>>>()?;
    let local_df = ctx.read_table(Arc::new(MemTable::try_new(target.clone(), vec![local])?))?;
    let df = match committed {
        Some(Committed { table, snapshot_id: Some(id), .. }) => {
            let provider = IcebergStaticTableProvider::try_new_from_table_snapshot(table, id)
                .await
                .map_err(|e| Error::data(format!("scanning {name}"), e))?;
            let table_df = ctx.read_table(Arc::new(provider))?;
            let have = table_df.schema().as_arrow().clone();
            table_df
                .select(target.fields().iter().map(|f| project(f, &have)).collect::<Result<Vec<_>>>()?)?
                .union(local_df)?
        }
        _ => local_df,
    };
    ctx.register_table(name, df.into_view())?;
    Ok(true)
}

/// The column `f` of the target from a table of schema `have`: as it is, cast, or nulls.
fn project(f: &Field, have: &Schema) -> Result<Expr> {
    let column = Expr::Column(Column::new_unqualified(f.name()));
    Ok(match have.field_with_name(f.name()) {
        Ok(h) if h.data_type() == f.data_type() => column,
        Ok(_) => cast(column, f.data_type().clone()).alias(f.name()),
        Err(_) => lit(ScalarValue::try_from(f.data_type())?).alias(f.name()),
    })
}

/// The newest schema: the local rows' (the newest batch's first: fields grow in the spool before
/// the table), then columns only older batches or the table have.
fn newest_schema(local: &[RecordBatch], table: Option<&SchemaRef>) -> Option<SchemaRef> {
    let mut schemas: Vec<SchemaRef> = local.iter().rev().map(RecordBatch::schema).collect();
    schemas.extend(table.cloned());
    let mut fields: Vec<Arc<Field>> = Vec::new();
    for s in &schemas {
        for f in s.fields() {
            if !fields.iter().any(|g| g.name() == f.name()) {
                fields.push(f.clone());
            }
        }
    }
    (!schemas.is_empty()).then(|| Arc::new(Schema::new(fields)))
}

/// The columns of a table that has no rows anywhere yet.
fn empty_schema(dead_letters: bool) -> Option<SchemaRef> {
    let schema = if dead_letters {
        Ok(frazil::decode::dead_letter_schema())
    } else {
        frazil::decode::with_meta_columns(Vec::new(), "the meta columns")
    };
    schema.ok().and_then(|s| iceberg::arrow::schema_to_arrow_schema(&s).ok()).map(Arc::new)
}

pub fn read_parquet(
    file: std::fs::File,
) -> std::result::Result<Vec<RecordBatch>, datafusion::parquet::errors::ParquetError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    reader.collect::<std::result::Result<Vec<_>, _>>().map_err(Into::into)
}

/// The rows of `b` at offsets `from..=to`: `_kafka_offset` in a table, `offset` in a dead-letter table.
pub fn keep_offsets(b: &RecordBatch, from: i64, to: i64) -> Result<RecordBatch> {
    let column = b
        .column_by_name(frazil::decode::META_OFFSET)
        .or_else(|| b.column_by_name("offset"))
        .ok_or_else(|| Error::data("local rows", "no offset column"))?;
    let offsets = column
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| Error::data("local rows", format!("an offset column of type {}", column.data_type())))?;
    let inside = and(&gt_eq(offsets, &Int64Array::new_scalar(from))?, &lt_eq(offsets, &Int64Array::new_scalar(to))?)?;
    Ok(filter_record_batch(b, &inside)?)
}
