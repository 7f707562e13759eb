//! [`BatchDecoder`]: buffers parsed messages and turns them into one Arrow `RecordBatch`.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_json::ReaderBuilder;
use arrow_schema::{ArrowError, DataType, Schema as ArrowSchema, SchemaRef};
use serde_json::{Map, Value};

use super::buffered::{Meta, Row, Run};
use super::guard::{Guard, Limits};
use super::slots::{META, Slot, slots};
use super::unknown::{self, UnknownKeys};
use super::{DeadLetter, Message, fast, fit, names};
use crate::{Error, Result};

/// Why a message was not accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub reason: String,
}

impl Rejected {
    fn new(reason: impl Into<String>) -> Self {
        Rejected { reason: reason.into() }
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

/// Turns Kafka messages with JSON object values into Arrow record batches of a fixed schema.
#[derive(Debug)]
pub struct BatchDecoder {
    schema: SchemaRef,
    /// The user columns alone, in schema order: what arrow_json decodes.
    user: SchemaRef,
    slots: Vec<Slot>,
    columns: HashSet<String>,
    /// The user columns of the rows the fast path took (see [`super::fast`]); `None` only in
    /// tests.
    fast: Option<fast::Columns>,
    /// The meta values of those rows.
    meta: Meta,
    /// Every accepted row since the last flush, in order.
    runs: Vec<Run>,
    rows: usize,
    bytes: usize,
    unknown: BTreeSet<String>,
    /// What a number in a timestamp column counts.
    epoch_unit: super::EpochUnit,
    /// The rules new keys must pass before they may grow the table; `None`: every key may.
    guard: Option<Guard>,
    /// What a key without a column does: grow the table, or (fixed schema) make the record a
    /// dead letter or go into the `_extra` column.
    unknown_keys: UnknownKeys,
}

impl BatchDecoder {
    /// A decoder for `schema`, which must hold the four meta columns with their types
    /// (they may sit anywhere, so columns added by later schema evolution can follow them).
    pub fn new(schema: &iceberg::spec::Schema) -> Result<Self> {
        let arrow = iceberg::arrow::schema_to_arrow_schema(schema)
            .map_err(|e| Error::iceberg("converting the table schema to Arrow", e))?;
        let (user, slots) = slots(&arrow, false)?;
        // Fail now, not on the first flush, if arrow_json cannot decode some column type.
        json_decoder(&user).map_err(|e| Error::decode("checking the table schema", e))?;
        Ok(BatchDecoder {
            columns: user.fields().iter().map(|f| f.name().clone()).collect(),
            fast: Some(fast::Columns::new(user.fields())),
            meta: Meta::new(),
            runs: Vec::new(),
            schema: Arc::new(arrow),
            user,
            slots,
            rows: 0,
            bytes: 0,
            unknown: BTreeSet::new(),
            epoch_unit: super::EpochUnit::Millis,
            guard: None,
            unknown_keys: UnknownKeys::Grow,
        })
    }

    /// Holds the table's growth to `limits` and its names to the rules in [`super::guard`]: a
    /// record whose new keys break them is rejected (a dead letter naming the rule).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.guard = Some(Guard::new(limits, self.user.fields(), &META));
        self
    }

    /// What a key the table has no column for does (default: the table grows). With a fixed
    /// schema keeping unknown keys, the table must have the `_extra` string column; it is filled
    /// by the decoder alone (a record's own `_extra` key is one more unknown key). Call before
    /// any record is pushed.
    pub fn with_unknown_keys(mut self, unknown_keys: UnknownKeys) -> Result<Self> {
        self.unknown_keys = unknown_keys;
        if unknown_keys == UnknownKeys::Extra {
            let (user, slots) = slots(&self.schema, true)?;
            self.columns = user.fields().iter().map(|f| f.name().clone()).collect();
            if self.fast.is_some() {
                self.fast = Some(fast::Columns::new(user.fields()));
            }
            if let Some(g) = &self.guard {
                self.guard = Some(Guard::new(g.limits(), user.fields(), &META));
            }
            (self.user, self.slots) = (user, slots);
        }
        Ok(self)
    }

    /// Numbers in timestamp columns count `unit`s since the epoch (default: milliseconds).
    pub fn with_epoch_unit(mut self, unit: super::EpochUnit) -> Self {
        self.epoch_unit = unit;
        self
    }

    /// Buffered rows the fast path took into its columns.
    #[cfg(test)]
    pub(super) fn fast_rows(&self) -> usize {
        self.fast.as_ref().map_or(0, fast::Columns::len)
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
    /// rejected. A message the fast path takes goes into its columns; any other is parsed, and
    /// whether it fits the schema is found out by [`flush`](Self::flush).
    pub fn push(&mut self, msg: &Message<'_>) -> Result<(), Rejected> {
        let bytes = msg.value.ok_or_else(|| Rejected::new("message has no value (tombstone)"))?;
        if self.fast.as_mut().is_some_and(|c| c.push(bytes)) {
            self.meta.push(msg.partition, msg.offset, msg.timestamp_ms, msg.key);
            match self.runs.last_mut() {
                Some(Run::Fast(n)) => *n += 1,
                _ => self.runs.push(Run::Fast(1)),
            }
        } else {
            let value =
                serde_json::from_slice::<Value>(bytes).map_err(|e| Rejected::new(format!("invalid JSON: {e}")))?;
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
            let (mut value, mut fresh) = self.columns_of(map);
            let mut extra = None;
            if fresh {
                match self.unknown_keys {
                    UnknownKeys::Grow => self.admit(&value)?,
                    UnknownKeys::DeadLetter => return Err(Rejected::new(unknown::reason(value, self.user.fields()))),
                    UnknownKeys::Extra => {
                        let split = unknown::split(value, self.user.fields());
                        value = split.known;
                        extra = Some(Value::Object(split.unknown).to_string().into_boxed_str());
                        fresh = false;
                    }
                    UnknownKeys::Drop => {
                        value = unknown::split(value, self.user.fields()).known;
                        fresh = false;
                    }
                }
            }
            let row = Row {
                partition: msg.partition,
                offset: msg.offset,
                timestamp_ms: msg.timestamp_ms,
                key: msg.key.map(Box::from),
                value,
                raw: Box::from(bytes),
                fresh,
                extra,
            };
            match self.runs.last_mut() {
                Some(Run::Parsed(rows)) => rows.push(row),
                _ => self.runs.push(Run::Parsed(vec![row])),
            }
        }
        self.rows += 1;
        self.bytes += bytes.len() + msg.key.map_or(0, <[u8]>::len);
        Ok(())
    }

    /// Lets a record's new keys grow the table, if the guard's rules allow them.
    fn admit(&mut self, value: &Map<String, Value>) -> Result<(), Rejected> {
        if let Some(guard) = self.guard.as_mut() {
            guard.admit(value).map_err(Rejected::new)?;
        }
        let columns = &self.columns;
        let new = value.keys().filter(|c| !columns.contains(c.as_str()));
        self.unknown.extend(new.map(|c| names::unescape(c).unwrap_or(c).to_string()));
        Ok(())
    }

    /// The rows parsed for the general path.
    fn parsed(&self) -> impl Iterator<Item = &Row> {
        self.runs.iter().flat_map(|r| match r {
            Run::Parsed(rows) => rows.as_slice(),
            _ => &[],
        })
    }

    /// Renames top-level keys to column names. Keys without a field, at the top or inside struct
    /// columns, are kept (arrow_json skips them): the row is `fresh`, and the schema should grow
    /// before it is decoded.
    fn columns_of(&self, map: Map<String, Value>) -> (Map<String, Value>, bool) {
        // Most rows need neither: skip rebuilding the map for them.
        let (map, top) = if map.keys().all(|k| names::escape(k) == k.as_str() && self.columns.contains(k.as_str())) {
            (map, false)
        } else {
            let mut out = Map::new();
            let mut fresh = false;
            for (key, value) in map {
                let column = names::escape(&key);
                fresh |= !self.columns.contains(&*column);
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
        self.parsed().any(|r| r.fresh)
    }

    /// The raw values of the rows with keys the schema lacks: the samples to grow it from.
    pub fn fresh_samples(&self) -> impl Iterator<Item = &[u8]> {
        self.parsed().filter(|r| r.fresh).map(|r| &*r.raw)
    }

    /// Switches to `schema` (the old one grown by new fields), keeping the buffered rows: a
    /// row's keys that the new schema has are decoded from now on.
    pub fn grow(&mut self, schema: &iceberg::spec::Schema) -> Result<()> {
        let mut next = BatchDecoder::new(schema)?.with_epoch_unit(self.epoch_unit);
        if let Some(g) = &self.guard {
            next = next.with_limits(g.limits());
        }
        next = next.with_unknown_keys(self.unknown_keys)?;
        if self.fast.is_none() {
            next.fast = None;
        }
        // The fast path's rows had only known keys, and a grown schema keeps them all: they
        // become a batch of the grown schema, in their place among the runs.
        let fast = self.finish_fast()?;
        let mut start = 0;
        for run in &mut self.runs {
            if let Run::Fast(n) = *run {
                let taken = fast.as_ref().expect("fast rows were counted").slice(start, n);
                start += n;
                *run = Run::Batch(super::conform_batch(&taken, &next.schema)?);
            } else if let Run::Batch(b) = run {
                *b = super::conform_batch(b, &next.schema)?;
            }
        }
        next.runs = std::mem::take(&mut self.runs);
        next.rows = self.rows;
        next.bytes = self.bytes;
        for run in &mut next.runs {
            if let Run::Parsed(rows) = run {
                for row in rows {
                    row.fresh = row.value.keys().any(|k| !next.columns.contains(k))
                        || fit::nested_keys_missing(&row.value, next.user.fields());
                }
            }
        }
        next.unknown = next
            .parsed()
            .filter(|r| r.fresh)
            .flat_map(|r| r.value.keys().filter(|k| !next.columns.contains(*k)).cloned())
            .collect();
        *self = next;
        Ok(())
    }

    /// Buffered accepted rows.
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Bytes of message values and keys buffered, for rolling by size (the parsed form in
    /// memory is a few times larger).
    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    /// Turns everything buffered into one batch and empties the buffer. Rows that do not fit
    /// the schema are reported in [`Flushed::rejected`] and the rest are kept, in arrival order.
    /// An `Err` means the batch as a whole could not be built (in practice: over 2 GiB of text
    /// in one column, which rolling by [`buffered_bytes`](Self::buffered_bytes) prevents); the
    /// buffer is emptied then too.
    pub fn flush(&mut self) -> Result<Flushed> {
        let unknown_fields = std::mem::take(&mut self.unknown);
        let runs = std::mem::take(&mut self.runs);
        self.rows = 0;
        self.bytes = 0;
        let fast = self.finish_fast()?;
        let mut start = 0;
        let mut batches = Vec::with_capacity(runs.len());
        let mut rejected = Vec::new();
        for run in runs {
            match run {
                Run::Fast(n) => {
                    batches.push(fast.as_ref().expect("fast rows were counted").slice(start, n));
                    start += n;
                }
                Run::Batch(b) => batches.push(b),
                Run::Parsed(rows) => batches.extend(self.general(rows, &mut rejected)?),
            }
        }
        rejected.sort_by_key(|r| (r.partition, r.offset));
        let batch = match batches.len() {
            0 => None,
            1 => batches.pop(),
            _ => Some(
                arrow_select::concat::concat_batches(&self.schema, &batches)
                    .map_err(|e| Error::decode("joining the batches of the fast and the general path", e))?,
            ),
        };
        Ok(Flushed { batch, rejected, unknown_fields })
    }

    /// The rows the fast path took since the last call, as one batch (`None` when there are none).
    fn finish_fast(&mut self) -> Result<Option<RecordBatch>> {
        let Some(columns) = self.fast.as_mut() else { return Ok(None) };
        if columns.len() == 0 {
            return Ok(None);
        }
        let mut meta = std::mem::replace(&mut self.meta, Meta::new());
        let user = columns
            .finish(self.user.fields())
            .map_err(|e| Error::decode(format!("building the columns of {} rows", meta.offset.len()), e))?;
        self.assemble(&mut meta, user).map(Some)
    }

    /// The general path for `rows`: fitted to the schema and decoded by arrow_json. Rows that do
    /// not fit go to `rejected`.
    fn general(&self, mut rows: Vec<Row>, rejected: &mut Vec<DeadLetter>) -> Result<Option<RecordBatch>> {
        let mut kept = Vec::with_capacity(rows.len());
        for mut row in rows.drain(..) {
            match fit::fit_row(&mut row.value, self.user.fields(), self.epoch_unit) {
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
                self.decode(&rows).map_err(|e| Error::decode(format!("decoding {} rows", rows.len()), e))?
            }
        };
        if rows.is_empty() {
            return Ok(None);
        }
        self.assemble(&mut Meta::of(&rows), user_columns).map(Some)
    }

    /// The user columns of `rows`, decoded by arrow_json.
    fn decode(&self, rows: &[Row]) -> Result<Vec<ArrayRef>, ArrowError> {
        if rows.is_empty() || self.user.fields().is_empty() {
            return Ok(Vec::new());
        }
        // A fresh decoder each time: after an error arrow_json's decoder keeps the failed rows.
        let mut decoder = json_decoder(&self.user)?;
        decoder.serialize(rows)?;
        Ok(decoder.flush()?.map(|b| b.columns().to_vec()).unwrap_or_default())
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
    fn assemble(&self, meta: &mut Meta, user: Vec<ArrayRef>) -> Result<RecordBatch> {
        let rows = meta.offset.len();
        let mut columns = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            columns.push(match slot {
                Slot::User(i) => user[*i].clone(),
                Slot::Partition => Arc::new(Int32Array::from(std::mem::take(&mut meta.partition))) as ArrayRef,
                Slot::Offset => Arc::new(Int64Array::from(std::mem::take(&mut meta.offset))),
                Slot::Timestamp(tz) => Arc::new(
                    TimestampMicrosecondArray::from_iter(meta.timestamp_ms.iter().map(|ms| timestamp_us(*ms)))
                        .with_timezone_opt(tz.clone()),
                ),
                Slot::Key { large } => meta
                    .key
                    .finish_binary(*large)
                    .map_err(|e| Error::decode(format!("building the key column of {rows} rows"), e))?,
                Slot::Extra => match meta.extra.take() {
                    Some(extra) => Arc::new(StringArray::from_iter(extra)) as ArrayRef,
                    None => arrow_array::new_null_array(&DataType::Utf8, rows),
                },
            });
        }
        let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)
            .map_err(|e| Error::decode(format!("assembling a batch of {rows} rows"), e))
    }
}

/// arrow_json as the general path uses it. coerce_primitive: numbers and booleans in string
/// columns (fields whose samples conflicted) are kept as their text instead of rejecting the row.
fn json_decoder(schema: &SchemaRef) -> Result<arrow_json::reader::Decoder, ArrowError> {
    ReaderBuilder::new(schema.clone()).with_coerce_primitive(true).build_decoder()
}

/// Kafka's timestamp in ms as µs; Kafka uses -1 for "no timestamp", so negatives are null.
fn timestamp_us(ms: i64) -> Option<i64> {
    if ms < 0 { None } else { ms.checked_mul(1000) }
}
