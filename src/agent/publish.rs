//! The publish cycle: spool → object store → catalog commit. Each step is recorded in the spool
//! index before the next one starts, so a crash at any point resumes where it stopped:
//! 1. settle pending commits (did they land? look in the table's history),
//! 2. upload written files (deterministic object names: a retried upload overwrites itself),
//! 3. commit uploaded files per table, recording the commit as pending first,
//! 4. delete committed files from the spool.

use std::collections::BTreeMap;

use async_compat::Compat;
use bytes::Bytes;
use frazil_spool::{FileState, PendingCommit, SpoolFile};
use iceberg::table::Table;

use super::{Agent, tables};
use crate::commit::{self, Committer};
use crate::source::TopicPartition;
use crate::{Error, Result};

impl Agent {
    pub(super) async fn publish(&self) -> Result<()> {
        let committer = match self.committer().await {
            Ok(c) => c,
            Err(e) => return Err(e.with_context("connect to the catalog")),
        };
        let result = self.publish_with(&committer).await;
        if result.as_ref().is_err_and(Error::is_transient) {
            // Reconnect next time: the catalog may have moved or restarted with another config.
            self.committer.borrow_mut().take();
        }
        result
    }

    async fn publish_with(&self, committer: &Committer) -> Result<()> {
        for p in self.run_blocking(|s| s.pending_commits()).await? {
            self.settle(committer, &p).await?;
        }

        let files = self.run_blocking(|s| s.files()).await?;
        for f in files.iter().filter(|f| f.state == FileState::Written) {
            self.upload(committer, f).await?;
        }

        let files = self.run_blocking(|s| s.files()).await?;
        let mut by_table: BTreeMap<String, Vec<SpoolFile>> = BTreeMap::new();
        for f in files {
            if matches!(f.state, FileState::Uploaded { .. }) {
                by_table.entry(f.meta.table.clone()).or_default().push(f);
            }
        }
        for (table, files) in by_table {
            self.commit(committer, &table, files).await?;
        }

        let removed = self.run_blocking(|s| s.remove_committed()).await?;
        if removed > 0 {
            log::debug!("spool: removed {removed} committed files");
        }
        Ok(())
    }

    /// Runs a spool call on the blocking pool.
    async fn run_blocking<T: Send + 'static>(&self, f: impl FnOnce(&frazil_spool::Spool) -> frazil_spool::Result<T> + Send + 'static) -> Result<T> {
        let spool = self.spool.clone();
        Ok(blocking::unblock(move || f(&spool)).await?)
    }

    /// A commit recorded as pending by an earlier attempt: finish it if it landed, else drop the
    /// record so its files are committed again.
    async fn settle(&self, committer: &Committer, p: &PendingCommit) -> Result<()> {
        let landed = match committer.load(&p.table).await? {
            Some(t) => {
                let landed = commit::commit_landed(t.metadata(), &p.commit_id);
                self.tables.borrow_mut().insert(p.table.clone(), t);
                landed
            }
            None => false,
        };
        let (id, n) = (p.commit_id.clone(), p.ids.len());
        if landed {
            log::info!("table {}: pending commit {id} had landed; {n} files marked committed", p.table);
            self.run_blocking(move |s| s.finish_commit(&id)).await?;
            self.report.borrow_mut().files_committed += n as u64;
        } else {
            log::info!("table {}: pending commit {id} did not land; its {n} files will be committed again", p.table);
            self.run_blocking(move |s| s.abandon_commit(&id)).await?;
        }
        Ok(())
    }

    /// The table handle, loading it or creating it (with the schema its spool files were written
    /// with) as needed.
    async fn table(&self, committer: &Committer, name: &str) -> Result<Table> {
        if let Some(t) = self.tables.borrow().get(name) {
            return Ok(t.clone());
        }
        let t = match committer.load(name).await? {
            Some(t) => t,
            None => {
                let schema = tables::recorded(&self.spool, name)?
                    .ok_or_else(|| Error::decode(format!("table {name}"), "spool files exist but no schema was recorded for them"))?;
                let t = committer.create(name, &schema).await?;
                if !tables::same_fields(t.metadata().current_schema(), &schema) {
                    return Err(Error::decode(
                        format!("table {name}"),
                        "the catalog numbered the new table's fields differently from the spooled files; they are kept until this is resolved",
                    ));
                }
                t
            }
        };
        self.tables.borrow_mut().insert(name.to_string(), t.clone());
        Ok(t)
    }

    async fn upload(&self, committer: &Committer, f: &SpoolFile) -> Result<()> {
        let table = self.table(committer, &f.meta.table).await?;
        let url = object_url(table.metadata().location(), &self.cfg.agent_id, f);
        let id = f.id;
        let bytes = match self.run_blocking(move |s| s.read_verified(id)).await {
            Ok(b) => b,
            Err(Error::Spool(e)) if matches!(e, frazil_spool::SpoolError::Corrupt { .. }) => {
                log::error!("spool: {e}; the file was quarantined and is skipped");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let n = bytes.len();
        Compat::new(self.stores.put(&url, Bytes::from(bytes))).await?;
        let u = url.clone();
        self.run_blocking(move |s| s.mark_uploaded(id, &u)).await?;
        log::debug!("uploaded {url} ({n} bytes)");
        Ok(())
    }

    /// Commits every uploaded file of one table in one snapshot.
    async fn commit(&self, committer: &Committer, name: &str, files: Vec<SpoolFile>) -> Result<()> {
        let table = self.table(committer, name).await?;
        let mut data_files = Vec::with_capacity(files.len());
        let mut urls = Vec::with_capacity(files.len());
        let mut offsets: BTreeMap<TopicPartition, i64> = commit::committed_offsets(table.metadata(), &self.cfg.agent_id);
        for f in &files {
            let FileState::Uploaded { location } = &f.state else { continue };
            data_files.push(commit::data_file_from_json(&f.meta.extra, location, &table)?);
            urls.push(location.clone());
            let e = offsets.entry((f.meta.topic.clone(), f.meta.partition)).or_insert(f.meta.next_offset);
            *e = (*e).max(f.meta.next_offset);
        }
        let ident = committer.ident(name).to_string();
        let id = commit::commit_id(&ident, &urls);
        let pending = PendingCommit { table: name.to_string(), commit_id: id.clone(), ids: files.iter().map(|f| f.id).collect() };
        self.run_blocking(move |s| s.begin_commit(&pending)).await?;
        let rows: u64 = files.iter().map(|f| f.meta.rows).sum();
        let committed = committer.append(table, data_files, &id, &offsets).await?;
        let i = id.clone();
        self.run_blocking(move |s| s.finish_commit(&i)).await?;
        log::info!("table {ident}: commit {id} added {} files, {rows} rows", files.len());
        self.tables.borrow_mut().insert(name.to_string(), committed);
        let mut r = self.report.borrow_mut();
        r.commits += 1;
        r.files_committed += files.len() as u64;
        Ok(())
    }
}

/// The object a spool file is uploaded to. Deterministic, so a retried upload overwrites itself,
/// and unique per agent, partition and offset range, so no two files ever share a name.
fn object_url(table_location: &str, agent: &str, f: &SpoolFile) -> String {
    let safe = |s: &str| s.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect::<String>();
    format!(
        "{}/data/{}/{}-{}-{:020}-{:020}.parquet",
        table_location.trim_end_matches('/'),
        safe(agent),
        safe(&f.meta.topic),
        f.meta.partition,
        f.meta.first_offset,
        f.meta.last_offset
    )
}
