//! Each table's layout: the schema, partition spec and sort order its spool files are written
//! with, and the catalog's table once loaded. One map holds all four per table, so they cannot
//! drift apart; the spool index keeps the first three across restarts (`store`).
//!
//! A layout is decided once per table (the spool's record, else the catalog's table, else the
//! `rules` applied to the first records) and then only grows: new fields are recorded here first
//! and the catalog's table follows at the next commit (`catalog`).
//!
//! Both loops use it: the fetcher decides and grows layouts, the publisher loads and commits
//! tables. Each entry point takes the borrow it needs and never holds it across an `.await`.

mod catalog;
pub mod rules;
pub mod store;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use frazil_spool::Spool;
use iceberg::spec::{NestedFieldRef, PartitionSpec, Schema, SortOrder, Type};
use iceberg::table::Table;

use crate::Result;
use crate::config::per_table::SortKey;

/// What a table's spool files are written with. All three are decided together.
#[derive(Clone)]
pub struct Written {
    pub schema: Arc<Schema>,
    pub spec: Arc<PartitionSpec>,
    /// Rows of each file are written in this order (identity transforms of top-level columns).
    pub sort: Arc<SortOrder>,
}

/// One table's layout.
#[derive(Default)]
struct Layout {
    /// `None` until the first records of the table are decoded (or a dead letter is written).
    written: Option<Written>,
    /// The catalog's table as last loaded or committed (`None`: not loaded yet, or not created).
    table: Option<Table>,
}

/// The layouts of every table this agent writes.
pub struct Layouts {
    spool: Arc<Spool>,
    tables: RefCell<HashMap<String, Layout>>,
}

impl Layouts {
    pub fn new(spool: Arc<Spool>) -> Self {
        Layouts { spool, tables: RefCell::new(HashMap::new()) }
    }

    /// What `table`'s spool files are written with, once decided.
    pub fn written(&self, table: &str) -> Option<Written> {
        self.tables.borrow().get(table).and_then(|l| l.written.clone())
    }

    /// The catalog's table as last seen.
    pub fn table(&self, table: &str) -> Option<Table> {
        self.tables.borrow().get(table).and_then(|l| l.table.clone())
    }

    /// Keeps the catalog's table as loaded or committed.
    pub fn set_table(&self, name: &str, table: Table) {
        self.tables.borrow_mut().entry(name.to_string()).or_default().table = Some(table);
    }

    /// How many tables have a catalog table loaded.
    pub fn tables_loaded(&self) -> usize {
        self.tables.borrow().values().filter(|l| l.table.is_some()).count()
    }

    /// The table's schema in the catalog (another writer may have grown it) and its last field id.
    pub fn catalog_schema(&self, table: &str) -> (Option<Arc<Schema>>, i32) {
        match self.table(table) {
            Some(t) => (Some(t.metadata().current_schema().clone()), t.metadata().last_column_id()),
            None => (None, 0),
        }
    }

    /// A table's layout, decided once and kept in the spool index: the one the spool recorded,
    /// else the table's own when the catalog has it, else `make`'s schema and spec with the
    /// configured sort `keys`.
    pub fn decide(
        &self,
        table: &str,
        dead_letter: bool,
        keys: &[SortKey],
        make: impl FnOnce() -> Result<(Arc<Schema>, PartitionSpec)>,
    ) -> Result<Written> {
        if let Some(w) = self.written(table) {
            return Ok(w);
        }
        let existing = self.table(table);
        let (schema, spec) = match store::schema(&self.spool, table)? {
            Some(s) => (Arc::new(s), store::spec(&self.spool, table)?.unwrap_or_else(PartitionSpec::unpartition_spec)),
            None => self.first(table, dead_letter, existing.as_ref(), make)?,
        };
        // The order rows are written in: the table's own when it exists (and frazil can apply
        // it), else the configured one; decided once, like the spec.
        let sort = match store::sort(&self.spool, table)? {
            Some(o) => o,
            None => {
                let o = match &existing {
                    Some(t) => rules::writable_sort(t.metadata().default_sort_order(), &schema),
                    None => rules::sort_order(table, &schema, keys)?,
                };
                if !o.is_unsorted() {
                    let fields = serde_json::to_string(&o.fields).unwrap_or_default();
                    log::info!(table = table; "table {table}: rows written in sort order {fields}");
                }
                store::record_sort(&self.spool, table, &o)?;
                o
            }
        };
        let w = Written { schema, spec: Arc::new(spec), sort: Arc::new(sort) };
        self.tables.borrow_mut().entry(table.to_string()).or_default().written = Some(w.clone());
        Ok(w)
    }

    /// The first schema and spec of a table the spool has no record of, recorded.
    fn first(
        &self,
        table: &str,
        dead_letter: bool,
        existing: Option<&Table>,
        make: impl FnOnce() -> Result<(Arc<Schema>, PartitionSpec)>,
    ) -> Result<(Arc<Schema>, PartitionSpec)> {
        let (s, spec) = match existing {
            Some(t) => (t.metadata().current_schema().clone(), t.metadata().default_partition_spec().as_ref().clone()),
            None => make()?,
        };
        if !dead_letter {
            rules::check_writable(table, &s)?;
        }
        store::record_spec(&self.spool, table, &spec)?;
        store::record_first(&self.spool, table, &s)?;
        let partitioned = if spec.is_unpartitioned() {
            String::new()
        } else {
            format!(", partitioned by {}", serde_json::to_string(spec.fields()).unwrap_or_default())
        };
        let json = serde_json::to_string(s.as_ref()).unwrap_or_default();
        log::info!(table = table; "table {table}: spooling with schema {json}{partitioned}");
        Ok((s, spec))
    }

    /// Makes `grown` the schema of `table`'s spool files from now on, recorded in the spool index
    /// first. The caller moves its buffers of the table to the returned schema before it decodes
    /// anything more; the catalog's table follows at the next commit.
    pub fn adopt(&self, table: &str, grown: Schema, why: &str) -> Result<Arc<Schema>> {
        let old = self.written(table).expect("a table grows only after its layout is decided");
        store::record_schema(&self.spool, table, &grown)?;
        let what = growth(&old.schema, &grown);
        let grown = Arc::new(grown);
        let mut tables = self.tables.borrow_mut();
        let w = tables.get_mut(table).and_then(|l| l.written.as_mut()).expect("decided above");
        w.schema = grown.clone();
        log::info!(table = table; "table {table}: schema {} for {why} {what}", grown.schema_id());
        Ok(grown)
    }
}

/// What `grown` adds to `old` in words: new top-level fields, and fields whose type grew (a wider
/// type, or new fields inside).
fn growth(old: &Schema, grown: &Schema) -> String {
    let describe = |f: &NestedFieldRef| {
        let kind = match f.field_type.as_ref() {
            Type::Primitive(p) => p.to_string(),
            Type::Struct(_) => "struct".into(),
            Type::List(_) => "list".into(),
            Type::Map(_) => "map".into(),
        };
        format!("{} ({kind})", f.name)
    };
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
    what.join("; ")
}
