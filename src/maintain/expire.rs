//! Snapshot expiry. iceberg's `expire_snapshots` chooses and removes the snapshots (metadata only):
//! each branch keeps its newest `keep_snapshots` and every ancestor newer than the cutoff, and no
//! ref head ever goes, so each agent's `frazil-<agent>` tag keeps the snapshot that carries its
//! offsets. After the commit, the manifest lists of the removed snapshots and the manifests only
//! they listed are deleted. Data files stay: no snapshot frazil writes deletes one yet.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_compat::Compat;
use iceberg::spec::TableMetadata;
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};

use super::{LAST_MAINTAINED, MAX_ATTEMPTS, Policy, gave_up, health, reload};
use crate::backoff::Backoff;
use crate::commit::{Committer, Outcome};
use crate::{Error, Result};

#[derive(Debug, Default)]
pub(super) struct Expired {
    pub snapshots: usize,
    pub files_deleted: usize,
}

/// The snapshots an expiry with `policy` at `now_ms` removes, by the rules iceberg's action
/// applies (see the module comment). Used to skip the commit when nothing would go.
pub fn expirable(md: &TableMetadata, now_ms: i64, policy: &Policy) -> Vec<i64> {
    expirable_ignoring(md, now_ms, policy, |_| false)
}

/// `expirable`, as if the refs whose names `ignored` picks did not exist.
pub fn expirable_ignoring(
    md: &TableMetadata,
    now_ms: i64,
    policy: &Policy,
    ignored: impl Fn(&str) -> bool,
) -> Vec<i64> {
    let cutoff = now_ms.saturating_sub(policy.expire_after.as_millis() as i64);
    let mut refs = super::refs(md);
    refs.retain(|name, _| !ignored(name));
    let mut kept: HashSet<i64> = refs.values().map(|r| r.snapshot_id).collect();
    kept.extend(md.current_snapshot_id());
    let mut on_a_branch: HashSet<i64> = HashSet::new();
    let branches = refs.values().filter(|r| r.is_branch()).map(|r| r.snapshot_id).chain(md.current_snapshot_id());
    for head in branches.collect::<Vec<_>>() {
        let mut n = 0;
        let mut next = Some(head);
        while let Some(s) = next.and_then(|id| md.snapshot_by_id(id)) {
            on_a_branch.insert(s.snapshot_id());
            if n < policy.keep_snapshots.max(1) || s.timestamp_ms() >= cutoff {
                kept.insert(s.snapshot_id());
                n += 1;
            }
            next = s.parent_snapshot_id();
        }
    }
    let mut out: Vec<i64> = md
        .snapshots()
        .filter(|s| !kept.contains(&s.snapshot_id()))
        .filter(|s| on_a_branch.contains(&s.snapshot_id()) || s.timestamp_ms() < cutoff)
        .map(|s| s.snapshot_id())
        .collect();
    out.sort_unstable();
    out
}

/// Expires what the policy allows; returns the table as it is then.
pub(super) async fn expire(committer: &Committer, mut table: Table, policy: &Policy) -> Result<(Table, Expired)> {
    let ident = table.identifier().clone();
    let before: HashMap<i64, String> =
        table.metadata().snapshots().map(|s| (s.snapshot_id(), s.manifest_list().to_string())).collect();
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        let now = chrono::Utc::now();
        if expirable(table.metadata(), now.timestamp_millis(), policy).is_empty() {
            break;
        }
        let tx = Transaction::new(&table);
        let tx = tx
            .expire_snapshots()
            .expire_older_than_ms(now.timestamp_millis() - policy.expire_after.as_millis() as i64)
            .retain_last(policy.keep_snapshots.max(1))
            .apply(tx)
            .and_then(|tx| {
                let at = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                tx.update_table_properties().set(LAST_MAINTAINED.to_string(), at).apply(tx)
            })
            .map_err(|e| Error::iceberg(format!("prepare the snapshot expiry of {ident}"), e))?;
        match committer.commit_transaction(tx).await? {
            Outcome::Applied(t) => {
                crate::fault::point("expire-after-commit");
                table = t;
                break;
            }
            Outcome::Conflict(body) => {
                log::info!(table = ident.name(); "table {ident}: snapshot expiry conflicted ({}); planning again", body.trim())
            }
            // Expiry is planned afresh on whatever the table holds: done already or not, no harm.
            Outcome::Unknown(e) => {
                log::warn!(table = ident.name(); "table {ident}: snapshot expiry outcome unknown ({e})")
            }
        }
        if backoff.attempts() >= MAX_ATTEMPTS {
            return Err(gave_up(format!("expire the snapshots of {ident}")));
        }
        smol::Timer::after(backoff.next_delay()).await;
        table = reload(committer, &ident).await?;
    }
    let removed: Vec<String> = before
        .iter()
        .filter(|(id, _)| table.metadata().snapshot_by_id(**id).is_none())
        .map(|(_, list)| list.clone())
        .collect();
    if removed.is_empty() {
        return Ok((table, Expired::default()));
    }
    log::info!(table = ident.name(); "table {ident}: {} snapshots expired", removed.len());
    let files_deleted = delete_unreferenced(&table, &removed).await?;
    Ok((table, Expired { snapshots: removed.len(), files_deleted }))
}

/// Deletes the manifest lists in `removed`, the manifests they list that no snapshot left in
/// `table` lists, and the data files of those manifests that no snapshot left reads (a file a
/// compaction replaced goes with the last snapshot that read it). Returns how many files went; a
/// failed delete is logged and left for the orphan sweep.
async fn delete_unreferenced(table: &Table, removed: &[String]) -> Result<usize> {
    let mut kept: HashSet<String> = HashSet::new();
    let mut kept_manifests = Vec::new();
    for s in table.metadata().snapshots() {
        for m in health::manifests_of(table, s).await? {
            if kept.insert(m.manifest_path.clone()) {
                kept_manifests.push(m);
            }
        }
    }
    let mut doomed: Vec<String> = Vec::new();
    let mut doomed_manifests: HashSet<String> = HashSet::new();
    for list in removed {
        match read_list(table, list).await {
            Ok(manifests) => doomed_manifests
                .extend(manifests.into_iter().filter(|m| !kept.contains(&m.manifest_path)).map(|m| m.manifest_path)),
            // Deleted by another maintainer's expiry already.
            Err(e) => log::info!("manifest list {list} of an expired snapshot: {e}"),
        }
        doomed.push(list.clone());
    }
    let mut data: HashSet<String> = HashSet::new();
    for m in &doomed_manifests {
        match data_files_of(table, m, false).await {
            Ok(files) => data.extend(files),
            Err(e) => log::info!("manifest {m} of an expired snapshot: {e}"),
        }
    }
    if !data.is_empty() {
        for m in &kept_manifests {
            for f in data_files_of(table, &m.manifest_path, true).await? {
                data.remove(&f);
            }
        }
    }
    doomed.extend(doomed_manifests);
    doomed.extend(data);
    doomed.sort();
    doomed.dedup();
    let mut deleted = 0;
    for p in doomed {
        match Compat::new(table.file_io().delete(&p)).await {
            Ok(()) => deleted += 1,
            Err(e) => log::warn!("could not delete {p}, which no snapshot references any more: {e}"),
        }
    }
    Ok(deleted)
}

/// The data files a manifest names: its live entries when `alive`, else all of them.
pub(super) async fn data_files_of(table: &Table, manifest: &str, alive: bool) -> Result<Vec<String>> {
    let fail = |e| Error::iceberg(format!("read manifest {manifest}"), e);
    let bytes = Compat::new(async { table.file_io().new_input(manifest)?.read().await }).await.map_err(fail)?;
    let m = iceberg::spec::Manifest::parse_avro(&bytes).map_err(fail)?;
    Ok(m.entries().iter().filter(|e| !alive || e.is_alive()).map(|e| e.file_path().to_string()).collect())
}

async fn read_list(table: &Table, list: &str) -> Result<Vec<iceberg::spec::ManifestFile>> {
    let bytes = Compat::new(async { table.file_io().new_input(list)?.read().await })
        .await
        .map_err(|e| Error::iceberg(format!("read {list}"), e))?;
    let parsed = iceberg::spec::ManifestList::parse_with_version(&bytes, table.metadata().format_version())
        .map_err(|e| Error::iceberg(format!("parse {list}"), e))?;
    Ok(parsed.consume_entries().into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table's metadata with a main branch of snapshots 1..=n (at 1000 ms apart, 1 the oldest)
    /// and `tags` (name, snapshot id).
    fn metadata(n: i64, tags: &[(&str, i64)]) -> TableMetadata {
        let snapshots: Vec<serde_json::Value> = (1..=n)
            .map(|i| {
                serde_json::json!({
                    "snapshot-id": i, "parent-snapshot-id": if i > 1 { Some(i - 1) } else { None },
                    "sequence-number": i, "timestamp-ms": i * 1000, "manifest-list": format!("s3://b/t/metadata/snap-{i}.avro"),
                    "summary": {"operation": "append"}, "schema-id": 0
                })
            })
            .collect();
        let mut refs = serde_json::json!({"main": {"snapshot-id": n, "type": "branch"}});
        for (name, id) in tags {
            refs[*name] = serde_json::json!({"snapshot-id": id, "type": "tag"});
        }
        serde_json::from_value(serde_json::json!({
            "format-version": 2, "table-uuid": "9c12d441-03fe-4693-9a96-a0705ddf69c1", "location": "s3://b/t",
            "last-sequence-number": n, "last-updated-ms": n * 1000, "last-column-id": 1,
            "current-schema-id": 0, "schemas": [{"type": "struct", "schema-id": 0, "fields": [
                {"id": 1, "name": "x", "required": false, "type": "long"}]}],
            "default-spec-id": 0, "partition-specs": [{"spec-id": 0, "fields": []}], "last-partition-id": 999,
            "default-sort-order-id": 0, "sort-orders": [{"order-id": 0, "fields": []}],
            "current-snapshot-id": n, "snapshots": snapshots, "refs": refs,
        }))
        .unwrap()
    }

    fn policy(keep: usize, after_ms: u64) -> Policy {
        Policy { keep_snapshots: keep, expire_after: Duration::from_millis(after_ms), ..Policy::default() }
    }

    #[test]
    fn the_newest_are_kept_by_count_and_by_age() {
        let md = metadata(10, &[]);
        // At 10 s, 0 s of age allowed: only the newest 3 stay.
        assert_eq!(expirable(&md, 10_000, &policy(3, 0)), (1..=7).collect::<Vec<_>>());
        // 5.5 s of age keep snapshots 5..=10 whatever the count.
        assert_eq!(expirable(&md, 10_500, &policy(1, 5_500)), (1..=4).collect::<Vec<_>>());
        assert!(expirable(&md, 10_000, &policy(10, 0)).is_empty());
    }

    #[test]
    fn tagged_snapshots_stay_whatever_their_age() {
        let md = metadata(10, &[("frazil-gw-a", 2), ("frazil-gw-b", 9)]);
        assert_eq!(expirable(&md, 10_000, &policy(1, 0)), vec![1, 3, 4, 5, 6, 7, 8]);
    }
}
