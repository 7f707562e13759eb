//! The redb index: table definitions, opening (with lock and corruption mapping) and typed
//! access to records. Every state change of the spool is exactly one `Index::write` call, i.e.
//! one redb transaction committed with the default `Durability::Immediate`.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use redb::{
    ConcurrencyMode, Database, DatabaseError, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable,
    StorageError, Table, TableDefinition, TransactionError, WriteTransaction,
};

use crate::PendingCommit;
use crate::error::{Result, SpoolError, idx, io};
use crate::fsutil::Disk;
use crate::record::{StoredFile, StoredPending};
use crate::vfs::{Boxed, OsFs};

/// file id -> encoded `StoredFile` (layout in DESIGN.md).
pub(crate) const FILES: TableDefinition<u64, &[u8]> = TableDefinition::new("files");
/// commit id -> encoded `StoredPending`.
pub(crate) const PENDING: TableDefinition<&str, &[u8]> = TableDefinition::new("pending_commits");
/// (topic, partition) -> next offset to fetch.
pub(crate) const OFFSETS: TableDefinition<(&str, i32), i64> = TableDefinition::new("offsets");
/// caller's key/value pairs (`put_meta`).
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// internal counters; separate from META so no caller key can collide with them.
pub(crate) const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
/// Key in COUNTERS: the id the next registered file gets. Ids start at 1 and are never reused.
pub(crate) const NEXT_ID: &str = "next_file_id";

pub(crate) type FilesTable<'t> = Table<'t, u64, &'static [u8]>;

pub(crate) struct Index {
    path: PathBuf,
    cache_bytes: usize,
    /// Where the index lives: a reopen after an I/O error goes through it again.
    disk: Disk,
    /// `None` only after an I/O error poisoned the database and reopening it failed too; every
    /// call then tries to reopen it again first. Readers and writers hold the read lock for the
    /// whole of their transaction, so a reopen (write lock) never races a live transaction,
    /// and the file lock is released before the new open takes it.
    db: RwLock<Slot>,
    /// Test hook: the next commit fails with this error kind instead of committing.
    #[cfg(feature = "fault-injection")]
    injected: std::sync::Mutex<Option<std::io::ErrorKind>>,
}

struct Slot {
    db: Option<Db>,
    /// Bumped on every reopen, so that two threads that saw the same failure reopen once.
    generation: u64,
}

/// The open database: the one writer's handle, or a reader's that follows the writer's commits
/// from another process (`frazil status` beside a running agent).
enum Db {
    Writer(Database),
    Reader(ReadOnlyDatabase),
}

impl Db {
    fn begin_read(&self) -> std::result::Result<ReadTransaction, TransactionError> {
        match self {
            Db::Writer(db) => db.begin_read(),
            Db::Reader(db) => db.begin_read(),
        }
    }
}

impl Index {
    pub fn open(path: &Path, cache_bytes: usize, disk: &Disk) -> Result<Index> {
        let index = Index::with(path, cache_bytes, disk, Db::Writer(open_db(path, cache_bytes, disk)?));
        disk.owner_only(path)?;
        // Create every table up front so read transactions never meet a missing table.
        index.write("create tables", |txn| {
            txn.open_table(FILES).map_err(idx("open files table"))?;
            txn.open_table(PENDING).map_err(idx("open pending_commits table"))?;
            txn.open_table(OFFSETS).map_err(idx("open offsets table"))?;
            txn.open_table(META).map_err(idx("open meta table"))?;
            txn.open_table(COUNTERS).map_err(idx("open counters table"))?;
            Ok(())
        })?;
        Ok(index)
    }

    /// Opens the index for reading only, beside the process that has it open for writing (or
    /// none). Every `write` fails with [`SpoolError::ReadOnly`]. Always on the real filesystem:
    /// it follows another process's commits through redb's file locks.
    pub fn open_read_only(path: &Path, cache_bytes: usize) -> Result<Index> {
        let mut builder = Database::builder();
        builder.set_cache_size(cache_bytes).set_concurrency_mode(ConcurrencyMode::SingleWriter);
        let db = catch_unwind(AssertUnwindSafe(|| builder.open_read_only(path)))
            .map_err(|panic| panicked(path, panic))?
            .map_err(|e| open_error(path, e))?;
        Ok(Index::with(path, cache_bytes, &Disk(std::sync::Arc::new(OsFs)), Db::Reader(db)))
    }

    /// Fails with [`SpoolError::ReadOnly`] on a reader: called before a change that touches files
    /// first, so a reader never renames or removes anything.
    pub fn writable(&self) -> Result<()> {
        match self.live("check writable")?.db {
            Some(Db::Writer(_)) => Ok(()),
            _ => Err(SpoolError::ReadOnly { path: self.path.clone() }),
        }
    }

    fn with(path: &Path, cache_bytes: usize, disk: &Disk, db: Db) -> Index {
        Index {
            path: path.to_path_buf(),
            cache_bytes,
            disk: disk.clone(),
            db: RwLock::new(Slot { db: Some(db), generation: 0 }),
            #[cfg(feature = "fault-injection")]
            injected: std::sync::Mutex::new(None),
        }
    }

    /// Runs `f` in a read transaction (a consistent snapshot).
    pub fn read<T>(&self, context: &str, f: impl FnOnce(&ReadTransaction) -> Result<T>) -> Result<T> {
        let slot = self.live(context)?;
        let db = slot.db.as_ref().expect("live() returns an open database");
        match db.begin_read() {
            Ok(txn) => f(&txn),
            Err(e) => {
                let err = idx(format!("{context}: begin read"))(e);
                let generation = slot.generation;
                drop(slot);
                self.reopen_if_poisoned(generation);
                Err(err)
            }
        }
    }

    /// Runs `f` in a write transaction and commits it durably. If `f` fails the transaction is
    /// dropped, which aborts it: nothing of it reaches the file.
    ///
    /// redb latches an I/O error during a write (a full disk, typically): every later call
    /// returns `PreviousIo` until the database is closed and reopened. So after a failure this
    /// checks for that state and reopens the database, which then shows exactly what is
    /// durable; a full disk is thus survived without restarting the process.
    pub fn write<T>(&self, context: &str, f: impl FnOnce(&WriteTransaction) -> Result<T>) -> Result<T> {
        let slot = self.live(context)?;
        let Db::Writer(db) = slot.db.as_ref().expect("live() returns an open database") else {
            return Err(SpoolError::ReadOnly { path: self.path.clone() });
        };
        let result = (|| {
            let txn = db.begin_write().map_err(idx(format!("{context}: begin write")))?;
            let out = f(&txn)?;
            #[cfg(feature = "fault-injection")]
            if let Some(kind) = self.injected.lock().unwrap_or_else(PoisonError::into_inner).take() {
                drop(txn); // aborts, as a failed commit would
                let e = std::io::Error::new(kind, "injected by the fault-injection feature");
                return Err(idx(format!("{context}: commit (injected failure)"))(e));
            }
            txn.commit().map_err(idx(format!("{context}: commit")))?;
            Ok(out)
        })();
        // Only errors from storage can have poisoned redb; refusals (conflicts, wrong state)
        // skip the check.
        if let Err(SpoolError::Index { .. } | SpoolError::Full { .. } | SpoolError::Io { .. }) = &result {
            let generation = slot.generation;
            drop(slot);
            self.reopen_if_poisoned(generation);
        }
        result
    }

    #[cfg(feature = "fault-injection")]
    pub fn inject_commit_failure(&self, kind: std::io::ErrorKind) {
        *self.injected.lock().unwrap_or_else(PoisonError::into_inner) = Some(kind);
    }

    /// The read guard of an open database, reopening it first if an earlier reopen failed.
    fn live(&self, context: &str) -> Result<RwLockReadGuard<'_, Slot>> {
        {
            let slot = self.db.read().unwrap_or_else(PoisonError::into_inner);
            if slot.db.is_some() {
                return Ok(slot);
            }
        }
        {
            let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
            if slot.db.is_none() {
                // The error names the index; a disk that is still full stays `Full`.
                slot.db = Some(Db::Writer(open_db(&self.path, self.cache_bytes, &self.disk).inspect_err(|e| {
                    log::warn!("spool: {context}: reopening the index failed: {e}");
                })?));
                slot.generation += 1;
                log::info!("spool: index {} reopened", self.path.display());
            }
        }
        Ok(self.db.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// After a failed transaction: if redb has latched an I/O error, close the database and open
    /// it again. A failed reopen leaves `None`, retried by the next call.
    fn reopen_if_poisoned(&self, seen_generation: u64) {
        let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if slot.generation != seen_generation {
            return; // another thread already reopened it
        }
        // Only a writer is reopened (a reader fails its call and the caller retries).
        let Some(Db::Writer(db)) = slot.db.as_ref() else { return };
        // `begin_write` checks redb's latched I/O failure first; on a healthy database it
        // returns a transaction that is dropped (aborted) at once. No other transaction is live:
        // we hold the write lock.
        match db.begin_write() {
            Err(TransactionError::Storage(StorageError::PreviousIo | StorageError::Io(_))) => {}
            _ => return,
        }
        log::warn!("spool: index {} hit an I/O error; closing and reopening it", self.path.display());
        // Dropping closes the file and releases its lock before the new open takes it.
        slot.db = None;
        slot.generation += 1;
        match open_db(&self.path, self.cache_bytes, &self.disk) {
            Ok(db) => slot.db = Some(Db::Writer(db)),
            Err(e) => {
                log::error!("spool: reopening index {} failed ({e}); retrying at the next call", self.path.display())
            }
        }
    }
}

fn open_db(path: &Path, cache_bytes: usize, disk: &Disk) -> Result<Database> {
    let backend = disk.0.index_backend(path).map_err(io(format!("open index {}", path.display())))?;
    let mut builder = Database::builder();
    builder.set_cache_size(cache_bytes);
    // One writer (the agent), and readers in other processes that follow its commits
    // (`Spool::open_read_only`, for `frazil status` while the agent runs). A second writer is
    // still refused (`Locked`). A backend of a `SpoolFs` has no file locks: whoever supplies it
    // keeps others out, and redb's default mode asks for none.
    if backend.is_none() {
        builder.set_concurrency_mode(ConcurrencyMode::SingleWriter);
    }
    // redb documents that a plain open of a file altered behind its back may panic, while
    // an integrity check turns that into `StorageError::Corrupted`. The index is small, so
    // checking every page at each start is cheap insurance against a damaged SD card.
    builder.set_check_integrity_on_open(true);
    // Belt and braces for unwinding builds: a damaged index must be an error the operator
    // can act on, never a crash loop.
    catch_unwind(AssertUnwindSafe(|| match backend {
        None => builder.create(path),
        Some(b) => builder.create_with_backend(Boxed(b)),
    }))
    .map_err(|panic| panicked(path, panic))?
    .map_err(|e| open_error(path, e))
}

fn panicked(path: &Path, panic: Box<dyn std::any::Any + Send>) -> SpoolError {
    let msg = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    SpoolError::CorruptIndex { path: path.to_path_buf(), detail: format!("redb panicked while opening it: {msg}") }
}

fn open_error(path: &Path, e: DatabaseError) -> SpoolError {
    let path: PathBuf = path.to_path_buf();
    match e {
        // An open by another process (or another handle in this one: redb uses open file
        // description locks) fails at once instead of waiting.
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => SpoolError::Locked { path },
        // Permission denied, disk errors and the like are about the environment, not the file.
        DatabaseError::Storage(StorageError::Io(source))
            if !matches!(source.kind(), ErrorKind::InvalidData | ErrorKind::UnexpectedEof) =>
        {
            io(format!("open index {}", path.display()))(source)
        }
        other => SpoolError::CorruptIndex { path, detail: other.to_string() },
    }
}

fn undecodable(what: &str, key: impl std::fmt::Display, detail: String) -> SpoolError {
    SpoolError::Index { context: format!("decode {what} {key}"), detail }
}

pub(crate) fn get_file(t: &impl ReadableTable<u64, &'static [u8]>, id: u64) -> Result<Option<StoredFile>> {
    let Some(v) = t.get(id).map_err(idx(format!("get file {id}")))? else {
        return Ok(None);
    };
    StoredFile::decode(v.value()).map(Some).map_err(|d| undecodable("file record", id, d))
}

pub(crate) fn put_file(t: &mut FilesTable<'_>, id: u64, f: &StoredFile) -> Result<()> {
    let v = f.encode().map_err(|d| SpoolError::Index { context: format!("encode file {id}"), detail: d })?;
    t.insert(id, v.as_slice()).map_err(idx(format!("insert file {id}")))?;
    Ok(())
}

pub(crate) fn all_files(t: &impl ReadableTable<u64, &'static [u8]>) -> Result<Vec<(u64, StoredFile)>> {
    let mut out = Vec::new();
    for entry in t.iter().map_err(idx("list files"))? {
        let (k, v) = entry.map_err(idx("list files"))?;
        let id = k.value();
        let f = StoredFile::decode(v.value()).map_err(|d| undecodable("file record", id, d))?;
        out.push((id, f));
    }
    Ok(out)
}

pub(crate) fn get_pending(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    commit_id: &str,
) -> Result<Option<StoredPending>> {
    let Some(v) = t.get(commit_id).map_err(idx(format!("get pending commit {commit_id:?}")))? else {
        return Ok(None);
    };
    StoredPending::decode(v.value()).map(Some).map_err(|d| undecodable("pending commit", format!("{commit_id:?}"), d))
}

pub(crate) fn all_pending(t: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<Vec<PendingCommit>> {
    let mut out = Vec::new();
    for entry in t.iter().map_err(idx("list pending commits"))? {
        let (k, v) = entry.map_err(idx("list pending commits"))?;
        let commit_id = k.value().to_string();
        let p =
            StoredPending::decode(v.value()).map_err(|d| undecodable("pending commit", format!("{commit_id:?}"), d))?;
        out.push(PendingCommit { table: p.table, commit_id, ids: p.ids });
    }
    Ok(out)
}

pub(crate) fn all_offsets(t: &impl ReadableTable<(&'static str, i32), i64>) -> Result<BTreeMap<(String, i32), i64>> {
    let mut out = BTreeMap::new();
    for entry in t.iter().map_err(idx("list offsets"))? {
        let (k, v) = entry.map_err(idx("list offsets"))?;
        let (topic, partition) = k.value();
        out.insert((topic.to_string(), partition), v.value());
    }
    Ok(out)
}
