//! Manifest merging. Every append adds a manifest, and every reader opens every manifest of the
//! snapshot it reads. Once the current snapshot lists more data manifests than the policy allows,
//! the small ones are rewritten, entry for entry, into manifests near the target size. Entries keep
//! their status (as `existing`), snapshot ids and sequence numbers; deleted entries are dropped.
//! The new snapshot is a `replace`: the same data files, the same rows, the same totals.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use async_compat::Compat;
use iceberg::spec::{FormatVersion, ManifestContentType, ManifestFile};
use iceberg::table::Table;

use super::replace::{self, landed, new_snapshot_id};
use super::{MAINTENANCE_ID, MAX_ATTEMPTS, Policy, gave_up, health, reload};
use crate::backoff::Backoff;
use crate::commit::{Committer, Outcome};
use crate::{Error, Result};

#[derive(Debug, Default)]
pub(super) struct Merged {
    pub replaced: usize,
    pub written: usize,
}

/// The groups of data manifests to merge, as indexes into `manifests` (a snapshot's list): none
/// while the data manifests number `max` or fewer. Manifests of one partition spec that are
/// smaller than `target` bytes are packed in list order into groups of about `target` bytes; a
/// group of one is left as it is.
pub fn plan_merge(manifests: &[ManifestFile], max: usize, target: u64) -> Vec<Vec<usize>> {
    let data: Vec<usize> =
        (0..manifests.len()).filter(|&i| manifests[i].content == ManifestContentType::Data).collect();
    if data.len() <= max {
        return Vec::new();
    }
    let mut by_spec: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for i in data {
        by_spec.entry(manifests[i].partition_spec_id).or_default().push(i);
    }
    let mut groups = Vec::new();
    for small in by_spec.into_values() {
        let (mut group, mut bytes) = (Vec::new(), 0u64);
        for i in small {
            let len = manifests[i].manifest_length.max(0) as u64;
            if len >= target {
                continue;
            }
            group.push(i);
            bytes += len;
            if bytes >= target {
                groups.push(std::mem::take(&mut group));
                bytes = 0;
            }
        }
        groups.push(group);
    }
    groups.retain(|g| g.len() > 1);
    groups
}

/// Merges `table`'s data manifests when the policy asks for it; returns the table as it is then.
/// Each try is planned on the current snapshot and asserts it. Merged manifests a conflict leaves
/// unchanged are reused by the next try; those no try committed are deleted at the end.
pub(super) async fn merge(committer: &Committer, mut table: Table, policy: &Policy) -> Result<(Table, Merged)> {
    let ident = table.identifier().clone();
    let mut written: HashMap<Vec<String>, ManifestFile> = HashMap::new();
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let result = loop {
        let md = table.metadata();
        let Some(base) = md.current_snapshot().cloned() else { break Ok(Merged::default()) };
        if md.format_version() != FormatVersion::V2 {
            log::warn!(table = ident.name(); "table {ident}: manifests are merged in format v2 tables only");
            break Ok(Merged::default());
        }
        let manifests = health::manifests_of(&table, &base).await?;
        let groups = plan_merge(&manifests, policy.max_manifests, policy.manifest_target_bytes);
        if groups.is_empty() {
            break Ok(Merged::default());
        }
        let snapshot_id = new_snapshot_id(md);
        let mut new_manifests = Vec::new();
        let mut entries = 0;
        for g in &groups {
            let mut key: Vec<String> = g.iter().map(|&i| manifests[i].manifest_path.clone()).collect();
            key.sort();
            let mut m = match written.get(&key) {
                Some(m) => m.clone(),
                None => {
                    let sources: Vec<&ManifestFile> = g.iter().map(|&i| &manifests[i]).collect();
                    let m = write_merged(&table, &sources, snapshot_id).await?;
                    written.insert(key, m.clone());
                    m
                }
            };
            // Written for an earlier try: the list writer gives it this snapshot's sequence number.
            m.added_snapshot_id = snapshot_id;
            entries += m.existing_files_count.unwrap_or(0);
            new_manifests.push(m);
        }
        let merged: HashSet<usize> = groups.iter().flatten().copied().collect();
        let kept: Vec<ManifestFile> =
            (0..manifests.len()).filter(|i| !merged.contains(i)).map(|i| manifests[i].clone()).collect();
        let sources = groups.iter().flatten().map(|&i| manifests[i].manifest_path.as_str());
        let base_id = base.snapshot_id().to_string();
        let id = replace::step_id(md, "merge", sources.chain([base_id.as_str()]));
        let counts = [
            ("manifests-created", new_manifests.len()),
            ("manifests-kept", kept.len()),
            ("manifests-replaced", merged.len()),
            ("entries-processed", entries as usize),
        ];
        let props = counts.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let summary = replace::replace_summary(&base, props.chain([(MAINTENANCE_ID.to_string(), id.clone())]));
        let (snapshot, list) =
            replace::write_snapshot(&table, &base, snapshot_id, new_manifests.iter().cloned().chain(kept), summary)
                .await?;
        let done = |t: Table| {
            log::info!(table = ident.name(); "table {ident}: {} data manifests merged into {}", merged.len(), groups.len());
            (t, Merged { replaced: merged.len(), written: groups.len() })
        };
        crate::fault::point("merge-before-commit");
        match replace::commit(committer, &table, base.snapshot_id(), snapshot).await? {
            Outcome::Applied(t) => {
                crate::fault::point("merge-after-commit");
                written.retain(|_, m| !new_manifests.iter().any(|n| n.manifest_path == m.manifest_path));
                let (t, merged) = done(t);
                delete_unused(&t, written.into_values()).await;
                return Ok((t, merged));
            }
            Outcome::Conflict(body) => {
                log::info!(table = ident.name(); "table {ident}: manifest merge conflicted ({}); planning again", body.trim());
                // Nothing was applied: this try's manifest list is nobody's.
                replace::delete_paths(&table, [list]).await;
                table = reload(committer, &ident).await?;
            }
            Outcome::Unknown(e) => {
                log::warn!(table = ident.name(); "table {ident}: manifest merge outcome unknown ({e}); checking the history");
                table = reload(committer, &ident).await?;
                if landed(table.metadata(), MAINTENANCE_ID, &id) {
                    written.retain(|_, m| !new_manifests.iter().any(|n| n.manifest_path == m.manifest_path));
                    let (t, merged) = done(table);
                    delete_unused(&t, written.into_values()).await;
                    return Ok((t, merged));
                }
            }
        }
        if backoff.attempts() >= MAX_ATTEMPTS {
            break Err(gave_up(format!("merge the manifests of {ident}")));
        }
        smol::Timer::after(backoff.next_delay()).await;
    };
    // Nothing was committed by this pass (or nothing was needed): its merged manifests are nobody's.
    delete_unused(&table, written.into_values()).await;
    result.map(|m| (table, m))
}

/// One manifest holding every live entry of `sources` (all of one partition spec).
async fn write_merged(table: &Table, sources: &[&ManifestFile], snapshot_id: i64) -> Result<ManifestFile> {
    let ident = table.identifier();
    let fail = |e| Error::iceberg(format!("merge the manifests of {ident}"), e);
    let mut w = replace::manifest_writer(table, sources[0].partition_spec_id, snapshot_id, "merged")?;
    Compat::new(async {
        for source in sources {
            let manifest = source.load_manifest(table.file_io()).await?;
            for e in manifest.entries().iter().filter(|e| e.is_alive()) {
                let seq = e.sequence_number().unwrap_or(source.sequence_number);
                let snapshot = e.snapshot_id().unwrap_or(source.added_snapshot_id);
                w.add_existing_file(e.data_file().clone(), snapshot, seq, Some(e.file_sequence_number.unwrap_or(seq)))?;
            }
        }
        w.write_manifest_file().await
    })
    .await
    .map_err(fail)
}

async fn delete_unused(table: &Table, manifests: impl IntoIterator<Item = ManifestFile>) {
    replace::delete_paths(table, manifests.into_iter().map(|m| m.manifest_path)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(path: &str, len: i64, spec: i32, content: ManifestContentType) -> ManifestFile {
        ManifestFile {
            manifest_path: path.to_string(),
            manifest_length: len,
            partition_spec_id: spec,
            content,
            sequence_number: 1,
            min_sequence_number: 1,
            added_snapshot_id: 1,
            added_files_count: Some(1),
            existing_files_count: Some(0),
            deleted_files_count: Some(0),
            added_rows_count: Some(1),
            existing_rows_count: Some(0),
            deleted_rows_count: Some(0),
            partitions: None,
            key_metadata: None,
            first_row_id: None,
        }
    }

    fn data(lens: &[i64]) -> Vec<ManifestFile> {
        lens.iter().enumerate().map(|(i, &l)| manifest(&format!("m{i}"), l, 0, ManifestContentType::Data)).collect()
    }

    #[test]
    fn nothing_is_merged_up_to_the_bound() {
        assert!(plan_merge(&data(&[10; 4]), 4, 100).is_empty());
        assert_eq!(plan_merge(&data(&[10; 5]), 4, 100), vec![vec![0, 1, 2, 3, 4]]);
    }

    #[test]
    fn small_manifests_are_packed_up_to_the_target_and_big_ones_stay() {
        // 40+40+40 reaches 100: a group; 500 is big already; 30+30 is the last group.
        let groups = plan_merge(&data(&[40, 40, 40, 500, 30, 30]), 2, 100);
        assert_eq!(groups, vec![vec![0, 1, 2], vec![4, 5]]);
        // A lone small manifest between big ones is not rewritten for nothing.
        assert!(plan_merge(&data(&[500, 40, 500, 500]), 2, 100).is_empty());
    }

    #[test]
    fn delete_manifests_and_other_specs_are_never_mixed_in() {
        let mut ms = data(&[10, 10, 10]);
        ms.push(manifest("d", 10, 0, ManifestContentType::Deletes));
        ms.push(manifest("s1-a", 10, 1, ManifestContentType::Data));
        ms.push(manifest("s1-b", 10, 1, ManifestContentType::Data));
        assert_eq!(plan_merge(&ms, 2, 1000), vec![vec![0, 1, 2], vec![4, 5]]);
    }

    #[test]
    fn merging_always_lowers_the_count() {
        for n in 3..60 {
            for target in [1, 25, 100, 10_000] {
                let lens: Vec<i64> = (0..n).map(|i| (i * 7 % 40) as i64).collect();
                let groups = plan_merge(&data(&lens), 2, target);
                let merged: usize = groups.iter().map(Vec::len).sum();
                let after = n - merged + groups.len();
                assert!(groups.is_empty() || after < n, "n {n} target {target}: {groups:?}");
                assert!(groups.iter().all(|g| g.len() > 1));
            }
        }
    }
}
