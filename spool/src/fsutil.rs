//! The spool's filesystem steps over a [`SpoolFs`], each returning `SpoolError::Io` with the
//! path and the operation in its context. Durability of a file needs two fsyncs: one of the
//! file for its bytes and one of its directory for its name (a rename or unlink is only durable
//! once the directory is synced).

use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Result, io};
use crate::vfs::SpoolFs;

#[derive(Clone, Debug)]
pub(crate) struct Disk(pub Arc<dyn SpoolFs>);

impl Disk {
    /// Creates `dir` (and parents) if needed, private to the owner.
    pub fn create_private_dir(&self, dir: &Path) -> Result<()> {
        self.0.create_dir_all(dir).map_err(io(format!("create directory {}", dir.display())))
    }

    /// Makes `path` readable and writable by its owner only (0600): spool files and the index
    /// hold raw events, whatever the process's umask.
    pub fn owner_only(&self, path: &Path) -> Result<()> {
        self.0.set_owner_only(path).map_err(io(format!("make {} private", path.display())))
    }

    /// Makes the entries of `dir` (creations, renames, unlinks) durable.
    pub fn fsync_dir(&self, dir: &Path) -> Result<()> {
        self.0.sync_dir(dir).map_err(io(format!("fsync directory {}", dir.display())))
    }

    /// Fsyncs the file at `path` and returns its length and the CRC32C of its bytes, read in
    /// one streaming pass (files may be far larger than we want in memory at once).
    pub fn fsync_and_checksum(&self, path: &Path) -> Result<(u64, u32)> {
        let ctx = || format!("read and fsync {}", path.display());
        self.0.sync_file(path).map_err(io(ctx()))?;
        let mut f = self.0.open_read(path).map_err(io(ctx()))?;
        let mut buf = vec![0u8; 64 * 1024];
        let (mut len, mut crc) = (0u64, 0u32);
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    crc = crc32c::crc32c_append(crc, &buf[..n]);
                    len += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(io(ctx())(e)),
            }
        }
        Ok((len, crc))
    }

    /// The whole file; `Ok(None)` if it does not exist.
    pub fn read(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        let mut out = Vec::new();
        match self.0.open_read(path).and_then(|mut f| f.read_to_end(&mut out)) {
            Ok(_) => Ok(Some(out)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(format!("read {}", path.display()))(e)),
        }
    }

    /// Writes a small file and fsyncs it (the directory is the caller's to sync).
    pub fn write_synced(&self, path: &Path, contents: &[u8]) -> Result<()> {
        self.0
            .write(path, contents)
            .and_then(|()| self.0.sync_file(path))
            .map_err(io(format!("write {}", path.display())))
    }

    pub fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.raw_rename(from, to).map_err(io(format!("rename {} to {}", from.display(), to.display())))
    }

    /// A rename whose error the caller interprets (e.g. `NotFound`).
    pub fn raw_rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.0.rename(from, to)
    }

    /// Removes a file; `Ok(false)` if it was already gone.
    pub fn remove_if_present(&self, path: &Path) -> Result<bool> {
        match self.0.remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(format!("remove {}", path.display()))(e)),
        }
    }

    /// `Some(len)` if `path` is a regular file, `None` if it does not exist.
    pub fn file_len(&self, path: &Path) -> Result<Option<u64>> {
        match self.0.metadata(path) {
            Ok(m) => Ok(Some(m.len)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(format!("stat {}", path.display()))(e)),
        }
    }

    /// Every entry of `dir`, sorted (so recovery logs are in a stable order).
    pub fn list_dir(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let mut out = self.0.list_dir(dir).map_err(io(format!("list directory {}", dir.display())))?;
        out.sort();
        Ok(out)
    }

    /// Removes a file, or a directory with its contents, without following symlinks out of
    /// the spool.
    pub fn remove_entry(&self, p: &Path) -> Result<()> {
        let is_dir = self.0.metadata(p).is_ok_and(|m| m.is_dir);
        let r = if is_dir { self.0.remove_dir_all(p) } else { self.0.remove_file(p) };
        r.map_err(io(format!("remove {}", p.display())))
    }

    /// Removes everything inside `dir`, keeping `dir` itself.
    pub fn empty_dir(&self, dir: &Path) -> Result<usize> {
        let entries = self.list_dir(dir)?;
        for p in &entries {
            self.remove_entry(p)?;
        }
        Ok(entries.len())
    }

    /// Bytes available to unprivileged users on the filesystem holding `dir` (statvfs
    /// `f_bavail` × `f_frsize`), the figure `df` shows as "Avail". `None` where unknown.
    pub fn free_bytes(&self, dir: &Path) -> Result<Option<u64>> {
        self.0.free_bytes(dir).map_err(io(format!("statvfs {}", dir.display())))
    }
}
