//! Turns Confluent-framed Protobuf records into batches of a table's schema.
//!
//! The agent tells the decoder each schema id's texts ([`ProtobufDecoder::know`]: compiled once),
//! then each message type its records name ([`ProtobufDecoder::follow`]: a schema id and message
//! indexes), after growing the table for it. A record is decoded when it arrives, so one that does
//! not parse is refused alone; on flush, runs of records of one message type become columns of
//! the table's types (`value`), fields the type lacks being nulls.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use iceberg::spec::Schema;
use prost_reflect::{DynamicMessage, FileDescriptor, MessageDescriptor};

use super::frame::frame;
use super::{fits, schema, value};
use crate::decode::meta::{assemble, table_arrow};
use crate::decode::{DeadLetter, Flushed, Message, Rejected, names};
use crate::{Error, Result};

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

/// A record taken, waiting for the flush.
struct Pending {
    key: TypeKey,
    /// Where the Protobuf body starts in the record's value.
    body_at: usize,
    record: DeadLetter,
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
    pending: Vec<Pending>,
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
            pending: Vec::new(),
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
        if let Err(e) = DynamicMessage::decode(message.clone(), framed.body) {
            return refuse(format!("schema id {}: the body is not a {} message: {e}", key.0, message.full_name()));
        }
        let body_at = value.len() - framed.body.len();
        self.pending.push(Pending { key, body_at, record: DeadLetter::new(msg, String::new()) });
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
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

    /// Decodes everything taken since the last flush into one batch of the table's schema.
    pub fn flush(&mut self) -> Result<Flushed> {
        let pending = std::mem::take(&mut self.pending);
        let (mut batches, mut kept, mut rejected) = (Vec::new(), Vec::new(), Vec::new());
        for run in pending.chunk_by(|a, b| a.key == b.key) {
            match self.decode_run(run) {
                Ok(b) => {
                    batches.push(b);
                    kept.extend(run.iter().map(|p| p.record.clone()));
                }
                // Records that parsed should all become rows; if some do not, find them one by one.
                Err(_) => {
                    for p in run {
                        match self.decode_run(std::slice::from_ref(p)) {
                            Ok(b) => {
                                batches.push(b);
                                kept.push(p.record.clone());
                            }
                            Err(e) => rejected.push(DeadLetter { reason: e, ..p.record.clone() }),
                        }
                    }
                }
            }
        }
        let batch = if kept.is_empty() {
            None
        } else {
            let user = arrow_select::concat::concat_batches(&self.user, &batches)
                .map_err(|e| Error::decode("joining Protobuf batches", e))?;
            Some(assemble(&self.schema, &kept, &user, "Protobuf")?)
        };
        Ok(Flushed { batch, rejected, unknown_fields: Default::default() })
    }

    /// Records of one message type as one batch of the user columns.
    fn decode_run(&self, run: &[Pending]) -> std::result::Result<RecordBatch, String> {
        let key = &run[0].key;
        let message = self.types.get(key).ok_or("a message type never looked up")?.usable(key)?;
        let messages = run
            .iter()
            .map(|p| {
                let body = &p.record.value.as_deref().unwrap_or_default()[p.body_at..];
                DynamicMessage::decode(message.clone(), body).map_err(|e| e.to_string())
            })
            .collect::<std::result::Result<Vec<_>, String>>()?;
        let rename = |n: &str| names::escape(n).into_owned();
        let columns = value::columns(message, &messages, self.user.fields(), &rename)
            .map_err(|e| format!("schema id {}, message {}: {e}", key.0, message.full_name()))?;
        let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(messages.len()));
        RecordBatch::try_new_with_options(self.user.clone(), columns, &options).map_err(|e| e.to_string())
    }
}
