//! Compaction of small data files. An agent commits a few small files per table every interval;
//! here the small live files of each partition are rewritten into files near the table's target
//! size, on its current schema and with full row groups, as one `replace` snapshot that adds the
//! new files and deletes the old ones. The rows, the agents' tags and their offsets stay as
//! they were; the replaced files leave the storage when expiry drops the last snapshot reading them.
//!
//! A new file is named after its sources and the schema (`compacted-<uuid5>.parquet`), and the
//! snapshot carries a `frazil.compaction-id` over all the sources, so an unanswered commit is
//! settled by the history.
//! After a conflict the pass rebases: a rewrite whose sources are all still live is committed again
//! as it is; one that lost a source (another maintainer or a foreign writer replaced it) is
//! abandoned and its new file deleted, unless the current table reads it (a rival maintainer that
//! compacted the same sources wrote the same name and won).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use async_compat::Compat;
use iceberg::spec::{DataFile, DataFileFormat, FormatVersion, ManifestContentType, ManifestFile, Snapshot};
use iceberg::table::Table;

use super::replace::{self, landed, new_snapshot_id, uuid_v4};
use super::{MAX_ATTEMPTS, Policy, Tools, gave_up, health, reload, rewrite};
use crate::backoff::Backoff;
use crate::commit::Outcome;
use crate::{Error, Result};

/// Snapshot-summary key of a compaction: a UUIDv5 over the table and every replaced file.
pub const COMPACTION_ID: &str = "frazil.compaction-id";

#[derive(Debug, Default)]
pub struct Compacted {
    pub replaced: usize,
    pub written: usize,
}

/// A live data file as the planner sees it: its partition (spec and values, as one key) and size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub partition: String,
    pub bytes: u64,
}

/// The groups of files to rewrite, as indexes into `files` (in the order the rows should keep).
/// A file is small below three quarters of `target`; per partition, small files are packed in
/// order into groups of at most `target` bytes; a group of one is left alone. Groups are taken in
/// partition order while their bytes fit in `budget` (the first one always does).
pub fn plan_compaction(files: &[Candidate], target: u64, budget: u64) -> Vec<Vec<usize>> {
    let small = target / 4 * 3;
    let mut by_partition: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, f) in files.iter().enumerate().filter(|(_, f)| f.bytes < small) {
        by_partition.entry(&f.partition).or_default().push(i);
    }
    let mut groups = Vec::new();
    for small in by_partition.into_values() {
        let (mut group, mut bytes) = (Vec::new(), 0u64);
        for i in small {
            if !group.is_empty() && bytes + files[i].bytes > target {
                groups.push(std::mem::take(&mut group));
                bytes = 0;
            }
            group.push(i);
            bytes += files[i].bytes;
        }
        groups.push(group);
    }
    groups.retain(|g| g.len() > 1);
    let mut spent = 0u64;
    groups
        .into_iter()
        .take_while(|g| {
            let bytes: u64 = g.iter().map(|&i| files[i].bytes).sum();
            let fits = spent == 0 || spent + bytes <= budget;
            spent += bytes;
            fits
        })
        .collect()
}

/// A live entry of a snapshot: the file, the manifest (index into the snapshot's list) that
/// holds it, and what an `existing` or `deleted` copy of the entry must keep.
struct Live {
    manifest: usize,
    spec_id: i32,
    file: DataFile,
    snapshot: i64,
    seq: i64,
    file_seq: i64,
}

/// One rewrite: the paths it replaces (sorted) and the file that replaces them.
pub(super) struct Rewrite {
    pub sources: Vec<String>,
    pub spec_id: i32,
    pub output: DataFile,
}

/// What a pass planned and wrote before its commit: the rewrites, their new files in the store.
pub struct Prepared {
    rewrites: Vec<Rewrite>,
}

impl Prepared {
    /// The new files, by path.
    pub fn outputs(&self) -> Vec<String> {
        self.rewrites.iter().map(|r| r.output.file_path().to_string()).collect()
    }
}

/// Compacts `table`'s small data files when the policy allows; returns the table as it is then.
pub(super) async fn compact(tools: &Tools<'_>, table: Table, policy: &Policy) -> Result<(Table, Compacted)> {
    match prepare(tools, &table, policy).await? {
        Some(prepared) => commit(tools, table, prepared).await,
        None => Ok((table, Compacted::default())),
    }
}

/// Plans the rewrites on `table`'s current snapshot and writes their new files; `None` when there
/// is nothing to compact. A failure leaves the files written so far to the orphan sweep: a rival
/// maintainer that planned the same sources writes the same names and may be committing them.
pub async fn prepare(tools: &Tools<'_>, table: &Table, policy: &Policy) -> Result<Option<Prepared>> {
    if policy.compact_bytes_per_pass == 0 {
        return Ok(None);
    }
    let Some((_, manifests)) = plannable(table).await? else { return Ok(None) };
    let mut lives = live_files(table, &manifests).await?;
    lives.sort_by(|a, b| (a.seq, a.file.file_path()).cmp(&(b.seq, b.file.file_path())));
    let candidates: Vec<Candidate> = lives
        .iter()
        .map(|l| Candidate {
            partition: format!("{}/{:?}", l.spec_id, l.file.partition()),
            // A foreign writer's ORC or Avro file is never small: only Parquet is merged.
            bytes: match l.file.file_format() {
                DataFileFormat::Parquet => l.file.file_size_in_bytes(),
                _ => u64::MAX,
            },
        })
        .collect();
    let groups = plan_compaction(&candidates, policy.file_target_bytes, policy.compact_bytes_per_pass);
    if groups.is_empty() {
        return Ok(None);
    }
    let scratch = tools.scratch.join(format!("compact-{}", uuid_v4()));
    std::fs::create_dir_all(&scratch).map_err(|e| Error::io(format!("create {}", scratch.display()), e))?;
    // A group that cannot be rewritten (a foreign file frazil cannot convert, an object gone) is
    // skipped with a warning, so one bad file never stops the table's compaction nor the rest of
    // the pass; only a failure that may pass (the store unreachable) with nothing written fails
    // the pass, to be tried again.
    let mut rewrites = Vec::new();
    let mut failed = None;
    for g in &groups {
        let files: Vec<&DataFile> = g.iter().map(|&i| &lives[i].file).collect();
        match rewrite::rewrite_group(tools, table, lives[g[0]].spec_id, &files, &scratch).await {
            Ok(r) => rewrites.push(r),
            Err(e) => {
                log::warn!(table = table.identifier().name(); "table {}: {} small files not compacted: {e}", table.identifier(), files.len());
                failed.get_or_insert(e);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    match failed {
        Some(e) if rewrites.is_empty() && e.is_transient() => Err(e),
        _ => Ok((!rewrites.is_empty()).then_some(Prepared { rewrites })),
    }
}

/// The current snapshot and its manifests, when compaction may run on it: format v2 and no
/// delete manifest (a rewrite would have to apply the deletes; frazil writes none).
async fn plannable(table: &Table) -> Result<Option<(Snapshot, Vec<ManifestFile>)>> {
    let md = table.metadata();
    let Some(base) = md.current_snapshot().cloned() else { return Ok(None) };
    if md.format_version() != FormatVersion::V2 {
        return Ok(None);
    }
    let manifests = health::manifests_of(table, &base).await?;
    if manifests.iter().any(|m| m.content == ManifestContentType::Deletes) {
        log::info!(table = table.identifier().name(); "table {}: has delete files; its data files are not compacted", table.identifier());
        return Ok(None);
    }
    Ok(Some(((*base).clone(), manifests)))
}

/// Every live entry of the data manifests `manifests`.
async fn live_files(table: &Table, manifests: &[ManifestFile]) -> Result<Vec<Live>> {
    let fail = |e| Error::iceberg(format!("read the manifests of {}", table.identifier()), e);
    let mut out = Vec::new();
    for (i, m) in manifests.iter().enumerate() {
        let manifest = Compat::new(m.load_manifest(table.file_io())).await.map_err(fail)?;
        for e in manifest.entries().iter().filter(|e| e.is_alive()) {
            let seq = e.sequence_number().unwrap_or(m.sequence_number);
            out.push(Live {
                manifest: i,
                spec_id: m.partition_spec_id,
                file: e.data_file().clone(),
                snapshot: e.snapshot_id().unwrap_or(m.added_snapshot_id),
                seq,
                file_seq: e.file_sequence_number.unwrap_or(seq),
            });
        }
    }
    Ok(out)
}

/// Commits what `prepare` wrote, rebasing after conflicts. A rewrite that lost a source is
/// abandoned and its new file deleted, unless the table reads it; rewrites still valid when the
/// pass gives up keep their files (a rival may be committing the same names; the orphan sweep
/// removes them if nobody does).
pub async fn commit(tools: &Tools<'_>, mut table: Table, prepared: Prepared) -> Result<(Table, Compacted)> {
    let ident = table.identifier().clone();
    // Writing took a while: rebase on the table as it is now (a rival's expiry may even have
    // deleted the manifests of the snapshot this pass planned on).
    table = reload(tools.committer, &ident).await?;
    let mut rewrites = prepared.rewrites;
    // New files of a try whose answer was lost: a late apply would read them, so they stay.
    let mut maybe_read: HashSet<String> = HashSet::new();
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        let Some((base, manifests)) = plannable(&table).await? else {
            log::info!(table = ident.name(); "table {ident}: compaction no longer applies; its files are left to the orphan sweep");
            return Ok((table, Compacted::default()));
        };
        let lives = live_files(&table, &manifests).await?;
        let live: HashSet<&str> = lives.iter().map(|l| l.file.file_path()).collect();
        let (keep, lost): (Vec<Rewrite>, Vec<Rewrite>) =
            rewrites.into_iter().partition(|r| r.sources.iter().all(|s| live.contains(s.as_str())));
        rewrites = keep;
        abandon(&table, &live, &maybe_read, lost).await;
        if rewrites.is_empty() {
            return Ok((table, Compacted::default()));
        }
        let sources = rewrites.iter().flat_map(|r| &r.sources).map(String::as_str);
        let id = replace::step_id(table.metadata(), "compact", sources);
        let (snapshot, written) = write_commit(&table, &base, &manifests, &lives, &rewrites, &id).await?;
        crate::fault::point("compact-before-commit");
        let applied = match replace::commit(tools.committer, &table, base.snapshot_id(), snapshot).await? {
            Outcome::Applied(t) => {
                crate::fault::point("compact-after-commit");
                Some(t)
            }
            Outcome::Conflict(body) => {
                log::info!(table = ident.name(); "table {ident}: compaction conflicted ({}); rebasing", body.trim());
                replace::delete_paths(&table, written).await;
                table = reload(tools.committer, &ident).await?;
                None
            }
            Outcome::Unknown(e) => {
                log::warn!(table = ident.name(); "table {ident}: compaction outcome unknown ({e}); checking the history");
                table = reload(tools.committer, &ident).await?;
                maybe_read.extend(rewrites.iter().map(|r| r.output.file_path().to_string()));
                landed(table.metadata(), COMPACTION_ID, &id).then_some(table.clone())
            }
        };
        if let Some(t) = applied {
            let replaced = rewrites.iter().map(|r| r.sources.len()).sum();
            log::info!(table = ident.name(); "table {ident}: {replaced} small data files compacted into {}", rewrites.len());
            return Ok((t, Compacted { replaced, written: rewrites.len() }));
        }
        if backoff.attempts() >= MAX_ATTEMPTS {
            return Err(gave_up(format!("compact the data files of {ident}")));
        }
        smol::Timer::after(backoff.next_delay()).await;
    }
}

/// Deletes the new files of `lost` rewrites that the table does not read (`live`) and that no
/// unanswered commit may still read (`maybe_read`).
async fn abandon(table: &Table, live: &HashSet<&str>, maybe_read: &HashSet<String>, lost: Vec<Rewrite>) {
    let doomed: Vec<String> = lost
        .into_iter()
        .map(|r| r.output.file_path().to_string())
        .filter(|p| !live.contains(p.as_str()) && !maybe_read.contains(p))
        .collect();
    if !doomed.is_empty() {
        log::info!(table = table.identifier().name(); "table {}: {} compacted files abandoned (a source is no longer live)", table.identifier(), doomed.len());
    }
    replace::delete_paths(table, doomed).await;
}

/// Writes the try's manifests (per partition spec: the new files as added, and every entry of
/// the manifests holding a replaced file, replaced ones as deleted) and its manifest list.
/// Returns the snapshot and the paths written.
async fn write_commit(
    table: &Table,
    base: &Snapshot,
    manifests: &[ManifestFile],
    lives: &[Live],
    rewrites: &[Rewrite],
    id: &str,
) -> Result<(Snapshot, Vec<String>)> {
    let md = table.metadata();
    let ident = table.identifier();
    let snapshot_id = new_snapshot_id(md);
    let replaced: HashSet<&str> = rewrites.iter().flat_map(|r| &r.sources).map(String::as_str).collect();
    let touched: BTreeSet<usize> =
        lives.iter().filter(|l| replaced.contains(l.file.file_path())).map(|l| l.manifest).collect();
    let mut specs: BTreeMap<i32, (Vec<&Live>, Vec<&DataFile>)> = BTreeMap::new();
    for l in lives.iter().filter(|l| touched.contains(&l.manifest)) {
        specs.entry(l.spec_id).or_default().0.push(l);
    }
    for r in rewrites {
        specs.entry(r.spec_id).or_default().1.push(&r.output);
    }
    let fail = |e| Error::iceberg(format!("write the compaction manifests of {ident}"), e);
    let mut new_manifests = Vec::new();
    for (spec_id, (entries, added)) in specs {
        let mut w = replace::manifest_writer(table, spec_id, snapshot_id, "compact")?;
        let m = Compat::new(async {
            for f in added {
                w.add_file(f.clone(), -1)?;
            }
            for l in entries {
                if replaced.contains(l.file.file_path()) {
                    w.add_delete_file(l.file.clone(), l.seq, Some(l.file_seq))?;
                } else {
                    w.add_existing_file(l.file.clone(), l.snapshot, l.seq, Some(l.file_seq))?;
                }
            }
            w.write_manifest_file().await
        })
        .await
        .map_err(fail)?;
        new_manifests.push(m);
    }
    let kept = (0..manifests.len()).filter(|i| !touched.contains(i)).map(|i| manifests[i].clone());
    let summary = replace::replace_summary(base, summary_props(base, lives, &replaced, rewrites, id));
    let mut paths: Vec<String> = new_manifests.iter().map(|m| m.manifest_path.clone()).collect();
    let (snapshot, list) =
        replace::write_snapshot(table, base, snapshot_id, new_manifests.into_iter().chain(kept), summary).await?;
    paths.push(list);
    Ok((snapshot, paths))
}

/// The summary of a compaction: what it added and deleted, the totals after it, and its id.
fn summary_props(
    base: &Snapshot,
    lives: &[Live],
    replaced: &HashSet<&str>,
    rewrites: &[Rewrite],
    id: &str,
) -> HashMap<String, String> {
    let gone: Vec<&DataFile> = lives.iter().map(|l| &l.file).filter(|f| replaced.contains(f.file_path())).collect();
    let removed_bytes: u64 = gone.iter().map(|f| f.file_size_in_bytes()).sum();
    let added_bytes: u64 = rewrites.iter().map(|r| r.output.file_size_in_bytes()).sum();
    let records: u64 = rewrites.iter().map(|r| r.output.record_count()).sum();
    let mut props: HashMap<String, String> = [
        ("added-data-files", rewrites.len() as u64),
        ("deleted-data-files", gone.len() as u64),
        ("added-records", records),
        ("deleted-records", records),
        ("added-files-size", added_bytes),
        ("removed-files-size", removed_bytes),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let total = |key: &str| base.summary().additional_properties.get(key).and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = total("total-data-files") {
        props.insert(
            "total-data-files".into(),
            (n + rewrites.len() as u64).saturating_sub(gone.len() as u64).to_string(),
        );
    }
    if let Some(n) = total("total-files-size") {
        props.insert("total-files-size".into(), (n + added_bytes).saturating_sub(removed_bytes).to_string());
    }
    props.insert(COMPACTION_ID.to_string(), id.to_string());
    props
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(spec: &[(&str, u64)]) -> Vec<Candidate> {
        spec.iter().map(|(p, b)| Candidate { partition: p.to_string(), bytes: *b }).collect()
    }

    #[test]
    fn small_files_of_a_partition_are_packed_up_to_the_target() {
        // Target 100: small is below 75. 80 stays; 30+30+30 fits in 100, the next 30 starts anew.
        let f = files(&[("a", 30), ("a", 80), ("a", 30), ("a", 30), ("a", 30), ("a", 30)]);
        assert_eq!(plan_compaction(&f, 100, u64::MAX), vec![vec![0, 2, 3], vec![4, 5]]);
    }

    #[test]
    fn partitions_are_never_mixed_and_a_lone_small_file_stays() {
        let f = files(&[("a", 10), ("b", 10), ("a", 10), ("c", 10), ("b", 10)]);
        assert_eq!(plan_compaction(&f, 100, u64::MAX), vec![vec![0, 2], vec![1, 4]]);
        assert!(plan_compaction(&files(&[("a", 10), ("b", 10), ("a", 90)]), 100, u64::MAX).is_empty());
    }

    #[test]
    fn a_pass_takes_groups_while_they_fit_its_budget() {
        let f = files(&[("a", 40), ("a", 40), ("b", 40), ("b", 40), ("c", 40), ("c", 40)]);
        assert_eq!(plan_compaction(&f, 100, 160).len(), 2);
        // The first group always goes, however small the budget.
        assert_eq!(plan_compaction(&f, 100, 1), vec![vec![0, 1]]);
    }

    #[test]
    fn every_small_file_is_in_at_most_one_group_and_groups_stay_under_the_target() {
        for n in 2..40u64 {
            let f: Vec<Candidate> =
                (0..n).map(|i| Candidate { partition: format!("p{}", i % 3), bytes: (i * 37) % 120 + 1 }).collect();
            let groups = plan_compaction(&f, 100, u64::MAX);
            let mut seen = HashSet::new();
            for g in &groups {
                assert!(g.len() > 1);
                assert!(g.iter().all(|&i| f[i].bytes < 75 && f[i].partition == f[g[0]].partition));
                assert!(g.iter().map(|&i| f[i].bytes).sum::<u64>() <= 100);
                assert!(g.iter().all(|i| seen.insert(*i)), "{groups:?}");
            }
        }
    }
}
