//! Protobuf in the Confluent wire format ([`frame`]), with schemas from a schema registry
//! ([`schema`]: compiled from their `.proto` texts, and turned into Iceberg fields).

pub mod frame;
pub mod schema;
pub mod value;

#[cfg(test)]
mod fixtures;
