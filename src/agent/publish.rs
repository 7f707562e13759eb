//! The publish cycle: spool → object store → catalog commit. Each step is recorded in the spool
//! index before the next one starts, so a crash at any point resumes where it stopped:
//! 1. settle pending commits (did they land? look in the table's history),
//! 2. upload written files (deterministic object names: a retried upload overwrites itself),
//! 3. commit uploaded files per table, recording the commit as pending first,
//! 4. delete committed files from the spool.

use std::collections::{BTreeMap, BTreeSet};

use async_compat::Compat;
use bytes::Bytes;
use frazil_spool::{FileState, PendingCommit, SpoolFile};
use iceberg::spec::PartitionSpec;
use iceberg::table::Table;

use super::{Agent, tables};
use crate::commit::{self, Committer};
use crate::source::TopicPartition;
use crate::spool::merge;
use crate::{Error, Result};

impl Agent {
    /// Uploads and commits the spooled files of every table that is due (`all`: every table).
    pub(super) async fn publish(&self, all: bool) -> Result<()> {
        let committer = match self.committer().await {
            Ok(c) => c,
            Err(e) => return Err(e.with_context("connect to the catalog")),
        };
        let result = self.publish_with(&committer, all).await;
        if result.as_ref().is_err_and(Error::is_transient) {
            // Reconnect next time: the catalog may have moved or restarted with another config.
            self.committer.borrow_mut().take();
        }
        result
    }

    async fn publish_with(&self, committer: &Committer, all: bool) -> Result<()> {
        // A commit whose outcome is unknown is settled first, whatever its table's interval.
        for p in self.run_blocking(|s| s.pending_commits()).await? {
            self.settle(committer, &p).await?;
        }

        let files = self.run_blocking(|s| s.files()).await?;
        let due = self.due_tables(files.iter().map(|f| f.meta.table.as_str()), all);
        let mut written: BTreeMap<String, Vec<SpoolFile>> = BTreeMap::new();
        for f in files {
            if f.state == FileState::Written && due.contains(&f.meta.table) {
                written.entry(f.meta.table.clone()).or_default().push(f);
            }
        }
        for (table, files) in written {
            for group in upload_groups(files, self.cfg.upload_target_bytes(&table), columns_of) {
                self.upload(committer, &table, group).await?;
            }
        }

        let files = self.run_blocking(|s| s.files()).await?;
        let mut by_table: BTreeMap<String, Vec<SpoolFile>> = BTreeMap::new();
        for f in files {
            if matches!(f.state, FileState::Uploaded { .. }) && due.contains(&f.meta.table) {
                by_table.entry(f.meta.table.clone()).or_default().push(f);
            }
        }
        // Dead-letter tables first, and the first failure ends the cycle: a table's commit never
        // lands before the dead letters of the same offsets, so the table's offsets (where reading
        // resumes after a lost spool) never pass dead letters that are not committed.
        let dead: BTreeSet<String> = by_table
            .keys()
            .map(|t| crate::config::dead_letter_table_name(&self.cfg.catalog.dead_letter_table, t))
            .collect();
        let mut order: Vec<(String, Vec<SpoolFile>)> = by_table.into_iter().collect();
        order.sort_by_key(|(t, _)| !dead.contains(t));
        let now = std::time::Instant::now();
        for (table, files) in order {
            self.commit(committer, &table, files).await?;
            self.published_at.borrow_mut().insert(table, now);
        }

        let removed = self.run_blocking(|s| s.remove_committed()).await?;
        if removed > 0 {
            log::debug!("spool: removed {removed} committed files");
        }
        Ok(())
    }

    /// The tables among `tables` to publish now: those whose commit interval has passed since
    /// they were last published (all of them when `all`), with the dead-letter table of each,
    /// which must never be committed after its table.
    fn due_tables<'a>(&self, tables: impl Iterator<Item = &'a str>, all: bool) -> BTreeSet<String> {
        let published = self.published_at.borrow();
        let mut due = BTreeSet::new();
        for t in tables {
            let since = published.get(t).copied().unwrap_or(self.opened_at);
            if all || since.elapsed() >= self.cfg.commit_interval(t) {
                due.insert(crate::config::dead_letter_table_name(&self.cfg.catalog.dead_letter_table, t));
                due.insert(t.to_string());
            }
        }
        due
    }

    /// Runs a spool call on the blocking pool.
    async fn run_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&frazil_spool::Spool) -> frazil_spool::Result<T> + Send + 'static,
    ) -> Result<T> {
        let spool = self.spool.clone();
        Ok(blocking::unblock(move || f(&spool)).await?)
    }

    /// A commit recorded as pending by an earlier attempt: finish it if it landed, else drop the
    /// record so its files are committed again.
    async fn settle(&self, committer: &Committer, p: &PendingCommit) -> Result<()> {
        let landed = match committer.load(&p.table).await? {
            Some(t) => {
                let landed = commit::commit_landed(t.metadata(), &self.cfg.agent_id, &p.commit_id);
                self.tables.borrow_mut().insert(p.table.clone(), t);
                landed
            }
            None => false,
        };
        let (id, n) = (p.commit_id.clone(), p.ids.len());
        if landed {
            log::info!(table = p.table.as_str(), commit_id = id.as_str(); "table {}: pending commit {id} had landed; {n} files marked committed", p.table);
            // The merged uploads among them no longer need their DataFile kept.
            let ids = p.ids.clone();
            let locations: std::collections::BTreeSet<String> = self
                .run_blocking(|s| s.files())
                .await?
                .into_iter()
                .filter(|f| ids.contains(&f.id))
                .filter_map(|f| match f.state {
                    FileState::Uploaded { location } => Some(location),
                    _ => None,
                })
                .collect();
            self.run_blocking(move |s| s.finish_commit(&id)).await?;
            self.forget_merged(locations).await?;
            self.report.borrow_mut().files_committed += n as u64;
        } else {
            log::info!(table = p.table.as_str(), commit_id = id.as_str(); "table {}: pending commit {id} did not land; its {n} files will be committed again", p.table);
            self.run_blocking(move |s| s.abandon_commit(&id)).await?;
        }
        Ok(())
    }

    /// The table handle, loading it or creating it (with the schema its spool files were written
    /// with) as needed.
    async fn table(&self, committer: &Committer, name: &str) -> Result<Table> {
        let cached = self.tables.borrow().get(name).cloned();
        let t = match cached {
            Some(t) => t,
            None => self.load_or_create(committer, name).await?,
        };
        // The spool's schema may have grown (new keys in the records): the table follows first.
        let t = match tables::recorded(&self.spool, name)? {
            Some(wanted) => committer.grow(t, &wanted).await?,
            None => t,
        };
        // Spool files carry partition tuples of the recorded spec: the table must use the same.
        if let Some(spec) = tables::recorded_spec(&self.spool, name)?
            && spec.fields() != t.metadata().default_partition_spec().fields()
        {
            return Err(Error::decode(
                format!("table {name}"),
                format!(
                    "is partitioned by {} but the spooled files by {}; they are kept until the table's partitioning matches",
                    serde_json::to_string(t.metadata().default_partition_spec().fields()).unwrap_or_default(),
                    serde_json::to_string(spec.fields()).unwrap_or_default()
                ),
            ));
        }
        self.tables.borrow_mut().insert(name.to_string(), t.clone());
        Ok(t)
    }

    async fn load_or_create(&self, committer: &Committer, name: &str) -> Result<Table> {
        let t = match committer.load(name).await? {
            Some(t) => t,
            None => {
                let schema = tables::creation(&self.spool, name)?.ok_or_else(|| {
                    Error::decode(format!("table {name}"), "spool files exist but no schema was recorded for them")
                })?;
                let spec = tables::recorded_spec(&self.spool, name)?.unwrap_or_else(PartitionSpec::unpartition_spec);
                let order =
                    tables::recorded_sort(&self.spool, name)?.unwrap_or_else(iceberg::spec::SortOrder::unsorted_order);
                let t = committer.create(name, &schema, &spec, &order).await?;
                if !tables::same_fields(t.metadata().current_schema(), &schema) {
                    return Err(Error::decode(
                        format!("table {name}"),
                        "the catalog numbered the new table's fields differently from the spooled files; they are kept until this is resolved",
                    ));
                }
                t
            }
        };
        Ok(t)
    }

    /// Uploads one group of spool files of a table: one file as it is, several merged into one
    /// (row groups copied, nothing decoded). The group's files are marked uploaded together, in one
    /// index transaction, so a crash never leaves some of a merged object's parts `written`.
    async fn upload(&self, committer: &Committer, name: &str, group: Vec<SpoolFile>) -> Result<()> {
        let table = self.table(committer, name).await?;
        let location = table.metadata().location().to_string();
        // Check every part first; a damaged one is quarantined and left out of the upload.
        let mut parts = Vec::with_capacity(group.len());
        let mut single = None;
        for f in group {
            let id = f.id;
            match self.run_blocking(move |s| s.read_verified(id)).await {
                Ok(bytes) => {
                    single = Some(bytes);
                    parts.push(f);
                }
                Err(Error::Spool(e)) if matches!(e, frazil_spool::SpoolError::Corrupt { .. }) => {
                    log::error!("spool: {e}; the file was quarantined and is skipped");
                }
                Err(e) => return Err(e),
            }
        }
        let ids: Vec<u64> = parts.iter().map(|f| f.id).collect();
        let dir = parts.first().map(|f| partition_dir(&table, f)).unwrap_or_default();
        let url = match parts.as_slice() {
            [] => return Ok(()),
            [f] => {
                let url = object_url(&location, &self.cfg.agent_id, &dir, f);
                let bytes = single.take().expect("the one part was read");
                Compat::new(self.stores.put(&url, Bytes::from(bytes))).await?;
                url
            }
            _ => {
                let url = merged_url(&location, &self.cfg.agent_id, &dir, name, &parts);
                let spool = self.spool.clone();
                let inputs: Vec<std::path::PathBuf> = parts.iter().map(|f| f.path.clone()).collect();
                let tmp = spool.temp_path();
                let t = tmp.clone();
                let merged = blocking::unblock(move || -> Result<(u64, Vec<i64>)> {
                    let size = merge::merge_files(&inputs, &t)?;
                    Ok((size, merge::split_offsets(&t)?))
                })
                .await;
                let (size, splits) = merged.inspect_err(|_| {
                    let _ = std::fs::remove_file(&tmp);
                })?;
                let datafiles = parts
                    .iter()
                    .map(|f| commit::data_file_from_json(&f.meta.extra, &url, &table))
                    .collect::<Result<Vec<_>>>()?;
                let json = commit::data_file_to_json(
                    merge::merge_data_files(
                        &datafiles,
                        table.metadata().default_partition_spec_id(),
                        &url,
                        size,
                        splits,
                    )?,
                    table.metadata().default_partition_type(),
                )?;
                // The merged DataFile is kept until the commit; written before the object exists,
                // so whatever points at the object can always be committed.
                let key = merged_key(&url);
                self.run_blocking(move |s| s.put_meta(&key, &json)).await?;
                let sent = Compat::new(self.stores.upload_file(&tmp, &url)).await;
                let _ = std::fs::remove_file(&tmp);
                sent?;
                log::debug!("merged {} spool files of {name} into {url} ({size} bytes)", parts.len());
                url
            }
        };
        crate::fault::point("after-upload");
        let u = url.clone();
        self.run_blocking(move |s| s.mark_uploaded_many(&ids, &u)).await?;
        Ok(())
    }

    /// Drops the kept DataFiles of merged uploads once they are committed (a no-op for others).
    async fn forget_merged(&self, urls: impl IntoIterator<Item = String>) -> Result<()> {
        for url in urls {
            let key = merged_key(&url);
            self.run_blocking(move |s| s.delete_meta(&key)).await?;
        }
        Ok(())
    }

    /// Commits every uploaded file of one table in one snapshot.
    async fn commit(&self, committer: &Committer, name: &str, files: Vec<SpoolFile>) -> Result<()> {
        let table = self.table(committer, name).await?;
        let mut data_files = Vec::with_capacity(files.len());
        let mut urls = Vec::with_capacity(files.len());
        let mut offsets: BTreeMap<TopicPartition, i64> =
            commit::committed_offsets(table.metadata(), &self.cfg.agent_id);
        let mut by_location: BTreeMap<&str, Vec<&SpoolFile>> = BTreeMap::new();
        for f in &files {
            let FileState::Uploaded { location } = &f.state else { continue };
            by_location.entry(location.as_str()).or_default().push(f);
            let e = offsets.entry((f.meta.topic.clone(), f.meta.partition)).or_insert(f.meta.next_offset);
            *e = (*e).max(f.meta.next_offset);
        }
        for (location, members) in &by_location {
            let key = merged_key(location);
            let merged = self.run_blocking(move |s| s.get_meta(&key)).await?;
            let json = match (&merged, members.as_slice()) {
                (Some(json), _) => json.as_slice(),
                (None, [one]) => one.meta.extra.as_slice(),
                (None, _) => {
                    return Err(Error::decode(
                        format!("upload {location}"),
                        "several spool files share it but its merged data file is not recorded",
                    ));
                }
            };
            data_files.push(commit::data_file_from_json(json, location, &table)?);
            urls.push(location.to_string());
        }
        let ident = committer.ident(name).to_string();
        let id = commit::commit_id(&ident, &urls);
        let pending =
            PendingCommit { table: name.to_string(), commit_id: id.clone(), ids: files.iter().map(|f| f.id).collect() };
        self.run_blocking(move |s| s.begin_commit(&pending)).await?;
        let rows: u64 = files.iter().map(|f| f.meta.rows).sum();
        crate::fault::point("before-commit");
        let started = std::time::Instant::now();
        let committed = committer.append(table, data_files, &id, &offsets).await?;
        crate::fault::point("after-commit");
        self.gauges.commit_took(started.elapsed());
        let i = id.clone();
        self.run_blocking(move |s| s.finish_commit(&i)).await?;
        self.forget_merged(urls.iter().cloned()).await?;
        log::info!(table = name, commit_id = id.as_str(); "table {ident}: commit {id} added {} data files ({} spool files, {rows} rows)", urls.len(), files.len());
        self.tables.borrow_mut().insert(name.to_string(), committed);
        let mut r = self.report.borrow_mut();
        r.commits += 1;
        r.files_committed += files.len() as u64;
        Ok(())
    }
}

/// The object a spool file is uploaded to. Deterministic, so a retried upload overwrites itself,
/// and unique per agent, partition and offset range, so no two files ever share a name.
fn object_url(table_location: &str, agent: &str, dir: &str, f: &SpoolFile) -> String {
    format!(
        "{}/data/{}/{dir}{}-{}-{:020}-{:020}.parquet",
        table_location.trim_end_matches('/'),
        safe(agent),
        safe(&f.meta.topic),
        f.meta.partition,
        f.meta.first_offset,
        f.meta.last_offset
    )
}

/// The object that several spool files of a table are merged into: named after the parts, so a
/// retried merge of the same parts overwrites itself.
fn merged_url(table_location: &str, agent: &str, dir: &str, table: &str, parts: &[SpoolFile]) -> String {
    let mut key = String::new();
    for f in parts {
        key.push_str(&format!(
            "{}/{}/{}/{}\n",
            f.meta.topic, f.meta.partition, f.meta.first_offset, f.meta.last_offset
        ));
    }
    let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, key.as_bytes());
    format!("{}/data/{}/{dir}{}-{id}.parquet", table_location.trim_end_matches('/'), safe(agent), safe(table))
}

/// The directory of a partitioned table's objects, Hive style (`zone=north/ts_day=2024-05-06/`);
/// `""` when the table is unpartitioned. Files of one roll differ only here, so their names never
/// collide. Read from the partition tuple in the file's DataFile JSON.
fn partition_dir(table: &Table, f: &SpoolFile) -> String {
    use iceberg::spec::Transform;
    let spec = table.metadata().default_partition_spec();
    if spec.is_unpartitioned() {
        return String::new();
    }
    let json: serde_json::Value = serde_json::from_slice(&f.meta.extra).unwrap_or_default();
    let mut dir = String::new();
    for field in spec.fields() {
        let v = &json["partition"][&field.name];
        let n = v.as_i64();
        let text = match (field.transform, n) {
            (_, None) if v.is_null() => "null".to_string(),
            (Transform::Day, Some(days)) => chrono::DateTime::from_timestamp(days * 86_400, 0)
                .map_or(days.to_string(), |d| d.format("%Y-%m-%d").to_string()),
            (Transform::Hour, Some(h)) => chrono::DateTime::from_timestamp(h * 3_600, 0)
                .map_or(h.to_string(), |d| d.format("%Y-%m-%d-%H").to_string()),
            (Transform::Month, Some(m)) => format!("{}-{:02}", 1970 + m.div_euclid(12), m.rem_euclid(12) + 1),
            (Transform::Year, Some(y)) => (1970 + y).to_string(),
            _ => v.as_str().map_or_else(|| v.to_string(), str::to_string),
        };
        dir.push_str(&format!("{}={}/", safe(&field.name), safe(&text)));
    }
    dir
}

/// A name made safe for an object path: letters, digits, `-`, `_` and `.` stay, the rest become `_`.
fn safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect()
}

/// Where the spool index keeps a merged object's DataFile until it is committed.
fn merged_key(url: &str) -> String {
    format!("upload/{url}")
}

/// At most this many spool files merge into one object. A merge holds every input's footer and
/// DataFile, and the output's footer grows by one row group per input, so a backlog of small
/// files (a gateway offline for days, rolling by age) would otherwise set the memory of a drain:
/// 1,112 files of 50 rows in one object peaked at 88 MiB.
const MAX_GROUP_FILES: usize = 128;

/// Packs a table's written spool files (in offset order) into upload groups of about `target`
/// bytes and at most [`MAX_GROUP_FILES`] files; a file at or over the target goes alone.
fn upload_groups<K: PartialEq>(
    mut files: Vec<SpoolFile>,
    target: u64,
    schema: impl Fn(&SpoolFile) -> K,
) -> Vec<Vec<SpoolFile>> {
    // In offset order, not spooling order: partitions are fetched concurrently, so their files
    // interleave differently from one run to the next, and a retried upload (after a crash, or
    // with the spool lost and fetched again) must group the same files under the same names to
    // overwrite its first attempt instead of leaving an orphan object.
    files.sort_by(|a, b| {
        (&a.meta.topic, a.meta.partition, a.meta.first_offset).cmp(&(
            &b.meta.topic,
            b.meta.partition,
            b.meta.first_offset,
        ))
    });
    let mut groups: Vec<(K, Vec<SpoolFile>)> = Vec::new();
    let mut size = 0u64;
    for f in files {
        let key = schema(&f);
        match groups.last_mut() {
            // Only files of one schema merge (row groups are copied as they are).
            Some((k, g)) if size + f.bytes <= target && g.len() < MAX_GROUP_FILES && *k == key => {
                size += f.bytes;
                g.push(f);
            }
            _ => {
                size = f.bytes;
                groups.push((key, vec![f]));
            }
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

/// What files must share to be merged into one object: their Parquet schema (row groups are
/// copied as they are, so field ids and physical types must match: files written before and after
/// a schema grew or a column widened differ), and their partition tuple.
fn columns_of(f: &SpoolFile) -> (String, String) {
    let json: serde_json::Value = serde_json::from_slice(&f.meta.extra).unwrap_or_default();
    // An unreadable file gets a group of its own; its upload reports the problem.
    let schema = crate::spool::merge::file_schema(&f.path).unwrap_or_else(|e| format!("unreadable {}: {e}", f.id));
    (schema, json["partition"].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use frazil_spool::FileMeta;

    fn file(id: u64, bytes: u64) -> SpoolFile {
        let meta = FileMeta {
            table: "t".into(),
            topic: "events".into(),
            partition: 0,
            first_offset: id as i64 * 10,
            last_offset: id as i64 * 10 + 9,
            next_offset: id as i64 * 10 + 10,
            rows: 10,
            extra: vec![],
        };
        SpoolFile { id, meta, bytes, crc32c: 0, state: FileState::Written, path: format!("/s/{id}").into() }
    }

    #[test]
    fn groups_fill_up_to_the_target_in_order() {
        let sizes = [40, 40, 40, 100, 10, 200, 5];
        let groups = upload_groups(sizes.iter().enumerate().map(|(i, &b)| file(i as u64, b)).collect(), 100, |_| ());
        let ids: Vec<Vec<u64>> = groups.iter().map(|g| g.iter().map(|f| f.id).collect()).collect();
        assert_eq!(ids, vec![vec![0, 1], vec![2], vec![3], vec![4], vec![5], vec![6]]);
        assert!(upload_groups(vec![], 100, |_| ()).is_empty());
    }

    #[test]
    fn only_files_of_one_schema_share_a_group() {
        let files: Vec<SpoolFile> = (0..6).map(|i| file(i, 10)).collect();
        // Files 2 and 3 were written after the schema grew.
        let groups = upload_groups(files, 100, |f| f.id == 2 || f.id == 3);
        let ids: Vec<Vec<u64>> = groups.iter().map(|g| g.iter().map(|f| f.id).collect()).collect();
        assert_eq!(ids, vec![vec![0, 1], vec![2, 3], vec![4, 5]]);
    }

    #[test]
    fn groups_hold_a_bounded_number_of_files() {
        let files: Vec<SpoolFile> = (0..MAX_GROUP_FILES as u64 * 2 + 1).map(|i| file(i, 1)).collect();
        let sizes: Vec<usize> = upload_groups(files, u64::MAX, |_| ()).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![MAX_GROUP_FILES, MAX_GROUP_FILES, 1]);
    }

    #[test]
    fn groups_follow_offsets_not_spooling_order() {
        // The same files, spooled in two interleavings of partitions 0 and 1.
        let spooled = |order: &[(u64, i32, i64)]| -> Vec<SpoolFile> {
            order
                .iter()
                .map(|&(id, p, first)| {
                    let mut f = file(id, 40);
                    f.meta.partition = p;
                    f.meta.first_offset = first;
                    f.meta.last_offset = first + 9;
                    f
                })
                .collect()
        };
        let one = spooled(&[(1, 0, 0), (2, 1, 0), (3, 1, 10), (4, 0, 10), (5, 1, 20)]);
        let two = spooled(&[(1, 1, 0), (2, 0, 0), (3, 0, 10), (4, 1, 10), (5, 1, 20)]);
        let names = |files| -> Vec<String> {
            upload_groups(files, 100, |_| ()).iter().map(|g| merged_url("s3://b/t", "gw", "", "t", g)).collect()
        };
        let ranges = |files| -> Vec<Vec<(i32, i64)>> {
            upload_groups(files, 100, |_| ())
                .iter()
                .map(|g| g.iter().map(|f| (f.meta.partition, f.meta.first_offset)).collect())
                .collect()
        };
        assert_eq!(ranges(one.clone()), vec![vec![(0, 0), (0, 10)], vec![(1, 0), (1, 10)], vec![(1, 20)]]);
        assert_eq!(names(one), names(two));
    }

    #[test]
    fn names_are_deterministic_and_distinct() {
        let a = vec![file(1, 1), file(2, 1)];
        let b = vec![file(1, 1), file(3, 1)];
        let u = merged_url("s3://b/wh/t/", "gw", "", "t", &a);
        assert_eq!(u, merged_url("s3://b/wh/t", "gw", "", "t", &a));
        assert_ne!(u, merged_url("s3://b/wh/t", "gw", "", "t", &b));
        assert_ne!(u, merged_url("s3://b/wh/t", "gw", "zone=north/", "t", &a));
        assert!(u.starts_with("s3://b/wh/t/data/gw/t-") && u.ends_with(".parquet"), "{u}");
        assert_eq!(
            object_url("s3://b/wh/t", "gw 1", "", &file(1, 1)),
            "s3://b/wh/t/data/gw_1/events-0-00000000000000000010-00000000000000000019.parquet"
        );
        assert_eq!(
            object_url("s3://b/wh/t", "gw", "zone=north/", &file(1, 1)),
            "s3://b/wh/t/data/gw/zone=north/events-0-00000000000000000010-00000000000000000019.parquet"
        );
    }
}
