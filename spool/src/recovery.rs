//! What `Spool::open` does after taking the lock. Only the index is trusted: a file counts only
//! if a record lists it, and a record whose file is gone is resolved here, once, loudly.

use std::collections::HashSet;
use std::fs;

use crate::error::{Result, idx};
use crate::index::{self, FILES};
use crate::{FileState, Recovery, Spool, fsutil};

pub(crate) fn recover(spool: &Spool) -> Result<Recovery> {
    let mut out = Recovery::default();

    // Half-written files: the caller never called register (or register never renamed them),
    // so nothing refers to them.
    let n = fsutil::empty_dir(&spool.tmp)?;
    if n > 0 {
        log::info!("spool: removed {n} unfinished file(s) from {}", spool.tmp.display());
    }

    let files = spool.files()?;
    // Every non-quarantined record's path is in data/.
    let listed: HashSet<_> =
        files.iter().filter(|f| !matches!(f.state, FileState::Quarantined { .. })).map(|f| f.path.clone()).collect();

    // Orphans: renamed into data/ by a register whose transaction never committed. Their
    // offsets were never raised, so their events will be fetched from Kafka again.
    for p in fsutil::list_dir(&spool.data)? {
        if !listed.contains(&p) {
            log::warn!("spool: removing {}: no index record lists it (its events will be fetched again)", p.display());
            fsutil::remove_entry(&p)?;
            out.orphans_removed.push(p);
        }
    }
    if !out.orphans_removed.is_empty() {
        fsutil::fsync_dir(&spool.data)?;
    }

    // Records whose file is gone.
    let mut dropped = Vec::new();
    let mut restated = Vec::new();
    for f in &files {
        if matches!(f.state, FileState::Quarantined { .. }) || fsutil::file_len(&f.path)?.is_some() {
            continue;
        }
        if f.state == FileState::Committed {
            // remove_committed crashed between unlink and transaction: finish its job.
            log::info!("spool: dropping record of committed file {} (file already deleted)", f.id);
            dropped.push(f.id);
        } else if fsutil::file_len(&spool.quarantine_path(f.id))?.is_some() {
            // quarantine() crashed between rename and transaction: roll forward.
            let reason = fs::read_to_string(spool.reason_path(f.id))
                .map(|s| s.trim_end().to_string())
                .unwrap_or_else(|_| "quarantined (reason file unreadable)".into());
            log::warn!("spool: file {} was being quarantined ({reason}); finishing that", f.id);
            restated.push((f.id, FileState::Quarantined { reason }));
        } else {
            let reason = "file missing".to_string();
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
            fsutil::write_synced(&spool.reason_path(f.id), format!("{reason}\n").as_bytes())?;
            restated.push((f.id, FileState::Quarantined { reason }));
            out.missing.push(f.clone());
        }
    }
    if !out.missing.is_empty() {
        fsutil::fsync_dir(&spool.quarantine)?;
    }
    if !dropped.is_empty() || !restated.is_empty() {
        spool.index.write("recover", |txn| {
            let mut t = txn.open_table(FILES).map_err(idx("open files"))?;
            for &id in &dropped {
                t.remove(id).map_err(idx(format!("remove file {id}")))?;
            }
            for (id, state) in &restated {
                if let Some(mut rec) = index::get_file(&t, *id)? {
                    rec.state = state.clone();
                    index::put_file(&mut t, *id, &rec)?;
                }
            }
            Ok(())
        })?;
    }

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
