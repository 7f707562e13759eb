//! Avro in the Confluent wire format: magic byte 0, the writer schema's 4-byte big-endian id in a
//! schema registry, then the Avro binary body.
//!
//! The registry is the agent's business (`source::registry`); this decoder is told each writer
//! schema's text ([`AvroDecoder::know`]) and stays pure code over bytes. A record is checked
//! whole against its writer schema when it arrives ([`check`]), so a bad one is refused alone.
//! On flush, runs of records with one schema id are decoded by arrow-avro with that writer
//! schema, and the result is converted to the table's schema by field name
//! (`decode::conform`): fields the writer lacks are nulls, narrower types widen.
//!
//! How a table follows new schema versions: [`evolve`] gives the table schema grown by what a
//! writer schema adds (new fields anywhere, `int` → `long`, `float` → `double`, wider decimals),
//! and [`fits`] says whether a writer's records can be stored in a table as it is.

pub mod check;
pub mod schema;

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_avro::reader::ReaderBuilder;
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};
use arrow_schema::{Schema as ArrowSchema, SchemaRef};
use iceberg::spec::{ListType, MapType, NestedField, NestedFieldRef, PrimitiveType, Schema, StructType, Type};

pub use schema::{Avro, parse};

use super::meta::meta_column;
use super::{DeadLetter, Flushed, Message, Rejected, names};
use crate::{Error, Result};

/// Rows per arrow-avro batch; a flush joins them.
const BATCH_ROWS: usize = 8192;

/// The schema id of a Confluent-framed value, when it is one.
pub fn schema_id(value: &[u8]) -> Option<u32> {
    match value {
        [0, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// The Iceberg fields of a writer schema, numbered from 1 (parents first); top-level names are
/// escaped like JSON keys so they never take a meta column's name.
pub fn writer_fields(writer: &Avro) -> std::result::Result<Vec<NestedFieldRef>, String> {
    let mut n = 0;
    schema::iceberg_fields(
        writer,
        &mut || {
            n += 1;
            n
        },
        &|name| names::escape(name).into_owned(),
    )
}

/// The first schema of an Avro topic's table: the writer's fields, then the meta columns.
/// Schema id 0; the agent numbers it the way a catalog does on create.
pub fn table_schema(writer: &Avro) -> Result<Schema> {
    let fields = writer_fields(writer).map_err(|e| Error::decode("a table schema from an Avro schema", e))?;
    super::with_meta_columns(fields, "building a table schema from an Avro schema")
}

/// `table` grown to hold every field of `writer`: new fields (at any depth) are appended as
/// optional with ids after `last_id`, and columns the writer has wider are promoted. A top-level
/// field `known` (the catalog's schema, which another writer may have grown) already has keeps
/// that field. `Ok(None)`: nothing to add. `Err`: the writer has a field of a type the table's
/// cannot become (its records are dead letters, the table is left alone).
pub fn evolve(
    table: &Schema,
    writer: &Avro,
    last_id: i32,
    known: Option<&Schema>,
) -> std::result::Result<Option<Schema>, String> {
    let fields = writer_fields(writer)?;
    let mut next = last_id.max(table.highest_field_id());
    let mut conflicts = Vec::new();
    let (merged, changed) =
        merge_fields(table.as_struct().fields(), &fields, &mut next, known.map(Schema::as_struct), "", &mut conflicts);
    if !conflicts.is_empty() {
        return Err(conflicts.join("; "));
    }
    if !changed {
        return Ok(None);
    }
    Schema::builder()
        .with_schema_id(table.schema_id() + 1)
        .with_fields(merged)
        .build()
        .map(Some)
        .map_err(|e| format!("building the grown schema: {e}"))
}

/// Whether `writer`'s records can be stored in `table` as it is.
pub fn fits(table: &Schema, writer: &Avro) -> std::result::Result<(), String> {
    match evolve(table, writer, table.highest_field_id(), None)? {
        None => Ok(()),
        Some(_) => Err("the table's schema lacks fields of this writer schema".into()),
    }
}

fn merge_fields(
    table: &[NestedFieldRef],
    writer: &[NestedFieldRef],
    next: &mut i32,
    known: Option<&StructType>,
    path: &str,
    conflicts: &mut Vec<String>,
) -> (Vec<NestedFieldRef>, bool) {
    let mut out = table.to_vec();
    let mut changed = false;
    for w in writer {
        let name = if path.is_empty() { w.name.clone() } else { format!("{path}.{}", w.name) };
        match out.iter().position(|f| f.name == w.name) {
            Some(i) => {
                if let Some(t) = merge_type(&out[i].field_type, &w.field_type, next, &name, conflicts) {
                    let mut f = out[i].as_ref().clone();
                    f.field_type = Box::new(t);
                    out[i] = f.into();
                    changed = true;
                }
            }
            None => {
                out.push(match known.and_then(|k| k.field_by_name(&w.name)) {
                    Some(f) => f.clone(),
                    None => renumber(w, next),
                });
                changed = true;
            }
        }
    }
    (out, changed)
}

/// The type `table` must become to hold `writer`'s values; `None` when it holds them already.
fn merge_type(table: &Type, writer: &Type, next: &mut i32, name: &str, conflicts: &mut Vec<String>) -> Option<Type> {
    use PrimitiveType as P;
    match (table, writer) {
        (Type::Primitive(t), Type::Primitive(w)) => match (t, w) {
            _ if t == w => None,
            // The writer's narrower values widen when stored.
            (P::Long, P::Int) | (P::Double, P::Float) => None,
            (P::Decimal { precision: tp, scale: ts }, P::Decimal { precision: wp, scale: ws })
                if ts == ws && tp >= wp =>
            {
                None
            }
            // The table's column is promoted (Iceberg allows these without rewriting files).
            (P::Int, P::Long) | (P::Float, P::Double) => Some(Type::Primitive(w.clone())),
            (P::Decimal { scale: ts, .. }, P::Decimal { scale: ws, .. }) if ts == ws => {
                Some(Type::Primitive(w.clone()))
            }
            _ => {
                conflicts.push(format!("field `{name}` is {w} in this schema but {t} in the table"));
                None
            }
        },
        (Type::Struct(t), Type::Struct(w)) => {
            let (fields, changed) = merge_fields(t.fields(), w.fields(), next, None, name, conflicts);
            changed.then(|| Type::Struct(StructType::new(fields)))
        }
        (Type::List(t), Type::List(w)) => {
            let e = merge_type(
                &t.element_field.field_type,
                &w.element_field.field_type,
                next,
                &format!("{name}[]"),
                conflicts,
            )?;
            let mut f = t.element_field.as_ref().clone();
            f.field_type = Box::new(e);
            Some(Type::List(ListType::new(f.into())))
        }
        (Type::Map(t), Type::Map(w)) => {
            let v = merge_type(
                &t.value_field.field_type,
                &w.value_field.field_type,
                next,
                &format!("{name}{{}}"),
                conflicts,
            )?;
            let mut f = t.value_field.as_ref().clone();
            f.field_type = Box::new(v);
            Some(Type::Map(MapType::new(t.key_field.clone(), f.into())))
        }
        _ => {
            let kind = |t: &Type| match t {
                Type::Primitive(p) => p.to_string(),
                Type::Struct(_) => "a record".into(),
                Type::List(_) => "an array".into(),
                Type::Map(_) => "a map".into(),
            };
            conflicts.push(format!(
                "field `{name}` is {} in this schema but {} in the table",
                kind(writer),
                kind(table)
            ));
            None
        }
    }
}

/// `f` with fresh ids from `next`, parents before children.
fn renumber(f: &NestedField, next: &mut i32) -> NestedFieldRef {
    *next += 1;
    let mut out = f.clone();
    out.id = *next;
    out.field_type = Box::new(renumber_type(&f.field_type, next));
    out.into()
}

fn renumber_type(t: &Type, next: &mut i32) -> Type {
    match t {
        Type::Primitive(_) => t.clone(),
        Type::Struct(s) => Type::Struct(StructType::new(s.fields().iter().map(|f| renumber(f, next)).collect())),
        Type::List(l) => Type::List(ListType::new(renumber(&l.element_field, next))),
        Type::Map(m) => {
            let k = renumber(&m.key_field, next);
            Type::Map(MapType::new(k, renumber(&m.value_field, next)))
        }
    }
}

/// A writer schema as the decoder knows it.
struct Writer {
    avro: Avro,
    text: Arc<str>,
    /// Whether its records fit the table as it is now (else why not).
    fit: std::result::Result<(), String>,
}

/// A record taken, waiting for the flush (its reason is set only if it is refused then).
struct Pending {
    id: u32,
    record: DeadLetter,
}

/// Turns Confluent-framed Avro records into batches of a table's schema.
pub struct AvroDecoder {
    table: Arc<Schema>,
    /// The table's Arrow schema, meta columns included.
    schema: SchemaRef,
    /// Its user columns alone: what writer batches are converted to.
    user: SchemaRef,
    writers: HashMap<u32, Writer>,
    /// Ids with no usable schema, and why.
    refused: HashMap<u32, String>,
    /// One arrow-avro decoder per schema id, between flushes always at a row boundary.
    decoders: HashMap<u32, arrow_avro::reader::Decoder>,
    pending: Vec<Pending>,
}

impl AvroDecoder {
    pub fn new(table: &Schema) -> Result<Self> {
        let schema = Arc::new(
            iceberg::arrow::schema_to_arrow_schema(table)
                .map_err(|e| Error::iceberg("converting the table schema to Arrow", e))?,
        );
        let user = Arc::new(ArrowSchema::new(
            schema.fields().iter().filter(|f| !names::is_reserved(f.name())).cloned().collect::<Vec<_>>(),
        ));
        for meta in [super::META_PARTITION, super::META_OFFSET, super::META_TIMESTAMP, super::META_KEY] {
            if schema.field_with_name(meta).is_err() {
                return Err(Error::decode("checking the table schema", format!("meta column `{meta}` is missing")));
            }
        }
        Ok(AvroDecoder {
            table: Arc::new(table.clone()),
            schema,
            user,
            writers: HashMap::new(),
            refused: HashMap::new(),
            decoders: HashMap::new(),
            pending: Vec::new(),
        })
    }

    pub fn arrow_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Whether the decoder has been told about `id` (its schema or why there is none).
    pub fn knows(&self, id: u32) -> bool {
        self.writers.contains_key(&id) || self.refused.contains_key(&id)
    }

    /// Learns the writer schema of `id` (`Err`: why records with this id cannot be read).
    pub fn know(&mut self, id: u32, schema: std::result::Result<&Arc<str>, &str>) {
        match schema.map(|text| (text, parse(text))) {
            Ok((text, Ok(avro))) => {
                let fit = fits(&self.table, &avro);
                self.writers.insert(id, Writer { avro, text: text.clone(), fit });
            }
            Ok((_, Err(e))) => {
                self.refused.insert(id, format!("schema id {id} cannot be read: {e}"));
            }
            Err(reason) => {
                self.refused.insert(id, reason.to_string());
            }
        }
    }

    /// The writer schema of `id`, when known.
    pub fn writer(&self, id: u32) -> Option<&Avro> {
        self.writers.get(&id).map(|w| &w.avro)
    }

    /// Takes one record; one that cannot become a row of the table is refused with the reason.
    pub fn push(&mut self, msg: &Message<'_>) -> std::result::Result<(), Rejected> {
        let refuse = |reason: String| Err(Rejected { reason });
        let Some(value) = msg.value else { return refuse("no value (a tombstone)".into()) };
        let Some(id) = schema_id(value) else {
            return refuse(match value.first() {
                None => "empty value, not Avro in the Confluent wire format".into(),
                Some(0) => format!(
                    "{} bytes: too short for the Confluent wire format (magic byte and 4-byte schema id)",
                    value.len()
                ),
                Some(b) => format!("not Avro in the Confluent wire format: the first byte is {b:#04x}, not 0"),
            });
        };
        if let Some(reason) = self.refused.get(&id) {
            return refuse(reason.clone());
        }
        let Some(w) = self.writers.get(&id) else { return refuse(format!("schema id {id} was never looked up")) };
        if let Err(e) = &w.fit {
            return refuse(format!("schema id {id} does not fit the table: {e}"));
        }
        if let Err(e) = check::check(&w.avro, &value[5..]) {
            return refuse(format!("schema id {id}: {e}"));
        }
        self.pending.push(Pending { id, record: DeadLetter::new(msg, String::new()) });
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Moves to `table`, a grown schema of the same table: writer schemas are checked again.
    pub fn grow(&mut self, table: &Schema) -> Result<()> {
        let mut next = AvroDecoder::new(table)?;
        next.refused = std::mem::take(&mut self.refused);
        next.decoders = std::mem::take(&mut self.decoders);
        next.pending = std::mem::take(&mut self.pending);
        for (id, w) in self.writers.drain() {
            let fit = fits(table, &w.avro);
            next.writers.insert(id, Writer { fit, ..w });
        }
        *self = next;
        Ok(())
    }

    /// Decodes everything taken since the last flush into one batch of the table's schema.
    pub fn flush(&mut self) -> Result<Flushed> {
        let pending = std::mem::take(&mut self.pending);
        let mut batches = Vec::new();
        let mut kept: Vec<DeadLetter> = Vec::new();
        let mut rejected = Vec::new();
        for run in pending.chunk_by(|a, b| a.id == b.id) {
            let id = run[0].id;
            let records: Vec<&[u8]> = run.iter().map(|p| p.record.value.as_deref().unwrap_or_default()).collect();
            match self.decode_run(id, &records) {
                Ok(b) => {
                    batches.push(b);
                    kept.extend(run.iter().map(|p| p.record.clone()));
                }
                // Checked records should all decode; if some do not, find them one by one.
                Err(_) => {
                    for (p, bytes) in run.iter().zip(&records) {
                        match self.decode_run(id, std::slice::from_ref(bytes)) {
                            Ok(b) => {
                                batches.push(b);
                                kept.push(p.record.clone());
                            }
                            Err(e) => {
                                rejected.push(DeadLetter { reason: format!("schema id {id}: {e}"), ..p.record.clone() })
                            }
                        }
                    }
                }
            }
        }
        let batch = if kept.is_empty() {
            None
        } else {
            let user = arrow_select::concat::concat_batches(&self.user, &batches)
                .map_err(|e| Error::decode("joining Avro batches", e))?;
            Some(self.assemble(&kept, &user)?)
        };
        Ok(Flushed { batch, rejected, unknown_fields: Default::default() })
    }

    /// Decodes whole framed records of one schema id into one batch of the user columns.
    fn decode_run(&mut self, id: u32, records: &[&[u8]]) -> std::result::Result<RecordBatch, String> {
        let w = self.writers.get(&id).ok_or_else(|| format!("schema id {id} is not known"))?;
        let mut decoder = match self.decoders.remove(&id) {
            Some(d) => d,
            None => {
                let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
                store.set(Fingerprint::Id(id), AvroSchema::new(w.text.to_string())).map_err(|e| e.to_string())?;
                ReaderBuilder::new()
                    .with_writer_schema_store(store)
                    .with_batch_size(BATCH_ROWS)
                    .build_decoder()
                    .map_err(|e| e.to_string())?
            }
        };
        let mut out = Vec::new();
        for r in records {
            let mut rest = *r;
            while !rest.is_empty() {
                let n = decoder.decode(rest).map_err(|e| e.to_string())?;
                rest = &rest[n..];
                if decoder.batch_is_full() || n == 0 {
                    match decoder.flush().map_err(|e| e.to_string())? {
                        Some(b) => out.push(b),
                        None if n == 0 => return Err("the record ends early".into()),
                        None => {}
                    }
                }
            }
        }
        if let Some(b) = decoder.flush().map_err(|e| e.to_string())? {
            out.push(b);
        }
        // Only a decoder that got this far is at a row boundary and may be used again.
        self.decoders.insert(id, decoder);
        let rows: usize = out.iter().map(RecordBatch::num_rows).sum();
        if rows != records.len() {
            return Err(format!("{} records decoded into {rows} rows", records.len()));
        }
        let Some(first) = out.first() else { return Err("nothing decoded".into()) };
        let joined = arrow_select::concat::concat_batches(&first.schema(), &out).map_err(|e| e.to_string())?;
        // Top-level names as the table has them, then the table's types.
        let renamed = ArrowSchema::new(
            joined
                .schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_name(names::escape(f.name()).into_owned()))
                .collect::<Vec<_>>(),
        );
        let joined = RecordBatch::try_new(Arc::new(renamed), joined.columns().to_vec()).map_err(|e| e.to_string())?;
        super::conform_batch(&joined, &self.user).map_err(|e| e.to_string())
    }

    /// The user columns and the meta columns together, in the table's order.
    fn assemble(&self, rows: &[DeadLetter], user: &RecordBatch) -> Result<RecordBatch> {
        let columns = self
            .schema
            .fields()
            .iter()
            .map(|f| match user.column_by_name(f.name()) {
                Some(c) if !names::is_reserved(f.name()) => Ok(c.clone()),
                _ => meta_column(f.name(), f.data_type(), rows).ok_or_else(|| {
                    Error::decode(
                        "checking the table schema",
                        format!("column `{}` ({}) is neither a field nor a meta column", f.name(), f.data_type()),
                    )
                }),
            })
            .collect::<Result<Vec<_>>>()?;
        RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| Error::decode(format!("assembling a batch of {} Avro rows", rows.len()), e))
    }
}

#[cfg(test)]
mod tests;
