//! Decoded Protobuf messages into Arrow columns of the table's types, as [`super::schema`] maps
//! them: column by column, a nested message's fields as children, repeated fields and maps
//! flattened with their offsets.
//!
//! Presence follows Protobuf: a field that tracks presence (a message, a proto3 `optional`, a
//! oneof member, any proto2 field) and is not set is null; a proto3 scalar without presence is
//! its default value, as every Protobuf reader sees it. A repeated field or map that is not set
//! is empty.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{GenericBinaryBuilder, StringBuilder};
use arrow_array::{
    ArrayRef, BooleanArray, Decimal128Array, Float32Array, Float64Array, Int32Array, Int64Array, ListArray, MapArray,
    StructArray, TimestampMicrosecondArray, new_null_array,
};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, Field, FieldRef, Fields, TimeUnit};
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, ReflectMessage, Value};

/// The columns of `fields` (a table's, by name: top-level names as `rename` makes them from the
/// message's field names) for `messages`, all of type `message`. A column the messages have no
/// field for is all nulls. The values are moved out of the messages, never copied.
pub fn columns(
    message: &MessageDescriptor,
    mut messages: Vec<DynamicMessage>,
    fields: &Fields,
    rename: &dyn Fn(&str) -> String,
) -> Result<Vec<ArrayRef>, String> {
    let by_name: HashMap<String, FieldDescriptor> = message.fields().map(|f| (rename(f.name()), f)).collect();
    fields
        .iter()
        .map(|field| match by_name.get(field.name()) {
            None => Ok(new_null_array(field.data_type(), messages.len())),
            Some(fd) => {
                let rows: Vec<Option<Value>> = messages.iter_mut().map(|m| take(m, fd)).collect();
                field_column(rows, fd, field).map_err(|e| format!("field `{}`: {e}", fd.name()))
            }
        })
        .collect()
}

/// A field's value, taken out of `m`; `None` when the field tracks presence and is not set (one
/// that does not and is not set is its default).
fn take(m: &mut DynamicMessage, fd: &FieldDescriptor) -> Option<Value> {
    m.take_field(fd).or_else(|| (!fd.supports_presence()).then(|| m.get_field(fd).into_owned()))
}

/// The column of one field (with its cardinality) across rows.
fn field_column(rows: Vec<Option<Value>>, fd: &FieldDescriptor, field: &Field) -> Result<ArrayRef, String> {
    let nulls = nulls(rows.iter().map(Option::is_some));
    if fd.is_map() {
        let (DataType::Map(entries, sorted), Kind::Message(entry)) = (field.data_type(), fd.kind()) else {
            return Err(format!("a map in a {} column", field.data_type()));
        };
        let DataType::Struct(kv) = entries.data_type() else { return Err("a map without entries".into()) };
        let (mut keys, mut values, mut lengths) = (Vec::new(), Vec::new(), Vec::with_capacity(rows.len()));
        for row in rows {
            let mut pairs: Vec<(MapKey, Value)> = match row {
                Some(Value::Map(m)) => m.into_iter().collect(),
                _ => Vec::new(),
            };
            pairs.sort_by(|a, b| a.0.cmp(&b.0)); // a map's order on the wire means nothing
            lengths.push(pairs.len());
            for (k, v) in pairs {
                keys.push(Some(key_value(k)));
                values.push(Some(v));
            }
        }
        let k = column(keys, &entry.map_entry_key_field().kind(), &kv[0])?;
        let v = column(values, &entry.map_entry_value_field().kind(), &kv[1])?;
        let entries_array = StructArray::try_new(kv.clone(), vec![k, v], None).map_err(|e| e.to_string())?;
        let offsets = OffsetBuffer::from_lengths(lengths);
        let map =
            MapArray::try_new(entries.clone(), offsets, entries_array, nulls, *sorted).map_err(|e| e.to_string())?;
        return Ok(Arc::new(map));
    }
    if fd.is_list() {
        let DataType::List(element) = field.data_type() else {
            return Err(format!("a repeated field in a {} column", field.data_type()));
        };
        let (mut items, mut lengths) = (Vec::new(), Vec::with_capacity(rows.len()));
        for row in rows {
            let list = match row {
                Some(Value::List(l)) => l,
                _ => Vec::new(),
            };
            lengths.push(list.len());
            items.extend(list.into_iter().map(Some));
        }
        let values = column(items, &fd.kind(), element)?;
        let list = ListArray::try_new(element.clone(), OffsetBuffer::from_lengths(lengths), values, nulls)
            .map_err(|e| e.to_string())?;
        return Ok(Arc::new(list));
    }
    column(rows, &fd.kind(), field)
}

/// Which rows are set, as Arrow keeps it: no buffer when none is null.
fn nulls(valid: impl Iterator<Item = bool>) -> Option<NullBuffer> {
    let nulls = NullBuffer::from_iter(valid);
    (nulls.null_count() > 0).then_some(nulls)
}

fn key_value(k: MapKey) -> Value {
    match k {
        MapKey::Bool(b) => Value::Bool(b),
        MapKey::I32(v) => Value::I32(v),
        MapKey::I64(v) => Value::I64(v),
        MapKey::U32(v) => Value::U32(v),
        MapKey::U64(v) => Value::U64(v),
        MapKey::String(s) => Value::String(s),
    }
}

/// A wrapper's value (`Int64Value`, ...), the wrapped value itself; other values as they are.
fn unwrapped(v: Value) -> Value {
    match v {
        Value::Message(m) if is_wrapper(m.descriptor().full_name()) => {
            m.get_field_by_number(1).map(|v| v.into_owned()).unwrap_or(Value::Bool(false))
        }
        v => v,
    }
}

fn is_wrapper(name: &str) -> bool {
    matches!(
        name,
        "google.protobuf.DoubleValue"
            | "google.protobuf.FloatValue"
            | "google.protobuf.Int64Value"
            | "google.protobuf.UInt64Value"
            | "google.protobuf.Int32Value"
            | "google.protobuf.UInt32Value"
            | "google.protobuf.BoolValue"
            | "google.protobuf.StringValue"
            | "google.protobuf.BytesValue"
    )
}

/// Microseconds of a `Timestamp` (since the epoch) or a `Duration`.
fn micros(m: &DynamicMessage) -> i64 {
    let int = |n: u32| match m.get_field_by_number(n).as_deref() {
        Some(Value::I64(v)) => *v,
        Some(Value::I32(v)) => i64::from(*v),
        _ => 0,
    };
    int(1).saturating_mul(1_000_000).saturating_add(int(2) / 1000)
}

/// One column of `field`'s type from one value per row (`None`: null), read as `kind`.
fn column(rows: Vec<Option<Value>>, kind: &Kind, field: &Field) -> Result<ArrayRef, String> {
    let wrong = |v: &Value| format!("{v:?} in a {} column", field.data_type());
    macro_rules! scalars {
        ($array:ty, $($pat:pat => $out:expr),+) => {{
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                out.push(match row.map(unwrapped) {
                    None => None,
                    $(Some($pat) => Some($out),)+
                    Some(v) => return Err(wrong(&v)),
                });
            }
            <$array>::from(out)
        }};
    }
    Ok(match field.data_type() {
        DataType::Boolean => Arc::new(scalars!(BooleanArray, Value::Bool(b) => b)),
        DataType::Int32 => Arc::new(scalars!(Int32Array, Value::I32(v) => v)),
        // An `int32` field whose column a later schema widened to `long`.
        DataType::Int64 => Arc::new(scalars!(Int64Array,
            Value::I64(v) => v,
            Value::I32(v) => i64::from(v),
            Value::U32(v) => i64::from(v),
            Value::Message(m) => micros(&m))),
        DataType::Float32 => Arc::new(scalars!(Float32Array, Value::F32(v) => v)),
        DataType::Float64 => Arc::new(scalars!(Float64Array, Value::F64(v) => v, Value::F32(v) => f64::from(v))),
        DataType::Decimal128(p, s) => {
            let array = scalars!(Decimal128Array, Value::U64(v) => i128::from(v));
            Arc::new(array.with_precision_and_scale(*p, *s).map_err(|e| e.to_string())?)
        }
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            Arc::new(scalars!(TimestampMicrosecondArray, Value::Message(m) => micros(&m)).with_timezone_opt(tz.clone()))
        }
        DataType::Utf8 => {
            let mut b = StringBuilder::with_capacity(rows.len(), 0);
            for row in rows {
                match (row.map(unwrapped), kind) {
                    (None, _) => b.append_null(),
                    (Some(Value::String(s)), _) => b.append_value(s),
                    (Some(Value::EnumNumber(n)), Kind::Enum(e)) => match e.get_value(n) {
                        Some(v) => b.append_value(v.name()),
                        None => b.append_value(n.to_string()), // an open enum's number without a name
                    },
                    // Struct, Value, ListValue, Empty, or a message inside itself: its JSON.
                    (Some(Value::Message(m)), _) => {
                        b.append_value(serde_json::to_string(&m).map_err(|e| e.to_string())?)
                    }
                    (Some(v), _) => return Err(wrong(&v)),
                }
            }
            Arc::new(b.finish())
        }
        // iceberg's Arrow schema gives binary columns 64-bit offsets.
        DataType::Binary => binary::<i32>(rows, &wrong)?,
        DataType::LargeBinary => binary::<i64>(rows, &wrong)?,
        DataType::Struct(children) => {
            let Kind::Message(desc) = kind else { return Err(format!("a {kind:?} in a struct column")) };
            let n = rows.len();
            let mut messages: Vec<Option<DynamicMessage>> = rows
                .into_iter()
                .map(|r| match r {
                    Some(Value::Message(m)) => Ok(Some(m)),
                    None => Ok(None),
                    Some(v) => Err(wrong(&v)),
                })
                .collect::<Result<_, _>>()?;
            let arrays = children
                .iter()
                .map(|child: &FieldRef| match desc.get_field_by_name(child.name()) {
                    None => Ok(new_null_array(child.data_type(), n)),
                    Some(fd) => {
                        let values: Vec<Option<Value>> =
                            messages.iter_mut().map(|m| m.as_mut().and_then(|m| take(m, &fd))).collect();
                        field_column(values, &fd, child).map_err(|e| format!("`{}`: {e}", fd.name()))
                    }
                })
                .collect::<Result<Vec<_>, String>>()?;
            let nulls = nulls(messages.iter().map(Option::is_some));
            Arc::new(StructArray::try_new(children.clone(), arrays, nulls).map_err(|e| e.to_string())?)
        }
        other => return Err(format!("a Protobuf value has no reading as {other}")),
    })
}

fn binary<O: arrow_array::OffsetSizeTrait>(
    rows: Vec<Option<Value>>,
    wrong: &dyn Fn(&Value) -> String,
) -> Result<ArrayRef, String> {
    let mut b = GenericBinaryBuilder::<O>::with_capacity(rows.len(), 0);
    for row in rows {
        match row.map(unwrapped) {
            None => b.append_null(),
            Some(Value::Bytes(v)) => b.append_value(&v),
            Some(v) => return Err(wrong(&v)),
        }
    }
    Ok(Arc::new(b.finish()))
}

#[cfg(test)]
#[path = "value_tests.rs"]
mod tests;
