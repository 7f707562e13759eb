//! Table maintenance: keeps a table that an agent commits to every minute readable for months.
//!
//! - `merge`: when the current snapshot lists more data manifests than `max_manifests`, the small
//!   ones are rewritten into few manifests near `manifest_target_size`, as one `replace` snapshot.
//! - `expire`: snapshots older than `expire_after`, beyond the last `keep_snapshots` of `main`,
//!   leave the metadata (iceberg's `expire_snapshots`); every ref head stays, so each agent's tag
//!   and the offsets it carries survive. The manifests and manifest lists only they used are deleted.
//! - `health`: the counts `frazil status` and the bench report.
//! - `elect`: which of the agents feeding a table maintains it, without a coordinator.
//!
//! A maintenance commit never carries `frazil.agent` and never moves an agent's tag, so the
//! exactly-once offsets in the snapshot summaries are untouched (see `DESIGN.md` beside this file).
//! Every commit asserts the snapshot it was planned on: any number of agents and foreign writers
//! may commit meanwhile; a conflict is planned again on the new table.

mod elect;
mod expire;
mod health;
mod merge;

use std::time::Duration;

use iceberg::table::Table;

use crate::Result;
use crate::commit::Committer;

pub use elect::is_maintainer;
pub use expire::expirable;
pub use health::{Health, health};
pub use merge::plan_merge;

/// Snapshot-summary key of a maintenance snapshot: a UUIDv5 over the table, the snapshot it was
/// planned on and what it rewrites, so an unanswered commit is found in the history like an append.
pub const MAINTENANCE_ID: &str = "frazil.maintenance-id";
/// Table property: when maintenance last changed the table (RFC 3339).
pub const LAST_MAINTAINED: &str = "frazil.last-maintained";

/// One table's maintenance settings (`[tables."<table>"]`, see `Config::maintenance`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// How often `run` maintains the table (`None`: only `frazil maintain` does).
    pub interval: Option<Duration>,
    /// Data manifests the current snapshot may list before they are merged.
    pub max_manifests: usize,
    /// The size merged manifests are packed up to.
    pub manifest_target_bytes: u64,
    /// Snapshots older than this may be expired...
    pub expire_after: Duration,
    /// ...except the newest this many of `main` (at least 1).
    pub keep_snapshots: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            interval: Some(Duration::from_secs(3600)),
            max_manifests: 100,
            manifest_target_bytes: 8 << 20,
            expire_after: Duration::from_secs(3600),
            keep_snapshots: 100,
        }
    }
}

/// What one maintenance pass did to one table.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub table: String,
    /// Data manifests replaced by merged ones, and how many those are.
    pub manifests_merged: usize,
    pub manifests_written: usize,
    /// Snapshots expired, and the metadata files (manifests, manifest lists) deleted with them.
    pub snapshots_expired: usize,
    pub files_deleted: usize,
    /// The table afterwards (`None` when the table does not exist).
    pub health: Option<Health>,
}

impl Report {
    /// Whether the pass changed the table.
    pub fn changed(&self) -> bool {
        self.manifests_merged > 0 || self.snapshots_expired > 0
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "table {}: {} manifests merged into {}, {} snapshots expired, {} metadata files deleted",
            self.table, self.manifests_merged, self.manifests_written, self.snapshots_expired, self.files_deleted
        )?;
        if let Some(h) = &self.health {
            write!(f, "; now {h}")?;
        }
        Ok(())
    }
}

/// Maintains `table`: merges its manifests when they are over the bound, then expires old
/// snapshots. Returns what it did and the table as it is afterwards; a table that does not exist
/// yet is left alone (`None`).
pub async fn maintain(committer: &Committer, table: &str, policy: &Policy) -> Result<(Report, Option<Table>)> {
    let mut report = Report { table: table.to_string(), ..Report::default() };
    let Some(t) = committer.load(table).await? else { return Ok((report, None)) };
    let (t, merged) = merge::merge(committer, t, policy).await?;
    report.manifests_merged = merged.replaced;
    report.manifests_written = merged.written;
    let (t, expired) = expire::expire(committer, t, policy).await?;
    report.snapshots_expired = expired.snapshots;
    report.files_deleted = expired.files_deleted;
    report.health = Some(health::health(&t).await?);
    Ok((report, Some(t)))
}

/// Tries of one maintenance commit (conflicts, unknown outcomes) before the pass gives up; the
/// next pass plans afresh.
const MAX_ATTEMPTS: u32 = 8;

/// The error of a step (`what`) that used up its tries.
fn gave_up(what: String) -> crate::Error {
    crate::Error::Catalog {
        context: what,
        status: None,
        body: format!("gave up after {MAX_ATTEMPTS} attempts; the next maintenance tries again"),
    }
}

/// The table as the catalog has it now; a table that disappeared is an error.
async fn reload(committer: &Committer, ident: &iceberg::TableIdent) -> Result<Table> {
    committer.load(ident.name()).await?.ok_or_else(|| crate::Error::Catalog {
        context: format!("maintain {ident}"),
        status: Some(404),
        body: format!("table {ident} disappeared"),
    })
}

/// Every ref of the table by name. iceberg 0.10.1 answers only for a name it is given
/// (`snapshot_for_ref`), so they are read from the metadata's own serialized form.
fn refs(md: &iceberg::spec::TableMetadata) -> std::collections::HashMap<String, iceberg::spec::SnapshotReference> {
    serde_json::to_value(md).ok().and_then(|mut v| serde_json::from_value(v["refs"].take()).ok()).unwrap_or_default()
}

/// The property update every maintenance commit carries.
fn maintained_now() -> iceberg::TableUpdate {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    iceberg::TableUpdate::SetProperties { updates: [(LAST_MAINTAINED.to_string(), now)].into() }
}
