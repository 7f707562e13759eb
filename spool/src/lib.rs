//! frazil's crash-safe local spool.
//!
//! Files (Parquet, but the spool never looks inside) are written by the caller into a temporary
//! path, handed over with [`Spool::register`], and then tracked through upload and catalog
//! commit in a redb index until they are deleted. Every state change is one durable redb
//! transaction; files are only trusted if the index lists them. DESIGN.md describes the on-disk
//! layout and why each step's ordering survives a crash at any instant.
//!
//! All methods block (fsync, redb commits): call them from a blocking thread.

mod discard;
mod error;
mod fsutil;
mod index;
mod pending;
mod record;
mod recovery;
mod room;
mod state;
mod vfs;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use redb::ReadableTable;

pub use error::{Result, SpoolError};
pub use record::{FileMeta, FileState, PendingCommit, Recovery, SpoolFile, Status, Usage};
/// What an index backend implements (see [`SpoolFs::index_backend`]).
pub use redb::StorageBackend;
pub use vfs::{Entry, OsFs, SpoolFs};

use error::{idx, io};
use fsutil::Disk;
use index::{COUNTERS, FILES, Index, META, NEXT_ID, OFFSETS};
use record::StoredFile;

/// Options for [`Spool::open`].
#[derive(Clone, Debug)]
pub struct SpoolOptions {
    /// redb page cache size. The index holds only small records, so a few MiB is plenty; redb's
    /// own default (1 GiB) is far too much for a gateway.
    pub cache_bytes: usize,
    /// Quota on the bytes of the files in `data/` (registered and not yet removed; quarantined
    /// files are not counted). Enforced only through [`Spool::has_room`]: the spool never drops
    /// or refuses data on its own, the caller stops fetching. `None`: no quota.
    pub max_bytes: Option<u64>,
    /// Free-space floor on the spool's filesystem (statvfs, space available to unprivileged
    /// users), checked by [`Spool::has_room`]. `None`: no floor.
    pub min_free_bytes: Option<u64>,
    /// The storage beneath the spool: the real filesystem ([`OsFs`]) but in tests.
    pub fs: Arc<dyn SpoolFs>,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        SpoolOptions { cache_bytes: 4 << 20, max_bytes: None, min_free_bytes: None, fs: Arc::new(OsFs) }
    }
}

/// The spool. `Send + Sync`: share it as `Arc<Spool>`.
pub struct Spool {
    dir: PathBuf,
    data: PathBuf,
    tmp: PathBuf,
    quarantine: PathBuf,
    index: Index,
    disk: Disk,
    /// Held by every method that changes state. redb already serializes transactions, but
    /// several operations pair a filesystem step (rename, unlink) with a transaction and must
    /// not interleave with another state change in between (e.g. a file being committed while
    /// it is moved to quarantine). Reads never take it.
    writer: Mutex<()>,
    /// Unique per open, so temp paths of an earlier open in the same process never collide.
    tmp_prefix: String,
    tmp_seq: AtomicU64,
    /// Sum of `bytes` of the records whose file is in `data/` (every state but Quarantined):
    /// computed from the index at open, then kept up to date by the methods that change it
    /// (all under `writer`), so `has_room` needs neither a directory scan nor an index scan.
    data_bytes: AtomicU64,
    max_bytes: Option<u64>,
    min_free_bytes: Option<u64>,
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir` and repairs what a crash left behind; see
    /// [`Recovery`]. Fails with [`SpoolError::Locked`] if the spool is already open.
    pub fn open(dir: &Path, opts: SpoolOptions) -> Result<(Spool, Recovery)> {
        let (data, tmp, quarantine) = (dir.join("data"), dir.join("tmp"), dir.join("quarantine"));
        let disk = Disk(opts.fs.clone());
        for d in [dir, &data, &tmp, &quarantine] {
            disk.create_private_dir(d)?;
        }
        // redb turns an empty file into a new database, after which recovery would delete every
        // file in data/ as an orphan. An empty index is legitimate only if a crash hit its very
        // first creation, when data/ is empty too; next to spool files it is damage. (A
        // missing index is the operator's decision, as CorruptIndex's message explains.)
        let index_path = dir.join("index.redb");
        if disk.file_len(&index_path)? == Some(0) {
            let n = disk.list_dir(&data)?.len();
            if n > 0 {
                return Err(SpoolError::CorruptIndex {
                    path: index_path,
                    detail: format!("the file is empty while {} holds {n} file(s)", data.display()),
                });
            }
        }
        // Opening the index takes the lock. Nothing destructive (emptying tmp/, removing
        // orphans) may happen before it, or a refused second open would wreck the first's files.
        let index = Index::open(&index_path, opts.cache_bytes, &disk)?;
        // Make the names of index.redb and the subdirectories durable, and dir's own name.
        disk.fsync_dir(dir)?;
        // Best effort: the parent may not be ours to open.
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty())
            && let Err(e) = disk.fsync_dir(parent)
        {
            log::warn!("spool: {e}");
        }
        let spool = Spool::assemble(dir, index, &opts);
        let recovery = recovery::recover(&spool)?;
        spool.count_data_bytes()?;
        Ok((spool, recovery))
    }

    /// Opens the spool in `dir` for reading only, while another process (the agent) may have it
    /// open: its reads follow that process's commits. Nothing is repaired or removed, and every
    /// change fails with [`SpoolError::ReadOnly`]. For status reports. Fails if there is no spool
    /// in `dir`, or if its last writer crashed and nobody has opened it since (open it normally).
    pub fn open_read_only(dir: &Path, opts: SpoolOptions) -> Result<Spool> {
        let index = Index::open_read_only(&dir.join("index.redb"), opts.cache_bytes)?;
        let spool = Spool::assemble(dir, index, &opts);
        spool.count_data_bytes()?;
        Ok(spool)
    }

    /// The records of the spool in `dir` when it cannot be opened read-only because its last
    /// writer crashed and nobody has opened it since. Opening it would repair it and take its
    /// lock, which could keep a restarting agent out; instead the index is copied aside and the
    /// copy repaired and read (paths still point into `dir`). For readers such as queries.
    pub fn files_from_copy(dir: &Path, opts: SpoolOptions) -> Result<Vec<SpoolFile>> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let copy = std::env::temp_dir().join(format!("frazil-index-{}-{nanos:x}.redb", std::process::id()));
        fs::copy(dir.join("index.redb"), &copy).map_err(io(format!("copying the index to {}", copy.display())))?;
        let files = Index::open(&copy, opts.cache_bytes, &Disk(Arc::new(OsFs)))
            .and_then(|index| Spool::assemble(dir, index, &opts).files());
        let _ = fs::remove_file(&copy);
        files
    }

    fn assemble(dir: &Path, index: Index, opts: &SpoolOptions) -> Spool {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Spool {
            dir: dir.to_path_buf(),
            data: dir.join("data"),
            tmp: dir.join("tmp"),
            quarantine: dir.join("quarantine"),
            index,
            disk: Disk(opts.fs.clone()),
            writer: Mutex::new(()),
            tmp_prefix: format!("{:x}-{nanos:x}", std::process::id()),
            tmp_seq: AtomicU64::new(0),
            data_bytes: AtomicU64::new(0),
            max_bytes: opts.max_bytes,
            min_free_bytes: opts.min_free_bytes,
        }
    }

    /// Sets the running total of bytes in `data/` from the index.
    fn count_data_bytes(&self) -> Result<()> {
        let in_data: u64 =
            self.files()?.iter().filter(|f| !matches!(f.state, FileState::Quarantined { .. })).map(|f| f.bytes).sum();
        self.data_bytes.store(in_data, Ordering::Relaxed);
        Ok(())
    }

    /// A fresh path in `tmp/` for a new file. Write it there and pass it to `register`; it is
    /// on the spool's filesystem, so the rename into `data/` is atomic.
    pub fn temp_path(&self) -> PathBuf {
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        self.tmp.join(format!("{}-{n}.tmp", self.tmp_prefix))
    }

    /// Takes ownership of the finished file at `tmp`: fsync, checksum, rename into `data/`,
    /// fsync `data/`, then one transaction that lists it (state `Written`) and raises the
    /// stored offset of its partition to `meta.next_offset`.
    ///
    /// On error nothing is registered and the file is back at `tmp` (the caller may retry or
    /// delete it). A full disk gives [`SpoolError::Full`] (see [`SpoolError::is_full`]); the
    /// spool keeps working once space is freed.
    pub fn register(&self, tmp: &Path, meta: FileMeta) -> Result<SpoolFile> {
        let mut files = self.register_all(vec![(tmp.to_path_buf(), meta)])?;
        Ok(files.pop().expect("one file in, one out"))
    }

    /// [`register`](Self::register) for several files at once, in one transaction: all of them
    /// are listed, or none (a crash in between leaves only unlisted orphans, removed at open).
    /// For files that cover the same offsets, e.g. a table's rows and the records that went to
    /// its dead-letter table: neither may be listed without the other, or the raised offset would
    /// skip the other's records. Ids are given in the order of `files`.
    pub fn register_all(&self, files: Vec<(PathBuf, FileMeta)>) -> Result<Vec<SpoolFile>> {
        self.index.writable()?;
        // The slow part (fsync and reading each file) happens before taking any lock.
        let mut sums = Vec::with_capacity(files.len());
        for (tmp, _) in &files {
            self.disk.owner_only(tmp)?;
            sums.push(self.disk.fsync_and_checksum(tmp)?);
        }
        let _w = self.lock();
        let mut renamed: Vec<(u64, &Path)> = Vec::new();
        let result = self.index.write("register", |txn| {
            let mut counters = txn.open_table(COUNTERS).map_err(idx("open counters"))?;
            let mut table = txn.open_table(FILES).map_err(idx("open files"))?;
            let mut offsets = txn.open_table(OFFSETS).map_err(idx("open offsets"))?;
            let counter = counters.get(NEXT_ID).map_err(idx("read next id"))?.map_or(1, |g| g.value());
            // Defensive: never hand out an id at or below a listed one, whatever the counter says.
            let last = table.last().map_err(idx("read last id"))?.map_or(0, |(k, _)| k.value());
            let first_id = counter.max(last + 1);
            let mut out = Vec::with_capacity(files.len());
            for (i, ((tmp, meta), (bytes, crc32c))) in files.iter().zip(&sums).enumerate() {
                let id = first_id + i as u64;
                let stored =
                    StoredFile { meta: meta.clone(), bytes: *bytes, crc32c: *crc32c, state: FileState::Written };
                let dest = self.data_path(id);
                // If anything below fails the transaction aborts; a renamed file is then an
                // unlisted orphan: removed at next open, or replaced by the next register (same id).
                self.disk.rename(tmp, &dest)?;
                renamed.push((id, tmp));
                index::put_file(&mut table, id, &stored)?;
                let m = &stored.meta;
                let key = (m.topic.as_str(), m.partition);
                let old = offsets.get(key).map_err(idx("read offset"))?.map(|g| g.value());
                if old.is_none_or(|o| o < m.next_offset) {
                    offsets.insert(key, m.next_offset).map_err(idx("raise offset"))?;
                }
                out.push(self.to_file(id, stored));
            }
            // The names must be durable before the index lists them, or a crash could leave a
            // record pointing at nothing while the offsets already moved past its events.
            self.disk.fsync_dir(&self.data)?;
            counters.insert(NEXT_ID, first_id + files.len() as u64).map_err(idx("bump next id"))?;
            Ok(out)
        });
        match result {
            Ok(out) => {
                let bytes: u64 = sums.iter().map(|(b, _)| b).sum();
                self.data_bytes.fetch_add(bytes, Ordering::Relaxed);
                Ok(out)
            }
            Err(e) if renamed.is_empty() => Err(e),
            Err(e) => self.undo_register(&renamed, &sums, e),
        }
    }

    /// `register_all`'s transaction failed after its renames (caller holds `writer`). A commit
    /// that fails may still have reached the file (an fsync error after the write, say); the
    /// index, reopened by `Index::write` after an I/O error, shows what is durable. Listed: they
    /// are registered after all (one transaction: all of them). Not listed: move each file back
    /// to its `tmp`, so that a failed call changed nothing and a full disk does not keep unlisted
    /// files in `data/`. Unknown (the index cannot be read): leave them; the next open keeps
    /// them if listed, else removes them.
    fn undo_register(&self, renamed: &[(u64, &Path)], sums: &[(u64, u32)], err: SpoolError) -> Result<Vec<SpoolFile>> {
        let (first, _) = renamed[0];
        match self.get(first) {
            Ok(Some(rec)) if (rec.bytes, rec.crc32c) == sums[0] => {
                log::warn!(
                    "spool: register of file {first:020} reported an error ({err}), but the index \
                     lists it: it is registered"
                );
                let mut out = Vec::new();
                for (id, _) in renamed {
                    let rec = self.get(*id)?.ok_or(SpoolError::NotFound { id: *id })?;
                    self.data_bytes.fetch_add(rec.bytes, Ordering::Relaxed);
                    out.push(self.to_file(*id, rec));
                }
                return Ok(out);
            }
            Ok(Some(_)) => log::error!(
                "spool: file {first:020} was listed by someone else during a failed register; \
                 leaving {} alone",
                self.data_path(first).display()
            ),
            Ok(None) => {
                for (id, tmp) in renamed {
                    let dest = self.data_path(*id);
                    if let Err(e) = self.disk.raw_rename(&dest, tmp) {
                        log::warn!(
                            "spool: could not move {} back to {} after a failed register ({e}); \
                             the next open removes it",
                            dest.display(),
                            tmp.display()
                        );
                    }
                }
                if let Err(e) = self.disk.fsync_dir(&self.data) {
                    // Not needed for safety: if a rename back is lost, the file is an unlisted
                    // orphan that the next open removes.
                    log::warn!("spool: {e}");
                }
            }
            Err(e) => log::warn!(
                "spool: cannot tell whether file {first:020} was registered ({e}); it stays, and \
                 the next open keeps it only if the index lists it"
            ),
        }
        Err(err)
    }

    /// Every record, ordered by id.
    pub fn files(&self) -> Result<Vec<SpoolFile>> {
        let all =
            self.index.read("files", |txn| index::all_files(&txn.open_table(FILES).map_err(idx("open files"))?))?;
        Ok(all.into_iter().map(|(id, f)| self.to_file(id, f)).collect())
    }

    /// Reads a file and checks its size and CRC32C against the record. A mismatch or a missing
    /// file moves it to `quarantine/` (unless it is already committed: its rows are in the
    /// table and the file only awaits deletion) and returns [`SpoolError::Corrupt`].
    pub fn read_verified(&self, id: u64) -> Result<Vec<u8>> {
        let rec = self.get(id)?.ok_or(SpoolError::NotFound { id })?;
        if let FileState::Quarantined { reason } = &rec.state {
            return Err(SpoolError::Corrupt { id, reason: format!("quarantined earlier: {reason}") });
        }
        let path = self.data_path(id);
        let reason = match self.disk.read(&path)? {
            Some(b) if b.len() as u64 != rec.bytes => {
                format!("size is {} bytes, the index recorded {}", b.len(), rec.bytes)
            }
            Some(b) => match crc32c::crc32c(&b) {
                crc if crc == rec.crc32c => return Ok(b),
                crc => format!("CRC32C is {crc:08x}, the index recorded {:08x}", rec.crc32c),
            },
            None => "file missing".to_string(),
        };
        if rec.state != FileState::Committed {
            let _w = self.lock();
            self.quarantine_locked(id, &reason)?;
        }
        Err(SpoolError::Corrupt { id, reason })
    }

    /// `Written` -> `Uploaded { location }`; a repeat with the same location is a no-op.
    pub fn mark_uploaded(&self, id: u64, location: &str) -> Result<()> {
        self.mark_uploaded_many(&[id], location)
    }

    /// Marks several files `Uploaded` at one location (they were merged into one object) in ONE
    /// transaction: a crash never leaves part of a merged object's sources `Written`, which would
    /// upload their rows a second time. Idempotent for files already uploaded at `location`.
    pub fn mark_uploaded_many(&self, ids: &[u64], location: &str) -> Result<()> {
        let _w = self.lock();
        let mut todo = Vec::with_capacity(ids.len());
        for &id in ids {
            match self.get(id)?.ok_or(SpoolError::NotFound { id })?.state {
                FileState::Written => todo.push(id),
                FileState::Uploaded { location: l } if l == location => {}
                state => {
                    return Err(SpoolError::WrongState { id, state, operation: "mark uploaded" });
                }
            }
        }
        if todo.is_empty() {
            return Ok(());
        }
        let uploaded = FileState::Uploaded { location: location.to_string() };
        self.set_states("mark uploaded", &todo, |_| Some(uploaded.clone()))
    }

    /// Moves a file to `quarantine/{id:020}.parquet` with its reason in a `.reason` file beside
    /// it, and marks it `Quarantined`. Committed files cannot be quarantined; quarantining twice
    /// keeps the first reason.
    pub fn quarantine(&self, id: u64, reason: &str) -> Result<()> {
        let _w = self.lock();
        self.quarantine_locked(id, reason)
    }

    /// Next offset to fetch per (topic, partition), as raised by `register`.
    pub fn offsets(&self) -> Result<BTreeMap<(String, i32), i64>> {
        self.index.read("offsets", |txn| index::all_offsets(&txn.open_table(OFFSETS).map_err(idx("open offsets"))?))
    }

    /// Stores a small value durably (one transaction).
    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        self.index.write("put meta", |txn| {
            let mut t = txn.open_table(META).map_err(idx("open meta"))?;
            t.insert(key, value).map_err(idx(format!("put meta {key:?}")))?;
            Ok(())
        })
    }

    /// Removes a meta key; a missing key is fine.
    pub fn delete_meta(&self, key: &str) -> Result<()> {
        self.index.write("delete meta", |txn| {
            let mut t = txn.open_table(META).map_err(idx("open meta"))?;
            t.remove(key).map_err(idx(format!("delete meta {key:?}")))?;
            Ok(())
        })
    }

    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.index.read("get meta", |txn| {
            let t = txn.open_table(META).map_err(idx("open meta"))?;
            let v = t.get(key).map_err(idx(format!("get meta {key:?}")))?;
            Ok(v.map(|g| g.value().to_vec()))
        })
    }

    pub fn status(&self) -> Result<Status> {
        let mut s = Status::default();
        for f in self.files()? {
            match f.state {
                FileState::Written => s.written += 1,
                FileState::Uploaded { .. } => s.uploaded += 1,
                FileState::Committed => s.committed += 1,
                FileState::Quarantined { .. } => {
                    s.quarantined += 1;
                    // May differ from the record (truncated) or be gone (missing).
                    s.bytes += self.disk.file_len(&f.path)?.unwrap_or(0);
                    continue;
                }
            }
            s.bytes += f.bytes;
        }
        Ok(s)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Test hook (feature `fault-injection`, never in production builds): the next index
    /// commit fails with an I/O error of this kind, as if the disk had refused it.
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn inject_commit_failure(&self, kind: std::io::ErrorKind) {
        self.index.inject_commit_failure(kind);
    }

    pub(crate) fn sub_data_bytes(&self, n: u64) {
        // Under `writer`, so a plain load/store would do; saturating in case of a bug.
        let _ = self.data_bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(b.saturating_sub(n)));
    }
}
