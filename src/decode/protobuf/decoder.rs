//! Turns Confluent-framed Protobuf records into batches of a table's schema.
//!
//! The agent tells the decoder each schema id's texts ([`ProtobufDecoder::know`]: compiled once),
//! then each message type its records name ([`ProtobufDecoder::follow`]: a schema id and message
//! indexes), after growing the table for it. A record is decoded once, when it arrives, so one
//! that does not parse is refused alone. Decoded messages wait in a chunk of one message type;
//! a full chunk (or another type's record, or a flush) turns them into columns of the table's
//! types (`value`), fields the type lacks being nulls. A decoded message takes several times the
//! memory of its bytes, so the chunk is small and the columns are what the decoder holds.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use iceberg::spec::Schema;
use prost_reflect::{DynamicMessage, FileDescriptor, MessageDescriptor};

use super::frame::frame;
use super::{fits, schema, value};
use crate::Result;
use crate::decode::meta::{Converted, Place, join, table_arrow};
use crate::decode::{DeadLetter, Flushed, Message, Rejected, names};

/// A message type: a schema id and the message indexes within its file.
type TypeKey = (u32, Vec<i32>);

/// A message type the agent has followed.
struct Followed {
    message: std::result::Result<MessageDescriptor, String>,
    /// Why the agent would not grow the table for it (its records are refused for good).
    refused: Option<String>,
    /// Whether its records fit the table as it is now (else why not).
    fit: std::result::Result<(), String>,
}

impl Followed {
    fn new(message: std::result::Result<MessageDescriptor, String>, refused: Option<String>, table: &Schema) -> Self {
        let fit = match (&message, &refused) {
            (Ok(m), None) => fits(table, m),
            _ => Ok(()),
        };
        Followed { message, refused, fit }
    }

    /// The message type, or why its records cannot be rows of the table.
    fn usable(&self, key: &TypeKey) -> std::result::Result<&MessageDescriptor, String> {
        let (id, indexes) = key;
        let m = self.message.as_ref().map_err(|e| format!("schema id {id}: {e}"))?;
        let what = || format!("schema id {id}, message {} (indexes {indexes:?})", m.full_name());
        if let Some(why) = &self.refused {
            return Err(format!("{}: {why}", what()));
        }
        self.fit.as_ref().map_err(|e| format!("{} does not fit the table: {e}", what()))?;
        Ok(m)
    }
}

/// Messages decoded per chunk: what the decoder holds as `DynamicMessage`s at most.
const CHUNK: usize = 1024;

/// Records of one message type, decoded, waiting to become columns.
struct Chunk {
    key: TypeKey,
    messages: Vec<DynamicMessage>,
    /// Each record whole (a dead letter if its columns cannot be built), and where its body starts.
    records: Vec<(DeadLetter, usize)>,
}

pub struct ProtobufDecoder {
    table: Arc<Schema>,
    /// The table's Arrow schema, meta columns included.
    schema: SchemaRef,
    /// Its user columns alone: what messages are turned into.
    user: SchemaRef,
    /// Each schema id's compiled file, or why its records cannot be read.
    files: HashMap<u32, std::result::Result<FileDescriptor, String>>,
    types: HashMap<TypeKey, Followed>,
    chunk: Option<Chunk>,
    converted: Vec<Converted>,
    /// Records whose columns could not be built, for the next flush.
    rejected: Vec<DeadLetter>,
}

impl ProtobufDecoder {
    pub fn new(table: &Schema) -> Result<Self> {
        let (schema, user) = table_arrow(table)?;
        Ok(ProtobufDecoder {
            table: Arc::new(table.clone()),
            schema,
            user,
            files: HashMap::new(),
            types: HashMap::new(),
            chunk: None,
            converted: Vec::new(),
            rejected: Vec::new(),
        })
    }

    pub fn arrow_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Whether the decoder has been told about schema id `id`.
    pub fn knows(&self, id: u32) -> bool {
        self.files.contains_key(&id)
    }

    /// Learns schema id `id`: its `.proto` text and the texts it imports by import name (`Err`:
    /// why records with this id cannot be read).
    pub fn know(&mut self, id: u32, schema: std::result::Result<(&str, &BTreeMap<String, String>), &str>) {
        let file = match schema {
            Ok((text, imports)) => schema::compile(text, imports),
            Err(why) => Err(why.to_string()),
        };
        self.files.insert(id, file);
    }

    /// The message type at `indexes` in schema id `id`'s file.
    pub fn message(&self, id: u32, indexes: &[i32]) -> std::result::Result<MessageDescriptor, String> {
        match self.files.get(&id) {
            None => Err(format!("schema id {id} was never looked up")),
            Some(Err(e)) => Err(e.clone()),
            Some(Ok(file)) => schema::message_at(file, indexes),
        }
    }

    /// Whether the agent has followed this message type already.
    pub fn follows(&self, id: u32, indexes: &[i32]) -> bool {
        self.types.contains_key(&(id, indexes.to_vec()))
    }

    /// Takes records of this message type from now on, unless `refused` (why the table was not
    /// grown for it).
    pub fn follow(&mut self, id: u32, indexes: &[i32], refused: Option<String>) {
        let followed = Followed::new(self.message(id, indexes), refused, &self.table);
        self.types.insert((id, indexes.to_vec()), followed);
    }

    /// Takes one record; one that cannot become a row of the table is refused with the reason.
    pub fn push(&mut self, msg: &Message<'_>) -> std::result::Result<(), Rejected> {
        let refuse = |reason: String| Err(Rejected { reason });
        let Some(value) = msg.value else { return refuse("no value (a tombstone)".into()) };
        let framed = match frame(value) {
            Ok(f) => f,
            Err(e) => return refuse(format!("not Protobuf in the Confluent wire format: {e}")),
        };
        let key = (framed.schema_id, framed.indexes);
        let message = match self.types.get(&key) {
            None => return refuse(format!("schema id {}, message indexes {:?}: never looked up", key.0, key.1)),
            Some(t) => match t.usable(&key) {
                Ok(m) => m,
                Err(e) => return refuse(e),
            },
        };
        let decoded = match DynamicMessage::decode(message.clone(), framed.body) {
            Ok(m) => m,
            Err(e) => {
                return refuse(format!("schema id {}: the body is not a {} message: {e}", key.0, message.full_name()));
            }
        };
        let body_at = value.len() - framed.body.len();
        if self.chunk.as_ref().is_some_and(|c| c.key != key || c.messages.len() >= CHUNK) {
            self.convert();
        }
        let chunk = self.chunk.get_or_insert_with(|| Chunk { key, messages: Vec::new(), records: Vec::new() });
        chunk.messages.push(decoded);
        chunk.records.push((DeadLetter::new(msg, String::new()), body_at));
        Ok(())
    }

    /// Records taken and not yet flushed (rows, or dead letters found when building columns).
    pub fn len(&self) -> usize {
        let converted: usize = self.converted.iter().map(|c| c.places.len()).sum();
        converted + self.chunk.as_ref().map_or(0, |c| c.messages.len()) + self.rejected.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves to `table`, a grown schema of the same table: message types are checked again.
    pub fn grow(&mut self, table: &Schema) -> Result<()> {
        let (schema, user) = table_arrow(table)?;
        for t in self.types.values_mut() {
            *t = Followed::new(t.message.clone(), t.refused.take(), table);
        }
        (self.table, self.schema, self.user) = (Arc::new(table.clone()), schema, user);
        Ok(())
    }

    /// Everything taken since the last flush, as one batch of the table's schema.
    pub fn flush(&mut self) -> Result<Flushed> {
        self.convert();
        let (converted, rejected) = (std::mem::take(&mut self.converted), std::mem::take(&mut self.rejected));
        let batch = join(&self.schema, &self.user, converted, "Protobuf")?;
        Ok(Flushed { batch, rejected, unknown_fields: Default::default() })
    }

    /// Turns the chunk's messages into columns. They should all fit (their type was checked
    /// against the table); if they do not, the records are tried one by one and only those that
    /// fail are dead letters.
    fn convert(&mut self) {
        let Some(chunk) = self.chunk.take() else { return };
        match self.columns(&chunk.key, chunk.messages) {
            Ok(batch) => {
                let places = chunk.records.iter().map(|(r, _)| Place::of(r)).collect();
                self.converted.push(Converted { batches: vec![batch], places });
            }
            Err(_) => {
                for (record, body_at) in chunk.records {
                    let body = &record.value.as_deref().unwrap_or_default()[body_at..];
                    let one = self
                        .message(chunk.key.0, &chunk.key.1)
                        .and_then(|m| DynamicMessage::decode(m, body).map_err(|e| e.to_string()));
                    match one.and_then(|m| self.columns(&chunk.key, vec![m])) {
                        Ok(batch) => {
                            self.converted.push(Converted { batches: vec![batch], places: vec![Place::of(&record)] })
                        }
                        Err(e) => self.rejected.push(DeadLetter { reason: e, ..record }),
                    }
                }
            }
        }
    }

    /// Messages of one type as one batch of the user columns.
    fn columns(&self, key: &TypeKey, messages: Vec<DynamicMessage>) -> std::result::Result<RecordBatch, String> {
        let message = self.types.get(key).ok_or("a message type never looked up")?.usable(key)?;
        let rows = messages.len();
        let rename = |n: &str| names::escape(n).into_owned();
        let columns = value::columns(message, messages, self.user.fields(), &rename)
            .map_err(|e| format!("schema id {}, message {}: {e}", key.0, message.full_name()))?;
        let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(self.user.clone(), columns, &options).map_err(|e| e.to_string())
    }
}
