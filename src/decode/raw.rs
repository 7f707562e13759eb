//! Topics with no schema: each record becomes a row as it is. The value is kept as bytes
//! (`raw`) or as UTF-8 text (`text`, where a value that is not UTF-8 is a dead letter), and the
//! headers as a map from name to bytes; the key and the rest are in the meta columns.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, LargeBinaryBuilder, StringBuilder};
use arrow_array::{ArrayRef, BinaryArray, LargeBinaryArray, MapArray, RecordBatch, StringArray, StructArray};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, SchemaRef};
use iceberg::spec::{MapType, NestedField, PrimitiveType, Schema, Type};

use super::{META_KEY, META_OFFSET, META_PARTITION, META_TIMESTAMP, Message, Rejected};
use crate::{Error, Result};

/// The value column.
pub const VALUE: &str = "value";
/// The headers column: map<string, binary>.
pub const HEADERS: &str = "headers";

/// The schema of a raw (`text`: UTF-8) topic's table, before a catalog numbers it.
pub fn raw_schema(text: bool) -> Schema {
    let value = if text { PrimitiveType::String } else { PrimitiveType::Binary };
    let headers = Type::Map(MapType::new(
        NestedField::map_key_element(3, Type::Primitive(PrimitiveType::String)).into(),
        NestedField::map_value_element(4, Type::Primitive(PrimitiveType::Binary), false).into(),
    ));
    Schema::builder()
        .with_fields(vec![
            NestedField::optional(1, VALUE, Type::Primitive(value)).into(),
            NestedField::optional(2, HEADERS, headers).into(),
            NestedField::required(5, META_PARTITION, PrimitiveType::Int.into()).into(),
            NestedField::required(6, META_OFFSET, PrimitiveType::Long.into()).into(),
            NestedField::optional(7, META_TIMESTAMP, PrimitiveType::Timestamptz.into()).into(),
            NestedField::optional(8, META_KEY, PrimitiveType::Binary.into()).into(),
        ])
        .build()
        .expect("a fixed, valid schema")
}

struct Row {
    partition: i32,
    offset: i64,
    timestamp_ms: i64,
    key: Option<Box<[u8]>>,
    value: Option<Box<[u8]>>,
    headers: Vec<(String, Box<[u8]>)>,
}

impl super::meta::Origin for Row {
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

/// Buffers records and builds batches of the table's Arrow schema (with its field ids).
pub struct RawDecoder {
    schema: SchemaRef,
    text: bool,
    rows: Vec<Row>,
}

impl RawDecoder {
    pub fn new(schema: &Schema) -> Result<Self> {
        let arrow = Arc::new(
            iceberg::arrow::schema_to_arrow_schema(schema)
                .map_err(|e| Error::iceberg("raw table schema to Arrow", e))?,
        );
        let text = match arrow.field_with_name(VALUE).map(|f| f.data_type().clone()) {
            Ok(DataType::Utf8 | DataType::LargeUtf8) => true,
            Ok(DataType::Binary | DataType::LargeBinary) => false,
            _ => {
                return Err(Error::decode(
                    "checking a raw table's schema",
                    format!("it needs a `{VALUE}` column of type binary or string"),
                ));
            }
        };
        Ok(RawDecoder { schema: arrow, text, rows: Vec::new() })
    }

    pub fn arrow_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Takes one record; for a `text` table a value that is not UTF-8 is refused.
    pub fn push(
        &mut self,
        msg: &Message<'_>,
        headers: &BTreeMap<String, Vec<u8>>,
    ) -> std::result::Result<(), Rejected> {
        if self.text
            && let Some(v) = msg.value
            && let Err(e) = std::str::from_utf8(v)
        {
            return Err(Rejected { reason: format!("value is not UTF-8 text ({e})") });
        }
        self.rows.push(Row {
            partition: msg.partition,
            offset: msg.offset,
            timestamp_ms: msg.timestamp_ms,
            key: msg.key.map(Box::from),
            value: msg.value.map(Box::from),
            headers: headers.iter().map(|(k, v)| (k.clone(), Box::from(v.as_slice()))).collect(),
        });
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Everything buffered as one batch (`None` when empty).
    pub fn flush(&mut self) -> Result<Option<RecordBatch>> {
        let rows = std::mem::take(&mut self.rows);
        if rows.is_empty() {
            return Ok(None);
        }
        let mut columns: Vec<ArrayRef> = Vec::new();
        for field in self.schema.fields() {
            let dt = field.data_type();
            columns.push(match field.name().as_str() {
                VALUE => match dt {
                    DataType::Utf8 => {
                        let mut b = StringBuilder::new();
                        for r in &rows {
                            b.append_option(
                                r.value.as_deref().map(|v| std::str::from_utf8(v).expect("checked in push")),
                            );
                        }
                        Arc::new(b.finish())
                    }
                    DataType::LargeUtf8 => Arc::new(arrow_array::LargeStringArray::from_iter(
                        rows.iter()
                            .map(|r| r.value.as_deref().map(|v| std::str::from_utf8(v).expect("checked in push"))),
                    )),
                    DataType::LargeBinary => {
                        Arc::new(LargeBinaryArray::from_iter(rows.iter().map(|r| r.value.as_deref())))
                    }
                    _ => Arc::new(BinaryArray::from_iter(rows.iter().map(|r| r.value.as_deref()))),
                },
                HEADERS => headers_array(dt, &rows)?,
                name @ (META_PARTITION | META_OFFSET | META_TIMESTAMP | META_KEY) => {
                    super::meta::meta_column(name, dt, &rows)
                        .ok_or_else(|| Error::decode("raw table schema", format!("{name} is {dt}")))?
                }
                other => {
                    return Err(Error::decode(
                        "raw table schema",
                        format!("unexpected column `{other}` (a raw table has value, headers and the meta columns)"),
                    ));
                }
            });
        }
        RecordBatch::try_new(self.schema.clone(), columns)
            .map(Some)
            .map_err(|e| Error::decode(format!("a batch of {} raw rows", rows.len()), e))
    }
}

/// The headers as a map array of exactly the schema's type (entry field names and ids included).
fn headers_array(dt: &DataType, rows: &[Row]) -> Result<ArrayRef> {
    let DataType::Map(entries, sorted) = dt else {
        return Err(Error::decode("raw table schema", format!("{HEADERS} is {dt}, not a map")));
    };
    let DataType::Struct(fields) = entries.data_type() else {
        return Err(Error::decode("raw table schema", "map entries are not a struct"));
    };
    let mut keys = StringBuilder::new();
    let (mut values, mut large_values) = (BinaryBuilder::new(), LargeBinaryBuilder::new());
    let mut offsets = vec![0i32];
    for r in rows {
        for (k, v) in &r.headers {
            keys.append_value(k);
            values.append_value(v);
            large_values.append_value(v);
        }
        offsets.push(offsets.last().copied().unwrap_or(0) + r.headers.len() as i32);
    }
    let keys: ArrayRef = Arc::new(StringArray::from(keys.finish()));
    let values: ArrayRef = match fields[1].data_type() {
        DataType::LargeBinary => Arc::new(large_values.finish()),
        _ => Arc::new(values.finish()),
    };
    let entries_array =
        StructArray::try_new(fields.clone(), vec![keys, values], None).map_err(|e| Error::decode("headers", e))?;
    let map = MapArray::try_new(
        entries.clone(),
        OffsetBuffer::new(offsets.into()),
        entries_array,
        None::<NullBuffer>,
        *sorted,
    )
    .map_err(|e| Error::decode("headers", e))?;
    Ok(Arc::new(map))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;

    #[test]
    fn raw_and_text_rows_keep_value_key_and_headers() {
        let mut headers = BTreeMap::new();
        headers.insert("trace".to_string(), b"abc".to_vec());
        let none = BTreeMap::new();
        let msg = |offset, value: Option<&'static [u8]>| Message {
            partition: 1,
            offset,
            timestamp_ms: 5,
            key: Some(b"k"),
            value,
        };

        let mut raw = RawDecoder::new(&raw_schema(false)).unwrap();
        raw.push(&msg(0, Some(&[0xff, 0x00])), &headers).unwrap();
        raw.push(&msg(1, None), &none).unwrap();
        let b = raw.flush().unwrap().unwrap();
        assert_eq!(b.num_rows(), 2);
        let v = b.column_by_name(VALUE).unwrap();
        assert!(v.is_null(1));
        let h = b.column_by_name(HEADERS).unwrap().as_any().downcast_ref::<MapArray>().unwrap().clone();
        assert_eq!((h.value_length(0), h.value_length(1)), (1, 0));

        let mut text = RawDecoder::new(&raw_schema(true)).unwrap();
        text.push(&msg(0, Some(b"hello")), &none).unwrap();
        let refused = text.push(&msg(1, Some(&[0xff])), &none).unwrap_err();
        assert!(refused.reason.contains("not UTF-8"), "{}", refused.reason);
        let b = text.flush().unwrap().unwrap();
        assert_eq!(b.column_by_name(VALUE).unwrap().as_any().downcast_ref::<StringArray>().unwrap().value(0), "hello");
        assert!(text.flush().unwrap().is_none());
    }
}
