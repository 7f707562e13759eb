//! Each table as the answer sees it: the table's current snapshot, plus the local rows (spool
//! files, then hot rows) at offsets the snapshot does not hold, each offset once, projected by name
//! onto the newest schema. Registered in DataFusion under the table's name; the local rows are
//! read as the query runs (see `local`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use datafusion::arrow::array::{Array, Int64Array, RecordBatch};
use datafusion::arrow::compute::kernels::cmp::{gt_eq, lt_eq};
use datafusion::arrow::compute::{and, filter_record_batch};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{Expr, cast, lit};
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::SessionContext;
use frazil::read::{HotPiece, Piece, Plan, Span, plan};
use frazil::topic::TopicPartition;
use iceberg_datafusion::IcebergStaticTableProvider;

use crate::error::{Error, Result};
use crate::local::{self, Rows};
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
    /// Offset ranges the answer lacks: held by quarantined spool files and not in the snapshot.
    pub gaps: Vec<(TopicPartition, i64, i64)>,
    /// The local rows the query read (all it keeps, unless it stopped early, as a LIMIT does).
    pub local_rows: Arc<AtomicUsize>,
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
    let Sources { hot, files, tables, dead_letter_tables, quarantined, .. } = sources;
    for (name, committed) in tables {
        let tp = TablePlan::new(&name, &files, &hot, committed.as_ref());
        let mut pieces = Vec::new();
        for (n, &i) in tp.files.iter().enumerate() {
            let Some((from, to)) = tp.plan.keep[n] else { continue };
            let f = &files[i];
            let path = f.entry.path.clone();
            let file = f.file.try_clone().map_err(|e| Error::data(format!("spool file {}", path.display()), e))?;
            pieces.push(local::Piece { rows: Rows::file(file, path)?, from, to });
        }
        for (n, &i) in tp.hot.iter().enumerate() {
            let Some((from, to)) = tp.hot_keep(n) else { continue };
            pieces.push(local::Piece { rows: Rows::Hot(hot[i].batches.clone()), from, to });
        }
        let local_rows = Arc::new(AtomicUsize::new(0));
        let snapshot_id = committed.as_ref().and_then(|c| c.snapshot_id);
        let gaps = gaps(&name, &quarantined, committed.as_ref().map(|c| &c.offsets));
        let dead_letters = dead_letter_tables.contains(&name);
        if register_one(ctx, &name, committed, pieces, &local_rows, dead_letters).await? {
            out.push(Coverage {
                table: name,
                snapshot_id,
                watermark: tp.plan.watermark,
                horizon: tp.horizon,
                gaps,
                local_rows,
                files: tp.files.len(),
                hot: tp.hot.len(),
            });
        }
    }
    Ok(out)
}

/// Registers `name` as the union of the table's snapshot and the local `pieces`, each read as
/// the query runs. A table with neither yet (nothing arrived so far) is registered empty, with the
/// columns every such table has: the meta columns, or the dead-letter columns; `false` only if
/// even that fails.
async fn register_one(
    ctx: &SessionContext,
    name: &str,
    committed: Option<Committed>,
    pieces: Vec<local::Piece>,
    local_rows: &Arc<AtomicUsize>,
    dead_letters: bool,
) -> Result<bool> {
    let table_schema = committed
        .as_ref()
        .map(|c| iceberg::arrow::schema_to_arrow_schema(c.table.metadata().current_schema()).map(Arc::new));
    let table_schema = table_schema.transpose().map_err(|e| Error::data(format!("{name}'s schema"), e))?;
    let schemas: Vec<SchemaRef> = pieces.iter().filter_map(local::Piece::schema).collect();
    let Some(target) = newest_schema(&schemas, table_schema.as_ref()).or_else(|| empty_schema(dead_letters)) else {
        return Ok(false);
    };
    let local_df = if pieces.is_empty() {
        ctx.read_table(Arc::new(MemTable::try_new(target.clone(), vec![vec![]])?))?
    } else {
        let partitions = pieces.into_iter().map(|p| {
            Arc::new(local::Partition::new(p, target.clone(), local_rows.clone())) as Arc<dyn PartitionStream>
        });
        ctx.read_table(Arc::new(StreamingTable::try_new(target.clone(), partitions.collect())?))?
    };
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

/// The offsets of `table` in quarantined spool files at or above the snapshot's `committed` ones.
fn gaps(
    table: &str,
    quarantined: &[Span],
    committed: Option<&BTreeMap<TopicPartition, i64>>,
) -> Vec<(TopicPartition, i64, i64)> {
    let mut out: Vec<(TopicPartition, i64, i64)> = quarantined
        .iter()
        .filter(|s| s.table == table)
        .filter_map(|s| {
            let tp = (s.topic.clone(), s.partition);
            let c = committed.and_then(|c| c.get(&tp).copied()).unwrap_or(i64::MIN);
            (s.last_offset >= c).then(|| (tp, s.first_offset.max(c), s.last_offset))
        })
        .collect();
    out.sort();
    out
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

/// The newest schema: the local pieces' (the newest piece's first: fields grow in the spool
/// before the table), then columns only older pieces or the table have. `local` is oldest first.
fn newest_schema(local: &[SchemaRef], table: Option<&SchemaRef>) -> Option<SchemaRef> {
    let mut schemas: Vec<SchemaRef> = local.iter().rev().cloned().collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn span(table: &str, partition: i32, first: i64, last: i64) -> Span {
        Span { table: table.into(), topic: "t".into(), partition, first_offset: first, last_offset: last, rows: 1 }
    }

    #[test]
    fn quarantined_offsets_the_snapshot_lacks_are_gaps() {
        let q = [span("a", 0, 10, 19), span("a", 1, 0, 9), span("b", 0, 30, 39), span("a", 0, 40, 49)];
        let committed = BTreeMap::from([(("t".to_string(), 0), 15), (("t".to_string(), 1), 10)]);
        // Partition 0: 15..=19 and 40..=49 are missing; partition 1's file is below the snapshot's offsets.
        let tp0 = ("t".to_string(), 0);
        assert_eq!(gaps("a", &q, Some(&committed)), vec![(tp0.clone(), 15, 19), (tp0.clone(), 40, 49)]);
        // With no table, every quarantined offset is missing.
        assert_eq!(gaps("b", &q, None), vec![(tp0, 30, 39)]);
    }
}
