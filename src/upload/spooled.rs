//! Uploading spool files. A group of a table's written files becomes one object: one file as it
//! is, several merged (row groups copied, nothing decoded). Every step is recorded in the spool
//! index before the next starts, so a crash at any instant resumes where it stopped:
//! 1. a merged object's DataFile is recorded (`upload/<url>` in the index's metadata) before the
//!    object exists, so whatever points at the object can always be committed;
//! 2. the object is written (a retry overwrites it: its name is deterministic);
//! 3. the group's files are marked uploaded together, in one transaction;
//! 4. after the commit, the merged DataFile is forgotten.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_compat::Compat;
use bytes::Bytes;
use frazil_spool::{FileState, Spool, SpoolError, SpoolFile};
use iceberg::spec::DataFile;
use iceberg::table::Table;

use super::names::{merged_key, merged_url, object_url, partition_dir};
use super::{Stores, groups, merge};
use crate::spill::{datafile, on_pool};
use crate::{Error, Result};

/// The upload stage of one agent: where objects go and under which agent's name.
pub struct Uploader {
    spool: Arc<Spool>,
    stores: Arc<Stores>,
    agent: String,
}

/// The objects of a table's uploaded files, ready to commit: one DataFile per object.
pub struct Objects {
    pub data_files: Vec<DataFile>,
    pub urls: Vec<String>,
}

impl Uploader {
    pub fn new(spool: Arc<Spool>, stores: Arc<Stores>, agent: &str) -> Self {
        Uploader { spool, stores, agent: agent.to_string() }
    }

    /// A table's written spool files packed into upload groups of about `target` bytes. With
    /// `by_partition` (group mode) a group holds one Kafka partition's files only: a fence may
    /// refuse one partition's rows while the others commit.
    pub fn groups(&self, files: Vec<SpoolFile>, target: u64, by_partition: bool) -> Vec<Vec<SpoolFile>> {
        if by_partition {
            let key = |f: &SpoolFile| (groups::columns_of(f), f.meta.topic.clone(), f.meta.partition);
            return groups::upload_groups(files, target, key);
        }
        groups::upload_groups(files, target, groups::columns_of)
    }

    /// Uploads one group of spool files of `table` (named `name`). A damaged file is
    /// quarantined by the spool and left out; the rest go on.
    pub async fn upload(&self, table: &Table, name: &str, group: Vec<SpoolFile>) -> Result<()> {
        let (parts, single) = self.read_parts(group).await?;
        let location = table.metadata().location();
        let dir = parts.first().map(|f| partition_dir(table, f)).unwrap_or_default();
        let url = match (parts.as_slice(), &single) {
            ([], _) => return Ok(()),
            ([f], Some(_)) => object_url(location, &self.agent, &dir, f),
            _ => merged_url(location, &self.agent, &dir, name, &parts),
        };
        self.send(table, &parts, single, &url).await
    }

    /// Writes the object `url` of `parts` (the bytes of a lone part are `single`), then marks
    /// the parts uploaded there.
    async fn send(&self, table: &Table, parts: &[SpoolFile], single: Option<Vec<u8>>, url: &str) -> Result<()> {
        match (parts, single) {
            ([_], Some(bytes)) => Compat::new(self.stores.put(url, Bytes::from(bytes))).await?,
            _ => self.merged(table, parts, url).await?,
        }
        crate::fault::point("after-upload");
        let ids: Vec<u64> = parts.iter().map(|f| f.id).collect();
        let u = url.to_string();
        on_pool(&self.spool, move |s| s.mark_uploaded_many(&ids, &u)).await
    }

    /// Checks every part of a group; returns the sound ones, and the bytes of the last one read
    /// (what a group of one uploads).
    async fn read_parts(&self, group: Vec<SpoolFile>) -> Result<(Vec<SpoolFile>, Option<Vec<u8>>)> {
        let mut parts = Vec::with_capacity(group.len());
        let mut last = None;
        for f in group {
            let id = f.id;
            match on_pool(&self.spool, move |s| s.read_verified(id)).await {
                Ok(bytes) => {
                    last = Some(bytes);
                    parts.push(f);
                }
                Err(Error::Spool(e @ SpoolError::Corrupt { .. })) => {
                    log::error!("spool: {e}; the file was quarantined and is skipped");
                }
                Err(e) => return Err(e),
            }
        }
        Ok((parts, last))
    }

    /// Merges `parts` into a temporary file, records the merged DataFile, then uploads it.
    async fn merged(&self, table: &Table, parts: &[SpoolFile], url: &str) -> Result<()> {
        let inputs: Vec<PathBuf> = parts.iter().map(|f| f.path.clone()).collect();
        let tmp = self.spool.temp_path();
        let t = tmp.clone();
        let merged = blocking::unblock(move || -> Result<(u64, Vec<i64>)> {
            let size = merge::merge_files(&inputs, &t)?;
            Ok((size, merge::split_offsets(&t)?))
        })
        .await;
        let (size, splits) = merged.inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        let datafiles =
            parts.iter().map(|f| datafile::from_json(&f.meta.extra, url, table)).collect::<Result<Vec<_>>>()?;
        let m = table.metadata();
        let merged = merge::merge_data_files(&datafiles, m.default_partition_spec_id(), url, size, splits)?;
        let json = datafile::to_json(merged, m.default_partition_type())?;
        let key = merged_key(url);
        on_pool(&self.spool, move |s| s.put_meta(&key, &json)).await?;
        let sent = Compat::new(self.stores.upload_file(&tmp, url)).await;
        let _ = std::fs::remove_file(&tmp);
        sent?;
        log::debug!("merged {} spool files of {} into {url} ({size} bytes)", parts.len(), table.identifier());
        Ok(())
    }

    /// The DataFiles of a table's uploaded files, one per object (a merged object's was recorded
    /// at its upload; a lone file's is its own).
    pub async fn objects(&self, table: &Table, files: &[SpoolFile]) -> Result<Objects> {
        let mut by_location: BTreeMap<&str, Vec<&SpoolFile>> = BTreeMap::new();
        for f in files {
            if let FileState::Uploaded { location } = &f.state {
                by_location.entry(location.as_str()).or_default().push(f);
            }
        }
        let mut out = Objects { data_files: Vec::with_capacity(by_location.len()), urls: Vec::new() };
        for (location, members) in by_location {
            let key = merged_key(location);
            let merged = on_pool(&self.spool, move |s| s.get_meta(&key)).await?;
            let json = match (&merged, members.as_slice()) {
                (Some(json), _) => json.as_slice(),
                (None, [one]) => one.meta.extra.as_slice(),
                (None, _) => {
                    return Err(Error::merge(
                        format!("upload {location}"),
                        "several spool files share it but its merged data file is not recorded",
                    ));
                }
            };
            out.data_files.push(datafile::from_json(json, location, table)?);
            out.urls.push(location.to_string());
        }
        Ok(out)
    }

    /// Uploads again, from the spool files they were made of, the objects of `files` (uploaded
    /// in an earlier cycle, not committed yet) that are gone from the store: an orphan sweep
    /// deletes an object no commit named within its grace period, and this agent may have been
    /// cut off from the catalog for longer. Returns how many objects were restored.
    pub async fn restore_missing(&self, table: &Table, name: &str, files: &[SpoolFile]) -> Result<usize> {
        let mut by_location: BTreeMap<&str, Vec<SpoolFile>> = BTreeMap::new();
        for f in files {
            if let FileState::Uploaded { location } = &f.state {
                by_location.entry(location.as_str()).or_default().push(f.clone());
            }
        }
        let mut restored = 0;
        for (location, group) in by_location {
            if Compat::new(self.stores.exists(location)).await? {
                continue;
            }
            log::warn!(table = name; "{location} is gone from the store before its commit; uploading it again from the spool");
            let (parts, single) = self.read_parts(group).await?;
            if !parts.is_empty() {
                // Under the name it had: a pending commit's id was made from it.
                self.send(table, &parts, single, location).await?;
                restored += 1;
            }
        }
        Ok(restored)
    }

    /// Drops the kept DataFiles of merged uploads once they are committed (a no-op for others).
    pub async fn forget_merged(&self, urls: impl IntoIterator<Item = String>) -> Result<()> {
        for url in urls {
            let key = merged_key(&url);
            on_pool(&self.spool, move |s| s.delete_meta(&key)).await?;
        }
        Ok(())
    }
}
