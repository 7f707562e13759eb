//! The decode stage: Kafka messages with JSON object values → Arrow record batches.
//!
//! [`infer_schema`] derives an Iceberg schema from sample values; [`BatchDecoder`] parses each
//! message as it arrives (so a bad one is refused at once) and turns the buffered rows into one
//! `RecordBatch` of the table's Arrow schema on [`BatchDecoder::flush`]. Four meta columns record
//! where each row came from; [`names`] keeps user keys from ever taking their names.
//!
//! Everything here is pure code over bytes: no I/O.

// `crate::Error` is large because of `iceberg::Error` (see src/error.rs); boxing belongs there,
// not in every stage's signatures.

mod batch;
mod dead;
mod fit;
mod infer;
pub mod names;
#[cfg(test)]
mod schema_tests;
#[cfg(test)]
mod tests;

pub use batch::{BatchDecoder, Flushed, Rejected};
pub use dead::{DeadLetter, dead_letter_batch, dead_letter_schema};
pub use infer::{evolve_schema, infer_schema};

/// One Kafka record, borrowed from the fetch buffer.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch; negative (Kafka's -1) means none.
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

/// Kafka partition of the row: `int`, required.
pub const META_PARTITION: &str = "_kafka_partition";
/// Kafka offset of the row: `long`, required.
pub const META_OFFSET: &str = "_kafka_offset";
/// Kafka record timestamp: `timestamptz` (µs, UTC), optional.
pub const META_TIMESTAMP: &str = "_kafka_timestamp";
/// Kafka record key: `binary`, optional.
pub const META_KEY: &str = "_kafka_key";
