//! Discarding files that must never be committed: rows another writer committed first (a
//! consumer group's fence refused them). Their records go first, in one transaction, then their
//! files: a crash in between leaves unlisted files, which the next open removes as orphans.

use crate::error::{Result, SpoolError, idx};
use crate::index::{self, FILES, PENDING};
use crate::{FileState, Spool};

impl Spool {
    /// Forgets the `Written` or `Uploaded` files `ids` and deletes them. Ids no longer listed
    /// are skipped; a file that is committed, quarantined or in a pending commit is refused
    /// (settle the commit first). Returns how many were discarded. The partition's stored next
    /// offset is left as it is: the caller decides where reading resumes.
    pub fn discard(&self, ids: &[u64]) -> Result<usize> {
        self.index.writable()?;
        let _w = self.lock();
        let gone = self.index.write("discard", |txn| {
            let pending = index::all_pending(&txn.open_table(PENDING).map_err(idx("open pending_commits"))?)?;
            let mut files = txn.open_table(FILES).map_err(idx("open files"))?;
            let mut gone = Vec::with_capacity(ids.len());
            for &id in ids {
                let Some(f) = index::get_file(&files, id)? else { continue };
                let in_pending = pending.iter().any(|p| p.ids.contains(&id));
                if in_pending || !matches!(f.state, FileState::Written | FileState::Uploaded { .. }) {
                    return Err(SpoolError::WrongState { id, state: f.state, operation: "discard" });
                }
                files.remove(id).map_err(idx(format!("discard file {id}")))?;
                gone.push((id, f.bytes));
            }
            Ok(gone)
        })?;
        for (id, _) in &gone {
            self.disk.remove_if_present(&self.data_path(*id))?;
        }
        if !gone.is_empty() {
            self.disk.fsync_dir(&self.data)?;
        }
        self.sub_data_bytes(gone.iter().map(|(_, b)| b).sum());
        Ok(gone.len())
    }
}
