//! The four meta columns (where each row came from in Kafka), built the same way by every
//! decoder that keeps its records until a flush.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, BinaryArray, Int32Array, Int64Array, LargeBinaryArray, RecordBatch, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, SchemaRef, TimeUnit};

use super::{DeadLetter, META_KEY, META_OFFSET, META_PARTITION, META_TIMESTAMP, names};

/// A buffered record's place in Kafka.
pub trait Origin {
    fn partition(&self) -> i32;
    fn offset(&self) -> i64;
    /// Milliseconds since the epoch; negative (Kafka's -1) means none.
    fn timestamp_ms(&self) -> i64;
    fn key(&self) -> Option<&[u8]>;
}

/// A record's place in Kafka alone, kept for rows whose values are already in columns.
pub struct Place {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Box<[u8]>>,
}

impl Place {
    pub fn of(d: &DeadLetter) -> Place {
        Place { partition: d.partition, offset: d.offset, timestamp_ms: d.timestamp_ms, key: d.key.clone() }
    }
}

impl Origin for Place {
    fn partition(&self) -> i32 {
        self.partition
    }
    fn offset(&self) -> i64 {
        self.offset
    }
    fn timestamp_ms(&self) -> i64 {
        self.timestamp_ms
    }
    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }
}

impl Origin for DeadLetter {
    fn partition(&self) -> i32 {
        self.partition
    }
    fn offset(&self) -> i64 {
        self.offset
    }
    fn timestamp_ms(&self) -> i64 {
        self.timestamp_ms
    }
    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }
}

/// The meta column `name` (of the table's type `dt`) for `rows`; `None` when `name` is not a
/// meta column or `dt` is not a type it can have.
pub fn meta_column<R: Origin>(name: &str, dt: &DataType, rows: &[R]) -> Option<ArrayRef> {
    Some(match (name, dt) {
        (META_PARTITION, DataType::Int32) => Arc::new(Int32Array::from_iter_values(rows.iter().map(Origin::partition))),
        (META_OFFSET, DataType::Int64) => Arc::new(Int64Array::from_iter_values(rows.iter().map(Origin::offset))),
        (META_TIMESTAMP, DataType::Timestamp(TimeUnit::Microsecond, tz)) => Arc::new(
            TimestampMicrosecondArray::from_iter(rows.iter().map(|r| {
                let ms = r.timestamp_ms();
                (ms >= 0).then(|| ms.saturating_mul(1000))
            }))
            .with_timezone_opt(tz.clone()),
        ),
        (META_KEY, DataType::LargeBinary) => Arc::new(LargeBinaryArray::from_iter(rows.iter().map(Origin::key))),
        (META_KEY, DataType::Binary) => Arc::new(BinaryArray::from_iter(rows.iter().map(Origin::key))),
        _ => return None,
    })
}

/// Rows already in columns: batches of the table's user columns as they were when built, and
/// where each row came from. The Avro and Protobuf decoders build them as records arrive.
pub struct Converted {
    pub batches: Vec<RecordBatch>,
    pub places: Vec<Place>,
}

/// `converted` as one batch of the table (`schema`; its user columns `user`): columns built before
/// the table grew get its new columns (null) and wider types. `None` when there are no rows.
pub fn join(
    schema: &SchemaRef,
    user: &SchemaRef,
    converted: Vec<Converted>,
    what: &str,
) -> crate::Result<Option<RecordBatch>> {
    if converted.is_empty() {
        return Ok(None);
    }
    let batches = converted
        .iter()
        .flat_map(|c| &c.batches)
        .map(|b| super::conform_batch(b, user))
        .collect::<crate::Result<Vec<_>>>()?;
    let joined = arrow_select::concat::concat_batches(user, &batches)
        .map_err(|e| crate::Error::decode(format!("joining {what} batches"), e))?;
    let places: Vec<Place> = converted.into_iter().flat_map(|c| c.places).collect();
    assemble(schema, &places, &joined, what).map(Some)
}

/// A batch of `schema` (a table's, meta columns included) from the user columns decoded for
/// `rows` and their meta columns, in the table's order. `what`: the format, for errors.
pub fn assemble<R: Origin>(
    schema: &SchemaRef,
    rows: &[R],
    user: &RecordBatch,
    what: &str,
) -> crate::Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| match user.column_by_name(f.name()) {
            Some(c) if !names::is_reserved(f.name()) => Ok(c.clone()),
            _ => meta_column(f.name(), f.data_type(), rows).ok_or_else(|| {
                crate::Error::decode(
                    "checking the table schema",
                    format!("column `{}` ({}) is neither a field nor a meta column", f.name(), f.data_type()),
                )
            }),
        })
        .collect::<crate::Result<Vec<_>>>()?;
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| crate::Error::decode(format!("assembling a batch of {} {what} rows", rows.len()), e))
}

/// A table's Arrow schema, and its user columns alone (what a writer's values are decoded to);
/// the table must have the four meta columns.
pub fn table_arrow(table: &iceberg::spec::Schema) -> crate::Result<(SchemaRef, SchemaRef)> {
    let schema = Arc::new(
        iceberg::arrow::schema_to_arrow_schema(table)
            .map_err(|e| crate::Error::iceberg("converting the table schema to Arrow", e))?,
    );
    let user = Arc::new(arrow_schema::Schema::new(
        schema.fields().iter().filter(|f| !names::is_reserved(f.name())).cloned().collect::<Vec<_>>(),
    ));
    for meta in [META_PARTITION, META_OFFSET, META_TIMESTAMP, META_KEY] {
        if schema.field_with_name(meta).is_err() {
            return Err(crate::Error::decode("checking the table schema", format!("meta column `{meta}` is missing")));
        }
    }
    Ok((schema, user))
}
