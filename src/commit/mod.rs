//! The commit stage: tables in an Iceberg REST catalog, and exactly-once appends to them.
//!
//! A commit adds uploaded data files in one fast-append snapshot whose summary carries a
//! deterministic commit id and the agent's next offsets (see `DESIGN.md` beside this file).
//! Conflicts (HTTP 409) are rebased and retried; an unanswered commit is looked up in the table's
//! history before anything is retried, so a commit is never applied twice.

mod auth;
mod backend;
mod catalog;
pub mod fence;
mod files;
mod link;
pub mod protocol;
pub mod rest;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_compat::Compat;
use iceberg::io::FileIO;
use iceberg::spec::{DataFile, PartitionSpec, Schema, SortOrder};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{NamespaceIdent, TableIdent, TableRequirement, TableUpdate};

use crate::backoff::Backoff;
use crate::config::{CatalogConfig, CatalogKind};
use crate::topic::TopicPartition;
use crate::upload::Stores;
use crate::{Error, Result};
use catalog::{Adapter, Failure};
pub use link::Link;
pub use protocol::{commit_id, commit_landed, committed_offsets, last_commit, offsets_as_of_current};

/// How many times one commit is retried (conflicts, unknown outcomes) before the cycle gives up
/// and leaves the files for the next one.
const MAX_ATTEMPTS: u32 = 8;

pub struct Committer {
    adapter: Arc<Adapter>,
    namespace: NamespaceIdent,
    agent_id: String,
    /// Append attempts refused because another writer committed first (each one retried).
    conflicts: AtomicU64,
}

impl Committer {
    /// Reads the catalog's configuration. Fails when the catalog cannot be reached.
    pub async fn connect(cfg: &CatalogConfig, stores: &Stores, agent_id: &str) -> Result<Committer> {
        let file_io: FileIO = stores.file_io();
        let rest: Arc<dyn backend::Backend> = match &cfg.kind {
            CatalogKind::Rest => {
                let c = cfg.clone();
                Arc::new(blocking::unblock(move || rest::RestCatalog::connect(&c)).await?)
            }
            CatalogKind::Filesystem => {
                let warehouse =
                    cfg.warehouse.as_deref().expect("the config requires a warehouse for a filesystem catalog");
                Arc::new(files::FilesCatalog::new(warehouse, stores.clone())?)
            }
        };
        let namespace = NamespaceIdent::from_vec(cfg.namespace.clone())
            .map_err(|e| Error::config("catalog.namespace", e.to_string(), "write e.g. \"edge\""))?;
        Ok(Committer {
            adapter: Arc::new(Adapter {
                rest,
                file_io,
                agent: agent_id.to_string(),
                last_failure: Mutex::new(None),
                tag_move: Mutex::new(None),
            }),
            namespace,
            agent_id: agent_id.to_string(),
            conflicts: AtomicU64::new(0),
        })
    }

    /// How many append attempts another writer's commit refused since this committer connected.
    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::Relaxed)
    }

    /// Properties the catalog advertised in `/v1/config` (e.g. S3 settings for its warehouse).
    pub fn catalog_properties(&self) -> &HashMap<String, String> {
        self.adapter.rest.properties()
    }

    pub fn ident(&self, table: &str) -> TableIdent {
        TableIdent::new(self.namespace.clone(), table.to_string())
    }

    /// Loads a table; `None` when it does not exist yet.
    pub async fn load(&self, table: &str) -> Result<Option<Table>> {
        let ident = self.ident(table);
        let rest = self.adapter.rest.clone();
        let id = ident.clone();
        let Some(loaded) = blocking::unblock(move || rest.load_table(&id)).await? else { return Ok(None) };
        Compat::new(async { self.adapter.table(ident.clone(), loaded) })
            .await
            .map(Some)
            .map_err(|e| Error::iceberg(format!("open table {ident}"), e))
    }

    /// Creates the namespace if needed and the table (format v2) with `schema` and `spec`; if another writer
    /// created it meanwhile, returns theirs.
    pub async fn create(&self, table: &str, schema: &Schema, spec: &PartitionSpec, order: &SortOrder) -> Result<Table> {
        let ident = self.ident(table);
        let rest = self.adapter.rest.clone();
        let (id, s, p, o) = (ident.clone(), schema.clone(), spec.clone(), order.clone());
        let (loaded, created) = blocking::unblock(move || {
            rest.ensure_namespace(id.namespace())?;
            rest.create_table(&id, &s, &p, &o)
        })
        .await?;
        if created {
            log::info!(table = ident.name(); "table {ident}: created at {}", loaded.metadata.location());
        } else {
            log::info!(table = ident.name(); "table {ident}: another writer created it first; using theirs");
        }
        Compat::new(async { self.adapter.table(ident.clone(), loaded) })
            .await
            .map_err(|e| Error::iceberg(format!("open table {ident}"), e))
    }

    /// Makes the table's schema hold every field of `wanted` (the schema the spool files were
    /// written with, grown by new keys, also inside structs): adds the missing fields, with
    /// `wanted`'s ids, and widens the columns `wanted` has wider, as a new current schema. Returns
    /// the table as it is then. The commit asserts the current schema and the last assigned field
    /// id, so a concurrent change is reloaded and looked at again, never overwritten. Refused when
    /// the table used a missing field's id or name for something else (another writer grew it
    /// differently): the files stay spooled. What to commit is worked out by the pure helpers below
    /// (`changed_fields`, `grown_fields`, `top_names`); this loop only commits and retries.
    pub async fn grow(&self, mut table: Table, wanted: &Schema) -> Result<Table> {
        let ident = table.identifier().clone();
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            let md = table.metadata();
            let current = md.current_schema();
            let (missing, promoted) = changed_fields(current, wanted);
            if missing.is_empty() && promoted.is_empty() {
                return Ok(table);
            }
            let clash = |detail: String| Error::Catalog {
                context: format!("grow the schema of {ident}"),
                status: None,
                body: format!("{detail}: another writer changed the table's schema; the files stay spooled"),
            };
            if let Some(id) = missing.iter().find(|id| **id <= md.last_column_id()) {
                return Err(clash(format!(
                    "field id {id} of the spooled files is already used by the table (last field id {})",
                    md.last_column_id()
                )));
            }
            let fields = grown_fields(current, wanted, &missing, &promoted).map_err(clash)?;
            let next_id = md.schemas_iter().map(|s| s.schema_id()).max().unwrap_or(0) + 1;
            let schema = Schema::builder()
                .with_schema_id(next_id)
                .with_fields(fields)
                .build()
                .map_err(|e| Error::iceberg(format!("grown schema of {ident}"), e))?;
            let names = top_names(&schema, missing.iter().chain(&promoted));
            let requirements = vec![
                TableRequirement::CurrentSchemaIdMatch { current_schema_id: current.schema_id() },
                TableRequirement::LastAssignedFieldIdMatch { last_assigned_field_id: md.last_column_id() },
            ];
            let updates = vec![TableUpdate::AddSchema { schema }, TableUpdate::SetCurrentSchema { schema_id: -1 }];
            match self.update(&ident, requirements, updates).await? {
                Outcome::Applied(t) => {
                    log::info!(table = ident.name(); "table {ident}: schema grown by {}", names.join(", "));
                    return Ok(t);
                }
                Outcome::Conflict(body) => {
                    log::info!("table {ident}: schema change conflicted ({}); reloading", body.trim())
                }
                Outcome::Unknown(e) => log::warn!("table {ident}: schema change outcome unknown ({e}); reloading"),
            }
            if backoff.attempts() >= MAX_ATTEMPTS {
                return Err(Error::Catalog {
                    context: format!("grow the schema of {ident}"),
                    status: None,
                    body: format!(
                        "gave up after {MAX_ATTEMPTS} attempts; the files stay spooled and are retried later"
                    ),
                });
            }
            smol::Timer::after(backoff.next_delay()).await;
            table = self.load(ident.name()).await?.ok_or_else(|| Error::Catalog {
                context: format!("grow the schema of {ident}"),
                status: Some(404),
                body: format!("table {ident} disappeared"),
            })?;
        }
    }

    /// Sends one commit of `updates` under `requirements` as it is: no agent tag is added, so
    /// a maintenance snapshot never moves an agent's tag. The caller decides what a conflict or
    /// an unknown outcome means; `Err` is a failure retrying will not fix.
    pub async fn update(
        &self,
        ident: &TableIdent,
        requirements: Vec<TableRequirement>,
        updates: Vec<TableUpdate>,
    ) -> Result<Outcome> {
        let rest = self.adapter.rest.clone();
        let id = ident.clone();
        match blocking::unblock(move || rest.commit(&id, &requirements, &updates)).await? {
            rest::CommitAnswer::Applied(t) => Compat::new(async { self.adapter.table(ident.clone(), *t) })
                .await
                .map(Outcome::Applied)
                .map_err(|e| Error::iceberg(format!("open table {ident}"), e)),
            rest::CommitAnswer::Conflict(body) => Ok(Outcome::Conflict(body)),
            rest::CommitAnswer::Unknown(e) => Ok(Outcome::Unknown(e)),
        }
    }

    /// Commits one of iceberg's own transactions (e.g. `expire_snapshots`) once, with the same
    /// answers as [`Committer::update`]. A transaction that adds a snapshot moves the agent's tag.
    pub async fn commit_transaction(&self, tx: Transaction) -> Result<Outcome> {
        let result = Compat::new(tx.commit(self.adapter.as_ref())).await;
        let failure = self.adapter.last_failure.lock().expect("not poisoned").take();
        match (result, failure) {
            (Ok(t), _) => Ok(Outcome::Applied(t)),
            (Err(_), Some(Failure::Conflict(body))) => Ok(Outcome::Conflict(body)),
            (Err(_), Some(Failure::Unknown(e))) => Ok(Outcome::Unknown(e)),
            (Err(_), Some(Failure::Failed(e))) => Err(e),
            (Err(e), None) => Err(Error::iceberg("commit a transaction", e)),
        }
    }

    /// Appends `files` in one snapshot carrying `commit_id` and `offsets`. Returns the table as
    /// committed. On `Err` the commit may still be pending (e.g. the catalog went away): the caller
    /// keeps it pending and checks for it with [`commit_landed`] before committing the files again.
    /// With a `group`, every attempt is fenced against the table as last loaded
    /// ([`fence`]): [`Error::Fenced`] means nothing was applied and retrying cannot help.
    pub async fn append(
        &self,
        mut table: Table,
        files: Vec<DataFile>,
        commit_id: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
        group: Option<&GroupFence<'_>>,
    ) -> Result<Table> {
        let props = protocol::summary_properties(&self.agent_id, commit_id, offsets);
        let ident = table.identifier().clone();
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        // Set after a failed attempt in group mode: the retry is fenced against the table as it is
        // once the backoff has passed, not as it was before it. A table loaded before the wait is
        // stale by then whenever other members commit meanwhile, and the retry conflicts again:
        // a member with a longer commit interval lost every retry to members committing each
        // second, until it gave up.
        let mut reload = false;
        loop {
            if reload {
                table = self.reload(&ident, commit_id).await?;
            }
            let mut props = props.clone();
            if let Some(g) = group {
                let recorded = fence::recorded(table.metadata(), g.group);
                let lost = fence::fenced(&recorded, g.claims);
                if !lost.is_empty() {
                    return Err(Error::Fenced { table: ident.to_string(), partitions: lost });
                }
                props.extend(fence::group_properties(g.group, &recorded, g.next));
                let tag_move = fence::TagMove { tag: fence::group_tag(g.group), expected: recorded.tag_snapshot };
                *self.adapter.tag_move.lock().expect("not poisoned") = Some(tag_move);
            }
            let tx = Transaction::new(&table);
            let action = tx
                .fast_append()
                .with_check_duplicate(false)
                .set_snapshot_properties(props)
                .add_data_files(files.clone());
            let tx =
                action.apply(tx).map_err(|e| Error::iceberg(format!("prepare commit {commit_id} to {ident}"), e))?;
            let result = Compat::new(tx.commit(self.adapter.as_ref())).await;
            self.adapter.tag_move.lock().expect("not poisoned").take();
            let failure = self.adapter.last_failure.lock().expect("not poisoned").take();
            match (result, failure) {
                (Ok(t), _) => return Ok(t),
                (Err(_), Some(Failure::Conflict(body))) => {
                    log::info!(table = ident.name(), commit_id = commit_id; "table {ident}: commit {commit_id} conflicted with another writer, rebasing ({})", body.trim());
                    self.conflicts.fetch_add(1, Ordering::Relaxed);
                    // The fence is checked against the table that won (iceberg's own commit
                    // reloads the table it appends to, but not the one the fence reads).
                    reload = group.is_some();
                }
                (Err(_), Some(Failure::Unknown(e))) => {
                    log::warn!(table = ident.name(), commit_id = commit_id; "table {ident}: commit {commit_id} outcome unknown ({e}); checking the table's history");
                    let t = self.reload(&ident, commit_id).await?;
                    if commit_landed(t.metadata(), &self.agent_id, commit_id) {
                        log::info!(table = ident.name(), commit_id = commit_id; "table {ident}: commit {commit_id} had landed");
                        return Ok(t);
                    }
                    table = t;
                    reload = group.is_some();
                }
                (Err(_), Some(Failure::Failed(e))) => return Err(e),
                (Err(e), None) => return Err(Error::iceberg(format!("commit {commit_id} to {ident}"), e)),
            }
            if backoff.attempts() >= MAX_ATTEMPTS {
                return Err(Error::Catalog {
                    context: format!("commit {commit_id} to {ident}"),
                    status: None,
                    body: format!(
                        "gave up after {MAX_ATTEMPTS} attempts; the files stay spooled and are retried later"
                    ),
                });
            }
            smol::Timer::after(backoff.next_delay()).await;
        }
    }

    /// Loads the table a commit goes to again; its disappearance is an error.
    async fn reload(&self, ident: &TableIdent, commit_id: &str) -> Result<Table> {
        self.load(ident.name()).await?.ok_or_else(|| Error::Catalog {
            context: format!("commit {commit_id}"),
            status: Some(404),
            body: format!("table {ident} disappeared"),
        })
    }
}

/// What fences a group commit: the group, the claim of every partition the commit adds rows
/// of, and the next offset the commit records for each.
pub struct GroupFence<'a> {
    pub group: &'a str,
    pub claims: &'a fence::Claims,
    pub next: &'a BTreeMap<TopicPartition, i64>,
}

/// The answer to one commit sent with [`Committer::update`] or [`Committer::commit_transaction`].
pub enum Outcome {
    /// Applied: the table as the catalog has it now.
    Applied(Table),
    /// A requirement failed (another writer committed first): nothing was applied.
    Conflict(String),
    /// No answer (a 5xx, a timeout, a dropped connection): it may have been applied.
    Unknown(Error),
}

/// The fields of `wanted` the table's `current` schema lacks, and those it has narrower (`int` →
/// `long`, `float` → `double`, a wider decimal), by id.
fn changed_fields(current: &Schema, wanted: &Schema) -> (Vec<i32>, Vec<i32>) {
    let missing: Vec<i32> = field_ids(wanted).into_iter().filter(|id| current.field_by_id(*id).is_none()).collect();
    let promoted: Vec<i32> = field_ids(wanted)
        .into_iter()
        .filter(|id| match (current.field_by_id(*id), wanted.field_by_id(*id)) {
            (Some(c), Some(w)) => c.field_type.is_primitive() && c.field_type != w.field_type,
            _ => false,
        })
        .collect();
    (missing, promoted)
}

/// The top-level fields of the grown schema. `Err` says why the two schemas cannot be merged
/// (another writer grew the table differently); the caller words it as a clash.
fn grown_fields(
    current: &Schema,
    wanted: &Schema,
    missing: &[i32],
    promoted: &[i32],
) -> std::result::Result<Vec<iceberg::spec::NestedFieldRef>, String> {
    // The usual case: the table's schema is the one the spool grew from, so the wanted
    // schema holds all of it. Else another writer added top-level fields: keep theirs and
    // add ours beside them (our new fields inside their structs cannot be merged).
    if field_ids(current).iter().all(|id| wanted.field_by_id(*id).is_some()) {
        return Ok(wanted.as_struct().fields().to_vec());
    }
    if !promoted.is_empty() {
        return Err(format!("field id {} is wider in the spooled files", promoted[0]));
    }
    let mut fields = current.as_struct().fields().to_vec();
    for f in wanted.as_struct().fields() {
        if current.field_by_id(f.id).is_some() {
            continue;
        }
        if current.as_struct().field_by_name(&f.name).is_some() {
            return Err(format!("the table already has a field `{}` with another id", f.name));
        }
        fields.push(f.clone());
    }
    let merged: Vec<i32> = fields.iter().flat_map(|f| nested_ids(f)).collect();
    if let Some(id) = missing.iter().find(|id| !merged.contains(id)) {
        return Err(format!("new field id {id} is inside a struct the table changed"));
    }
    Ok(fields)
}

/// The new fields by name, without the fields inside new fields (`location`, not also `location.lat`).
fn top_names<'a>(schema: &Schema, ids: impl Iterator<Item = &'a i32>) -> Vec<String> {
    let all: Vec<String> = ids.filter_map(|id| schema.name_by_field_id(*id).map(str::to_string)).collect();
    all.iter().filter(|n| !all.iter().any(|p| n.starts_with(&format!("{p}.")))).cloned().collect()
}

/// Every field id in `schema`, nested ones included.
fn field_ids(schema: &Schema) -> Vec<i32> {
    schema.as_struct().fields().iter().flat_map(|f| nested_ids(f)).collect()
}

/// `field`'s id and the ids of every field inside it.
fn nested_ids(field: &iceberg::spec::NestedField) -> Vec<i32> {
    use iceberg::spec::Type;
    let mut out = vec![field.id];
    match field.field_type.as_ref() {
        Type::Struct(s) => out.extend(s.fields().iter().flat_map(|f| nested_ids(f))),
        Type::List(l) => out.extend(nested_ids(&l.element_field)),
        Type::Map(m) => {
            out.extend(nested_ids(&m.key_field));
            out.extend(nested_ids(&m.value_field));
        }
        Type::Primitive(_) => {}
    }
    out
}
