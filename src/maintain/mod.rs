//! Table maintenance: keeps a table that an agent commits to every minute readable for months.
//!
//! - `merge`: when the current snapshot lists more data manifests than `max_manifests`, the small
//!   ones are rewritten into few manifests near `manifest_target_size`, as one `replace` snapshot.
//! - `expire`: snapshots older than `expire_after`, beyond the last `keep_snapshots` of `main`,
//!   leave the metadata (iceberg's `expire_snapshots`); every ref head stays, so each agent's tag
//!   and the offsets it carries survive. The manifest lists, manifests and data files only they
//!   used are deleted.
//! - `compact`: small data files of a partition rewritten into files near the target size, as one
//!   `replace` snapshot that deletes the old ones.
//! - `reanchor`: a retired agent's tag moved onto a new snapshot carrying its offsets.
//! - `orphans`: objects no snapshot references, older than a grace period, deleted.
//! - `health`: the counts `frazil status` and the bench report.
//! - `elect`: which of the agents feeding a table maintains it, without a coordinator.
//!
//! A maintenance commit never changes what an agent committed: it carries no `frazil.agent` and
//! moves no tag, except a re-anchoring, which copies the retired agent's offsets and commit id
//! unchanged (see `DESIGN.md` beside this file).
//! Every commit asserts the snapshot it was planned on: any number of agents and foreign writers
//! may commit meanwhile; a conflict is planned again on the new table.

mod compact;
mod elect;
mod expire;
mod health;
mod merge;
mod orphans;
mod reanchor;
mod replace;
mod rewrite;

use std::time::Duration;

use iceberg::table::Table;

use crate::Result;
use crate::commit::Committer;
use crate::upload::Stores;

pub use compact::{COMPACTION_ID, Candidate, Prepared, plan_compaction};
#[cfg(test)]
pub(crate) use compact::{commit as commit_prepared, prepare};
pub use elect::is_maintainer;
pub use expire::expirable;
pub use health::{Health, health};
pub use merge::plan_merge;
pub use reanchor::{COMMITTED_AT, REANCHORED_FROM, retired_tags};

/// Snapshot-summary key of a maintenance snapshot: a UUIDv5 over the table, the snapshot it was
/// planned on and what it rewrites, so an unanswered commit is found in the history like an append.
pub const MAINTENANCE_ID: &str = "frazil.maintenance-id";
/// Table property: when maintenance last changed the table (RFC 3339).
pub const LAST_MAINTAINED: &str = "frazil.last-maintained";

/// What maintenance works with: the catalog, the object stores (compaction reads and writes data
/// files), and a local directory compaction rewrites files in (beside the spool, never in RAM).
pub struct Tools<'a> {
    pub committer: &'a Committer,
    pub stores: &'a Stores,
    pub scratch: &'a std::path::Path,
}

/// The directory compaction rewrites files in: `maintain/` beside the spool's own directories,
/// on the same disk; where that cannot be made (`frazil maintain` on a host without the agent's
/// spool), the system's temporary directory. Leftovers of a pass that crashed (a day old or more)
/// are removed first.
pub fn scratch_dir(spool_dir: &std::path::Path) -> Result<std::path::PathBuf> {
    let mut dir = spool_dir.join("maintain");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        log::info!("cannot use {} for compaction ({e}); using the temporary directory", dir.display());
        dir = std::env::temp_dir().join("frazil-maintain");
        std::fs::create_dir_all(&dir).map_err(|e| crate::Error::io(format!("create {}", dir.display()), e))?;
    }
    let stale = |e: &std::fs::DirEntry| {
        e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() > 86_400))
    };
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten().filter(stale) {
        let _ = std::fs::remove_dir_all(e.path());
    }
    Ok(dir)
}

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
    /// An agent whose tag has not moved for this long has stopped committing: its tag may be
    /// re-anchored (the election's window: ten commit intervals, at least ten minutes).
    pub retired_after: Duration,
    /// The size compaction writes files up to (the table's `upload_target_size`); files under
    /// three quarters of it are small.
    pub file_target_bytes: u64,
    /// Bytes of small files one pass may rewrite (`compact_per_pass`; 0: no compaction).
    pub compact_bytes_per_pass: u64,
    /// Objects under the table's location that no snapshot references are deleted once older
    /// than this (`orphan_after`; `None`: never).
    pub orphan_after: Option<Duration>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            interval: Some(Duration::from_secs(3600)),
            max_manifests: 100,
            manifest_target_bytes: 8 << 20,
            expire_after: Duration::from_secs(3600),
            keep_snapshots: 100,
            retired_after: Duration::from_secs(600),
            file_target_bytes: 128 << 20,
            compact_bytes_per_pass: 512 << 20,
            orphan_after: Some(Duration::from_secs(7 * 86_400)),
        }
    }
}

/// What one maintenance pass did to one table.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub table: String,
    /// Small data files replaced by compacted ones, and how many those are.
    pub files_compacted: usize,
    pub files_written: usize,
    /// Data manifests replaced by merged ones, and how many those are.
    pub manifests_merged: usize,
    pub manifests_written: usize,
    /// Tags of retired agents moved onto a new snapshot (so their old one may expire).
    pub tags_reanchored: usize,
    /// Snapshots expired, and the metadata files (manifests, manifest lists) deleted with them.
    pub snapshots_expired: usize,
    pub files_deleted: usize,
    /// Objects no snapshot references, older than `orphan_after`, deleted.
    pub orphans_deleted: usize,
    /// The table afterwards (`None` when the table does not exist).
    pub health: Option<Health>,
}

impl Report {
    /// Whether the pass changed the table.
    pub fn changed(&self) -> bool {
        self.files_compacted > 0
            || self.manifests_merged > 0
            || self.tags_reanchored > 0
            || self.snapshots_expired > 0
            || self.orphans_deleted > 0
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "table {}: {} data files compacted into {}, {} manifests merged into {}, {} tags re-anchored, {} snapshots expired, {} files deleted, {} orphans deleted",
            self.table,
            self.files_compacted,
            self.files_written,
            self.manifests_merged,
            self.manifests_written,
            self.tags_reanchored,
            self.snapshots_expired,
            self.files_deleted,
            self.orphans_deleted
        )?;
        if let Some(h) = &self.health {
            write!(f, "; now {h}")?;
        }
        Ok(())
    }
}

/// Maintains `table`: compacts its small data files, merges its manifests when they are over the
/// bound, moves retired agents' tags, expires old snapshots, then deletes old orphans. Returns what it did and the table as it
/// is afterwards; a table that does not exist yet is left alone (`None`).
pub async fn maintain(tools: &Tools<'_>, table: &str, policy: &Policy) -> Result<(Report, Option<Table>)> {
    let mut report = Report { table: table.to_string(), ..Report::default() };
    let Some(t) = tools.committer.load(table).await? else { return Ok((report, None)) };
    let (t, compacted) = compact::compact(tools, t, policy).await?;
    report.files_compacted = compacted.replaced;
    report.files_written = compacted.written;
    let (t, merged) = merge::merge(tools.committer, t, policy).await?;
    report.manifests_merged = merged.replaced;
    report.manifests_written = merged.written;
    let (t, moved) = reanchor::reanchor(tools.committer, t, policy).await?;
    report.tags_reanchored = moved;
    let (t, expired) = expire::expire(tools.committer, t, policy).await?;
    report.snapshots_expired = expired.snapshots;
    report.files_deleted = expired.files_deleted;
    if let Some(grace) = policy.orphan_after {
        report.orphans_deleted = orphans::sweep(tools, &t, grace).await?;
    }
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
