//! The orphan sweep: objects under a table's location that nothing the table keeps references,
//! left by crashes (a compaction's files before its commit, an expiry's before its deletes), by
//! tries that lost a conflict, or by foreign writers. An object is deleted only when it is older
//! than the grace period (`orphan_after`): a younger one may be an upload whose commit is on its
//! way. An agent that was offline longer than the grace re-uploads from its spool any object it
//! finds gone before committing (see the publisher), so the sweep never costs an event.
//!
//! Referenced: the current metadata file and those in its log, every snapshot's manifest list,
//! every manifest those list, every file any of those manifests names (live or deleted), and the
//! statistics files. A metadata file named `v<N>.metadata.json` (the filesystem catalog's) is
//! only deleted below the oldest version the log keeps, so the version hint never points at a
//! deleted version; `version-hint.text` is never deleted.

use std::collections::HashSet;
use std::time::Duration;

use async_compat::Compat;
use iceberg::table::Table;

use super::{Tools, expire, health};
use crate::Result;
use crate::upload::Listed;

/// Which listed objects are orphans: not in `referenced` (both normalized with [`normal`]),
/// modified before `cutoff_ms`, not the version hint, and, for a `v<N>.metadata.json`, with N
/// below `min_version`.
pub fn orphans(
    listed: &[Listed],
    referenced: &HashSet<String>,
    cutoff_ms: i64,
    min_version: Option<u64>,
) -> Vec<String> {
    listed
        .iter()
        .filter(|o| o.modified.timestamp_millis() < cutoff_ms)
        .filter(|o| !referenced.contains(&normal(&o.url)))
        .filter(|o| {
            let name = o.url.rsplit('/').next().unwrap_or_default();
            if name == "version-hint.text" {
                return false;
            }
            match version_of(name) {
                Some(n) => min_version.is_some_and(|min| n < min),
                None => true,
            }
        })
        .map(|o| o.url.clone())
        .collect()
}

/// `v12.metadata.json` → 12.
fn version_of(name: &str) -> Option<u64> {
    name.strip_prefix('v')?.strip_suffix(".metadata.json")?.parse().ok()
}

/// One spelling per object: `s3a://` is `s3://`, `file:/x` and `file:///x` are one.
pub fn normal(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("s3a://") {
        return format!("s3://{rest}");
    }
    if let Some(rest) = url.strip_prefix("file:") {
        return format!("file:///{}", rest.trim_start_matches('/'));
    }
    url.to_string()
}

/// Deletes `table`'s orphans older than the policy's grace; returns how many went.
pub(super) async fn sweep(tools: &Tools<'_>, table: &Table, orphan_after: Duration) -> Result<usize> {
    let md = table.metadata();
    let ident = table.identifier();
    let referenced = referenced(table).await?;
    let listed = Compat::new(tools.stores.list(md.location().trim_end_matches('/'))).await?;
    // The paths of the table must be spelled as the listing spells them, else everything would
    // look orphaned: the current snapshot's manifest list is the witness.
    if let Some(s) = md.current_snapshot() {
        let witness = normal(s.manifest_list());
        if !listed.iter().any(|o| normal(&o.url) == witness) {
            log::warn!(table = ident.name(); "table {ident}: its manifest list {witness} is not among the objects listed under {}; orphans are not swept", md.location());
            return Ok(0);
        }
    }
    let min_version = md.metadata_log().iter().filter_map(|m| version_of(m.metadata_file.rsplit('/').next()?)).min();
    let current = table.metadata_location().and_then(|l| version_of(l.rsplit('/').next()?));
    let cutoff = chrono::Utc::now().timestamp_millis() - orphan_after.as_millis() as i64;
    let doomed = orphans(&listed, &referenced, cutoff, min_version.or(current));
    crate::fault::point("orphans-before-delete");
    let mut deleted = 0;
    for url in &doomed {
        match Compat::new(tools.stores.delete(url)).await {
            Ok(()) => deleted += 1,
            Err(e) => log::warn!(table = ident.name(); "could not delete the orphan {url}: {e}"),
        }
    }
    if deleted > 0 {
        log::info!(table = ident.name(); "table {ident}: {deleted} orphaned objects older than {orphan_after:?} deleted");
    }
    Ok(deleted)
}

/// Every object the table's metadata references, normalized.
async fn referenced(table: &Table) -> Result<HashSet<String>> {
    let md = table.metadata();
    let mut out: HashSet<String> = HashSet::new();
    out.extend(table.metadata_location().map(normal));
    out.extend(md.metadata_log().iter().map(|m| normal(&m.metadata_file)));
    out.extend(md.statistics_iter().map(|s| normal(&s.statistics_path)));
    out.extend(md.partition_statistics_iter().map(|s| normal(&s.statistics_path)));
    let mut manifests = HashSet::new();
    for s in md.snapshots() {
        out.insert(normal(s.manifest_list()));
        manifests.extend(health::manifests_of(table, s).await?.into_iter().map(|m| m.manifest_path));
    }
    for m in manifests {
        out.extend(expire::data_files_of(table, &m, false).await?.iter().map(|f| normal(f)));
        out.insert(normal(&m));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(url: &str, at_ms: i64) -> Listed {
        Listed { url: url.into(), modified: chrono::DateTime::from_timestamp_millis(at_ms).unwrap(), bytes: 1 }
    }

    #[test]
    fn only_old_unreferenced_objects_are_orphans() {
        let referenced: HashSet<String> =
            ["s3://b/t/data/live.parquet", "s3://b/t/metadata/snap-1.avro"].into_iter().map(String::from).collect();
        let objects = [
            listed("s3://b/t/data/live.parquet", 0),
            listed("s3://b/t/metadata/snap-1.avro", 0),
            listed("s3://b/t/data/old-orphan.parquet", 10),
            listed("s3://b/t/data/young-upload.parquet", 2_000),
        ];
        assert_eq!(orphans(&objects, &referenced, 1_000, None), vec!["s3://b/t/data/old-orphan.parquet"]);
    }

    #[test]
    fn the_version_hint_and_recent_metadata_versions_stay() {
        let objects = [
            listed("file:///w/t/metadata/version-hint.text", 0),
            listed("file:///w/t/metadata/v3.metadata.json", 0),
            listed("file:///w/t/metadata/v7.metadata.json", 0),
            listed("file:///w/t/metadata/00001-abc.metadata.json", 0),
        ];
        let none = HashSet::new();
        assert_eq!(
            orphans(&objects, &none, 1_000, Some(5)),
            vec!["file:///w/t/metadata/v3.metadata.json", "file:///w/t/metadata/00001-abc.metadata.json"]
        );
        // Without a log to bound them, no numbered version is deleted.
        assert_eq!(orphans(&objects, &none, 1_000, None), vec!["file:///w/t/metadata/00001-abc.metadata.json"]);
    }

    #[test]
    fn spellings_of_one_object_are_one() {
        assert_eq!(normal("s3a://b/k"), "s3://b/k");
        assert_eq!(normal("file:/w/t"), "file:///w/t");
        assert_eq!(normal("file:///w/t"), "file:///w/t");
        assert_eq!(normal("s3://b/k"), "s3://b/k");
    }
}
