//! What takes room in the spool and what frees it: the running byte count against the quota
//! and the disk floor, and the removal of committed files (all of them, a chosen few, or the
//! oldest kept ones when room is needed).

use std::sync::atomic::Ordering;

use crate::error::idx;
use crate::index::FILES;
use crate::{FileState, Result, Spool, SpoolFile, Usage};

impl Spool {
    /// Deletes the files of `Committed` records, then (one transaction) the records. Returns
    /// how many records were removed.
    pub fn remove_committed(&self) -> Result<usize> {
        self.remove_committed_where(|_| true)
    }

    /// [`remove_committed`](Self::remove_committed) for the committed files `pick` chooses (the
    /// others are kept, e.g. for queries while offline).
    pub fn remove_committed_where(&self, pick: impl Fn(&SpoolFile) -> bool) -> Result<usize> {
        self.index.writable()?;
        let _w = self.lock();
        let chosen: Vec<SpoolFile> =
            self.files()?.into_iter().filter(|f| f.state == FileState::Committed && pick(f)).collect();
        self.remove_records(&chosen)
    }

    /// Deletes committed files, oldest first, until [`has_room`](Self::has_room) for `incoming`
    /// bytes or none is left: kept committed files never hold up fetching. Returns how many.
    pub fn evict_committed_for_room(&self, incoming: u64) -> Result<usize> {
        self.index.writable()?;
        let _w = self.lock();
        let committed: Vec<SpoolFile> = self.files()?.into_iter().filter(|f| f.state == FileState::Committed).collect();
        let mut removed = 0;
        for f in committed {
            if self.has_room(incoming)? {
                break;
            }
            removed += self.remove_records(std::slice::from_ref(&f))?;
        }
        Ok(removed)
    }

    /// Unlinks the files of `chosen` (committed records), then removes the records in one
    /// transaction. The caller holds the writer lock.
    fn remove_records(&self, chosen: &[SpoolFile]) -> Result<usize> {
        if chosen.is_empty() {
            return Ok(0);
        }
        // Unlinking first is safe: the transaction that made them Committed already
        // unreferenced the data. A crash before the transaction below leaves records whose
        // file is gone, which open() drops silently.
        for f in chosen {
            self.disk.remove_if_present(&self.data_path(f.id))?;
        }
        self.disk.fsync_dir(&self.data)?;
        let removed = self.index.write("remove committed", |txn| {
            let mut files = txn.open_table(FILES).map_err(idx("open files"))?;
            for f in chosen {
                files.remove(f.id).map_err(idx(format!("remove file {}", f.id)))?;
            }
            Ok(chosen.len())
        })?;
        self.sub_data_bytes(chosen.iter().map(|f| f.bytes).sum());
        Ok(removed)
    }

    /// How full the spool is: bytes in `data/` (a running total, no scan), the quota, the free
    /// space of the spool's filesystem (one `statvfs`) and the floor.
    pub fn usage(&self) -> Result<Usage> {
        Ok(Usage {
            bytes: self.data_bytes.load(Ordering::Relaxed),
            max_bytes: self.max_bytes,
            free_disk: self.disk.free_bytes(&self.data)?,
            min_free_bytes: self.min_free_bytes,
        })
    }

    /// False when spooling `incoming` more bytes would exceed [`SpoolOptions::max_bytes`] or
    /// leave less than [`SpoolOptions::min_free_bytes`] free on the spool's filesystem. This is
    /// the backpressure signal: the spool never drops or refuses data itself, so the caller
    /// checks this before fetching and pauses (while uploads, commits and `remove_committed`
    /// free space) when it is false. Cheap: no directory scan, and a `statvfs` only when a
    /// floor is set.
    pub fn has_room(&self, incoming: u64) -> Result<bool> {
        let mut u = Usage {
            bytes: self.data_bytes.load(Ordering::Relaxed),
            max_bytes: self.max_bytes,
            free_disk: None,
            min_free_bytes: self.min_free_bytes,
        };
        if u.over_quota(incoming) {
            return Ok(false);
        }
        if u.min_free_bytes.is_some() {
            u.free_disk = self.disk.free_bytes(&self.data)?;
        }
        Ok(!u.below_floor(incoming))
    }
}
