//! Where a table's layout is kept: the spool index's metadata table, as JSON under one key per
//! table and kind. The spool files of a table are written with what is recorded here, so it
//! survives restarts and outages; the catalog's table follows it at commit time.
//!
//! | key                   | value                                                                  |
//! |-----------------------|------------------------------------------------------------------------|
//! | `schema/<table>`      | the current schema (Iceberg JSON), grown as new fields arrive          |
//! | `schema-base/<table>` | the first schema, which a table not yet in the catalog is created with |
//! | `spec/<table>`        | the partition spec (absent: unpartitioned, recorded before specs)     |
//! | `sort/<table>`        | the sort order (absent: recorded before sort orders)                   |

use frazil_spool::Spool;
use iceberg::spec::{PartitionSpec, Schema, SortOrder};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// What is recorded of a table, and the key prefix it is kept under.
#[derive(Clone, Copy)]
enum Kind {
    Schema,
    Creation,
    Spec,
    Sort,
}

impl Kind {
    fn key(self, table: &str) -> String {
        let prefix = match self {
            Kind::Schema => "schema",
            Kind::Creation => "schema-base",
            Kind::Spec => "spec",
            Kind::Sort => "sort",
        };
        format!("{prefix}/{table}")
    }

    fn what(self) -> &'static str {
        match self {
            Kind::Schema => "schema",
            Kind::Creation => "creation schema",
            Kind::Spec => "partition spec",
            Kind::Sort => "sort order",
        }
    }
}

fn read<T: DeserializeOwned>(spool: &Spool, table: &str, kind: Kind) -> Result<Option<T>> {
    let Some(bytes) = spool.get_meta(&kind.key(table))? else { return Ok(None) };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::layout(table, format!("the {} in the spool index does not parse: {e}", kind.what())))
}

fn write<T: Serialize>(spool: &Spool, table: &str, kind: Kind, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec(value).map_err(|e| Error::encode(format!("{} of {table}", kind.what()), e))?;
    Ok(spool.put_meta(&kind.key(table), &bytes)?)
}

/// The schema recorded in the spool index for `table`.
pub fn schema(spool: &Spool, table: &str) -> Result<Option<Schema>> {
    read(spool, table, Kind::Schema)
}

pub fn record_schema(spool: &Spool, table: &str, schema: &Schema) -> Result<()> {
    write(spool, table, Kind::Schema, schema)
}

/// The schema a table not yet in the catalog is created with: the first one recorded, before any
/// growth. A catalog renumbers the fields of a new table level by level, so only this one gets
/// back the ids the spool files have; later fields are added with their own ids by a schema
/// change (`Committer::grow`).
pub fn creation(spool: &Spool, table: &str) -> Result<Option<Schema>> {
    match read(spool, table, Kind::Creation)? {
        Some(s) => Ok(Some(s)),
        None => schema(spool, table),
    }
}

/// Records the first schema of a table: both its current and its creation schema.
pub fn record_first(spool: &Spool, table: &str, schema: &Schema) -> Result<()> {
    write(spool, table, Kind::Creation, schema)?;
    record_schema(spool, table, schema)
}

/// The partition spec recorded for `table` (`None`: recorded before partitioning existed, i.e.
/// unpartitioned).
pub fn spec(spool: &Spool, table: &str) -> Result<Option<PartitionSpec>> {
    read(spool, table, Kind::Spec)
}

pub fn record_spec(spool: &Spool, table: &str, spec: &PartitionSpec) -> Result<()> {
    write(spool, table, Kind::Spec, spec)
}

/// The sort order recorded for `table` (`None`: none recorded, e.g. a spool from before sort
/// orders existed).
pub fn sort(spool: &Spool, table: &str) -> Result<Option<SortOrder>> {
    read(spool, table, Kind::Sort)
}

pub fn record_sort(spool: &Spool, table: &str, order: &SortOrder) -> Result<()> {
    write(spool, table, Kind::Sort, order)
}
