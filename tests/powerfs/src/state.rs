//! The filesystem as two layers: what programs see (`live`) and what would survive a power cut
//! (`durable`). Pure data, no I/O: the FUSE adapter in `fuse.rs` calls these methods and only
//! translates requests and replies.
//!
//! The rules are the strict POSIX reading that a careful program has to assume:
//! - a file's bytes (and size) become durable when the file is fsynced (`fsync` or
//!   `fdatasync`, alike here);
//! - a directory's entries (creations, renames, unlinks, hard links) become durable when that
//!   directory is fsynced. A rename between directories therefore needs both synced: with only
//!   the target synced the file survives under both names, with only the source synced under
//!   neither;
//! - a new file's durable content is empty until it is synced, so a name made durable before
//!   its file comes back as an empty file;
//! - a cut throws every live change away; optionally the last unsynced write is torn at a 4 KiB
//!   page boundary (a prefix of it reaches the disk, the rest does not).
//!
//! Permissions and times are not modeled as volatile: nothing here depends on them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::{Component, Path};
use std::time::SystemTime;

pub type Ino = u64;
pub const ROOT: Ino = 1;
const PAGE: u64 = 4096;

/// An errno value (`libc::ENOENT`, ...).
pub type Errno = i32;
pub type Result<T> = std::result::Result<T, Errno>;
/// A directory's entries as listed: name, inode, kind.
pub type Listing = Vec<(OsString, Ino, Kind)>;

#[derive(Clone, Debug, PartialEq)]
enum Body {
    File(Vec<u8>),
    Dir(BTreeMap<OsString, Ino>),
}

struct Node {
    live: Body,
    durable: Body,
    perm: u16,
    mtime: SystemTime,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

#[derive(Clone, Debug)]
pub struct Attr {
    pub ino: Ino,
    pub kind: Kind,
    pub size: u64,
    pub perm: u16,
    pub mtime: SystemTime,
}

/// Counters over the filesystem's life, for a test's summary.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub file_syncs: u64,
    pub dir_syncs: u64,
    pub cuts: u64,
    /// Cuts that threw away at least one change.
    pub cuts_that_lost: u64,
    pub torn_writes: u64,
}

/// What one cut threw away.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CutReport {
    /// Files whose live bytes differed from their durable bytes.
    pub files_reverted: usize,
    /// Directories whose live entries differed from their durable entries.
    pub dirs_reverted: usize,
    /// `(ino, bytes of the write that reached the disk, bytes written)` when a write was torn.
    pub torn: Option<(Ino, u64, u64)>,
}

impl CutReport {
    pub fn lost_anything(&self) -> bool {
        self.files_reverted + self.dirs_reverted > 0
    }
}

pub struct State {
    nodes: HashMap<Ino, Node>,
    next_ino: Ino,
    /// The most recent write not yet synced: `(ino, offset, len)`, the candidate for tearing.
    last_write: Option<(Ino, u64, u64)>,
    pub stats: Stats,
}

impl Default for State {
    fn default() -> Self {
        let root = Node {
            live: Body::Dir(BTreeMap::new()),
            durable: Body::Dir(BTreeMap::new()),
            perm: 0o755,
            mtime: SystemTime::now(),
        };
        State { nodes: HashMap::from([(ROOT, root)]), next_ino: ROOT + 1, last_write: None, stats: Stats::default() }
    }
}

impl State {
    fn node(&self, ino: Ino) -> Result<&Node> {
        self.nodes.get(&ino).ok_or(libc::ENOENT)
    }

    fn node_mut(&mut self, ino: Ino) -> Result<&mut Node> {
        self.nodes.get_mut(&ino).ok_or(libc::ENOENT)
    }

    fn entries(&self, dir: Ino) -> Result<&BTreeMap<OsString, Ino>> {
        match &self.node(dir)?.live {
            Body::Dir(e) => Ok(e),
            Body::File(_) => Err(libc::ENOTDIR),
        }
    }

    fn entries_mut(&mut self, dir: Ino) -> Result<&mut BTreeMap<OsString, Ino>> {
        let n = self.node_mut(dir)?;
        n.mtime = SystemTime::now();
        match &mut n.live {
            Body::Dir(e) => Ok(e),
            Body::File(_) => Err(libc::ENOTDIR),
        }
    }

    fn data_mut(&mut self, ino: Ino) -> Result<&mut Vec<u8>> {
        let n = self.node_mut(ino)?;
        n.mtime = SystemTime::now();
        match &mut n.live {
            Body::File(d) => Ok(d),
            Body::Dir(_) => Err(libc::EISDIR),
        }
    }

    pub fn attr(&self, ino: Ino) -> Result<Attr> {
        let n = self.node(ino)?;
        let (kind, size) = match &n.live {
            Body::File(d) => (Kind::File, d.len() as u64),
            Body::Dir(e) => (Kind::Dir, e.len() as u64),
        };
        Ok(Attr { ino, kind, size, perm: n.perm, mtime: n.mtime })
    }

    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr> {
        let ino = *self.entries(parent)?.get(name).ok_or(libc::ENOENT)?;
        self.attr(ino)
    }

    /// The inode at `path`, walked from the root (`/`, `.` and a prefix are skipped: every
    /// normal component is a name under the root).
    pub fn resolve(&self, path: &Path) -> Result<Ino> {
        let mut ino = ROOT;
        for c in path.components() {
            if let Component::Normal(name) = c {
                ino = *self.entries(ino)?.get(name).ok_or(libc::ENOENT)?;
            }
        }
        Ok(ino)
    }

    /// The directory that holds `path`'s last component, and that component.
    pub fn parent_of<'p>(&self, path: &'p Path) -> Result<(Ino, &'p OsStr)> {
        let name = path.file_name().ok_or(libc::EINVAL)?;
        Ok((self.resolve(path.parent().unwrap_or(Path::new("")))?, name))
    }

    /// A new empty file or directory; `EEXIST` if the name is taken.
    pub fn create(&mut self, parent: Ino, name: &OsStr, kind: Kind, perm: u16) -> Result<Attr> {
        if self.entries(parent)?.contains_key(name) {
            return Err(libc::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let live = match kind {
            Kind::File => Body::File(Vec::new()),
            Kind::Dir => Body::Dir(BTreeMap::new()),
        };
        let durable = live.clone();
        self.nodes.insert(ino, Node { live, durable, perm, mtime: SystemTime::now() });
        self.entries_mut(parent)?.insert(name.to_owned(), ino);
        self.attr(ino)
    }

    pub fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<&[u8]> {
        match &self.node(ino)?.live {
            Body::File(d) => {
                let start = (offset as usize).min(d.len());
                let end = start.saturating_add(size as usize).min(d.len());
                Ok(&d[start..end])
            }
            Body::Dir(_) => Err(libc::EISDIR),
        }
    }

    pub fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Result<u32> {
        let d = self.data_mut(ino)?;
        let end = offset as usize + data.len();
        if d.len() < end {
            d.resize(end, 0);
        }
        d[offset as usize..end].copy_from_slice(data);
        self.last_write = Some((ino, offset, data.len() as u64));
        Ok(data.len() as u32)
    }

    pub fn truncate(&mut self, ino: Ino, size: u64) -> Result<()> {
        self.data_mut(ino)?.resize(size as usize, 0);
        Ok(())
    }

    pub fn set_perm(&mut self, ino: Ino, perm: u16) -> Result<()> {
        self.node_mut(ino)?.perm = perm;
        Ok(())
    }

    pub fn unlink(&mut self, parent: Ino, name: &OsStr) -> Result<()> {
        let ino = *self.entries(parent)?.get(name).ok_or(libc::ENOENT)?;
        if self.attr(ino)?.kind == Kind::Dir {
            return Err(libc::EISDIR);
        }
        self.entries_mut(parent)?.remove(name);
        Ok(())
    }

    pub fn rmdir(&mut self, parent: Ino, name: &OsStr) -> Result<()> {
        let ino = *self.entries(parent)?.get(name).ok_or(libc::ENOENT)?;
        if !self.entries(ino)?.is_empty() {
            return Err(libc::ENOTEMPTY);
        }
        self.entries_mut(parent)?.remove(name);
        Ok(())
    }

    /// `rename(2)`; with `no_replace`, `renameat2(RENAME_NOREPLACE)`.
    pub fn rename(&mut self, parent: Ino, name: &OsStr, to_parent: Ino, to: &OsStr, no_replace: bool) -> Result<()> {
        let ino = *self.entries(parent)?.get(name).ok_or(libc::ENOENT)?;
        if let Some(&old) = self.entries(to_parent)?.get(to) {
            if no_replace {
                return Err(libc::EEXIST);
            }
            if old == ino {
                return Ok(());
            }
            match (self.attr(ino)?.kind, self.attr(old)?.kind) {
                (Kind::File, Kind::Dir) => return Err(libc::EISDIR),
                (Kind::Dir, Kind::File) => return Err(libc::ENOTDIR),
                (Kind::Dir, Kind::Dir) if !self.entries(old)?.is_empty() => return Err(libc::ENOTEMPTY),
                _ => {}
            }
        }
        self.entries_mut(parent)?.remove(name);
        self.entries_mut(to_parent)?.insert(to.to_owned(), ino);
        Ok(())
    }

    /// `link(2)`: a second name for a file.
    pub fn link(&mut self, ino: Ino, to_parent: Ino, to: &OsStr) -> Result<Attr> {
        if self.attr(ino)?.kind == Kind::Dir {
            return Err(libc::EPERM);
        }
        if self.entries(to_parent)?.contains_key(to) {
            return Err(libc::EEXIST);
        }
        self.entries_mut(to_parent)?.insert(to.to_owned(), ino);
        self.attr(ino)
    }

    /// The live entries of a directory, sorted by name.
    pub fn list(&self, dir: Ino) -> Result<Listing> {
        let mut out = Vec::new();
        for (name, &ino) in self.entries(dir)? {
            out.push((name.clone(), ino, self.attr(ino)?.kind));
        }
        Ok(out)
    }

    /// `fsync`/`fdatasync` of a file, or `fsync` of a directory: its live state becomes durable.
    pub fn sync(&mut self, ino: Ino) -> Result<()> {
        let n = self.node_mut(ino)?;
        n.durable = n.live.clone();
        match n.live {
            Body::File(_) => self.stats.file_syncs += 1,
            Body::Dir(_) => self.stats.dir_syncs += 1,
        }
        if self.last_write.is_some_and(|(w, _, _)| w == ino) {
            self.last_write = None;
        }
        Ok(())
    }

    /// The power cut: every node goes back to its durable state, and what is no longer reachable
    /// from the root is gone. `tear` (a random number) makes a prefix of the last unsynced write,
    /// ending at a page boundary, durable first.
    pub fn cut(&mut self, tear: Option<u64>) -> CutReport {
        let mut report = CutReport::default();
        if let (Some(r), Some((ino, offset, len))) = (tear, self.last_write.take())
            && let Some(n) = self.nodes.get_mut(&ino)
            && let (Body::File(live), Body::File(durable)) = (&n.live, &mut n.durable)
        {
            // Page boundaries strictly inside the write, plus its start (nothing landed).
            let first = offset.div_ceil(PAGE) * PAGE;
            let ends: Vec<u64> = std::iter::once(offset)
                .chain((first..offset + len).step_by(PAGE as usize).filter(|&b| b > offset))
                .collect();
            let end = ends[(r % ends.len() as u64) as usize].min(live.len() as u64);
            if end > offset {
                if (durable.len() as u64) < end {
                    durable.resize(end as usize, 0);
                }
                durable[offset as usize..end as usize].copy_from_slice(&live[offset as usize..end as usize]);
                self.stats.torn_writes += 1;
            }
            report.torn = Some((ino, end - offset, len));
        }
        for n in self.nodes.values_mut() {
            if n.live != n.durable {
                match n.live {
                    Body::File(_) => report.files_reverted += 1,
                    Body::Dir(_) => report.dirs_reverted += 1,
                }
                n.live = n.durable.clone();
            }
        }
        // Unreachable nodes (unlinked, or never durably named) are gone.
        let mut reachable = HashSet::from([ROOT]);
        let mut stack = vec![ROOT];
        while let Some(ino) = stack.pop() {
            if let Some(Body::Dir(e)) = self.nodes.get(&ino).map(|n| &n.live) {
                for &child in e.values() {
                    if reachable.insert(child) {
                        stack.push(child);
                    }
                }
            }
        }
        self.nodes.retain(|ino, _| reachable.contains(ino));
        self.last_write = None;
        self.stats.cuts += 1;
        if report.lost_anything() {
            self.stats.cuts_that_lost += 1;
        }
        report
    }

    /// A deep copy of the live tree as `path → file bytes` (directories end in `/`).
    #[cfg(test)]
    fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![(String::new(), ROOT)];
        while let Some((path, ino)) = stack.pop() {
            match &self.nodes[&ino].live {
                Body::File(d) => {
                    out.insert(path, d.clone());
                }
                Body::Dir(e) => {
                    for (name, &child) in e {
                        stack.push((format!("{path}/{}", name.to_string_lossy()), child));
                    }
                    out.insert(format!("{path}/"), Vec::new());
                }
            }
        }
        out
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
