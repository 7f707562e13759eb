//! What the commit stage needs from a catalog, whichever it is: the REST catalog (`rest.rs`) or
//! table metadata kept in the warehouse itself (`files.rs`). Every call blocks; callers run it on
//! a blocking thread.

use std::collections::HashMap;

use iceberg::spec::{PartitionSpec, Schema, SortOrder};
use iceberg::{NamespaceIdent, TableIdent, TableRequirement, TableUpdate};

use super::rest::{CommitAnswer, LoadedTable};
use crate::Result;

pub trait Backend: Send + Sync {
    /// Creates the namespace when the catalog keeps namespaces; one that exists is fine.
    fn ensure_namespace(&self, ns: &NamespaceIdent) -> Result<()>;
    /// The table's current metadata; `None` when it does not exist.
    fn load_table(&self, ident: &TableIdent) -> Result<Option<LoadedTable>>;
    /// Creates the table (format v2); `false` with the existing table when another writer was first.
    fn create_table(
        &self,
        ident: &TableIdent,
        schema: &Schema,
        spec: &PartitionSpec,
        order: &SortOrder,
    ) -> Result<(LoadedTable, bool)>;
    /// Applies `updates` if `requirements` hold on the current metadata, atomically.
    fn commit(
        &self,
        ident: &TableIdent,
        requirements: &[TableRequirement],
        updates: &[TableUpdate],
    ) -> Result<CommitAnswer>;
    /// Properties the catalog hands its clients (a REST catalog's `/v1/config`).
    fn properties(&self) -> &HashMap<String, String>;
}

impl Backend for super::rest::RestCatalog {
    fn ensure_namespace(&self, ns: &NamespaceIdent) -> Result<()> {
        super::rest::RestCatalog::ensure_namespace(self, ns)
    }
    fn load_table(&self, ident: &TableIdent) -> Result<Option<LoadedTable>> {
        super::rest::RestCatalog::load_table(self, ident)
    }
    fn create_table(
        &self,
        ident: &TableIdent,
        schema: &Schema,
        spec: &PartitionSpec,
        order: &SortOrder,
    ) -> Result<(LoadedTable, bool)> {
        super::rest::RestCatalog::create_table(self, ident, schema, spec, order)
    }
    fn commit(
        &self,
        ident: &TableIdent,
        requirements: &[TableRequirement],
        updates: &[TableUpdate],
    ) -> Result<CommitAnswer> {
        super::rest::RestCatalog::commit(self, ident, requirements, updates)
    }
    fn properties(&self) -> &HashMap<String, String> {
        &self.properties
    }
}
