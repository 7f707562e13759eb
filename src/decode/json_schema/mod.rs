//! JSON Schema values in the Confluent wire format: magic byte 0, the schema's 4-byte big-endian
//! id in a schema registry, then the value's JSON text.
//!
//! The registered schema decides the table's columns ([`types`]) and checks every value (boon, a
//! JSON Schema validator; draft 7 unless the schema names another in `$schema`): a value that
//! does not match is a dead letter with the first reason. A matching value is decoded as a JSON
//! topic's values are (`decode::BatchDecoder`), so a value that fits the schema but not its
//! column (a `date-time` string that is not a time) is a dead letter too; keys the schema does
//! not have are left out. A later schema that adds properties grows the table as Avro's do
//! (`decode::merge`).

mod decoder;
pub mod types;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use iceberg::spec::{NestedFieldRef, Schema};
use serde_json::Value;

pub use decoder::JsonSchemaDecoder;

use super::names;
use crate::{Error, Result};

/// A registered JSON Schema, parsed: the schema's document and the documents it references, by
/// the names it references them by.
#[derive(Clone, Debug)]
pub struct JsonSchema {
    pub root: Value,
    pub references: BTreeMap<String, Value>,
}

impl JsonSchema {
    pub fn parse(text: &str, references: &BTreeMap<String, String>) -> std::result::Result<JsonSchema, String> {
        let parse =
            |what: &str, t: &str| serde_json::from_str::<Value>(t).map_err(|e| format!("{what} is not JSON: {e}"));
        let root = parse("the schema", text)?;
        let references = references
            .iter()
            .map(|(name, t)| Ok((name.clone(), parse(&format!("its reference `{name}`"), t)?)))
            .collect::<std::result::Result<_, String>>()?;
        Ok(JsonSchema { root, references })
    }

    /// The Iceberg fields of the schema, numbered from 1 (parents first); top-level names are
    /// escaped like JSON keys so they never take a meta column's name.
    pub fn fields(&self) -> std::result::Result<Vec<NestedFieldRef>, String> {
        let mut n = 0;
        types::iceberg_fields(
            &self.root,
            &self.references,
            &mut || {
                n += 1;
                n
            },
            &|name| names::escape(name).into_owned(),
        )
    }
}

/// The first schema of a JSON Schema topic's table: the schema's properties, then the meta
/// columns. Schema id 0; the agent numbers it the way a catalog does on create.
pub fn table_schema(schema: &JsonSchema) -> Result<Schema> {
    let fields = schema.fields().map_err(|e| Error::decode("a table schema from a JSON Schema", e))?;
    super::with_meta_columns(fields, "building a table schema from a JSON Schema")
}

/// `table` grown to hold every property of `schema` (see `decode::merge::grow`).
pub fn evolve(
    table: &Schema,
    schema: &JsonSchema,
    last_id: i32,
    known: Option<&Schema>,
) -> std::result::Result<Option<Schema>, String> {
    super::merge::grow(table, schema.fields()?, last_id, known)
}

/// Whether values of `schema` can be stored in `table` as it is.
pub fn fits(table: &Schema, schema: &JsonSchema) -> std::result::Result<(), String> {
    super::merge::fits(table, schema.fields()?)
}
