//! The redb index: table definitions, opening (with lock and corruption mapping) and typed
//! access to records. Every state change of the spool is exactly one `Index::write` call, i.e.
//! one redb transaction committed with the default `Durability::Immediate`.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use redb::{
    Database, DatabaseError, ReadTransaction, ReadableDatabase, ReadableTable, StorageError, Table,
    TableDefinition, WriteTransaction,
};

use crate::PendingCommit;
use crate::error::{Result, SpoolError, idx};
use crate::record::{StoredFile, StoredPending};

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
    db: Database,
}

impl Index {
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Index> {
        let mut builder = Database::builder();
        builder.set_cache_size(cache_bytes);
        // redb documents that a plain open of a file altered behind its back may panic, while
        // an integrity check turns that into `StorageError::Corrupted`. The index is small, so
        // checking every page at each start is cheap insurance against a damaged SD card.
        builder.set_check_integrity_on_open(true);
        // Belt and braces for unwinding builds: a damaged index must be an error the operator
        // can act on, never a crash loop.
        let opened = catch_unwind(AssertUnwindSafe(|| builder.create(path)));
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(e)) => return Err(open_error(path, e)),
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                return Err(SpoolError::CorruptIndex {
                    path: path.to_path_buf(),
                    detail: format!("redb panicked while opening it: {msg}"),
                });
            }
        };
        let index = Index { db };
        // Create every table up front so read transactions never meet a missing table.
        index.write("create tables", |txn| {
            txn.open_table(FILES).map_err(idx("open files table"))?;
            txn.open_table(PENDING)
                .map_err(idx("open pending_commits table"))?;
            txn.open_table(OFFSETS).map_err(idx("open offsets table"))?;
            txn.open_table(META).map_err(idx("open meta table"))?;
            txn.open_table(COUNTERS)
                .map_err(idx("open counters table"))?;
            Ok(())
        })?;
        Ok(index)
    }

    /// Runs `f` in a read transaction (a consistent snapshot).
    pub fn read<T>(
        &self,
        context: &str,
        f: impl FnOnce(&ReadTransaction) -> Result<T>,
    ) -> Result<T> {
        let txn = self
            .db
            .begin_read()
            .map_err(idx(format!("{context}: begin read")))?;
        f(&txn)
    }

    /// Runs `f` in a write transaction and commits it durably. If `f` fails the transaction is
    /// dropped, which aborts it: nothing of it reaches the file.
    pub fn write<T>(
        &self,
        context: &str,
        f: impl FnOnce(&WriteTransaction) -> Result<T>,
    ) -> Result<T> {
        let txn = self
            .db
            .begin_write()
            .map_err(idx(format!("{context}: begin write")))?;
        let out = f(&txn)?;
        txn.commit().map_err(idx(format!("{context}: commit")))?;
        Ok(out)
    }
}

fn open_error(path: &Path, e: DatabaseError) -> SpoolError {
    let path: PathBuf = path.to_path_buf();
    match e {
        // An open by another process (or another handle in this one: redb uses open file
        // description locks) fails at once instead of waiting.
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
            SpoolError::Locked { path }
        }
        // Permission denied, disk errors and the like are about the environment, not the file.
        DatabaseError::Storage(StorageError::Io(source))
            if !matches!(
                source.kind(),
                ErrorKind::InvalidData | ErrorKind::UnexpectedEof
            ) =>
        {
            SpoolError::Io {
                context: format!("open index {}", path.display()),
                source,
            }
        }
        other => SpoolError::CorruptIndex {
            path,
            detail: other.to_string(),
        },
    }
}

fn undecodable(what: &str, key: impl std::fmt::Display, detail: String) -> SpoolError {
    SpoolError::Index {
        context: format!("decode {what} {key}"),
        detail,
    }
}

pub(crate) fn get_file(
    t: &impl ReadableTable<u64, &'static [u8]>,
    id: u64,
) -> Result<Option<StoredFile>> {
    let Some(v) = t.get(id).map_err(idx(format!("get file {id}")))? else {
        return Ok(None);
    };
    StoredFile::decode(v.value())
        .map(Some)
        .map_err(|d| undecodable("file record", id, d))
}

pub(crate) fn put_file(t: &mut FilesTable<'_>, id: u64, f: &StoredFile) -> Result<()> {
    let v = f.encode().map_err(|d| SpoolError::Index {
        context: format!("encode file {id}"),
        detail: d,
    })?;
    t.insert(id, v.as_slice())
        .map_err(idx(format!("insert file {id}")))?;
    Ok(())
}

pub(crate) fn all_files(
    t: &impl ReadableTable<u64, &'static [u8]>,
) -> Result<Vec<(u64, StoredFile)>> {
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
    let Some(v) = t
        .get(commit_id)
        .map_err(idx(format!("get pending commit {commit_id:?}")))?
    else {
        return Ok(None);
    };
    StoredPending::decode(v.value())
        .map(Some)
        .map_err(|d| undecodable("pending commit", format!("{commit_id:?}"), d))
}

pub(crate) fn all_pending(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<PendingCommit>> {
    let mut out = Vec::new();
    for entry in t.iter().map_err(idx("list pending commits"))? {
        let (k, v) = entry.map_err(idx("list pending commits"))?;
        let commit_id = k.value().to_string();
        let p = StoredPending::decode(v.value())
            .map_err(|d| undecodable("pending commit", format!("{commit_id:?}"), d))?;
        out.push(PendingCommit {
            table: p.table,
            commit_id,
            ids: p.ids,
        });
    }
    Ok(out)
}

pub(crate) fn all_offsets(
    t: &impl ReadableTable<(&'static str, i32), i64>,
) -> Result<BTreeMap<(String, i32), i64>> {
    let mut out = BTreeMap::new();
    for entry in t.iter().map_err(idx("list offsets"))? {
        let (k, v) = entry.map_err(idx("list offsets"))?;
        let (topic, partition) = k.value();
        out.insert((topic.to_string(), partition), v.value());
    }
    Ok(out)
}
