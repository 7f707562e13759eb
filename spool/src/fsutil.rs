//! Filesystem helpers. Durability of a file needs two fsyncs: one of the file for its bytes and
//! one of its directory for its name (a rename or unlink is only durable once the directory is
//! synced). Everything here returns `SpoolError::Io` with the path in the context.

use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use crate::error::{Result, io};

/// Creates `dir` (and parents) if needed, private to the owner: the spool holds raw events.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(io(format!("create directory {}", dir.display())))
}

/// Makes `path` readable and writable by its owner only (0600): spool files and the index hold
/// raw events, whatever the process's umask.
pub(crate) fn owner_only(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .map_err(io(format!("make {} private", path.display())))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Makes the entries of `dir` (creations, renames, unlinks) durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    // Directories cannot be opened as files on Windows; there, NTFS metadata journaling is the
    // best available. The spool targets Linux gateways.
    #[cfg(unix)]
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(format!("fsync directory {}", dir.display())))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Fsyncs the file at `path` and returns its length and the CRC32C of its bytes, read in one
/// streaming pass (files may be far larger than we want in memory at once).
pub(crate) fn fsync_and_checksum(path: &Path) -> Result<(u64, u32)> {
    let ctx = || format!("read and fsync {}", path.display());
    // Read-only is enough for fsync on Linux and lets the caller keep the file read-only.
    let mut f = File::open(path).map_err(io(ctx()))?;
    f.sync_all().map_err(io(ctx()))?;
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

/// Writes a small file and fsyncs it (the directory is the caller's to sync).
pub(crate) fn write_synced(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = File::create(path).map_err(io(format!("create {}", path.display())))?;
    f.write_all(contents).and_then(|()| f.sync_all()).map_err(io(format!("write {}", path.display())))
}

/// Removes a file; `Ok(false)` if it was already gone.
pub(crate) fn remove_if_present(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io(format!("remove {}", path.display()))(e)),
    }
}

/// `Some(len)` if `path` is a regular file, `None` if it does not exist.
pub(crate) fn file_len(path: &Path) -> Result<Option<u64>> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some(m.len())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(format!("stat {}", path.display()))(e)),
    }
}

/// Every entry of `dir`, sorted (so recovery logs are in a stable order).
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let ctx = || format!("list directory {}", dir.display());
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(ctx()))? {
        out.push(entry.map_err(io(ctx()))?.path());
    }
    out.sort();
    Ok(out)
}

/// Removes a file, or a directory with its contents, without following symlinks out of the spool.
pub(crate) fn remove_entry(p: &Path) -> Result<()> {
    let is_dir = fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    let r = if is_dir { fs::remove_dir_all(p) } else { fs::remove_file(p) };
    r.map_err(io(format!("remove {}", p.display())))
}

/// Removes everything inside `dir`, keeping `dir` itself.
pub(crate) fn empty_dir(dir: &Path) -> Result<usize> {
    let entries = list_dir(dir)?;
    for p in &entries {
        remove_entry(p)?;
    }
    Ok(entries.len())
}

/// Bytes available to unprivileged users on the filesystem holding `dir` (statvfs `f_bavail`
/// × `f_frsize`), the figure `df` shows as "Avail". `None` where unknown (non-Unix).
#[cfg(unix)]
pub(crate) fn free_bytes(dir: &Path) -> Result<Option<u64>> {
    use std::os::unix::ffi::OsStrExt;
    let ctx = || format!("statvfs {}", dir.display());
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| io(ctx())(std::io::Error::new(ErrorKind::InvalidInput, e)))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `st` points to writable memory of the right
    // type; statvfs fills it completely when it returns 0.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io(ctx())(std::io::Error::last_os_error()));
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
pub(crate) fn free_bytes(_dir: &Path) -> Result<Option<u64>> {
    Ok(None)
}
