//! Protobuf in the Confluent wire format ([`frame`]), with schemas from a schema registry
//! ([`schema`]: compiled from their `.proto` texts, and turned into Iceberg fields), decoded into
//! batches of a table's schema ([`ProtobufDecoder`], with [`value`]).
//!
//! How a table follows new schema versions is Avro's (`decode::merge`): [`evolve`] grows the
//! table by what a message type adds, and [`fits`] says whether its records can be stored in the
//! table as it is. Fields are matched by name, as in every other format: a field renamed in a
//! later schema (the same number on the wire) is a new column.

mod decoder;
pub mod frame;
pub mod schema;
pub mod value;

#[cfg(test)]
mod decoder_tests;
#[cfg(test)]
mod fixtures;

use iceberg::spec::{NestedFieldRef, Schema};
use prost_reflect::MessageDescriptor;

pub use decoder::ProtobufDecoder;

use super::names;
use crate::{Error, Result};

/// The Iceberg fields of a message type, numbered from 1 (parents first); top-level names are
/// escaped like JSON keys so they never take a meta column's name.
pub fn writer_fields(message: &MessageDescriptor) -> std::result::Result<Vec<NestedFieldRef>, String> {
    let mut n = 0;
    schema::iceberg_fields(
        message,
        &mut || {
            n += 1;
            n
        },
        &|name| names::escape(name).into_owned(),
    )
}

/// The first schema of a Protobuf topic's table: the message type's fields, then the meta
/// columns. Schema id 0; the agent numbers it the way a catalog does on create.
pub fn table_schema(message: &MessageDescriptor) -> Result<Schema> {
    let fields = writer_fields(message).map_err(|e| Error::decode("a table schema from a Protobuf schema", e))?;
    super::with_meta_columns(fields, "building a table schema from a Protobuf schema")
}

/// `table` grown to hold every field of `message` (see `decode::merge::grow`).
pub fn evolve(
    table: &Schema,
    message: &MessageDescriptor,
    last_id: i32,
    known: Option<&Schema>,
) -> std::result::Result<Option<Schema>, String> {
    super::merge::grow(table, writer_fields(message)?, last_id, known)
}

/// Whether records of `message` can be stored in `table` as it is.
pub fn fits(table: &Schema, message: &MessageDescriptor) -> std::result::Result<(), String> {
    super::merge::fits(table, writer_fields(message)?)
}
