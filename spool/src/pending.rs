//! The commit protocol: a pending commit is recorded durably before the caller talks to the
//! catalog, so that after a crash the caller knows which commits to check, and is then either
//! finished (files become Committed) or abandoned (files stay Uploaded), each in one
//! transaction.

use crate::error::{Result, SpoolError, idx};
use crate::index::{self, FILES, PENDING};
use crate::record::StoredPending;
use crate::{FileState, PendingCommit, Spool};

impl Spool {
    /// Durably records a commit before the caller sends it to the catalog, so that after a
    /// crash [`crate::Recovery::pending`] says which commits must be checked. Every file must be
    /// `Uploaded`, belong to `pending.table`, and not be in another pending commit. Repeating
    /// the same pending commit is a no-op.
    pub fn begin_commit(&self, pending: &PendingCommit) -> Result<()> {
        let _w = self.lock();
        let conflict = |detail: String| SpoolError::CommitConflict { commit_id: pending.commit_id.clone(), detail };
        self.index.write("begin commit", |txn| {
            let mut table = txn.open_table(PENDING).map_err(idx("open pending_commits"))?;
            let files = txn.open_table(FILES).map_err(idx("open files"))?;
            let stored = StoredPending { table: pending.table.clone(), ids: pending.ids.clone() };
            for other in index::all_pending(&table)? {
                if other.commit_id == pending.commit_id {
                    if other.table == pending.table && other.ids == pending.ids {
                        return Ok(());
                    }
                    return Err(conflict("already pending with different files or table".into()));
                }
                if let Some(id) = other.ids.iter().find(|id| pending.ids.contains(id)) {
                    return Err(conflict(format!("file {id} is in pending commit {:?}", other.commit_id)));
                }
            }
            for (i, &id) in pending.ids.iter().enumerate() {
                if pending.ids[..i].contains(&id) {
                    return Err(conflict(format!("file {id} is listed twice")));
                }
                let f =
                    index::get_file(&files, id)?.ok_or_else(|| conflict(format!("file {id} is not in the index")))?;
                if !matches!(f.state, FileState::Uploaded { .. }) {
                    return Err(conflict(format!("file {id} is {:?}, not Uploaded", f.state)));
                }
                if f.meta.table != pending.table {
                    return Err(conflict(format!("file {id} belongs to table {:?}", f.meta.table)));
                }
            }
            let v = stored.encode().map_err(|d| conflict(format!("cannot encode: {d}")))?;
            table.insert(pending.commit_id.as_str(), v.as_slice()).map_err(idx("insert pending commit"))?;
            Ok(())
        })
    }

    /// Commits begun and neither finished nor abandoned, ordered by commit id.
    pub fn pending_commits(&self) -> Result<Vec<PendingCommit>> {
        self.index.read("pending commits", |txn| {
            index::all_pending(&txn.open_table(PENDING).map_err(idx("open pending_commits"))?)
        })
    }

    /// The catalog accepted the commit: in one transaction its files become `Committed` and the
    /// pending record is removed.
    pub fn finish_commit(&self, commit_id: &str) -> Result<()> {
        let _w = self.lock();
        self.index.write("finish commit", |txn| {
            let mut pending = txn.open_table(PENDING).map_err(idx("open pending_commits"))?;
            let mut files = txn.open_table(FILES).map_err(idx("open files"))?;
            let p = index::get_pending(&pending, commit_id)?
                .ok_or_else(|| SpoolError::CommitNotFound { commit_id: commit_id.to_string() })?;
            for id in p.ids {
                match index::get_file(&files, id)? {
                    Some(mut f) if matches!(f.state, FileState::Uploaded { .. }) => {
                        f.state = FileState::Committed;
                        index::put_file(&mut files, id, &f)?;
                    }
                    Some(f) if f.state == FileState::Committed => {}
                    // Quarantined after upload: the rows reached the table from the uploaded
                    // copy, but the local file needs an operator's look, so it stays put.
                    other => log::warn!(
                        "spool: commit {commit_id:?} landed, but file {id} is {:?}; left as is",
                        other.map(|f| f.state)
                    ),
                }
            }
            pending.remove(commit_id).map_err(idx("remove pending commit"))?;
            Ok(())
        })
    }

    /// The commit is known not to have landed: forget it; its files stay `Uploaded`.
    pub fn abandon_commit(&self, commit_id: &str) -> Result<()> {
        let _w = self.lock();
        self.index.write("abandon commit", |txn| {
            let mut pending = txn.open_table(PENDING).map_err(idx("open pending_commits"))?;
            match pending.remove(commit_id).map_err(idx("remove pending commit"))? {
                Some(_) => Ok(()),
                None => Err(SpoolError::CommitNotFound { commit_id: commit_id.to_string() }),
            }
        })
    }
}
