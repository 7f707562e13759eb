//! What a [`BatchDecoder`](super::BatchDecoder) holds between flushes: the rows parsed for the
//! general path, the runs that keep every accepted row in arrival order, and the meta column values
//! of the rows the fast path took.

use arrow_array::RecordBatch;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use super::{DeadLetter, fast};

/// A message parsed for the general path: top-level keys already renamed to column names.
#[derive(Debug)]
pub(super) struct Row {
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) timestamp_ms: i64,
    pub(super) key: Option<Box<[u8]>>,
    pub(super) value: Map<String, Value>,
    /// The value as it came, for the dead-letter table if the row does not fit, and as a sample
    /// when the schema grows.
    pub(super) raw: Box<[u8]>,
    /// Some top-level key has no column yet (the schema must grow before this row is decoded).
    pub(super) fresh: bool,
    /// A fixed table's `_extra` value: the JSON text of the keys it has no column for.
    pub(super) extra: Option<Box<str>>,
}

impl Row {
    pub(super) fn dead(self, reason: String) -> DeadLetter {
        DeadLetter {
            partition: self.partition,
            offset: self.offset,
            timestamp_ms: self.timestamp_ms,
            key: self.key,
            value: Some(self.raw),
            reason,
        }
    }
}

// arrow_json takes rows as `&[impl Serialize]`: this lets it read a slice of rows in place.
impl Serialize for Row {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

/// Accepted messages in arrival order, as runs of one kind.
#[derive(Debug)]
pub(super) enum Run {
    /// The next rows of the fast path's columns.
    Fast(usize),
    /// Rows the fast path took before the schema grew, fitted to the grown schema.
    Batch(RecordBatch),
    /// Rows for the general path.
    Parsed(Vec<Row>),
}

/// The meta column values of rows, gathered as they come.
#[derive(Debug)]
pub(super) struct Meta {
    pub(super) partition: Vec<i32>,
    pub(super) offset: Vec<i64>,
    pub(super) timestamp_ms: Vec<i64>,
    pub(super) key: fast::Bytes,
    /// The `_extra` values of parsed rows; `None`: every row's is null (the fast path's rows).
    pub(super) extra: Option<Vec<Option<Box<str>>>>,
}

impl Meta {
    pub(super) fn new() -> Meta {
        // Wide offsets while gathering; the key column's own width is chosen when it is built.
        Meta {
            partition: Vec::new(),
            offset: Vec::new(),
            timestamp_ms: Vec::new(),
            key: fast::Bytes::new(true),
            extra: None,
        }
    }

    pub(super) fn push(&mut self, partition: i32, offset: i64, timestamp_ms: i64, key: Option<&[u8]>) {
        self.partition.push(partition);
        self.offset.push(offset);
        self.timestamp_ms.push(timestamp_ms);
        match key {
            // Wide offsets cannot overflow.
            Some(k) => _ = self.key.push_value(k),
            None => self.key.push_null(),
        }
    }

    pub(super) fn of(rows: &[Row]) -> Meta {
        let mut meta = Meta::new();
        for r in rows {
            meta.push(r.partition, r.offset, r.timestamp_ms, r.key.as_deref());
        }
        meta.extra = Some(rows.iter().map(|r| r.extra.clone()).collect());
        meta
    }
}
