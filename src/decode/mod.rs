//! The decode stage: Kafka messages (JSON objects, Confluent-framed Avro, Protobuf or JSON
//! Schema values, raw bytes or text) → Arrow record batches.
//!
//! [`infer_schema`] derives an Iceberg schema from sample values; [`BatchDecoder`] parses each
//! message as it arrives (so a bad one is refused at once) and turns the buffered rows into one
//! `RecordBatch` of the table's Arrow schema on [`BatchDecoder::flush`]. Four meta columns record
//! where each row came from; [`names`] keeps user keys from ever taking their names.
//! Most JSON messages never become a `serde_json::Value`: the `fast` module walks their bytes once
//! and appends their values straight to Arrow column builders (in the telemetry bench, decoding
//! went from about 8 µs per event to 0.8, measured with perf).
//!
//! Everything here is pure code over bytes: no I/O.

// `crate::Error` is large because of `iceberg::Error` (see src/error.rs); boxing belongs there,
// not in every stage's signatures.

pub mod avro;
mod batch;
mod buffered;
mod conform;
mod dead;
mod fast;
#[cfg(test)]
mod fast_tests;
mod fit;
#[doc(hidden)]
pub mod fuzz;
pub mod guard;
mod infer;
pub mod json_schema;
pub mod merge;
mod meta;
pub mod names;
pub mod protobuf;
pub mod raw;
#[cfg(test)]
mod schema_tests;
mod slots;
#[cfg(test)]
mod tests;
pub mod unknown;

pub use batch::{BatchDecoder, Flushed, Rejected};
pub use conform::conform_batch;
pub use dead::{DeadLetter, dead_letter_batch, dead_letter_schema};
pub use guard::Limits;
pub use infer::{evolve_schema, infer_schema};
pub use unknown::{EXTRA, UnknownKeys};

/// How numbers in timestamp fields count time since the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpochUnit {
    Seconds,
    Millis,
    Micros,
}

impl EpochUnit {
    /// Microseconds per unit.
    pub fn micros(self) -> i64 {
        match self {
            EpochUnit::Seconds => 1_000_000,
            EpochUnit::Millis => 1_000,
            EpochUnit::Micros => 1,
        }
    }
}

/// JSON fields that hold times: typed `timestamptz` when a table is created or grows, read from
/// RFC 3339 strings or from numbers since the epoch in `epoch_unit`.
#[derive(Clone, Debug)]
pub struct TimeFields {
    pub names: Vec<String>,
    pub epoch_unit: EpochUnit,
}

impl Default for TimeFields {
    fn default() -> Self {
        TimeFields { names: Vec::new(), epoch_unit: EpochUnit::Millis }
    }
}

/// `schema` with the top-level fields named in `time.names` typed `timestamptz`, where inference
/// gave them a scalar type; fields with an id at or below `keep_below` (already in a table) keep
/// theirs.
pub fn with_time_fields(
    schema: iceberg::spec::Schema,
    time: &TimeFields,
    keep_below: i32,
) -> crate::Result<iceberg::spec::Schema> {
    use iceberg::spec::{NestedField, PrimitiveType, Type};
    if time.names.is_empty() {
        return Ok(schema);
    }
    let fields: Vec<iceberg::spec::NestedFieldRef> = schema
        .as_struct()
        .fields()
        .iter()
        .map(|f| {
            let scalar = matches!(
                *f.field_type,
                Type::Primitive(PrimitiveType::String | PrimitiveType::Long | PrimitiveType::Double)
            );
            if f.id > keep_below && scalar && time.names.iter().any(|n| names::escape(n) == f.name.as_str()) {
                let mut t = NestedField::optional(f.id, f.name.clone(), Type::Primitive(PrimitiveType::Timestamptz));
                t.doc = f.doc.clone();
                t.into()
            } else {
                f.clone()
            }
        })
        .collect();
    iceberg::spec::Schema::builder()
        .with_schema_id(schema.schema_id())
        .with_fields(fields)
        .build()
        .map_err(|e| crate::Error::iceberg("typing the time fields", e))
}

/// A table schema (id 0) of the `user` fields followed by the four meta columns, numbered after
/// the highest id among them.
pub fn with_meta_columns(user: Vec<iceberg::spec::NestedFieldRef>, what: &str) -> crate::Result<iceberg::spec::Schema> {
    use iceberg::spec::{NestedField, PrimitiveType, Schema};
    let build = |fields| {
        Schema::builder().with_schema_id(0).with_fields(fields).build().map_err(|e| crate::Error::iceberg(what, e))
    };
    let mut next = build(user.clone())?.highest_field_id();
    let mut id = || {
        next += 1;
        next
    };
    let mut fields = user;
    fields.push(NestedField::required(id(), META_PARTITION, PrimitiveType::Int.into()).into());
    fields.push(NestedField::required(id(), META_OFFSET, PrimitiveType::Long.into()).into());
    fields.push(NestedField::optional(id(), META_TIMESTAMP, PrimitiveType::Timestamptz.into()).into());
    fields.push(NestedField::optional(id(), META_KEY, PrimitiveType::Binary.into()).into());
    build(fields)
}

/// How a topic's values are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// JSON objects; the schema is inferred and grows with new keys.
    Json,
    /// Any bytes, kept as they are (`value` binary, `headers` map).
    Raw,
    /// UTF-8 text (`value` string, `headers` map); other bytes are dead letters.
    Text,
    /// Avro in the Confluent wire format (magic byte 0, 4-byte schema id, body), with writer
    /// schemas from a schema registry; the table follows the schemas' fields.
    Avro,
    /// Protobuf in the Confluent wire format (magic byte 0, 4-byte schema id, message indexes,
    /// body), with `.proto` schemas from a schema registry; the table follows the message types'
    /// fields.
    Protobuf,
    /// JSON in the Confluent wire format (magic byte 0, 4-byte schema id, the JSON text), checked
    /// against JSON Schemas from a schema registry; the table follows the schemas' properties.
    JsonSchema,
}

impl Format {
    /// Whether values name their writer schema in a schema registry.
    pub fn registered(self) -> bool {
        matches!(self, Format::Avro | Format::Protobuf | Format::JsonSchema)
    }
}

/// The decoder of one partition's records, by format.
pub enum Decoder {
    // Boxed: its column builders make it several times the size of the other two.
    Json(Box<BatchDecoder>),
    Raw(raw::RawDecoder),
    Avro(avro::AvroDecoder),
    Protobuf(protobuf::ProtobufDecoder),
    // Boxed like Json: it holds a JSON decoder.
    JsonSchema(Box<json_schema::JsonSchemaDecoder>),
}

impl Decoder {
    pub fn new(format: Format, schema: &iceberg::spec::Schema, epoch_unit: EpochUnit) -> crate::Result<Decoder> {
        Ok(match format {
            Format::Json => Decoder::Json(Box::new(BatchDecoder::new(schema)?.with_epoch_unit(epoch_unit))),
            Format::Raw | Format::Text => Decoder::Raw(raw::RawDecoder::new(schema)?),
            Format::Avro => Decoder::Avro(avro::AvroDecoder::new(schema)?),
            Format::Protobuf => Decoder::Protobuf(protobuf::ProtobufDecoder::new(schema)?),
            Format::JsonSchema => {
                Decoder::JsonSchema(Box::new(json_schema::JsonSchemaDecoder::new(schema, epoch_unit)?))
            }
        })
    }

    /// Holds a JSON table's growth to `limits` (see [`guard`]); other formats are unchanged.
    pub fn with_limits(self, limits: Limits) -> Decoder {
        match self {
            Decoder::Json(d) => Decoder::Json(Box::new(d.with_limits(limits))),
            other => other,
        }
    }

    /// What a JSON table does with keys it has no column for (see [`unknown`]); an Avro or
    /// Protobuf table with a fixed schema is held by the fetcher, which stops following new
    /// writer fields.
    pub fn with_unknown_keys(self, unknown_keys: UnknownKeys) -> crate::Result<Decoder> {
        Ok(match self {
            Decoder::Json(d) => Decoder::Json(Box::new(d.with_unknown_keys(unknown_keys)?)),
            Decoder::JsonSchema(d) => Decoder::JsonSchema(Box::new(d.with_unknown_keys(unknown_keys)?)),
            other => other,
        })
    }

    pub fn push(
        &mut self,
        msg: &Message<'_>,
        headers: &std::collections::BTreeMap<String, Vec<u8>>,
    ) -> Result<(), Rejected> {
        match self {
            Decoder::Json(d) => d.push(msg),
            Decoder::Raw(d) => d.push(msg, headers),
            Decoder::Avro(d) => d.push(msg),
            Decoder::Protobuf(d) => d.push(msg),
            Decoder::JsonSchema(d) => d.push(msg),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Decoder::Json(d) => d.len(),
            Decoder::Raw(d) => d.len(),
            Decoder::Avro(d) => d.len(),
            Decoder::Protobuf(d) => d.len(),
            Decoder::JsonSchema(d) => d.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn flush(&mut self) -> crate::Result<Flushed> {
        match self {
            Decoder::Json(d) => d.flush(),
            Decoder::Raw(d) => {
                Ok(Flushed { batch: d.flush()?, rejected: Vec::new(), unknown_fields: Default::default() })
            }
            Decoder::Avro(d) => d.flush(),
            Decoder::Protobuf(d) => d.flush(),
            Decoder::JsonSchema(d) => d.flush(),
        }
    }

    pub fn arrow_schema(&self) -> arrow_schema::SchemaRef {
        match self {
            Decoder::Json(d) => d.arrow_schema(),
            Decoder::Raw(d) => d.arrow_schema(),
            Decoder::Avro(d) => d.arrow_schema(),
            Decoder::Protobuf(d) => d.arrow_schema(),
            Decoder::JsonSchema(d) => d.arrow_schema(),
        }
    }

    /// Whether buffered records have keys the schema lacks (JSON only).
    pub fn has_fresh_keys(&self) -> bool {
        matches!(self, Decoder::Json(d) if d.has_fresh_keys())
    }

    pub fn fresh_samples(&self) -> Vec<&[u8]> {
        match self {
            Decoder::Json(d) => d.fresh_samples().collect(),
            Decoder::Raw(_) | Decoder::Avro(_) | Decoder::Protobuf(_) | Decoder::JsonSchema(_) => Vec::new(),
        }
    }

    pub fn grow(&mut self, schema: &iceberg::spec::Schema) -> crate::Result<()> {
        match self {
            Decoder::Json(d) => d.grow(schema),
            Decoder::Avro(d) => d.grow(schema),
            Decoder::Protobuf(d) => d.grow(schema),
            Decoder::JsonSchema(d) => d.grow(schema),
            Decoder::Raw(_) => Err(crate::Error::decode("growing a schema", "a raw table's schema is fixed")),
        }
    }
}

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
