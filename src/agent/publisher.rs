//! The publish loop: spool → upload → commit, per table when its commit interval has passed, at
//! once when the fetcher finds the spool full, and a last time when the fetcher ends. Each cycle
//! records every step in the spool index before the next one starts, so a crash at any point
//! resumes where it stopped:
//! 1. settle pending commits (did they land? look in the table's history),
//! 2. upload written files (`upload`: deterministic object names, a retry overwrites itself),
//! 3. commit uploaded files per table, recording the commit as pending first,
//! 4. delete committed files from the spool.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use frazil_spool::{FileState, PendingCommit, SpoolFile};
use smol::channel::{Receiver, Sender};

#[path = "fenced.rs"]
mod fenced;

use super::Mode;
use super::shared::Shared;
use crate::commit::{self, Committer};
use crate::maintain;
use crate::spill::on_pool;
use crate::spill::retain::{Kept, to_remove};
use crate::topic::TopicPartition;
use crate::upload::Uploader;
use crate::{Error, Result};

/// The publish loop's own state.
pub(super) struct Publisher<'a> {
    shared: &'a Shared,
    uploader: Uploader,
    /// When each table was last published (uploaded and committed); a table whose own commit
    /// interval has not passed since is left for a later cycle. Absent: since the agent opened.
    published_at: HashMap<String, Instant>,
    opened_at: Instant,
    /// `run` maintains the tables it commits to (`flush` leaves that to `frazil maintain`), each
    /// once per its maintenance interval, counted like `published_at`.
    maintains: bool,
    maintained_at: HashMap<String, Instant>,
}

impl<'a> Publisher<'a> {
    pub fn new(shared: &'a Shared) -> Self {
        let uploader = Uploader::new(shared.spool.clone(), shared.stores.clone(), &shared.cfg.agent_id);
        Publisher {
            shared,
            uploader,
            published_at: HashMap::new(),
            opened_at: Instant::now(),
            maintains: false,
            maintained_at: HashMap::new(),
        }
    }

    /// Publishes as often as the shortest commit interval asks (every table when `kick`ed) until
    /// `done` closes, then a last time. Each finished cycle is announced on `published`.
    pub async fn run(
        &mut self,
        mode: Mode,
        kick: &Receiver<()>,
        done: &Receiver<()>,
        published: &Sender<()>,
    ) -> Result<()> {
        let every = self.shared.cfg.shortest_commit_interval();
        self.maintains = mode == Mode::Run;
        loop {
            let tick = async {
                smol::Timer::after(every).await;
                Some(false)
            };
            let kicked = async { kick.recv().await.ok().map(|()| true) };
            let ended = async {
                let _ = done.recv().await;
                None
            };
            let Some(all) = smol::future::or(smol::future::or(tick, kicked), ended).await else { break };
            let result = self.publish(all).await;
            crate::memory::release();
            let _ = published.try_send(());
            *self.shared.gauges.last_error.borrow_mut() = result.as_ref().err().map(ToString::to_string);
            if let Err(e) = result {
                let g = &self.shared.gauges;
                g.publish_failures.set(g.publish_failures.get() + 1);
                log::warn!("publish: {e}; the files stay spooled and are retried in {every:?}");
            }
        }
        // A shutdown stays quick: the last publish commits, maintenance waits for the next start.
        self.maintains = false;
        self.final_publish(mode).await
    }

    /// The last publish before returning: in flush mode it insists (with backoff) for a while,
    /// since committing is the point; in run mode one attempt, so a shutdown stays quick.
    async fn final_publish(&mut self, mode: Mode) -> Result<()> {
        let attempts = if mode == Mode::Flush { 5 } else { 1 };
        let mut backoff = crate::backoff::Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
        for attempt in 1..=attempts {
            match self.publish(true).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() || matches!(e, Error::Spool(_)) => {
                    log::warn!("publish (attempt {attempt} of {attempts}): {e}");
                }
                Err(e) => return Err(e),
            }
            if attempt < attempts {
                smol::Timer::after(backoff.next_delay()).await;
            }
        }
        Ok(())
    }

    /// Uploads and commits the spooled files of every table that is due (`all`: every table).
    async fn publish(&mut self, all: bool) -> Result<()> {
        let committer = match self.shared.link.committer().await {
            Ok(c) => c,
            Err(e) => return Err(e.with_context("connect to the catalog")),
        };
        let result = self.cycle(&committer, all).await;
        if result.as_ref().is_err_and(Error::is_transient) {
            // Reconnect next time: the catalog may have moved or restarted with another config.
            self.shared.link.reset();
        }
        result
    }

    async fn cycle(&mut self, committer: &Committer, all: bool) -> Result<()> {
        // A commit whose outcome is unknown is settled first, whatever its table's interval.
        for p in on_pool(&self.shared.spool, |s| s.pending_commits()).await? {
            self.settle(committer, &p).await?;
        }
        let files = self.drop_stale().await?;
        let due = self.due_tables(files.iter().map(|f| f.meta.table.as_str()), all);
        // Uploaded now, so surely in the store; files uploaded by an earlier cycle are checked.
        let mut fresh: HashSet<u64> = HashSet::new();
        let by_partition = self.shared.group().is_some();
        for (table, files) in by_table(files, &due, |s| matches!(s, FileState::Written)) {
            let t = self.shared.layouts.ready(committer, &table).await?;
            for group in self.uploader.groups(files, self.shared.cfg.upload_target_bytes(&table), by_partition) {
                fresh.extend(group.iter().map(|f| f.id));
                self.uploader.upload(&t, &table, group).await?;
            }
        }
        let files = on_pool(&self.shared.spool, |s| s.files()).await?;
        let uploaded = by_table(files, &due, |s| matches!(s, FileState::Uploaded { .. }));
        // Dead-letter tables first, and the first failure ends the cycle: a table's commit never
        // lands before the dead letters of the same offsets, so the table's offsets (where reading
        // resumes after a lost spool) never pass dead letters that are not committed.
        let dead: BTreeSet<String> = uploaded.keys().map(|t| self.shared.dead_letter_table(t)).collect();
        let mut order: Vec<(String, Vec<SpoolFile>)> = uploaded.into_iter().collect();
        order.sort_by_key(|(t, _)| !dead.contains(t));
        let now = Instant::now();
        let committed: Vec<String> = order.iter().map(|(t, _)| t.clone()).collect();
        for (table, files) in order {
            let stale: Vec<SpoolFile> = files.iter().filter(|f| !fresh.contains(&f.id)).cloned().collect();
            if !stale.is_empty() {
                let t = self.shared.layouts.ready(committer, &table).await?;
                self.uploader.restore_missing(&t, &table, &stale).await?;
            }
            self.commit(committer, &table, files).await?;
            self.published_at.insert(table, now);
        }
        if self.maintains {
            self.maintain(committer, &committed).await;
        }
        let (keep_for, max_bytes) = (self.shared.cfg.spool.keep_committed, self.shared.cfg.spool.keep_committed_bytes);
        let removed = on_pool(&self.shared.spool, move |s| remove_committed(s, keep_for, max_bytes)).await?;
        if removed > 0 {
            log::debug!("spool: removed {removed} committed files");
        }
        Ok(())
    }

    /// The tables among `tables` to publish now: those whose commit interval has passed since
    /// they were last published (all of them when `all`), with the dead-letter table of each,
    /// which must never be committed after its table.
    fn due_tables<'t>(&self, tables: impl Iterator<Item = &'t str>, all: bool) -> BTreeSet<String> {
        let mut due = BTreeSet::new();
        for t in tables {
            let since = self.published_at.get(t).copied().unwrap_or(self.opened_at);
            if all || since.elapsed() >= self.shared.cfg.commit_interval(t) {
                due.insert(self.shared.dead_letter_table(t));
                due.insert(t.to_string());
            }
        }
        due
    }

    /// Maintains each of `tables` whose maintenance interval has passed, when this agent is its
    /// maintainer (`maintain::is_maintainer`). Bounded: one merge and one expiry per table. A
    /// failure is logged and tried again an interval later; the data path never waits on it.
    async fn maintain(&mut self, committer: &Committer, tables: &[String]) {
        let cfg = &self.shared.cfg;
        for name in tables {
            let policy = cfg.maintenance(name);
            let Some(every) = policy.interval else { continue };
            let since = self.maintained_at.get(name).copied().unwrap_or(self.opened_at);
            if since.elapsed() < every {
                continue;
            }
            self.maintained_at.insert(name.clone(), Instant::now());
            let Some(table) = self.shared.layouts.table(name) else { continue };
            // The agents that committed within ten of this table's intervals feed it now.
            let now_ms = chrono::Utc::now().timestamp_millis();
            if !maintain::is_maintainer(table.metadata(), &cfg.agent_id, now_ms, policy.retired_after) {
                continue;
            }
            let scratch = match maintain::scratch_dir(&cfg.spool.dir) {
                Ok(dir) => dir,
                Err(e) => {
                    log::warn!(table = name.as_str(); "maintenance of {name}: {e}; tried again in {every:?}");
                    continue;
                }
            };
            let tools = maintain::Tools { committer, stores: &self.shared.stores, scratch: &scratch };
            match maintain::maintain(&tools, name, &policy).await {
                Ok((report, table)) => {
                    if let Some(t) = table {
                        self.shared.layouts.set_table(name, t);
                    }
                    if report.changed() {
                        log::info!(table = name.as_str(); "maintenance: {report}");
                    }
                }
                Err(e) => log::warn!(table = name.as_str(); "maintenance of {name}: {e}; tried again in {every:?}"),
            }
        }
    }

    /// A commit recorded as pending by an earlier attempt: finish it if it landed, else drop the
    /// record so its files are committed again.
    async fn settle(&mut self, committer: &Committer, p: &PendingCommit) -> Result<()> {
        let landed = match committer.load(&p.table).await? {
            Some(t) => {
                let landed = commit::commit_landed(t.metadata(), &self.shared.cfg.agent_id, &p.commit_id);
                self.shared.layouts.set_table(&p.table, t);
                landed
            }
            None => false,
        };
        let (id, n) = (p.commit_id.clone(), p.ids.len());
        if !landed {
            log::info!(table = p.table.as_str(), commit_id = id.as_str(); "table {}: pending commit {id} did not land; its {n} files will be committed again", p.table);
            return on_pool(&self.shared.spool, move |s| s.abandon_commit(&id)).await;
        }
        log::info!(table = p.table.as_str(), commit_id = id.as_str(); "table {}: pending commit {id} had landed; {n} files marked committed", p.table);
        // The merged uploads among them no longer need their DataFile kept.
        let ids = p.ids.clone();
        let locations: BTreeSet<String> = on_pool(&self.shared.spool, |s| s.files())
            .await?
            .into_iter()
            .filter(|f| ids.contains(&f.id))
            .filter_map(|f| match f.state {
                FileState::Uploaded { location } => Some(location),
                _ => None,
            })
            .collect();
        on_pool(&self.shared.spool, move |s| s.finish_commit(&id)).await?;
        self.uploader.forget_merged(locations).await?;
        self.shared.report.borrow_mut().files_committed += n as u64;
        Ok(())
    }

    /// Commits every uploaded file of one table in one snapshot, recorded as pending first.
    async fn commit(&mut self, committer: &Committer, name: &str, files: Vec<SpoolFile>) -> Result<()> {
        if let Some(group) = self.shared.group() {
            return self.commit_fenced(committer, name, files, group).await;
        }
        let table = self.shared.layouts.ready(committer, name).await?;
        self.commit_files(committer, name, table, files, None).await
    }

    /// Appends `files` to `table` as one commit, recorded as pending first; fenced with `group`.
    async fn commit_files(
        &mut self,
        committer: &Committer,
        name: &str,
        table: iceberg::table::Table,
        files: Vec<SpoolFile>,
        group: Option<&commit::GroupFence<'_>>,
    ) -> Result<()> {
        let agent = &self.shared.cfg.agent_id;
        let mut offsets: BTreeMap<TopicPartition, i64> = commit::committed_offsets(table.metadata(), agent);
        for f in &files {
            let e = offsets.entry((f.meta.topic.clone(), f.meta.partition)).or_insert(f.meta.next_offset);
            *e = (*e).max(f.meta.next_offset);
        }
        let objects = self.uploader.objects(&table, &files).await?;
        let ident = committer.ident(name).to_string();
        let id = commit::commit_id(&ident, &objects.urls);
        let ids = files.iter().map(|f| f.id).collect();
        let pending = PendingCommit { table: name.to_string(), commit_id: id.clone(), ids };
        on_pool(&self.shared.spool, move |s| s.begin_commit(&pending)).await?;
        let rows: u64 = files.iter().map(|f| f.meta.rows).sum();
        crate::fault::point("before-commit");
        let started = Instant::now();
        let conflicts = committer.conflicts();
        let appended = committer.append(table, objects.data_files, &id, &offsets, group).await;
        let g = &self.shared.gauges;
        g.commit_conflicts.set(g.commit_conflicts.get() + (committer.conflicts() - conflicts));
        let committed = match appended {
            Err(e @ Error::Fenced { .. }) => {
                // Refused before anything was sent: the files are stale, never to be committed.
                let i = id.clone();
                on_pool(&self.shared.spool, move |s| s.abandon_commit(&i)).await?;
                return Err(e);
            }
            other => other?,
        };
        crate::fault::point("after-commit");
        self.shared.gauges.commit_took(started.elapsed());
        let i = id.clone();
        on_pool(&self.shared.spool, move |s| s.finish_commit(&i)).await?;
        self.uploader.forget_merged(objects.urls.iter().cloned()).await?;
        let n = objects.urls.len();
        log::info!(table = name, commit_id = id.as_str(); "table {ident}: commit {id} added {n} data files ({} spool files, {rows} rows)", files.len());
        self.shared.layouts.set_table(name, committed);
        let mut r = self.shared.report.borrow_mut();
        r.commits += 1;
        r.files_committed += files.len() as u64;
        Ok(())
    }
}

/// The files of the `due` tables in a state that `wanted` accepts, by table.
fn by_table(
    files: Vec<SpoolFile>,
    due: &BTreeSet<String>,
    wanted: impl Fn(&FileState) -> bool,
) -> BTreeMap<String, Vec<SpoolFile>> {
    let mut out: BTreeMap<String, Vec<SpoolFile>> = BTreeMap::new();
    for f in files {
        if wanted(&f.state) && due.contains(&f.meta.table) {
            out.entry(f.meta.table.clone()).or_default().push(f);
        }
    }
    out
}

/// Removes committed files, but those `spool.keep_committed` keeps for offline queries (by the
/// age of their file, within `spool.keep_committed_size`).
fn remove_committed(spool: &frazil_spool::Spool, keep_for: Duration, max_bytes: u64) -> frazil_spool::Result<usize> {
    if keep_for.is_zero() {
        return spool.remove_committed();
    }
    let now = std::time::SystemTime::now();
    let kept: Vec<Kept> = spool
        .files()?
        .iter()
        .filter(|f| f.state == FileState::Committed)
        .map(|f| {
            let modified = std::fs::metadata(&f.path).and_then(|m| m.modified());
            // A file whose age cannot be read counts as old: it is removed, never kept forever.
            let age = modified.ok().and_then(|m| now.duration_since(m).ok()).unwrap_or(Duration::MAX);
            Kept { id: f.id, bytes: f.bytes, age }
        })
        .collect();
    let gone = to_remove(&kept, keep_for, max_bytes);
    spool.remove_committed_where(|f| gone.contains(&f.id))
}
