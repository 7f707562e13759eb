//! Crate-internal helpers of `Spool`: paths, record lookup and state updates, and the
//! quarantine move, which both `quarantine` and `read_verified` use.

use std::io::ErrorKind;
use std::path::PathBuf;
use std::sync::MutexGuard;

use crate::error::{Result, SpoolError, idx, io};
use crate::index::{self, FILES};
use crate::record::StoredFile;
use crate::{FileState, Spool, SpoolFile};

impl Spool {
    pub(crate) fn lock(&self) -> MutexGuard<'_, ()> {
        // The mutex guards no data (the state is in redb), so a panic elsewhere while holding it
        // leaves nothing inconsistent: ignore poisoning.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn data_path(&self, id: u64) -> PathBuf {
        self.data.join(format!("{id:020}.parquet"))
    }

    pub(crate) fn quarantine_path(&self, id: u64) -> PathBuf {
        self.quarantine.join(format!("{id:020}.parquet"))
    }

    pub(crate) fn reason_path(&self, id: u64) -> PathBuf {
        self.quarantine.join(format!("{id:020}.reason"))
    }

    pub(crate) fn to_file(&self, id: u64, f: StoredFile) -> SpoolFile {
        let path = match f.state {
            FileState::Quarantined { .. } => self.quarantine_path(id),
            _ => self.data_path(id),
        };
        SpoolFile { id, meta: f.meta, bytes: f.bytes, crc32c: f.crc32c, state: f.state, path }
    }

    pub(crate) fn get(&self, id: u64) -> Result<Option<StoredFile>> {
        self.index.read("get file", |txn| index::get_file(&txn.open_table(FILES).map_err(idx("open files"))?, id))
    }

    /// One transaction setting the state of `ids` to `f(old)` where it returns `Some`.
    pub(crate) fn set_states(
        &self,
        context: &str,
        ids: &[u64],
        f: impl Fn(&StoredFile) -> Option<FileState>,
    ) -> Result<()> {
        self.index.write(context, |txn| {
            let mut files = txn.open_table(FILES).map_err(idx("open files"))?;
            for &id in ids {
                let mut rec = index::get_file(&files, id)?.ok_or(SpoolError::NotFound { id })?;
                if let Some(state) = f(&rec) {
                    rec.state = state;
                    index::put_file(&mut files, id, &rec)?;
                }
            }
            Ok(())
        })
    }

    /// Caller holds `self.writer`. Order: reason file (fsynced), rename, fsync both
    /// directories, then the transaction. A crash before the transaction leaves the file in
    /// quarantine/ with its reason while the record still says Written/Uploaded; open() rolls
    /// that forward.
    pub(crate) fn quarantine_locked(&self, id: u64, reason: &str) -> Result<()> {
        self.index.writable()?;
        let rec = self.get(id)?.ok_or(SpoolError::NotFound { id })?;
        match rec.state {
            FileState::Quarantined { .. } => return Ok(()),
            state @ FileState::Committed => {
                return Err(SpoolError::WrongState { id, state, operation: "quarantine" });
            }
            _ => {}
        }
        self.disk.write_synced(&self.reason_path(id), format!("{reason}\n").as_bytes())?;
        let (from, to) = (self.data_path(id), self.quarantine_path(id));
        let moved = match self.disk.raw_rename(&from, &to) {
            Ok(()) => true,
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => return Err(io(format!("rename {} to {}", from.display(), to.display()))(e)),
        };
        self.disk.fsync_dir(&self.quarantine)?;
        if moved {
            self.disk.fsync_dir(&self.data)?;
        }
        let state = FileState::Quarantined { reason: reason.to_string() };
        self.set_states("quarantine", &[id], |_| Some(state.clone()))?;
        // Out of data/ (moved, or already gone): no longer counted against the quota.
        self.sub_data_bytes(rec.bytes);
        log::warn!("spool: file {id:020} quarantined in {}: {reason}", self.quarantine.display());
        Ok(())
    }
}
