//! The rules a table's layout is decided by, with no I/O: a schema inferred from records or taken
//! from an Avro or Protobuf writer schema, numbered the way a catalog numbers a table it creates (so that
//! spool files written before the table exists carry the ids it will have), the partition spec,
//! and the sort order rows are written in.

use std::sync::Arc;

use iceberg::TableCreation;
use iceberg::spec::{
    NestedField, NestedFieldRef, NullOrder, PartitionSpec, PrimitiveType, Schema, SortDirection, SortField, SortOrder,
    TableMetadataBuilder, Transform, Type, UnboundPartitionSpec,
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
/// With `extra`, the table also gets the `_extra` column for the keys a fixed schema lacks.
pub fn infer<'a>(
    table: &str,
    samples: impl IntoIterator<Item = &'a [u8]>,
    time: &decode::TimeFields,
    partition: &[PartitionField],
    extra: bool,
) -> Result<(Arc<Schema>, PartitionSpec)> {
    let inferred = decode::infer_schema(samples).or_else(|_| decode::infer_schema([b"{}".as_slice()]))?;
    let typed = decode::with_time_fields(inferred, time, 0)?;
    canonical(table, if extra { with_extra(typed)? } else { typed }, partition)
}

/// The schema an operator gave for a new table (its user columns), with the meta columns (and
/// the `_extra` column with `extra`), numbered the way a catalog does on create.
pub fn given(
    table: &str,
    user: &Schema,
    partition: &[PartitionField],
    extra: bool,
) -> Result<(Arc<Schema>, PartitionSpec)> {
    let schema = decode::with_meta_columns(user.as_struct().fields().to_vec(), "the given schema")?;
    canonical(table, if extra { with_extra(schema)? } else { schema }, partition)
}

/// `schema` with the optional string column `_extra` at the end: a new column, or one of that
/// name typed string instead (a new table only: its first records may have had such a key).
fn with_extra(schema: Schema) -> Result<Schema> {
    let mut fields: Vec<NestedFieldRef> =
        schema.as_struct().fields().iter().filter(|f| f.name != decode::EXTRA).cloned().collect();
    let id = schema.highest_field_id() + 1;
    fields.push(NestedField::optional(id, decode::EXTRA, PrimitiveType::String.into()).into());
    Schema::builder()
        .with_schema_id(schema.schema_id())
        .with_fields(fields)
        .build()
        .map_err(|e| Error::iceberg("adding the column for unknown keys", e))
}

/// `schema` of an existing table grown by the `_extra` column (id after `last_id`), when a
/// table that keeps unknown keys lacks it; `None` when it has it. A column of that name of
/// another type is an error naming the fix.
pub fn grow_extra(table: &str, schema: &Schema, last_id: i32) -> Result<Option<Schema>> {
    decode::unknown::with_extra_column(schema, last_id).map_err(|e| {
        Error::config(
            format!("tables.\"{table}\".unknown_keys"),
            format!("table {table}: {e}"),
            "use unknown_keys = \"dead_letter\" for this table, or drop or rename its `_extra` column",
        )
    })
}

/// The first layout of the table of a topic of registered schemas (Avro, Protobuf, JSON Schema):
/// `first`, the table schema made from the first writer schema that has a usable one (its fields,
/// then the meta columns), or the meta columns alone when there is none, it is broken, or it
/// would break the table's rules.
pub fn registered(
    table: &str,
    first: Option<Result<Schema>>,
    partition: &[PartitionField],
    limits: decode::Limits,
) -> Result<(Arc<Schema>, PartitionSpec)> {
    let meta_alone = || decode::infer_schema([b"{}".as_slice()]);
    let schema = match first {
        Some(Ok(s)) => match check_growth(limits, &meta_alone()?, &s) {
            Ok(()) => s,
            Err(e) => {
                log::warn!(
                    "table {table}: the first writer schema would break the table's rules ({e}); starting with the meta columns alone"
                );
                meta_alone()?
            }
        },
        Some(Err(e)) => {
            log::warn!("table {table}: {e}; starting with the meta columns alone");
            meta_alone()?
        }
        None => meta_alone()?,
    };
    canonical(table, schema, partition)
}

/// Whether a table may grow from `old` to `grown` (both with the meta columns) under the rules of
/// `decode::guard`: `Err` names the rule the new fields break.
pub fn check_growth(limits: decode::Limits, old: &Schema, grown: &Schema) -> std::result::Result<(), String> {
    let user = |s: &Schema| -> std::result::Result<arrow_schema::Fields, String> {
        let arrow = iceberg::arrow::schema_to_arrow_schema(s).map_err(|e| e.to_string())?;
        Ok(arrow.fields().iter().filter(|f| !decode::names::is_reserved(f.name())).cloned().collect())
    };
    decode::guard::admit_fields(limits, &user(old)?, &user(grown)?)
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
