//! Avro in the Confluent wire format: magic byte 0, the writer schema's 4-byte big-endian id in a
//! schema registry, then the Avro binary body.
//!
//! The registry is the agent's business (`source::registry`); this decoder is told each writer
//! schema's text ([`AvroDecoder::know`]) and stays pure code over bytes. A record is checked
//! whole against its writer schema when it arrives ([`check`]), so a bad one is refused alone.
//! Every 1,024 records (and at a flush), runs of records with one schema id are decoded by
//! arrow-avro with that writer schema, and the result is converted to the table's schema by field
//! name (`decode::conform`): fields the writer lacks are nulls, narrower types widen. Columns
//! decoded before the table grew are converted again at the flush.
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
use iceberg::spec::{NestedFieldRef, Schema};

pub use schema::{Avro, parse};

use super::meta::{Converted, Place, join, table_arrow};
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

/// `table` grown to hold every field of `writer` (see [`super::merge::grow`]).
pub fn evolve(
    table: &Schema,
    writer: &Avro,
    last_id: i32,
    known: Option<&Schema>,
) -> std::result::Result<Option<Schema>, String> {
    super::merge::grow(table, writer_fields(writer)?, last_id, known)
}

/// Whether `writer`'s records can be stored in `table` as it is.
pub fn fits(table: &Schema, writer: &Avro) -> std::result::Result<(), String> {
    super::merge::fits(table, writer_fields(writer)?)
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

/// Records taken are decoded into columns once this many wait: Avro is compact, and a record
/// kept as bytes until the flush costs its bytes and then its columns at once.
const CHUNK: usize = 1024;

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
    converted: Vec<Converted>,
    /// Records whose columns could not be built, for the next flush.
    rejected: Vec<DeadLetter>,
}

impl AvroDecoder {
    pub fn new(table: &Schema) -> Result<Self> {
        let (schema, user) = table_arrow(table)?;
        Ok(AvroDecoder {
            table: Arc::new(table.clone()),
            schema,
            user,
            writers: HashMap::new(),
            refused: HashMap::new(),
            decoders: HashMap::new(),
            pending: Vec::new(),
            converted: Vec::new(),
            rejected: Vec::new(),
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
        if self.pending.len() >= CHUNK {
            self.convert();
        }
        Ok(())
    }

    /// Records taken and not yet flushed (rows, or dead letters found when decoding).
    pub fn len(&self) -> usize {
        let converted: usize = self.converted.iter().map(|c| c.places.len()).sum();
        self.pending.len() + converted + self.rejected.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves to `table`, a grown schema of the same table: writer schemas are checked again.
    pub fn grow(&mut self, table: &Schema) -> Result<()> {
        let mut next = AvroDecoder::new(table)?;
        next.refused = std::mem::take(&mut self.refused);
        next.decoders = std::mem::take(&mut self.decoders);
        next.pending = std::mem::take(&mut self.pending);
        next.converted = std::mem::take(&mut self.converted);
        next.rejected = std::mem::take(&mut self.rejected);
        for (id, w) in self.writers.drain() {
            let fit = fits(table, &w.avro);
            next.writers.insert(id, Writer { fit, ..w });
        }
        *self = next;
        Ok(())
    }

    /// Everything taken since the last flush, as one batch of the table's schema.
    pub fn flush(&mut self) -> Result<Flushed> {
        self.convert();
        let (converted, rejected) = (std::mem::take(&mut self.converted), std::mem::take(&mut self.rejected));
        let batch = join(&self.schema, &self.user, converted, "Avro")?;
        Ok(Flushed { batch, rejected, unknown_fields: Default::default() })
    }

    /// Decodes the records waiting into columns, by runs of one schema id. Checked records should
    /// all decode; if a run does not, its records are decoded one by one and only those that
    /// fail are dead letters.
    fn convert(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for run in pending.chunk_by(|a, b| a.id == b.id) {
            let id = run[0].id;
            let records: Vec<&[u8]> = run.iter().map(|p| p.record.value.as_deref().unwrap_or_default()).collect();
            match self.decode_run(id, &records) {
                Ok(batches) => {
                    let places = run.iter().map(|p| Place::of(&p.record)).collect();
                    self.converted.push(Converted { batches, places });
                }
                Err(_) => {
                    for (p, bytes) in run.iter().zip(&records) {
                        match self.decode_run(id, std::slice::from_ref(bytes)) {
                            Ok(batches) => {
                                self.converted.push(Converted { batches, places: vec![Place::of(&p.record)] })
                            }
                            Err(e) => self
                                .rejected
                                .push(DeadLetter { reason: format!("schema id {id}: {e}"), ..p.record.clone() }),
                        }
                    }
                }
            }
        }
    }

    /// Decodes whole framed records of one schema id into batches of the user columns (of up to
    /// `BATCH_ROWS` rows: the flush joins every run's batches once).
    fn decode_run(&mut self, id: u32, records: &[&[u8]]) -> std::result::Result<Vec<RecordBatch>, String> {
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
        if out.is_empty() {
            return Err("nothing decoded".into());
        }
        out.iter()
            .map(|batch| {
                // Top-level names as the table has them, then the table's types.
                let renamed = ArrowSchema::new(
                    batch
                        .schema()
                        .fields()
                        .iter()
                        .map(|f| f.as_ref().clone().with_name(names::escape(f.name()).into_owned()))
                        .collect::<Vec<_>>(),
                );
                let renamed =
                    RecordBatch::try_new(Arc::new(renamed), batch.columns().to_vec()).map_err(|e| e.to_string())?;
                super::conform_batch(&renamed, &self.user).map_err(|e| e.to_string())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
