//! The fetcher's side of table layouts: deciding a table's layout from its first records, and
//! growing it when records bring new keys or new Avro writer schemas. The layout is recorded
//! first (`layout`); then every buffer of the table moves to the grown schema before anything
//! more is decoded. Nothing is dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use iceberg::spec::{NestedFieldRef, Schema};

use super::Fetcher;
use crate::Result;
use crate::decode::json_schema::JsonSchema;
use crate::decode::{self, Format, UnknownKeys};
use crate::layout::{Written, rules};
use crate::source::Record;
use crate::source::registry::{Known, Registered, SchemaKind};
use crate::topic::TopicPartition;

impl Fetcher<'_> {
    /// The layout a table's spool files are written with, decided from these first records
    /// when the spool and the catalog know none.
    pub(super) fn layout_for(
        &self,
        table: &str,
        format: Format,
        samples: &[Record],
        writers: &BTreeMap<u32, Known>,
    ) -> Result<Written> {
        let cfg = &self.shared.cfg;
        let partition = cfg.partition_fields(table, false);
        let extra = cfg.unknown_keys(table) == UnknownKeys::Extra;
        // Columns the operator gave replace inference (a raw or text table's columns are fixed).
        let given = cfg.given_schema(table).filter(|_| matches!(format, Format::Json) || format.registered());
        self.shared.layouts.decide(table, false, cfg.sort_keys(table, false), || match (format, given) {
            (_, Some(user)) => rules::given(table, user, partition, extra),
            (Format::Json, None) => {
                // Only records whose keys pass the table's rules shape it (the others are dead letters).
                let values = samples.iter().filter_map(|r| r.value.as_deref());
                let admitted = decode::guard::admitted(cfg.limits(table), values);
                rules::infer(table, admitted, &cfg.time_fields, partition, extra)
            }
            (Format::Raw | Format::Text, None) => rules::raw(table, format == Format::Text, partition),
            (Format::Avro | Format::JsonSchema, None) => {
                // The writer schema of the first record that has a usable one.
                let first = samples
                    .iter()
                    .filter_map(|r| r.value.as_deref().and_then(decode::avro::schema_id))
                    .find_map(|id| writer_fields(format, writers[&id].schema(id, schema_kind(format)).ok()?)?.ok());
                let first = first.map(|f| decode::with_meta_columns(f, "a table schema from the first writer schema"));
                rules::registered(table, first, partition, cfg.limits(table))
            }
            (Format::Protobuf, None) => {
                // The message type of the first record that has a usable one.
                let first = samples
                    .iter()
                    .filter_map(|r| r.value.as_deref().and_then(|v| decode::protobuf::frame::frame(v).ok()))
                    .find_map(|f| {
                        let r = writers[&f.schema_id].schema(f.schema_id, SchemaKind::Protobuf).ok()?;
                        let file = decode::protobuf::schema::compile(&r.text, &r.references).ok()?;
                        decode::protobuf::schema::message_at(&file, &f.indexes).ok()
                    });
                let first = first.as_ref().map(decode::protobuf::table_schema);
                rules::registered(table, first, partition, cfg.limits(table))
            }
        })
    }

    /// The layout of a dead-letter table: the table's own when the catalog has it, else the
    /// canonical one.
    pub(super) fn dead_letter_layout(&self, table: &str) -> Result<Written> {
        self.shared.layouts.decide(table, true, &[], || rules::dead_letters(table))
    }

    /// Grows the table of a topic of registered schemas by what new schema ids add, then tells
    /// the partition's decoder about them. A schema whose fields cannot fit the table (a type
    /// changed incompatibly) leaves the table alone: its records become dead letters with the
    /// reason. A Protobuf schema holds several message types: the table grows for each one the
    /// records name ([`Self::follow_messages`]).
    pub(super) fn follow_writers(
        &mut self,
        table: &str,
        tp: &TopicPartition,
        format: Format,
        writers: &BTreeMap<u32, Known>,
    ) -> Result<()> {
        let kind = schema_kind(format);
        for (id, known) in writers {
            if self.buffer(tp).knows_schema(*id) {
                continue;
            }
            let schema = known.schema(*id, kind);
            // A schema whose fields would break the table's rules is refused like one the
            // registry could not give: its records go to the dead-letter table with the reason.
            let mut refused = None;
            if let Ok(r) = &schema
                && let Some(Ok(fields)) = writer_fields(format, r)
                && !self.shared.cfg.unknown_keys(table).fixed()
            {
                let grown =
                    |old: &Schema, last_id, known: Option<&Schema>| decode::merge::grow(old, fields, last_id, known);
                refused = self.grow_for(table, &format!("writer schema id {id}"), grown)?;
            }
            let buffer = self.buffer(tp);
            match (schema, refused) {
                (_, Some(why)) | (Err(why), None) => buffer.know_schema(*id, Err(&why)),
                (Ok(r), None) => buffer.know_schema(*id, Ok(r)),
            }
        }
        Ok(())
    }

    /// The message types of a Protobuf topic's records (a schema id and the message indexes in
    /// its file): the table grows by what each new one adds before the decoder takes them.
    pub(super) fn follow_messages(&mut self, table: &str, tp: &TopicPartition, records: &[Record]) -> Result<()> {
        let types: BTreeSet<(u32, Vec<i32>)> = records
            .iter()
            .filter_map(|r| r.value.as_deref().and_then(|v| decode::protobuf::frame::frame(v).ok()))
            .map(|f| (f.schema_id, f.indexes))
            .collect();
        for (id, indexes) in types {
            let decoder = self.buffer(tp).protobuf().expect("a Protobuf topic's buffer");
            if decoder.follows(id, &indexes) {
                continue;
            }
            let mut refused = None;
            if let Ok(message) = decoder.message(id, &indexes)
                && !self.shared.cfg.unknown_keys(table).fixed()
            {
                let what = format!("schema id {id}, message {}", message.full_name());
                let grown = |old: &Schema, last_id, known: Option<&Schema>| {
                    decode::protobuf::evolve(old, &message, last_id, known)
                };
                refused = self.grow_for(table, &what, grown)?;
            }
            self.buffer(tp).protobuf().expect("a Protobuf topic's buffer").follow(id, &indexes, refused);
        }
        Ok(())
    }

    /// Grows `table` by what `grown` (a writer's `evolve`, given the table's schema, the catalog's
    /// last column id and its schema) adds; `Some(reason)` when the grown table would break the
    /// table's rules (`decode::guard`), and the table is left alone.
    fn grow_for(
        &mut self,
        table: &str,
        what: &str,
        grown: impl FnOnce(&Schema, i32, Option<&Schema>) -> std::result::Result<Option<Schema>, String>,
    ) -> Result<Option<String>> {
        let old = self.written(table).schema;
        let (known_schema, table_last_id) = self.shared.layouts.catalog_schema(table);
        match grown(&old, table_last_id, known_schema.as_deref()) {
            Ok(Some(grown)) => {
                if let Err(e) = rules::check_growth(self.shared.cfg.limits(table), &old, &grown) {
                    let why = format!("{what} would break the table's rules: {e}");
                    log::warn!(table = table; "table {table}: {why}; its records go to the dead-letter table");
                    return Ok(Some(why));
                }
                self.adopt(table, grown, what)?;
            }
            Ok(None) => {}
            Err(e) => {
                log::warn!(table = table; "table {table}: {what} does not fit ({e}); its records go to the dead-letter table")
            }
        }
        Ok(None)
    }

    /// A table that keeps unknown keys in `_extra` gets the column if it lacks it (a table made
    /// before the choice, or by another writer).
    pub(super) fn ensure_extra_column(&mut self, table: &str) -> Result<()> {
        let old = self.written(table).schema;
        let (_, table_last_id) = self.shared.layouts.catalog_schema(table);
        match rules::grow_extra(table, &old, table_last_id)? {
            Some(grown) => self.adopt(table, grown, "the column for unknown keys"),
            None => Ok(()),
        }
    }

    /// Records with keys the table's schema has no column for: the schema grows by one optional
    /// column per new key (`decode::evolve_schema`).
    pub(super) fn grow_schema(&mut self, table: &str) -> Result<()> {
        let old = self.written(table).schema;
        let (known, table_last_id) = self.shared.layouts.catalog_schema(table);
        let samples = self
            .cursors
            .iter()
            .filter(|((topic, _), _)| self.shared.table_name(topic) == table)
            .filter_map(|(_, c)| c.buffer.as_ref())
            .flat_map(|b| b.fresh_samples());
        let Some(grown) = decode::evolve_schema(&old, samples, table_last_id, known.as_deref())? else {
            return Ok(());
        };
        // New fields named as time fields are timestamps; the old ones keep their types.
        let time = &self.shared.cfg.time_fields;
        let grown = decode::with_time_fields(grown, time, old.highest_field_id().max(table_last_id))?;
        self.adopt(table, grown, "new keys")
    }

    /// Makes `grown` the schema of `table`'s spool files, and moves every buffer of the table to it.
    fn adopt(&mut self, table: &str, grown: Schema, why: &str) -> Result<()> {
        let grown: Arc<Schema> = self.shared.layouts.adopt(table, grown, why)?;
        let shared = self.shared;
        for ((topic, _), c) in self.cursors.iter_mut() {
            if let Some(b) = c.buffer.as_mut()
                && shared.table_name(topic) == table
            {
                b.grow(&grown)?;
            }
        }
        Ok(())
    }

    /// The layout of a table that has a buffer (decided with its first records).
    pub(super) fn written(&self, table: &str) -> Written {
        self.shared.layouts.written(table).expect("decided with the table's first records")
    }
}

/// The fields of a registered schema that become a table's columns as a whole (`None` for a
/// Protobuf schema: its message types do, one by one).
fn writer_fields(format: Format, r: &Registered) -> Option<std::result::Result<Vec<NestedFieldRef>, String>> {
    match format {
        Format::Avro => Some(decode::avro::parse(&r.text).and_then(|w| decode::avro::writer_fields(&w))),
        Format::JsonSchema => Some(JsonSchema::parse(&r.text, &r.references).and_then(|s| s.fields())),
        _ => None,
    }
}

/// The kind of registered schema a topic of `format` reads.
fn schema_kind(format: Format) -> SchemaKind {
    match format {
        Format::Avro => SchemaKind::Avro,
        Format::Protobuf => SchemaKind::Protobuf,
        _ => SchemaKind::Json,
    }
}
