//! The rules a table's layout is decided by, with no I/O: a schema inferred from records or taken
//! from an Avro writer schema, numbered the way a catalog numbers a table it creates (so that
//! spool files written before the table exists carry the ids it will have), the partition spec,
//! and the sort order rows are written in.

use std::sync::Arc;

use iceberg::TableCreation;
use iceberg::spec::{
    NullOrder, PartitionSpec, Schema, SortDirection, SortField, SortOrder, TableMetadataBuilder, Transform, Type,
    UnboundPartitionSpec,
};

use crate::config::partition::PartitionField;
use crate::config::per_table::SortKey;
use crate::decode::{self, META_KEY, META_OFFSET, META_PARTITION, META_TIMESTAMP};
use crate::{Error, Result};

/// The sort order of `keys` over `schema` (order id 1; unsorted when there are no keys). Each key
/// must name a top-level primitive column.
pub fn sort_order(table: &str, schema: &Schema, keys: &[SortKey]) -> Result<SortOrder> {
    if keys.is_empty() {
        return Ok(SortOrder::unsorted_order());
    }
    let mut order = SortOrder::builder();
    order.with_order_id(1);
    for k in keys {
        let field = schema.as_struct().field_by_name(&k.column).filter(|f| matches!(f.field_type.as_ref(), Type::Primitive(_))).ok_or_else(|| {
            Error::config(
                format!("tables.\"{table}\".sort_by"),
                format!("table {table} has no top-level column `{}` of a primitive type to sort by", k.column),
                "name a column such as \"device\" or \"_kafka_timestamp desc\" (or set it in [tables.\"*\"] only for tables that have it)",
            )
        })?;
        order.with_sort_field(
            SortField::builder()
                .source_id(field.id)
                .transform(Transform::Identity)
                .direction(if k.descending { SortDirection::Descending } else { SortDirection::Ascending })
                .null_order(if k.nulls_first { NullOrder::First } else { NullOrder::Last })
                .build(),
        );
    }
    order.build(schema).map_err(|e| Error::iceberg(format!("sort order of {table}"), e))
}

/// `order` when frazil can write rows in it (identity transforms of top-level columns), else
/// unsorted: a table created elsewhere may sort by a transform, which its own engines apply.
pub fn writable_sort(order: &SortOrder, schema: &Schema) -> SortOrder {
    let ok = order
        .fields
        .iter()
        .all(|f| f.transform == Transform::Identity && schema.as_struct().field_by_id(f.source_id).is_some());
    if ok { order.clone() } else { SortOrder::unsorted_order() }
}

/// Refuses a table frazil cannot write to: one without the Kafka metadata columns.
pub fn check_writable(table: &str, schema: &Schema) -> Result<()> {
    for col in [META_PARTITION, META_OFFSET, META_TIMESTAMP, META_KEY] {
        if schema.field_by_name(col).is_none() {
            return Err(Error::layout(
                table,
                format!(
                    "has no `{col}` column, so it was not created by frazil; point catalog.table at a new table name"
                ),
            ));
        }
    }
    Ok(())
}

/// Infers a schema from sample values and numbers its fields (and the partition fields) the way a
/// catalog does on create.
/// When no sample is a JSON object the table starts with the meta columns alone (the records are
/// dead letters) and grows with the first object that comes.
pub fn infer<'a>(
    table: &str,
    samples: impl IntoIterator<Item = &'a [u8]>,
    time: &decode::TimeFields,
    partition: &[PartitionField],
) -> Result<(Arc<Schema>, PartitionSpec)> {
    let inferred = decode::infer_schema(samples).or_else(|_| decode::infer_schema([b"{}".as_slice()]))?;
    canonical(table, decode::with_time_fields(inferred, time, 0)?, partition)
}

/// The schema of an Avro topic's table from the writer schema of its first records (the meta
/// columns alone when none of them had a usable one: the table grows with the first that does).
pub fn avro(
    table: &str,
    writer: Option<&decode::avro::Avro>,
    partition: &[PartitionField],
) -> Result<(Arc<Schema>, PartitionSpec)> {
    let schema = match writer.map(decode::avro::table_schema) {
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            log::warn!("table {table}: {e}; starting with the meta columns alone");
            decode::infer_schema([b"{}".as_slice()])?
        }
        None => decode::infer_schema([b"{}".as_slice()])?,
    };
    canonical(table, schema, partition)
}

/// The fixed schema of a raw or text topic's table, numbered the way a catalog does on create.
pub fn raw(table: &str, text: bool, partition: &[PartitionField]) -> Result<(Arc<Schema>, PartitionSpec)> {
    canonical(table, decode::raw::raw_schema(text), partition)
}

/// The dead-letter schema, numbered the way a catalog does on create; unpartitioned.
pub fn dead_letters(table: &str) -> Result<(Arc<Schema>, PartitionSpec)> {
    canonical(table, decode::dead_letter_schema(), &[])
}

/// `schema` and a spec of `partition` fields, numbered the way a catalog numbers them when it
/// creates the table (fields level by level, partition fields from 1000).
fn canonical(table: &str, schema: Schema, partition: &[PartitionField]) -> Result<(Arc<Schema>, PartitionSpec)> {
    let mut spec = UnboundPartitionSpec::builder();
    for f in partition {
        let source = schema.as_struct().field_by_name(&f.column).ok_or_else(|| {
            Error::config(
                format!("tables.\"{table}\".partition_by"),
                format!("table {table} has no column `{}` to partition by ({})", f.column, f.name()),
                "name a top-level column of the table, e.g. \"day(_kafka_timestamp)\"",
            )
        })?;
        spec = spec
            .add_partition_field(source.id, f.name(), f.transform)
            .map_err(|e| Error::iceberg(format!("partition field {} of {table}", f.name()), e))?;
    }
    let creation = TableCreation::builder()
        .name(table.to_string())
        .location("file:///frazil-canonical-ids".to_string())
        .schema(schema)
        .partition_spec(spec.build())
        .build();
    let metadata = TableMetadataBuilder::from_table_creation(creation)
        .and_then(|b| b.build())
        .map_err(|e| Error::iceberg(format!("number the fields of {table}"), e))?;
    let m = metadata.metadata;
    Ok((m.current_schema().clone(), m.default_partition_spec().as_ref().clone()))
}

/// True when two schemas have the same fields with the same ids, names and types.
pub fn same_fields(a: &Schema, b: &Schema) -> bool {
    a.as_struct() == b.as_struct()
}
