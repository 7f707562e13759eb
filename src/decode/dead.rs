//! Dead letters: records that cannot become rows of their table (not JSON, not an object, a value
//! that does not fit a column, no value at all). Each is kept whole, with where it came from and
//! why, and goes to the table's dead-letter table, so a bad record never stalls its partition and
//! never disappears.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, BinaryArray, Int32Array, Int64Array, LargeBinaryArray, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{DataType, TimeUnit};
use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};

use super::Message;
use crate::{Error, Result};

/// One record refused by the decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch; negative (Kafka's -1) means none.
    pub timestamp_ms: i64,
    pub key: Option<Box<[u8]>>,
    pub value: Option<Box<[u8]>>,
    pub reason: String,
}

impl DeadLetter {
    pub fn new(msg: &Message<'_>, reason: impl Into<String>) -> Self {
        DeadLetter {
            partition: msg.partition,
            offset: msg.offset,
            timestamp_ms: msg.timestamp_ms,
            key: msg.key.map(Box::from),
            value: msg.value.map(Box::from),
            reason: reason.into(),
        }
    }
}

/// The dead-letter table's schema, the same for every table: where the record came from, its raw
/// key and value bytes, and why it was refused.
pub fn dead_letter_schema() -> Schema {
    let f = |id, name: &str, required, t| {
        Arc::new(if required {
            NestedField::required(id, name, Type::Primitive(t))
        } else {
            NestedField::optional(id, name, Type::Primitive(t))
        })
    };
    Schema::builder()
        .with_fields(vec![
            f(1, "topic", true, PrimitiveType::String),
            f(2, "partition", true, PrimitiveType::Int),
            f(3, "offset", true, PrimitiveType::Long),
            f(4, "timestamp", false, PrimitiveType::Timestamptz),
            f(5, "key", false, PrimitiveType::Binary),
            f(6, "value", false, PrimitiveType::Binary),
            f(7, "reason", true, PrimitiveType::String),
        ])
        .build()
        .expect("a fixed, valid schema")
}

/// The dead letters of one topic as a batch of `schema` (the dead-letter schema, with the field ids
/// the table has).
pub fn dead_letter_batch(topic: &str, letters: &[DeadLetter], schema: &Schema) -> Result<RecordBatch> {
    let arrow = Arc::new(
        iceberg::arrow::schema_to_arrow_schema(schema).map_err(|e| Error::iceberg("dead-letter schema to Arrow", e))?,
    );
    let binary = |dt: &DataType, values: Vec<Option<&[u8]>>| -> ArrayRef {
        match dt {
            DataType::LargeBinary => Arc::new(LargeBinaryArray::from(values)),
            _ => Arc::new(BinaryArray::from(values)),
        }
    };
    let mut columns: Vec<ArrayRef> = Vec::new();
    for field in arrow.fields() {
        columns.push(match field.name().as_str() {
            "topic" => Arc::new(StringArray::from(vec![topic; letters.len()])),
            "partition" => Arc::new(Int32Array::from_iter_values(letters.iter().map(|d| d.partition))),
            "offset" => Arc::new(Int64Array::from_iter_values(letters.iter().map(|d| d.offset))),
            "timestamp" => {
                let tz = match field.data_type() {
                    DataType::Timestamp(TimeUnit::Microsecond, tz) => tz.clone(),
                    other => return Err(Error::decode("dead-letter schema", format!("timestamp is {other}"))),
                };
                Arc::new(
                    TimestampMicrosecondArray::from_iter(
                        letters.iter().map(|d| (d.timestamp_ms >= 0).then(|| d.timestamp_ms.saturating_mul(1000))),
                    )
                    .with_timezone_opt(tz),
                )
            }
            "key" => binary(field.data_type(), letters.iter().map(|d| d.key.as_deref()).collect()),
            "value" => binary(field.data_type(), letters.iter().map(|d| d.value.as_deref()).collect()),
            "reason" => Arc::new(StringArray::from_iter_values(letters.iter().map(|d| d.reason.as_str()))),
            other => return Err(Error::decode("dead-letter schema", format!("unexpected column `{other}`"))),
        });
    }
    RecordBatch::try_new(arrow, columns)
        .map_err(|e| Error::decode(format!("{} dead letters of {topic}", letters.len()), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;

    #[test]
    fn dead_letters_keep_the_raw_record_and_the_reason() {
        let msg = Message {
            partition: 3,
            offset: 42,
            timestamp_ms: 1_700_000_000_123,
            key: Some(b"k"),
            value: Some(b"{not json"),
        };
        let none = Message { partition: 3, offset: 43, timestamp_ms: -1, key: None, value: None };
        let letters =
            [DeadLetter::new(&msg, "invalid JSON"), DeadLetter::new(&none, "message has no value (tombstone)")];
        let b = dead_letter_batch("events", &letters, &dead_letter_schema()).unwrap();
        assert_eq!(b.num_rows(), 2);
        let col = |name: &str| b.column_by_name(name).unwrap().clone();
        assert_eq!(col("topic").as_any().downcast_ref::<StringArray>().unwrap().value(1), "events");
        assert_eq!(col("offset").as_any().downcast_ref::<Int64Array>().unwrap().values(), &[42, 43]);
        let ts = col("timestamp");
        let ts = ts.as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap();
        assert_eq!((ts.value(0), ts.is_null(1)), (1_700_000_000_123_000, true));
        let value = col("value");
        let raw: Vec<Option<&[u8]>> = match value.data_type() {
            DataType::LargeBinary => value.as_any().downcast_ref::<LargeBinaryArray>().unwrap().iter().collect(),
            _ => value.as_any().downcast_ref::<BinaryArray>().unwrap().iter().collect(),
        };
        assert_eq!(raw, vec![Some(&b"{not json"[..]), None]);
        assert_eq!(
            col("reason").as_any().downcast_ref::<StringArray>().unwrap().value(1),
            "message has no value (tombstone)"
        );
    }
}
