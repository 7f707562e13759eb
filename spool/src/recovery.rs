//! What `Spool::open` does after taking the lock. Only the index is trusted: a file counts only
//! if a record lists it, and a record whose file is gone is resolved here, once, loudly.
//!
//! The steps are those of DESIGN.md's "What open() does" (4, 5, 5b, 6, then 8), one function each,
//! called in that order: crash safety depends on it. Each step makes its file changes durable
//! (fsync) before the next starts, and step 6 writes its index changes last, in one transaction,
//! after the `.reason` files they point at are on disk.

use std::collections::HashSet;
use std::path::PathBuf;

use crate::error::{Result, idx};
use crate::index::{self, FILES};
use crate::{FileState, Recovery, Spool, SpoolFile};

pub(crate) fn recover(spool: &Spool) -> Result<Recovery> {
    let mut out = Recovery::default();
    empty_tmp(spool)?;
    let files = spool.files()?;
    out.orphans_removed = remove_orphans(spool, &files)?;
    undo_unrecorded_quarantines(spool, &files)?;
    let repairs = resolve_missing_files(spool, &files)?;
    write_repairs(spool, &repairs)?;
    out.missing = repairs.missing;
    out.pending = spool.pending_commits()?;
    for p in &out.pending {
        log::warn!(
            "spool: commit {:?} of table {} ({} files) was begun but not finished: check the catalog",
            p.commit_id,
            p.table,
            p.ids.len()
        );
    }
    Ok(out)
}

/// Half-written files: the caller never called register (or register never renamed them),
/// so nothing refers to them.
fn empty_tmp(spool: &Spool) -> Result<()> {
    let n = spool.disk.empty_dir(&spool.tmp)?;
    if n > 0 {
        log::info!("spool: removed {n} unfinished file(s) from {}", spool.tmp.display());
    }
    Ok(())
}

/// Orphans: renamed into data/ by a register whose transaction never committed. Their
/// offsets were never raised, so their events will be fetched from Kafka again.
fn remove_orphans(spool: &Spool, files: &[SpoolFile]) -> Result<Vec<PathBuf>> {
    // Every non-quarantined record's path is in data/.
    let listed: HashSet<_> =
        files.iter().filter(|f| !matches!(f.state, FileState::Quarantined { .. })).map(|f| f.path.clone()).collect();
    let mut removed = Vec::new();
    for p in spool.disk.list_dir(&spool.data)? {
        if !listed.contains(&p) {
            log::warn!("spool: removing {}: no index record lists it (its events will be fetched again)", p.display());
            spool.disk.remove_entry(&p)?;
            removed.push(p);
        }
    }
    if !removed.is_empty() {
        spool.disk.fsync_dir(&spool.data)?;
    }
    Ok(removed)
}

/// A quarantine whose rename reached `quarantine/` while its unlink from `data/` and its
/// transaction did not (a power cut between its two directory fsyncs, where a filesystem does
/// not make a rename between directories atomic) leaves the file under both names, its record
/// unchanged. The record is the truth: the file stays in `data/`, and the copy and its reason
/// are removed, as if the quarantine had never started.
fn undo_unrecorded_quarantines(spool: &Spool, files: &[SpoolFile]) -> Result<()> {
    // One listing rather than a stat per record: open's time grows with the records.
    let set_aside: HashSet<PathBuf> = spool.disk.list_dir(&spool.quarantine)?.into_iter().collect();
    let mut undone = 0;
    for f in files {
        if matches!(f.state, FileState::Quarantined { .. }) || !set_aside.contains(&spool.quarantine_path(f.id)) {
            continue;
        }
        if spool.disk.file_len(&f.path)?.is_some() {
            log::warn!("spool: file {} was being quarantined when the power went; it stays where it was", f.id);
            spool.disk.remove_if_present(&spool.quarantine_path(f.id))?;
            spool.disk.remove_if_present(&spool.reason_path(f.id))?;
            undone += 1;
        }
    }
    if undone > 0 {
        spool.disk.fsync_dir(&spool.quarantine)?;
    }
    Ok(())
}

/// Step 6's index changes, gathered first so they are written in one transaction.
#[derive(Default)]
struct Repairs {
    /// Records to delete: committed files whose unlink happened before the crash.
    dropped: Vec<u64>,
    /// Records to mark quarantined.
    restated: Vec<(u64, FileState)>,
    /// Records whose file is simply gone, as they were before: `Recovery::missing`.
    missing: Vec<SpoolFile>,
}

/// Records whose file is gone. Writes the `.reason` files of newly quarantined ones (synced)
/// but changes no record: that is [`write_repairs`]'s transaction.
fn resolve_missing_files(spool: &Spool, files: &[SpoolFile]) -> Result<Repairs> {
    let mut r = Repairs::default();
    for f in files {
        if matches!(f.state, FileState::Quarantined { .. }) || spool.disk.file_len(&f.path)?.is_some() {
            continue;
        }
        if f.state == FileState::Committed {
            // remove_committed crashed between unlink and transaction: finish its job.
            log::info!("spool: dropping record of committed file {} (file already deleted)", f.id);
            r.dropped.push(f.id);
        } else if spool.disk.file_len(&spool.quarantine_path(f.id))?.is_some() {
            // quarantine() crashed between rename and transaction: roll forward.
            let reason = match spool.disk.read(&spool.reason_path(f.id)) {
                Ok(Some(b)) => String::from_utf8_lossy(&b).trim_end().to_string(),
                _ => "quarantined (reason file unreadable)".into(),
            };
            log::warn!("spool: file {} was being quarantined ({reason}); finishing that", f.id);
            r.restated.push((f.id, FileState::Quarantined { reason }));
        } else {
            let reason = "file missing".to_string();
            log_missing(f);
            spool.disk.write_synced(&spool.reason_path(f.id), format!("{reason}\n").as_bytes())?;
            r.restated.push((f.id, FileState::Quarantined { reason }));
            r.missing.push(f.clone());
        }
    }
    if !r.missing.is_empty() {
        spool.disk.fsync_dir(&spool.quarantine)?;
    }
    Ok(r)
}

/// Events lost unless Kafka still has them: said once, at error level, with all we know.
fn log_missing(f: &SpoolFile) {
    log::error!(
        "spool: file {} ({} {}[{}] offsets {}..={}, {} rows, state {:?}) is listed in the \
         index but missing from {}: its events are LOST unless re-fetched from Kafka; \
         marking it quarantined",
        f.id,
        f.meta.table,
        f.meta.topic,
        f.meta.partition,
        f.meta.first_offset,
        f.meta.last_offset,
        f.meta.rows,
        f.state,
        f.path.display()
    );
}

/// Step 6's one transaction (none when there is nothing to change).
fn write_repairs(spool: &Spool, r: &Repairs) -> Result<()> {
    if r.dropped.is_empty() && r.restated.is_empty() {
        return Ok(());
    }
    spool.index.write("recover", |txn| {
        let mut t = txn.open_table(FILES).map_err(idx("open files"))?;
        for &id in &r.dropped {
            t.remove(id).map_err(idx(format!("remove file {id}")))?;
        }
        for (id, state) in &r.restated {
            if let Some(mut rec) = index::get_file(&t, *id)? {
                rec.state = state.clone();
                index::put_file(&mut t, *id, &rec)?;
            }
        }
        Ok(())
    })
}
