//! [`BatchDecoder`]: buffers parsed messages and turns them into one Arrow `RecordBatch`.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BinaryArray, Int32Array, Int64Array, LargeBinaryArray, RecordBatch,
    TimestampMicrosecondArray,
};
use arrow_json::ReaderBuilder;
use arrow_schema::{ArrowError, DataType, Schema as ArrowSchema, SchemaRef, TimeUnit};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use super::{DeadLetter, META_KEY, META_OFFSET, META_PARTITION, META_TIMESTAMP, Message, fast, fit, names};
use crate::{Error, Result};

/// Why a message was not accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub reason: String,
}

impl Rejected {
    fn new(reason: impl Into<String>) -> Self {
        Rejected {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Rejected {}

/// What [`BatchDecoder::flush`] produced.
#[derive(Debug)]
pub struct Flushed {
    /// The rows that fit the schema, or `None` when no row survived.
    pub batch: Option<RecordBatch>,
    /// Rows that are JSON objects but do not fit the schema, whole and with the reason, sorted by
    /// partition and offset.
    pub rejected: Vec<DeadLetter>,
    /// Top-level keys (as spelled in the JSON) that the schema has no column for; their values
    /// were not stored. The agent grows the schema first ([`BatchDecoder::grow`]), so this stays empty there.
    pub unknown_fields: BTreeSet<String>,
}

/// Where each column of the output comes from.
#[derive(Debug)]
enum Slot {
    User(usize),
    Partition,
    Offset,
    Timestamp(Option<Arc<str>>),
    Key { large: bool },
}

/// An accepted message: top-level keys already renamed to column names.
#[derive(Debug)]
struct Row {
    partition: i32,
    offset: i64,
    timestamp_ms: i64,
    key: Option<Box<[u8]>>,
    /// The parsed object, or `None` while the fast path has it: `raw` then decodes as it is
    /// (see [`super::fast`]), and is parsed only if the batch must take the general path.
    value: Option<Map<String, Value>>,
    /// The value as it came, for the dead-letter table if the row does not fit, and as a sample
    /// when the schema grows.
    raw: Box<[u8]>,
    /// Some top-level key has no column yet (the schema must grow before this row is decoded).
    fresh: bool,
}

impl Row {
    /// The parsed object (parsing `raw` now if the fast path had taken it).
    fn parsed(&mut self) -> &mut Map<String, Value> {
        let raw = &self.raw;
        self.value.get_or_insert_with(|| serde_json::from_slice(raw).expect("the fast path admits only JSON objects"))
    }

    fn dead(self, reason: String) -> DeadLetter {
        DeadLetter { partition: self.partition, offset: self.offset, timestamp_ms: self.timestamp_ms, key: self.key, value: Some(self.raw), reason }
    }
}

// arrow_json takes rows as `&[impl Serialize]`: this lets it read a slice of rows in place.
impl Serialize for Row {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.as_ref().expect("parsed before the general path").serialize(s)
    }
}

/// Turns Kafka messages with JSON object values into Arrow record batches of a fixed schema.
#[derive(Debug)]
pub struct BatchDecoder {
    schema: SchemaRef,
    /// The user columns alone, in schema order: what arrow_json decodes.
    user: SchemaRef,
    slots: Vec<Slot>,
    columns: HashSet<String>,
    /// Which messages may skip parsing (see [`super::fast`]); `None` only in tests.
    fast: Option<fast::Plan>,
    rows: Vec<Row>,
    bytes: usize,
    unknown: BTreeSet<String>,
    /// What a number in a timestamp column counts.
    epoch_unit: super::EpochUnit,
}

impl BatchDecoder {
    /// A decoder for `schema`, which must hold the four meta columns with their types
    /// (they may sit anywhere, so columns added by later schema evolution can follow them).
    pub fn new(schema: &iceberg::spec::Schema) -> Result<Self> {
        let arrow = iceberg::arrow::schema_to_arrow_schema(schema)
            .map_err(|e| Error::iceberg("converting the table schema to Arrow", e))?;
        let mut user = Vec::new();
        let mut slots = Vec::new();
        for f in arrow.fields() {
            let slot = match (f.name().as_str(), f.data_type()) {
                (META_PARTITION, DataType::Int32) => Slot::Partition,
                (META_OFFSET, DataType::Int64) => Slot::Offset,
                (META_TIMESTAMP, DataType::Timestamp(TimeUnit::Microsecond, tz))
                    if f.is_nullable() =>
                {
                    Slot::Timestamp(tz.clone())
                }
                (META_KEY, DataType::LargeBinary) if f.is_nullable() => Slot::Key { large: true },
                (META_KEY, DataType::Binary) if f.is_nullable() => Slot::Key { large: false },
                (name, dt) if names::is_reserved(name) => {
                    return Err(Error::decode(
                        "checking the table schema",
                        format!(
                            "column `{name}` ({dt}, nullable: {}) is not a frazil meta column of the expected type",
                            f.is_nullable()
                        ),
                    ));
                }
                _ => {
                    user.push(f.clone());
                    Slot::User(user.len() - 1)
                }
            };
            slots.push(slot);
        }
        for meta in [META_PARTITION, META_OFFSET, META_TIMESTAMP, META_KEY] {
            if arrow.field_with_name(meta).is_err() {
                return Err(Error::decode(
                    "checking the table schema",
                    format!("meta column `{meta}` is missing"),
                ));
            }
        }
        let user = Arc::new(ArrowSchema::new(user));
        // Fail now, not on the first flush, if arrow_json cannot decode some column type.
        json_decoder(&user).map_err(|e| Error::decode("checking the table schema", e))?;
        Ok(BatchDecoder {
            columns: user.fields().iter().map(|f| f.name().clone()).collect(),
            fast: Some(fast::Plan::new(user.fields())),
            schema: Arc::new(arrow),
            user,
            slots,
            rows: Vec::new(),
            bytes: 0,
            unknown: BTreeSet::new(),
            epoch_unit: super::EpochUnit::Millis,
        })
    }

    /// Numbers in timestamp columns count `unit`s since the epoch (default: milliseconds).
    pub fn with_epoch_unit(mut self, unit: super::EpochUnit) -> Self {
        self.epoch_unit = unit;
        self
    }

    /// Buffered rows the fast path holds unparsed.
    #[cfg(test)]
    pub(super) fn fast_rows(&self) -> usize {
        self.rows.iter().filter(|r| r.value.is_none()).count()
    }

    #[cfg(test)]
    pub(super) fn user_fields(&self) -> &arrow_schema::Fields {
        self.user.fields()
    }

    /// Every message takes the general path: the reference the fast path is tested against.
    #[cfg(test)]
    pub(super) fn without_fast_path(mut self) -> Self {
        self.fast = None;
        self
    }

    /// The schema of every batch this decoder produces, with `PARQUET:field_id` metadata.
    pub fn arrow_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Takes `msg` now: a missing value, invalid JSON or anything but a JSON object is
    /// rejected. A message the fast path admits is kept as bytes; any other is parsed. Whether the
    /// object fits the schema is found out by [`flush`](Self::flush).
    pub fn push(&mut self, msg: &Message<'_>) -> Result<(), Rejected> {
        let bytes = msg
            .value
            .ok_or_else(|| Rejected::new("message has no value (tombstone)"))?;
        let (value, fresh) = if self.fast.as_ref().is_some_and(|p| p.admits(bytes)) {
            (None, false)
        } else {
            let value = serde_json::from_slice::<Value>(bytes).map_err(|e| Rejected::new(format!("invalid JSON: {e}")))?;
            let Value::Object(map) = value else {
                let kind = match value {
                    Value::Null => "null",
                    Value::Bool(_) => "a boolean",
                    Value::Number(_) => "a number",
                    Value::String(_) => "a string",
                    _ => "an array",
                };
                return Err(Rejected::new(format!("value is {kind}, not a JSON object")));
            };
            let (value, fresh) = self.columns_of(map);
            (Some(value), fresh)
        };
        self.bytes += bytes.len() + msg.key.map_or(0, <[u8]>::len);
        self.rows.push(Row {
            partition: msg.partition,
            offset: msg.offset,
            timestamp_ms: msg.timestamp_ms,
            key: msg.key.map(Box::from),
            value,
            raw: Box::from(bytes),
            fresh,
        });
        Ok(())
    }

    /// Renames top-level keys to column names. Keys without a field, at the top or inside struct
    /// columns, are kept (arrow_json skips them): the row is `fresh`, and the schema should grow
    /// before it is decoded.
    fn columns_of(&mut self, map: Map<String, Value>) -> (Map<String, Value>, bool) {
        // Most rows need neither: skip rebuilding the map for them.
        let (map, top) = if map.keys().all(|k| names::escape(k) == k.as_str() && self.columns.contains(k.as_str())) {
            (map, false)
        } else {
            let mut out = Map::new();
            let mut fresh = false;
            for (key, value) in map {
                let column = names::escape(&key);
                if !self.columns.contains(&*column) {
                    fresh = true;
                    self.unknown.insert(key.clone());
                }
                out.insert(column.into_owned(), value);
            }
            (out, fresh)
        };
        // Keys inside struct columns that the struct lacks: the schema grows there too.
        let nested = fit::nested_keys_missing(&map, self.user.fields());
        (map, top || nested)
    }

    /// True when some buffered row has a top-level key the schema has no column for.
    pub fn has_fresh_keys(&self) -> bool {
        self.rows.iter().any(|r| r.fresh)
    }

    /// The raw values of the rows with keys the schema lacks: the samples to grow it from.
    pub fn fresh_samples(&self) -> impl Iterator<Item = &[u8]> {
        self.rows.iter().filter(|r| r.fresh).map(|r| &*r.raw)
    }

    /// Switches to `schema` (the old one grown by new fields), keeping the buffered rows: a
    /// row's keys that the new schema has are decoded from now on.
    pub fn grow(&mut self, schema: &iceberg::spec::Schema) -> Result<()> {
        let mut next = BatchDecoder::new(schema)?.with_epoch_unit(self.epoch_unit);
        next.rows = std::mem::take(&mut self.rows);
        if self.fast.is_none() {
            next.fast = None;
        }
        next.bytes = self.bytes;
        // Rows on the fast path had only known keys, and a grown schema keeps them all.
        for row in &mut next.rows {
            if let Some(value) = &row.value {
                row.fresh = value.keys().any(|k| !next.columns.contains(k)) || fit::nested_keys_missing(value, next.user.fields());
            }
        }
        next.unknown = next
            .rows
            .iter()
            .filter(|r| r.fresh)
            .flat_map(|r| r.value.iter().flat_map(|v| v.keys()).filter(|k| !next.columns.contains(*k)).cloned())
            .collect();
        *self = next;
        Ok(())
    }

    /// Buffered accepted rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Bytes of message values and keys buffered, for rolling by size (the parsed form in
    /// memory is a few times larger).
    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    /// Turns everything buffered into one batch and empties the buffer. Rows that do not fit
    /// the schema are reported in [`Flushed::rejected`] and the rest are kept. An `Err` means
    /// the batch as a whole could not be built (in practice: over 2 GiB of text in one column,
    /// which rolling by [`buffered_bytes`](Self::buffered_bytes) prevents); the buffer is
    /// emptied then too.
    pub fn flush(&mut self) -> Result<Flushed> {
        let unknown_fields = std::mem::take(&mut self.unknown);
        let mut rows = std::mem::take(&mut self.rows);
        self.bytes = 0;
        if rows.iter().all(|r| r.value.is_none())
            && let Ok(columns) = self.decode_raw(&rows)
        {
            let batch = if rows.is_empty() { None } else { Some(self.assemble(&rows, columns)?) };
            return Ok(Flushed { batch, rejected: Vec::new(), unknown_fields });
        }
        let mut rejected = Vec::new();
        let mut kept = Vec::with_capacity(rows.len());
        for mut row in rows.drain(..) {
            match fit::fit_row(row.parsed(), self.user.fields(), self.epoch_unit) {
                Ok(()) => kept.push(row),
                Err(reason) => rejected.push(row.dead(reason)),
            }
        }
        rows = kept;

        let user_columns = match self.decode(&rows) {
            Ok(columns) => columns,
            Err(_) => {
                // Some rows do not fit: find them, set them aside, decode the others.
                let mut bad = Vec::new();
                self.find_bad(&rows, 0, true, &mut bad);
                let mut bad = bad.into_iter().peekable();
                let mut kept = Vec::with_capacity(rows.len());
                for (i, row) in rows.drain(..).enumerate() {
                    match bad.next_if(|(b, _)| *b == i) {
                        Some((_, reason)) => rejected.push(row.dead(reason)),
                        None => kept.push(row),
                    }
                }
                rows = kept;
                self.decode(&rows)
                    .map_err(|e| Error::decode(format!("decoding {} rows", rows.len()), e))?
            }
        };
        rejected.sort_by_key(|r| (r.partition, r.offset));
        let batch = if rows.is_empty() {
            None
        } else {
            Some(self.assemble(&rows, user_columns)?)
        };
        Ok(Flushed {
            batch,
            rejected,
            unknown_fields,
        })
    }

    /// The user columns of `rows` that are all on the fast path: their bytes go to arrow_json's
    /// tokenizer as they are. An `Err` (a value arrow_json refuses, such as a null in a required
    /// column or a malformed time) sends the whole batch down the general path, which finds the
    /// rows to blame.
    fn decode_raw(&self, rows: &[Row]) -> Result<Vec<ArrayRef>, ArrowError> {
        if rows.is_empty() || self.user.fields().is_empty() {
            return Ok(Vec::new());
        }
        let mut decoder = json_reader(&self.user).with_batch_size(rows.len()).build_decoder()?;
        for row in rows {
            let mut rest: &[u8] = &row.raw;
            while !rest.is_empty() {
                let n = decoder.decode(rest)?;
                if n == 0 {
                    return Err(ArrowError::JsonError("decoder took no bytes".into()));
                }
                rest = &rest[n..];
            }
        }
        let batch = decoder.flush()?.ok_or_else(|| ArrowError::JsonError("no rows decoded".into()))?;
        if batch.num_rows() != rows.len() {
            return Err(ArrowError::JsonError(format!("{} rows decoded from {} messages", batch.num_rows(), rows.len())));
        }
        Ok(batch.columns().to_vec())
    }

    /// The user columns of `rows`, decoded by arrow_json.
    fn decode(&self, rows: &[Row]) -> Result<Vec<ArrayRef>, ArrowError> {
        if rows.is_empty() || self.user.fields().is_empty() {
            return Ok(Vec::new());
        }
        // A fresh decoder each time: after an error arrow_json's decoder keeps the failed rows.
        let mut decoder = json_decoder(&self.user)?;
        decoder.serialize(rows)?;
        Ok(decoder
            .flush()?
            .map(|b| b.columns().to_vec())
            .unwrap_or_default())
    }

    /// Bisects `rows` (which start at index `base`) for rows arrow_json refuses, pushing their
    /// indexes, in increasing order, with a reason. Costs O(bad · log n) decodes.
    fn find_bad(&self, rows: &[Row], base: usize, known_bad: bool, out: &mut Vec<(usize, String)>) {
        if rows.is_empty() || (!known_bad && self.decode(rows).is_ok()) {
            return;
        }
        if let [row] = rows {
            out.push((base, self.diagnose(row)));
            return;
        }
        let mid = rows.len() / 2;
        self.find_bad(&rows[..mid], base, false, out);
        self.find_bad(&rows[mid..], base + mid, false, out);
    }

    /// Names the first column of `row` arrow_json refuses, with its error.
    fn diagnose(&self, row: &Row) -> String {
        for field in self.user.fields() {
            let one = Arc::new(ArrowSchema::new(vec![field.clone()]));
            let result = json_decoder(&one).and_then(|mut d| {
                d.serialize(std::slice::from_ref(row))?;
                d.flush()
            });
            if let Err(e) = result {
                return format!("column `{}`: {e}", field.name());
            }
        }
        match self.decode(std::slice::from_ref(row)) {
            Err(e) => e.to_string(),
            Ok(_) => "row does not fit the schema".to_string(),
        }
    }

    /// Puts the user columns and the meta columns together in schema order.
    fn assemble(&self, rows: &[Row], user: Vec<ArrayRef>) -> Result<RecordBatch> {
        let columns = self.slots.iter().map(|slot| -> ArrayRef {
            match slot {
                Slot::User(i) => user[*i].clone(),
                Slot::Partition => Arc::new(Int32Array::from_iter_values(
                    rows.iter().map(|r| r.partition),
                )),
                Slot::Offset => {
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.offset)))
                }
                Slot::Timestamp(tz) => Arc::new(
                    TimestampMicrosecondArray::from_iter(
                        rows.iter().map(|r| timestamp_us(r.timestamp_ms)),
                    )
                    .with_timezone_opt(tz.clone()),
                ),
                Slot::Key { large: true } => Arc::new(LargeBinaryArray::from_iter(
                    rows.iter().map(|r| r.key.as_deref()),
                )),
                Slot::Key { large: false } => Arc::new(BinaryArray::from_iter(
                    rows.iter().map(|r| r.key.as_deref()),
                )),
            }
        });
        RecordBatch::try_new(self.schema.clone(), columns.collect())
            .map_err(|e| Error::decode(format!("assembling a batch of {} rows", rows.len()), e))
    }
}

fn json_decoder(schema: &SchemaRef) -> Result<arrow_json::reader::Decoder, ArrowError> {
    json_reader(schema).build_decoder()
}

/// arrow_json as both paths use it. coerce_primitive: numbers and booleans in string columns
/// (fields whose samples conflicted) are kept as their text instead of rejecting the row.
fn json_reader(schema: &SchemaRef) -> ReaderBuilder {
    ReaderBuilder::new(schema.clone()).with_coerce_primitive(true)
}

/// Kafka's timestamp in ms as µs; Kafka uses -1 for "no timestamp", so negatives are null.
fn timestamp_us(ms: i64) -> Option<i64> {
    if ms < 0 { None } else { ms.checked_mul(1000) }
}
