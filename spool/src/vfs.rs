//! The storage beneath the spool. Every byte the spool reads or writes, every name it creates,
//! renames or removes, every fsync, and the index file itself go through [`SpoolFs`].
//! [`OsFs`] is the real filesystem; a test can put a model here that keeps live and durable
//! bytes apart and loses what was never synced (`tests/model.rs`), which a real disk shows only
//! on a power cut.
//!
//! Errors are plain `io::Error`s; `fsutil.rs` adds the path and the operation.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// What [`SpoolFs::metadata`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub len: u64,
    pub is_dir: bool,
}

pub trait SpoolFs: Send + Sync + fmt::Debug + 'static {
    /// Creates `dir` and any missing parents, private to the owner (0700: the spool holds raw
    /// events). An existing directory is fine.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Makes a file readable and writable by its owner only (0600), whatever the umask.
    fn set_owner_only(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of `dir` durable: creations, renames and unlinks in it.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Makes the bytes and length of the file at `path` durable.
    fn sync_file(&self, path: &Path) -> io::Result<()>;
    /// Opens a file for reading from its start.
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn Read + Send>>;
    /// Creates (or truncates) `path` and writes `bytes`, without syncing.
    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// `rename(2)`: replaces `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory with everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Without following a symlink out of the spool. `NotFound` if there is nothing.
    fn metadata(&self, path: &Path) -> io::Result<Entry>;
    /// The entries of `dir`, in any order.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Bytes available to unprivileged users on the filesystem holding `dir`; `None` where
    /// unknown.
    fn free_bytes(&self, dir: &Path) -> io::Result<Option<u64>>;
    /// The index's storage. `None`: redb opens the file at `path` itself, with the file lock
    /// that keeps a second writer out and lets readers in other processes follow its commits.
    fn index_backend(&self, path: &Path) -> io::Result<Option<Box<dyn redb::StorageBackend>>>;
}

/// The real filesystem.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsFs;

impl SpoolFs for OsFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut b = fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(dir)
    }

    fn set_owner_only(&self, path: &Path) -> io::Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
        }
        #[cfg(not(unix))]
        let _ = path;
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        // Directories cannot be opened as files on Windows; there, NTFS metadata journaling is
        // the best available. The spool targets Linux gateways.
        #[cfg(unix)]
        File::open(dir)?.sync_all()?;
        #[cfg(not(unix))]
        let _ = dir;
        Ok(())
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        // Read-only is enough for fsync on Linux and lets the caller keep the file read-only.
        File::open(path)?.sync_all()
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(File::open(path)?))
    }

    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        fs::write(path, bytes)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)
    }

    fn metadata(&self, path: &Path) -> io::Result<Entry> {
        let m = fs::symlink_metadata(path)?;
        Ok(Entry { len: m.len(), is_dir: m.is_dir() })
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect()
    }

    #[cfg(unix)]
    fn free_bytes(&self, dir: &Path) -> io::Result<Option<u64>> {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: `c` is a NUL-terminated path and `st` points to writable memory of the right
        // type; statvfs fills it completely when it returns 0.
        if unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: initialized by the successful call above.
        let st = unsafe { st.assume_init() };
        // f_frsize is the unit of the block counts; some old filesystems leave it 0.
        #[allow(clippy::useless_conversion)] // the field types differ between targets
        let unit = match u64::from(st.f_frsize) {
            0 => u64::from(st.f_bsize),
            n => n,
        };
        #[allow(clippy::useless_conversion)]
        let avail = u64::from(st.f_bavail);
        Ok(Some(avail.saturating_mul(unit)))
    }

    #[cfg(not(unix))]
    fn free_bytes(&self, _dir: &Path) -> io::Result<Option<u64>> {
        Ok(None)
    }

    fn index_backend(&self, _path: &Path) -> io::Result<Option<Box<dyn redb::StorageBackend>>> {
        Ok(None)
    }
}

/// A boxed backend as redb takes one (`create_with_backend` wants a sized value).
#[derive(Debug)]
pub(crate) struct Boxed(pub Box<dyn redb::StorageBackend>);

impl redb::StorageBackend for Boxed {
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write(offset, data)
    }
    fn close(&self) -> io::Result<()> {
        self.0.close()
    }
}
