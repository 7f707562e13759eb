//! The fast path of JSON decoding: one walk over a message's bytes, directed by the Arrow schema,
//! appends its values straight to column builders.
//!
//! The general path parses each message into a `serde_json::Value`, renames keys, fits numbers
//! and nested objects to the schema ([`super::fit`]) and hands the values to arrow_json. That
//! costs several allocations per field and a second walk. Almost every message of a settled topic
//! needs none of that work: its keys are all columns, its integers are whole and in range, its
//! strings are strings. [`Columns::push`] takes such a message in one pass, allocation-free but
//! for the column buffers growing, and refuses any other, leaving the columns as they were:
//!
//! | column type              | taken values                 |
//! |--------------------------|------------------------------|
//! | `Int32`, `Int64`         | integer literals in range    |
//! | `Float32`, `Float64`     | numbers (in `Float32`'s range) |
//! | `Utf8`, `LargeUtf8`      | strings                      |
//! | `Boolean`                | booleans                     |
//! | `Timestamp`              | strings arrow parses as times |
//! | struct                   | objects with known keys, none repeated |
//! | list                     | arrays of taken items        |
//! | map (string keys)        | objects of taken values, no key repeated |
//! | any                      | `null`, or a missing key, where the field is nullable |
//!
//! Anything else (a key the schema lacks, a top-level key spelled like a meta column, a float in
//! an integer column, a number in a timestamp column, an object in a string column, a repeated
//! key, a null in a required field, invalid JSON) is refused, and the message goes down the
//! general path, which decides what becomes of it. So the fast path changes how fast a row is
//! decoded, never what is decoded: each value is converted as the general path converts it
//! (numbers read as serde_json reads them, then cast as arrow_json casts them; times by arrow's
//! own parser), which `fast_tests.rs` checks against the general path on random messages.
//!
//! The bytes are read by [`scan`], a JSON reader of the same grammar as serde_json's that does
//! nothing but walk and hand values to the columns' `take_*` methods.
//!
//! Rolling back a refused message is cheap because every column keeps plain vectors: truncating
//! each top-level column to the row count before the message undoes whatever it appended.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::timezone::Tz;
use arrow_array::types::{
    Float32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{
    ArrayRef, BooleanArray, LargeListArray, ListArray, MapArray, PrimitiveArray, StructArray, new_null_array,
};
use arrow_buffer::{ArrowNativeType, BooleanBufferBuilder, ScalarBuffer};
use arrow_cast::parse::string_to_datetime;
use arrow_schema::{ArrowError, DataType, Field, Fields, TimeUnit};
use chrono::{DateTime, TimeZone, Utc};

mod buffers;
mod scan;

pub(super) use buffers::Bytes;
use buffers::{Nulls, offsets};

/// Builders for the user columns of one Arrow schema, fed by [`push`](Columns::push).
#[derive(Debug)]
pub(super) struct Columns {
    root: StructCol,
    rows: usize,
}

impl Columns {
    pub(super) fn new(fields: &Fields) -> Columns {
        Columns { root: StructCol::new(fields, true), rows: 0 }
    }

    /// Appends `bytes` as one row when it is a JSON object the general path would decode to the
    /// same values; else leaves the columns as they were and returns false.
    pub(super) fn push(&mut self, bytes: &[u8]) -> bool {
        let taken = scan::message(bytes, &mut self.root).is_some();
        if taken {
            self.rows += 1;
        } else {
            self.root.truncate(self.rows);
        }
        taken
    }

    /// Rows taken since the last [`finish`](Columns::finish).
    pub(super) fn len(&self) -> usize {
        self.rows
    }

    /// The columns of the rows taken, in the order of `fields` (the fields this was made for),
    /// and empties the builders.
    pub(super) fn finish(&mut self, fields: &Fields) -> Result<Vec<ArrayRef>, ArrowError> {
        self.rows = 0;
        self.root.nulls.truncate(0);
        let columns = self.root.finish_children(fields);
        if columns.is_err() {
            self.root.truncate(0);
        }
        columns
    }
}

/// One column's builder; what it takes follows from its variant (see the module's table).
#[derive(Debug)]
enum Col {
    I32(Vec<i32>, Nulls),
    I64(Vec<i64>, Nulls),
    F32(Vec<f32>, Nulls),
    F64(Vec<f64>, Nulls),
    Bool(BooleanBufferBuilder, Nulls),
    Str(Bytes),
    Time(Vec<i64>, Nulls, TimeUnit, Option<Tz>),
    Struct(StructCol),
    List(Box<ListCol>),
    Map(Box<MapCol>),
    /// Any other type: only nulls are taken; counts them.
    Null(usize),
}

#[derive(Debug)]
struct StructCol {
    keys: Keys,
    nullable: Vec<bool>,
    cols: Vec<Col>,
    nulls: Nulls,
}

/// How an object's keys are matched to a struct's fields.
#[derive(Debug)]
struct Keys {
    names: Vec<Box<str>>,
    index: HashMap<Box<str>, usize>,
    /// The field of the k-th key of the last object seen: producers write keys in the same
    /// order every time, so a key is usually found with one comparison, without hashing.
    guess: Vec<Cell<usize>>,
    /// The top level: keys spelled like meta columns are renamed by the general path.
    top: bool,
}

#[derive(Debug)]
struct ListCol {
    large: bool,
    ends: Vec<i64>,
    item: Col,
    item_nullable: bool,
    nulls: Nulls,
}

#[derive(Debug)]
struct MapCol {
    ends: Vec<i64>,
    keys: Bytes,
    values: Col,
    values_nullable: bool,
    nulls: Nulls,
}

impl StructCol {
    fn new(fields: &Fields, top: bool) -> StructCol {
        StructCol {
            keys: Keys {
                names: fields.iter().map(|f| Box::from(f.name().as_str())).collect(),
                index: fields.iter().enumerate().map(|(i, f)| (Box::from(f.name().as_str()), i)).collect(),
                guess: (0..fields.len()).map(Cell::new).collect(),
                top,
            },
            nullable: fields.iter().map(|f| f.is_nullable()).collect(),
            cols: fields.iter().map(|f| Col::of(f.data_type())).collect(),
            nulls: Nulls::new(),
        }
    }

    /// The fields' columns as arrays of `fields`' types (the fields this was made for).
    fn finish_children(&mut self, fields: &Fields) -> Result<Vec<ArrayRef>, ArrowError> {
        self.cols.iter_mut().zip(fields.iter()).map(|(c, f)| c.finish(f)).collect()
    }

    fn truncate(&mut self, len: usize) {
        self.cols.iter_mut().for_each(|c| c.truncate(len));
        self.nulls.truncate(len);
    }
}

impl Col {
    fn of(dt: &DataType) -> Col {
        let nulls = Nulls::new;
        match dt {
            DataType::Int32 => Col::I32(Vec::new(), nulls()),
            DataType::Int64 => Col::I64(Vec::new(), nulls()),
            DataType::Float32 => Col::F32(Vec::new(), nulls()),
            DataType::Float64 => Col::F64(Vec::new(), nulls()),
            DataType::Boolean => Col::Bool(BooleanBufferBuilder::new(0), nulls()),
            DataType::Utf8 => Col::Str(Bytes::new(false)),
            DataType::LargeUtf8 => Col::Str(Bytes::new(true)),
            DataType::Timestamp(unit, tz) => match tz.as_deref().map(str::parse::<Tz>) {
                None => Col::Time(Vec::new(), nulls(), *unit, None),
                Some(Ok(tz)) => Col::Time(Vec::new(), nulls(), *unit, Some(tz)),
                Some(Err(_)) => Col::Null(0),
            },
            DataType::Struct(fields) if !fields.is_empty() => Col::Struct(StructCol::new(fields, false)),
            DataType::List(f) | DataType::LargeList(f) => Col::List(Box::new(ListCol {
                large: matches!(dt, DataType::LargeList(_)),
                ends: vec![0],
                item: Col::of(f.data_type()),
                item_nullable: f.is_nullable(),
                nulls: nulls(),
            })),
            DataType::Map(entries, _) => match entries.data_type() {
                DataType::Struct(kv) if kv.len() == 2 && kv[0].data_type() == &DataType::Utf8 => {
                    Col::Map(Box::new(MapCol {
                        ends: vec![0],
                        keys: Bytes::new(false),
                        values: Col::of(kv[1].data_type()),
                        values_nullable: kv[1].is_nullable(),
                        nulls: nulls(),
                    }))
                }
                _ => Col::Null(0),
            },
            _ => Col::Null(0),
        }
    }

    /// A null here, and in every child (where the parent's null masks it).
    fn push_null(&mut self) {
        match self {
            Col::I32(v, n) => push_null_for(v, n),
            Col::I64(v, n) | Col::Time(v, n, ..) => push_null_for(v, n),
            Col::F32(v, n) => push_null_for(v, n),
            Col::F64(v, n) => push_null_for(v, n),
            Col::Bool(v, n) => {
                v.append(false);
                n.push(false);
            }
            Col::Str(b) => b.push_null(),
            Col::Struct(s) => {
                s.cols.iter_mut().for_each(Col::push_null);
                s.nulls.push(false);
            }
            Col::List(l) => {
                l.ends.push(*l.ends.last().expect("starts with 0"));
                l.nulls.push(false);
            }
            Col::Map(m) => {
                m.ends.push(*m.ends.last().expect("starts with 0"));
                m.nulls.push(false);
            }
            Col::Null(len) => *len += 1,
        }
    }

    fn truncate(&mut self, len: usize) {
        match self {
            Col::I32(v, n) => cut(v, n, len),
            Col::I64(v, n) | Col::Time(v, n, ..) => cut(v, n, len),
            Col::F32(v, n) => cut(v, n, len),
            Col::F64(v, n) => cut(v, n, len),
            Col::Bool(v, n) => {
                v.truncate(len);
                n.truncate(len);
            }
            Col::Str(b) => b.truncate(len),
            Col::Struct(s) => s.truncate(len),
            Col::List(l) => {
                l.ends.truncate(len + 1);
                l.item.truncate(l.ends[len] as usize);
                l.nulls.truncate(len);
            }
            Col::Map(m) => {
                m.ends.truncate(len + 1);
                m.keys.truncate(m.ends[len] as usize);
                m.values.truncate(m.ends[len] as usize);
                m.nulls.truncate(len);
            }
            Col::Null(n) => *n = len,
        }
    }

    /// The column as an array of `field`'s type (the field it was made for), emptying it.
    fn finish(&mut self, field: &Field) -> Result<ArrayRef, ArrowError> {
        let dt = field.data_type();
        Ok(match (self, dt) {
            (Col::I32(v, n), _) => Arc::new(PrimitiveArray::<Int32Type>::try_new(take(v), n.finish())?),
            (Col::I64(v, n), _) => Arc::new(PrimitiveArray::<Int64Type>::try_new(take(v), n.finish())?),
            (Col::F32(v, n), _) => Arc::new(PrimitiveArray::<Float32Type>::try_new(take(v), n.finish())?),
            (Col::F64(v, n), _) => Arc::new(PrimitiveArray::<Float64Type>::try_new(take(v), n.finish())?),
            (Col::Bool(v, n), _) => Arc::new(BooleanArray::new(v.finish(), n.finish())),
            (Col::Str(b), _) => b.finish_utf8()?,
            (Col::Time(v, n, unit, _), _) => {
                let (v, n) = (take(v), n.finish());
                match unit {
                    TimeUnit::Second => {
                        Arc::new(PrimitiveArray::<TimestampSecondType>::try_new(v, n)?.with_data_type(dt.clone()))
                    }
                    TimeUnit::Millisecond => {
                        Arc::new(PrimitiveArray::<TimestampMillisecondType>::try_new(v, n)?.with_data_type(dt.clone()))
                    }
                    TimeUnit::Microsecond => {
                        Arc::new(PrimitiveArray::<TimestampMicrosecondType>::try_new(v, n)?.with_data_type(dt.clone()))
                    }
                    TimeUnit::Nanosecond => {
                        Arc::new(PrimitiveArray::<TimestampNanosecondType>::try_new(v, n)?.with_data_type(dt.clone()))
                    }
                }
            }
            (Col::Struct(s), DataType::Struct(fields)) => {
                let children = s.finish_children(fields)?;
                Arc::new(StructArray::try_new(fields.clone(), children, s.nulls.finish())?)
            }
            (Col::List(l), DataType::List(item) | DataType::LargeList(item)) => {
                let values = l.item.finish(item)?;
                let ends = std::mem::replace(&mut l.ends, vec![0]);
                if l.large {
                    Arc::new(LargeListArray::try_new(item.clone(), offsets(ends)?, values, l.nulls.finish())?)
                } else {
                    Arc::new(ListArray::try_new(item.clone(), offsets(ends)?, values, l.nulls.finish())?)
                }
            }
            (Col::Map(m), DataType::Map(entries, sorted)) => {
                let DataType::Struct(kv) = entries.data_type() else { unreachable!("made from a map of structs") };
                let columns = vec![m.keys.finish_utf8()?, m.values.finish(&kv[1])?];
                let ends = std::mem::replace(&mut m.ends, vec![0]);
                let entries_array = StructArray::try_new(kv.clone(), columns, None)?;
                Arc::new(MapArray::try_new(entries.clone(), offsets(ends)?, entries_array, m.nulls.finish(), *sorted)?)
            }
            (Col::Null(n), _) => new_null_array(dt, std::mem::take(n)),
            (col, _) => return Err(ArrowError::SchemaError(format!("column builder {col:?} does not match {dt}"))),
        })
    }
}

fn push<T>(values: &mut Vec<T>, nulls: &mut Nulls, v: T) {
    values.push(v);
    nulls.push(true);
}

fn push_null_for<T: Default>(values: &mut Vec<T>, nulls: &mut Nulls) {
    values.push(T::default());
    nulls.push(false);
}

fn cut<T>(values: &mut Vec<T>, nulls: &mut Nulls, len: usize) {
    values.truncate(len);
    nulls.truncate(len);
}

fn take<T: ArrowNativeType>(values: &mut Vec<T>) -> ScalarBuffer<T> {
    ScalarBuffer::from(std::mem::take(values))
}

/// A time string as arrow_json reads it into a column of `unit` in `tz` (UTC when none).
fn parse_time(s: &str, unit: TimeUnit, tz: Option<&Tz>) -> Option<i64> {
    fn at<T: TimeZone>(d: DateTime<T>, unit: TimeUnit) -> Option<i64> {
        match unit {
            TimeUnit::Second => Some(d.timestamp()),
            TimeUnit::Millisecond => Some(d.timestamp_millis()),
            TimeUnit::Microsecond => Some(d.timestamp_micros()),
            TimeUnit::Nanosecond => d.timestamp_nanos_opt(),
        }
    }
    match tz {
        Some(tz) => at(string_to_datetime(tz, s).ok()?, unit),
        None => at(string_to_datetime(&Utc, s).ok()?, unit),
    }
}

impl Keys {
    /// The field of `key`, the `k`-th key of its object; `None` when the struct has no such field
    /// (or, at the top level, when the key is spelled like a meta column: the general path renames
    /// those).
    fn find(&self, key: &str, k: usize) -> Option<usize> {
        if let Some(g) = self.guess.get(k)
            && *self.names[g.get()] == *key
        {
            return Some(g.get());
        }
        if self.top && super::names::escape(key) != key {
            return None;
        }
        let i = self.index.get(key).copied()?;
        if let Some(g) = self.guess.get(k) {
            g.set(i);
        }
        Some(i)
    }
}

// What each column takes (the module's table). `None`: not this value.
impl Col {
    fn take_bool(&mut self, v: bool) -> Option<()> {
        let Col::Bool(values, nulls) = self else { return None };
        values.append(v);
        nulls.push(true);
        Some(())
    }

    /// Numbers are cast as arrow_json casts the general path's serde_json numbers: integers to
    /// floats with `as`, doubles to `Float32` only within its range.
    fn take_number(&mut self, n: scan::Number) -> Option<()> {
        use scan::Number::{F64, I64, U64};
        match (self, n) {
            (Col::I32(v, nulls), U64(x)) => push(v, nulls, i32::try_from(x).ok()?),
            (Col::I32(v, nulls), I64(x)) => push(v, nulls, i32::try_from(x).ok()?),
            (Col::I64(v, nulls), U64(x)) => push(v, nulls, i64::try_from(x).ok()?),
            (Col::I64(v, nulls), I64(x)) => push(v, nulls, x),
            (Col::F32(v, nulls), U64(x)) => push(v, nulls, x as f32),
            (Col::F32(v, nulls), I64(x)) => push(v, nulls, x as f32),
            (Col::F32(v, nulls), F64(x)) if (f32::MIN as f64..=f32::MAX as f64).contains(&x) => {
                push(v, nulls, x as f32)
            }
            (Col::F64(v, nulls), U64(x)) => push(v, nulls, x as f64),
            (Col::F64(v, nulls), I64(x)) => push(v, nulls, x as f64),
            (Col::F64(v, nulls), F64(x)) => push(v, nulls, x),
            _ => return None,
        }
        Some(())
    }

    fn take_str(&mut self, s: &str) -> Option<()> {
        match self {
            Col::Str(b) => b.push_value(s.as_bytes()).then_some(()),
            Col::Time(v, nulls, unit, tz) => {
                push(v, nulls, parse_time(s, *unit, tz.as_ref())?);
                Some(())
            }
            _ => None,
        }
    }
}

impl ListCol {
    /// Ends a list of `len` items, all appended to `item`.
    fn close(&mut self, len: i64) -> Option<()> {
        let end = self.ends.last().expect("starts with 0") + len;
        if !self.large && end > i32::MAX as i64 {
            return None;
        }
        self.ends.push(end);
        self.nulls.push(true);
        Some(())
    }
}

impl MapCol {
    /// Ends a map of `len` entries, all appended to `keys` and `values`.
    fn close(&mut self, len: i64) -> Option<()> {
        let end = self.ends.last().expect("starts with 0") + len;
        if end > i32::MAX as i64 {
            return None;
        }
        self.ends.push(end);
        self.nulls.push(true);
        Some(())
    }
}
