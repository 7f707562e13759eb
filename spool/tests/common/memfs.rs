//! The spool on a filesystem model (`frazil_powerfs::Model`, the one the power-cut FUSE mount
//! serves) through `SpoolFs`: live and durable bytes kept apart, a power cut that loses what was
//! never synced, and a power failure after a chosen number of further operations, after which
//! every operation fails as on a machine whose power just went.

use std::fmt;
use std::io::{self, Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use frazil_powerfs::{CutReport, Ino, Kind, Model};
use frazil_spool::{Entry, SpoolFs, StorageBackend};

#[derive(Clone, Default)]
pub struct MemFs(Arc<Inner>);

#[derive(Default)]
struct Inner {
    model: Mutex<Model>,
    /// Operations left before the power fails; `None`: no failure planned.
    budget: Mutex<Option<u64>>,
}

impl fmt::Debug for MemFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MemFs")
    }
}

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

impl MemFs {
    /// The model, for one operation: fails once the power is gone.
    fn op(&self) -> io::Result<MutexGuard<'_, Model>> {
        let mut budget = self.0.budget.lock().unwrap();
        if let Some(n) = budget.as_mut() {
            if *n == 0 {
                return Err(io::Error::other("power lost"));
            }
            *n -= 1;
        }
        Ok(self.0.model.lock().unwrap())
    }

    /// The model for the test's own look, outside any budget.
    fn look(&self) -> MutexGuard<'_, Model> {
        self.0.model.lock().unwrap()
    }

    /// After `n` more operations the power fails: every later operation returns an error.
    pub fn fail_after(&self, n: u64) {
        *self.0.budget.lock().unwrap() = Some(n);
    }

    /// One fsync, of a file or a directory alike (the model makes its live state durable).
    fn sync(&self, path: &Path) -> io::Result<()> {
        let mut m = self.op()?;
        let ino = m.resolve(path).map_err(errno)?;
        m.sync(ino).map_err(errno)
    }

    /// The power cut: everything unsynced is lost (see `Model::cut`), and the power is back.
    pub fn cut(&self, tear: Option<u64>) -> CutReport {
        *self.0.budget.lock().unwrap() = None;
        self.look().cut(tear)
    }

    /// The live bytes at `path`, if it is a file.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        whole(&self.look(), path).ok()
    }

    /// The names in `dir` (empty if it does not exist).
    pub fn names(&self, dir: &Path) -> Vec<String> {
        let m = self.look();
        m.resolve(dir)
            .and_then(|d| m.list(d))
            .map(|l| l.into_iter().map(|(n, _, _)| n.to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    }
}

/// The live bytes of the file at `path`.
fn whole(m: &Model, path: &Path) -> Result<Vec<u8>, i32> {
    let ino = m.resolve(path)?;
    let len = m.attr(ino)?.size;
    Ok(m.read(ino, 0, len as u32)?.to_vec())
}

impl SpoolFs for MemFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut m = self.op()?;
        let mut at = PathBuf::from("/");
        for c in dir.components() {
            if let std::path::Component::Normal(name) = c {
                let parent = m.resolve(&at).map_err(errno)?;
                at.push(name);
                match m.lookup(parent, name) {
                    Ok(a) if a.kind == Kind::Dir => {}
                    Ok(_) => return Err(errno(libc::ENOTDIR)),
                    Err(_) => {
                        m.create(parent, name, Kind::Dir, 0o700).map_err(errno)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn set_owner_only(&self, path: &Path) -> io::Result<()> {
        let mut m = self.op()?;
        let ino = m.resolve(path).map_err(errno)?;
        m.set_perm(ino, 0o600).map_err(errno)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.sync(dir)
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        self.sync(path)
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn Read + Send>> {
        let m = self.op()?;
        let bytes = whole(&m, path).map_err(errno)?;
        Ok(Box::new(Cursor::new(bytes)))
    }

    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut m = self.op()?;
        let (dir, name) = m.parent_of(path).map_err(errno)?;
        let ino = match m.lookup(dir, name) {
            Ok(a) => {
                m.truncate(a.ino, 0).map_err(errno)?;
                a.ino
            }
            Err(_) => m.create(dir, name, Kind::File, 0o644).map_err(errno)?.ino,
        };
        m.write(ino, 0, bytes).map(drop).map_err(errno)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut m = self.op()?;
        let (d1, n1) = m.parent_of(from).map_err(errno)?;
        let (d2, n2) = m.parent_of(to).map_err(errno)?;
        m.rename(d1, n1, d2, n2, false).map_err(errno)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut m = self.op()?;
        let (dir, name) = m.parent_of(path).map_err(errno)?;
        m.unlink(dir, name).map_err(errno)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        for p in self.list_dir(path)? {
            if self.metadata(&p)?.is_dir {
                self.remove_dir_all(&p)?;
            } else {
                self.remove_file(&p)?;
            }
        }
        let mut m = self.op()?;
        let (dir, name) = m.parent_of(path).map_err(errno)?;
        m.rmdir(dir, name).map_err(errno)
    }

    fn metadata(&self, path: &Path) -> io::Result<Entry> {
        let m = self.op()?;
        let a = m.resolve(path).and_then(|ino| m.attr(ino)).map_err(errno)?;
        Ok(Entry { len: a.size, is_dir: a.kind == Kind::Dir })
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let m = self.op()?;
        let list = m.resolve(dir).and_then(|d| m.list(d)).map_err(errno)?;
        Ok(list.into_iter().map(|(name, _, _)| dir.join(name)).collect())
    }

    fn free_bytes(&self, _dir: &Path) -> io::Result<Option<u64>> {
        Ok(None)
    }

    fn index_backend(&self, path: &Path) -> io::Result<Option<Box<dyn StorageBackend>>> {
        let mut m = self.op()?;
        let (dir, name) = m.parent_of(path).map_err(errno)?;
        let ino = match m.lookup(dir, name) {
            Ok(a) => a.ino,
            Err(_) => m.create(dir, name, Kind::File, 0o600).map_err(errno)?.ino,
        };
        Ok(Some(Box::new(Backend { fs: self.clone(), ino })))
    }
}

/// The index file of the model, as redb's storage.
#[derive(Debug)]
struct Backend {
    fs: MemFs,
    ino: Ino,
}

impl StorageBackend for Backend {
    fn len(&self) -> io::Result<u64> {
        Ok(self.fs.op()?.attr(self.ino).map_err(errno)?.size)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let m = self.fs.op()?;
        let got = m.read(self.ino, offset, out.len() as u32).map_err(errno)?;
        if got.len() < out.len() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the index"));
        }
        out.copy_from_slice(got);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.fs.op()?.truncate(self.ino, len).map_err(errno)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.fs.op()?.sync(self.ino).map_err(errno)
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.fs.op()?.write(self.ino, offset, data).map(drop).map_err(errno)
    }
}
