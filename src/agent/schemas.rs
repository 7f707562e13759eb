//! Which schema each table's spool files are written with: decided once per table (the spool's
//! record, else the catalog's table, else inferred from the first records or the first Avro
//! writer schema), then grown by new JSON keys or new writer schemas. The decision rules for
//! ids and specs are in `tables.rs`; this is where the agent applies them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use iceberg::spec::PartitionSpec;
use rskafka::record::RecordAndOffset;

use super::{Agent, tables};
use crate::decode::{self, Format};
use crate::source::TopicPartition;
use crate::source::registry::Known;
use crate::{Error, Result};

impl Agent {
    /// What the schema registry says of each schema id these Avro records name (cached).
    pub(super) async fn writer_schemas(&self, records: &[RecordAndOffset]) -> Result<BTreeMap<u32, Known>> {
        let registry = self.registry.clone().ok_or_else(|| {
            Error::config(
                "schema_registry.url",
                "is not set but a topic's format is \"avro\"",
                "add a [schema_registry] section",
            )
        })?;
        let ids: BTreeSet<u32> =
            records.iter().filter_map(|r| r.record.value.as_deref().and_then(decode::avro::schema_id)).collect();
        let mut out = BTreeMap::new();
        for id in ids {
            let known = match registry.cached(id) {
                Some(k) => k,
                None => {
                    let r = registry.clone();
                    let k = blocking::unblock(move || r.get(id)).await?;
                    if let Known::Refused(why) = &k {
                        log::warn!("schema registry: {why}; records with this id go to the dead-letter table");
                    }
                    k
                }
            };
            out.insert(id, known);
        }
        Ok(out)
    }

    /// Grows an Avro topic's table by what new writer schemas add, then tells the partition's
    /// decoder about them. A writer schema whose fields cannot fit the table (a type changed
    /// incompatibly) leaves the table alone: its records become dead letters with the reason.
    pub(super) fn follow_writers(
        &self,
        table: &str,
        tp: &TopicPartition,
        writers: &BTreeMap<u32, Known>,
    ) -> Result<()> {
        for (id, known) in writers {
            if self.buffers.borrow_mut().get_mut(tp).and_then(|b| b.avro()).is_some_and(|d| d.knows(*id)) {
                continue;
            }
            if let Known::Schema(text) = known
                && let Ok(writer) = decode::avro::parse(text)
            {
                let old = self.schemas.borrow()[table].clone();
                let (known_schema, table_last_id) = self.catalog_schema(table);
                match decode::avro::evolve(&old, &writer, table_last_id, known_schema.as_deref()) {
                    Ok(Some(grown)) => self.adopt_schema(table, &old, grown, &format!("writer schema id {id}"))?,
                    Ok(None) => {}
                    Err(e) => {
                        log::warn!(table = table; "table {table}: writer schema id {id} does not fit ({e}); its records go to the dead-letter table")
                    }
                }
            }
            let mut buffers = self.buffers.borrow_mut();
            let decoder = buffers.get_mut(tp).and_then(|b| b.avro()).expect("an Avro topic's buffer");
            match known {
                Known::Schema(text) => decoder.know(*id, Ok(text)),
                Known::Refused(why) => decoder.know(*id, Err(why)),
            }
        }
        Ok(())
    }

    /// The table's schema in the catalog (another writer may have grown it) and its last field id.
    pub(super) fn catalog_schema(&self, table: &str) -> (Option<Arc<iceberg::spec::Schema>>, i32) {
        match self.tables.borrow().get(table) {
            Some(t) => (Some(t.metadata().current_schema().clone()), t.metadata().last_column_id()),
            None => (None, 0),
        }
    }

    /// Records with keys the table's schema has no column for: the schema grows by one optional
    /// column per new key (`decode::evolve_schema`), is recorded in the spool index, and every
    /// partition buffer of the table moves to it before anything more is decoded. The catalog's
    /// table follows at the next commit (`publish`). Nothing is dropped.
    pub(super) fn grow_schema(&self, table: &str) -> Result<()> {
        let old = self.schemas.borrow()[table].clone();
        let (known, table_last_id) = self.catalog_schema(table);
        let grown = {
            let buffers = self.buffers.borrow();
            let samples = buffers
                .iter()
                .filter(|((topic, _), _)| self.table_name(topic) == table)
                .flat_map(|(_, b)| b.fresh_samples());
            decode::evolve_schema(&old, samples, table_last_id, known.as_deref())?
        };
        let Some(grown) = grown else { return Ok(()) };
        // New fields named as time fields are timestamps; the old ones keep their types.
        let grown = decode::with_time_fields(grown, &self.cfg.time_fields, old.highest_field_id().max(table_last_id))?;
        self.adopt_schema(table, &old, grown, "new keys")
    }

    /// Makes `grown` the schema of `table`'s spool files from now on: recorded in the spool
    /// index, and every partition buffer of the table moves to it before anything more is
    /// decoded. The catalog's table follows at the next commit (`publish`).
    pub(super) fn adopt_schema(
        &self,
        table: &str,
        old: &iceberg::spec::Schema,
        grown: iceberg::spec::Schema,
        why: &str,
    ) -> Result<()> {
        let describe = |f: &iceberg::spec::NestedFieldRef| {
            let kind = match f.field_type.as_ref() {
                iceberg::spec::Type::Primitive(p) => p.to_string(),
                iceberg::spec::Type::Struct(_) => "struct".into(),
                iceberg::spec::Type::List(_) => "list".into(),
                iceberg::spec::Type::Map(_) => "map".into(),
            };
            format!("{} ({kind})", f.name)
        };
        // New top-level fields, and existing ones whose type grew (a wider type, or new fields inside).
        let (mut added, mut changed) = (Vec::new(), Vec::new());
        for f in grown.as_struct().fields() {
            match old.as_struct().field_by_id(f.id) {
                None => added.push(describe(f)),
                Some(o) if o.field_type != f.field_type => changed.push(describe(f)),
                Some(_) => {}
            }
        }
        let mut what = Vec::new();
        if !added.is_empty() {
            what.push(format!("adds {}", added.join(", ")));
        }
        if !changed.is_empty() {
            what.push(format!("widens {}", changed.join(", ")));
        }
        tables::record(&self.spool, table, &grown)?;
        let grown = Arc::new(grown);
        self.schemas.borrow_mut().insert(table.to_string(), grown.clone());
        for ((topic, _), b) in self.buffers.borrow_mut().iter_mut() {
            if self.table_name(topic) == table {
                b.grow(&grown)?;
            }
        }
        log::info!(table = table; "table {table}: schema {} for {why} {}", grown.schema_id(), what.join("; "));
        Ok(())
    }

    /// The schema of a dead-letter table: the table's own when the catalog has it, else the
    /// canonical one; recorded in the spool index like any table's.
    pub(super) fn dead_letter_schema(&self, table: &str) -> Result<Arc<iceberg::spec::Schema>> {
        self.decide(table, true, || tables::dead_letters(table))
    }

    /// The schema a table's spool files are written with (see `tables`).
    pub(super) async fn schema_for(
        &self,
        table: &str,
        format: Format,
        samples: &[RecordAndOffset],
        writers: &BTreeMap<u32, Known>,
    ) -> Result<Arc<iceberg::spec::Schema>> {
        let partition = self.cfg.partition_fields(table, false);
        self.decide(table, false, || match format {
            Format::Json => tables::infer(
                table,
                samples.iter().filter_map(|r| r.record.value.as_deref()),
                &self.cfg.time_fields,
                partition,
            ),
            Format::Raw | Format::Text => tables::raw(table, format == Format::Text, partition),
            Format::Avro => {
                // The writer schema of the first record that has a usable one.
                let first = samples
                    .iter()
                    .filter_map(|r| r.record.value.as_deref().and_then(decode::avro::schema_id))
                    .find_map(|id| match &writers[&id] {
                        Known::Schema(text) => decode::avro::parse(text).ok(),
                        Known::Refused(_) => None,
                    });
                tables::avro(table, first.as_ref(), partition)
            }
        })
    }

    /// A table's schema and partition spec, decided once and kept in the spool index: the ones the
    /// spool recorded, else the table's own when the catalog has it, else `make`'s.
    pub(super) fn decide(
        &self,
        table: &str,
        dead_letter: bool,
        make: impl FnOnce() -> Result<(Arc<iceberg::spec::Schema>, PartitionSpec)>,
    ) -> Result<Arc<iceberg::spec::Schema>> {
        if let Some(s) = self.schemas.borrow().get(table) {
            return Ok(s.clone());
        }
        let (schema, spec) = match tables::recorded(&self.spool, table)? {
            Some(s) => (
                Arc::new(s),
                tables::recorded_spec(&self.spool, table)?.unwrap_or_else(PartitionSpec::unpartition_spec),
            ),
            None => {
                let existing = self.tables.borrow().get(table).map(|t| {
                    (t.metadata().current_schema().clone(), t.metadata().default_partition_spec().as_ref().clone())
                });
                let (s, spec) = match existing {
                    Some(found) => found,
                    None => make()?,
                };
                if !dead_letter {
                    tables::check_writable(table, &s)?;
                }
                tables::record_spec(&self.spool, table, &spec)?;
                tables::record_first(&self.spool, table, &s)?;
                log::info!(
                    table = table;
                    "table {table}: spooling with schema {}{}",
                    serde_json::to_string(s.as_ref()).unwrap_or_default(),
                    if spec.is_unpartitioned() { String::new() } else { format!(", partitioned by {}", serde_json::to_string(spec.fields()).unwrap_or_default()) }
                );
                (s, spec)
            }
        };
        // The order rows are written in: the table's own when it exists (and frazil can apply it),
        // else the configured one; decided once, like the spec.
        let sort = match tables::recorded_sort(&self.spool, table)? {
            Some(o) => o,
            None => {
                let existing =
                    self.tables.borrow().get(table).map(|t| t.metadata().default_sort_order().as_ref().clone());
                let o = match existing {
                    Some(o) => tables::writable_sort(&o, &schema),
                    None => tables::sort_order(table, &schema, self.cfg.sort_keys(table, dead_letter))?,
                };
                if !o.is_unsorted() {
                    log::info!(table = table; "table {table}: rows written in sort order {}", serde_json::to_string(&o.fields).unwrap_or_default());
                }
                tables::record_sort(&self.spool, table, &o)?;
                o
            }
        };
        self.sorts.borrow_mut().insert(table.to_string(), Arc::new(sort));
        self.specs.borrow_mut().insert(table.to_string(), Arc::new(spec));
        self.schemas.borrow_mut().insert(table.to_string(), schema.clone());
        Ok(schema)
    }
}
