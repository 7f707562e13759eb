//! Turns Confluent-framed JSON Schema records into batches of a table's schema: each value is
//! checked against its schema id's schema when it arrives, then decoded by a JSON decoder over
//! the table's columns.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_schema::SchemaRef;
use iceberg::spec::Schema;
use serde_json::Value;

use super::{JsonSchema, fits};
use crate::Result;
use crate::decode::{BatchDecoder, EpochUnit, Flushed, Message, Rejected, UnknownKeys};

/// Where the registry's schemas are placed for `$ref`s between them: a reference registered as
/// `address.json` is what a schema's relative `"$ref": "address.json"` resolves to.
const BASE: &str = "https://schema-registry.frazil.invalid/schemas/";

/// What the decoder knows of one schema id.
struct Known {
    /// The compiled checker, or why there is none (its records are refused with it).
    checker: std::result::Result<(boon::Schemas, boon::SchemaIndex), String>,
    schema: Option<JsonSchema>,
    /// Whether its values fit the table as it is now (else why not).
    fit: std::result::Result<(), String>,
}

pub struct JsonSchemaDecoder {
    json: Box<BatchDecoder>,
    table: Arc<Schema>,
    ids: HashMap<u32, Known>,
    /// The schema id of every record taken since the last flush, by partition and offset: a dead
    /// letter the JSON decoder finds at the flush gets its whole framed value back.
    taken: HashMap<(i32, i64), u32>,
}

impl JsonSchemaDecoder {
    /// A decoder over `table`'s columns (numbers in its timestamp columns count `epoch_unit`s).
    pub fn new(table: &Schema, epoch_unit: EpochUnit) -> Result<Self> {
        let json = BatchDecoder::new(table)?.with_epoch_unit(epoch_unit).with_unknown_keys(UnknownKeys::Drop)?;
        Ok(JsonSchemaDecoder {
            json: Box::new(json),
            table: Arc::new(table.clone()),
            ids: HashMap::new(),
            taken: HashMap::new(),
        })
    }

    /// Keys a schema allows that the table has no column for are left out of the row, unless the
    /// table sends records with keys it lacks to the dead-letter table (`unknown_keys =
    /// "dead_letter"`).
    pub fn with_unknown_keys(mut self, unknown_keys: UnknownKeys) -> Result<Self> {
        self.json = Box::new(self.json.with_unknown_keys(drop_unless(unknown_keys))?);
        Ok(self)
    }

    pub fn arrow_schema(&self) -> SchemaRef {
        self.json.arrow_schema()
    }

    /// Whether the decoder has been told about schema id `id`.
    pub fn knows(&self, id: u32) -> bool {
        self.ids.contains_key(&id)
    }

    /// Learns schema id `id`: its text and the texts it references by name (`Err`: why records
    /// with this id cannot be read).
    pub fn know(&mut self, id: u32, schema: std::result::Result<(&str, &BTreeMap<String, String>), &str>) {
        let parsed = schema.map_err(str::to_string).and_then(|(text, refs)| JsonSchema::parse(text, refs));
        let known = match parsed {
            Ok(s) => Known { checker: checker(id, &s), fit: fits(&self.table, &s), schema: Some(s) },
            Err(why) => Known { checker: Err(why), schema: None, fit: Ok(()) },
        };
        self.ids.insert(id, known);
    }

    /// Takes one record; one that cannot become a row of the table is refused with the reason.
    pub fn push(&mut self, msg: &Message<'_>) -> std::result::Result<(), Rejected> {
        let refuse = |reason: String| Err(Rejected { reason });
        let Some(value) = msg.value else { return refuse("no value (a tombstone)".into()) };
        let Some(id) = crate::decode::avro::schema_id(value) else {
            return refuse(match value.first() {
                Some(b) if *b != 0 => format!("not in the Confluent wire format (magic byte {b}, not 0)"),
                _ => format!("too short for the Confluent wire format ({} bytes)", value.len()),
            });
        };
        let Some(known) = self.ids.get(&id) else { return refuse(format!("schema id {id} was never looked up")) };
        let (schemas, index) = match &known.checker {
            Ok(c) => c,
            Err(why) => return refuse(format!("schema id {id}: {why}")),
        };
        if let Err(e) = &known.fit {
            return refuse(format!("schema id {id} does not fit the table: {e}"));
        }
        let body = &value[5..];
        let parsed: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return refuse(format!("schema id {id}: invalid JSON: {e}")),
        };
        if let Err(e) = schemas.validate(&parsed, *index) {
            return refuse(format!("schema id {id}: the value does not match the schema: {}", one_line(&e)));
        }
        self.json.push(&Message { value: Some(body), ..*msg })?;
        self.taken.insert((msg.partition, msg.offset), id);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.json.len()
    }

    pub fn is_empty(&self) -> bool {
        self.json.is_empty()
    }

    /// Moves to `table`, a grown schema of the same table: schema ids are checked again.
    pub fn grow(&mut self, table: &Schema) -> Result<()> {
        self.json.grow(table)?;
        self.table = Arc::new(table.clone());
        for k in self.ids.values_mut() {
            if let Some(s) = &k.schema {
                k.fit = fits(table, s);
            }
        }
        Ok(())
    }

    /// Decodes everything taken since the last flush into one batch of the table's schema.
    pub fn flush(&mut self) -> Result<Flushed> {
        let mut flushed = self.json.flush()?;
        for d in &mut flushed.rejected {
            if let (Some(id), Some(body)) = (self.taken.get(&(d.partition, d.offset)), &d.value) {
                let mut framed = vec![0];
                framed.extend(id.to_be_bytes());
                framed.extend_from_slice(body);
                d.value = Some(framed.into());
            }
        }
        self.taken.clear();
        Ok(flushed)
    }
}

fn drop_unless(unknown_keys: UnknownKeys) -> UnknownKeys {
    match unknown_keys {
        UnknownKeys::DeadLetter => UnknownKeys::DeadLetter,
        _ => UnknownKeys::Drop,
    }
}

/// Refuses every URL a schema names that the registry did not give: a schema never makes the
/// agent read a local file or the network.
struct Nothing;

impl boon::UrlLoader for Nothing {
    fn load(&self, url: &str) -> std::result::Result<Value, Box<dyn std::error::Error>> {
        Err(format!("{url} is not among the schema's references in the registry").into())
    }
}

/// The schema compiled for checking values; its references are placed where its relative `$ref`s
/// lead: against the schema's own `$id` when it has one (as Confluent's serializers resolve
/// them), else against a base of our own.
fn checker(id: u32, schema: &JsonSchema) -> std::result::Result<(boon::Schemas, boon::SchemaIndex), String> {
    let mut compiler = boon::Compiler::new();
    compiler.use_loader(Box::new(Nothing));
    compiler.set_default_draft(boon::Draft::V7);
    let fail = |e: boon::CompileError| format!("the JSON Schema does not compile: {e}");
    let own_id = schema.root.get("$id").and_then(Value::as_str).and_then(|i| url::Url::parse(i).ok());
    for (name, doc) in &schema.references {
        let mut places = vec![match url::Url::parse(name) {
            Ok(absolute) => absolute.to_string(),
            Err(_) => format!("{BASE}{name}"),
        }];
        places.extend(own_id.as_ref().and_then(|base| base.join(name).ok()).map(|u| u.to_string()));
        places.dedup();
        for loc in places {
            compiler.add_resource(&loc, doc.clone()).map_err(fail)?;
        }
    }
    let root = format!("{BASE}frazil-schema-id-{id}.json");
    compiler.add_resource(&root, schema.root.clone()).map_err(fail)?;
    let mut schemas = boon::Schemas::new();
    let index = compiler.compile(&root, &mut schemas).map_err(fail)?;
    Ok((schemas, index))
}

/// A validation error (boon writes a tree of them, one per line, under a first line naming the
/// schema's made-up location) as one clipped line.
fn one_line(e: &boon::ValidationError<'_, '_>) -> String {
    let full = e.to_string();
    let lines: Vec<&str> = full.lines().map(|l| l.trim().trim_start_matches("- ")).filter(|l| !l.is_empty()).collect();
    let text = match lines.as_slice() {
        [_, causes @ ..] if !causes.is_empty() => causes.join("; "),
        _ => lines.join("; "),
    };
    match text.char_indices().nth(400) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text,
    }
}
