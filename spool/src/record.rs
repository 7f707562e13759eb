//! Public value types and the byte encoding of what the index stores.
//!
//! Pure code: no I/O, no redb. The encoding is a small hand-written binary format rather than
//! JSON because `FileMeta::extra` (an Iceberg DataFile as JSON, often 1-2 KB) would be stored by
//! serde_json as an array of decimal numbers, tripling the index on a disk-constrained gateway.
//! The layout is specified byte for byte in DESIGN.md; keep the two in step.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What the caller knows about a spooled file: where its events came from and where they go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub table: String,
    pub topic: String,
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    /// The offset to fetch next once this file is spooled; `register` raises the stored
    /// per-partition offset to it.
    pub next_offset: i64,
    pub rows: u64,
    /// Opaque bytes kept with the file (the main crate stores an Iceberg DataFile as JSON).
    pub extra: Vec<u8>,
}

/// Where a spooled file is in its life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum FileState {
    /// Durably in `data/`, listed in the index; not yet in object storage.
    Written,
    /// Copied to object storage at `location`; not yet part of a table snapshot.
    Uploaded { location: String },
    /// Part of a committed table snapshot; the local file is only awaiting deletion.
    Committed,
    /// Set aside in `quarantine/` (or missing); never retried automatically.
    Quarantined { reason: String },
}

/// One record of the index, as returned to callers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolFile {
    pub id: u64,
    pub meta: FileMeta,
    /// Size of the file in bytes, measured at `register`.
    pub bytes: u64,
    /// CRC32C of the file's bytes, computed at `register`.
    pub crc32c: u32,
    pub state: FileState,
    /// `data/{id:020}.parquet`, or `quarantine/{id:020}.parquet` once quarantined.
    pub path: PathBuf,
}

/// A commit the caller is about to make (or has made) to the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingCommit {
    pub table: String,
    pub commit_id: String,
    pub ids: Vec<u64>,
}

/// What `Spool::open` found and repaired.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Files in `data/` that no record listed; they were deleted.
    pub orphans_removed: Vec<PathBuf>,
    /// Records whose file was gone although not committed, as they were before recovery
    /// (so an `Uploaded` one still shows its location). They are now `Quarantined`.
    pub missing: Vec<SpoolFile>,
    /// Commits begun but neither finished nor abandoned: ask the catalog whether they landed.
    pub pending: Vec<PendingCommit>,
}

/// Counts of records per state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Status {
    pub written: u64,
    pub uploaded: u64,
    pub committed: u64,
    pub quarantined: u64,
    /// Bytes of spool files present on disk (`data/` and `quarantine/`).
    pub bytes: u64,
}

/// How full the spool is, from [`crate::Spool::usage`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of the files in `data/` (Written, Uploaded, and Committed until
    /// `remove_committed`), as recorded at `register`. Quarantined files are not counted.
    pub bytes: u64,
    /// The quota, [`crate::SpoolOptions::max_bytes`].
    pub max_bytes: Option<u64>,
    /// Bytes available on the spool's filesystem (statvfs `f_bavail` × `f_frsize`); `None`
    /// where unknown (non-Unix).
    pub free_disk: Option<u64>,
    /// The floor, [`crate::SpoolOptions::min_free_bytes`].
    pub min_free_bytes: Option<u64>,
}

impl Usage {
    /// True when `incoming` more bytes would take the spool past its quota.
    pub fn over_quota(&self, incoming: u64) -> bool {
        self.max_bytes.is_some_and(|max| self.bytes.saturating_add(incoming) > max)
    }

    /// True when `incoming` more bytes would leave less than the floor free on the disk (never
    /// when the free space is unknown).
    pub fn below_floor(&self, incoming: u64) -> bool {
        match (self.free_disk, self.min_free_bytes) {
            (Some(free), Some(floor)) => free < floor.saturating_add(incoming),
            _ => false,
        }
    }
}

/// The value stored per file id in the `files` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredFile {
    pub meta: FileMeta,
    pub bytes: u64,
    pub crc32c: u32,
    pub state: FileState,
}

/// The value stored per commit id in the `pending_commits` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredPending {
    pub table: String,
    pub ids: Vec<u64>,
}

const VERSION: u8 = 1;
const WRITTEN: u8 = 0;
const UPLOADED: u8 = 1;
const COMMITTED: u8 = 2;
const QUARANTINED: u8 = 3;

impl StoredFile {
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let m = &self.meta;
        let mut out = Vec::with_capacity(64 + m.table.len() + m.topic.len() + m.extra.len());
        out.push(VERSION);
        out.extend_from_slice(&self.bytes.to_le_bytes());
        out.extend_from_slice(&self.crc32c.to_le_bytes());
        match &self.state {
            FileState::Written => out.push(WRITTEN),
            FileState::Uploaded { location } => {
                out.push(UPLOADED);
                put_blob(&mut out, location.as_bytes())?;
            }
            FileState::Committed => out.push(COMMITTED),
            FileState::Quarantined { reason } => {
                out.push(QUARANTINED);
                put_blob(&mut out, reason.as_bytes())?;
            }
        }
        put_blob(&mut out, m.table.as_bytes())?;
        put_blob(&mut out, m.topic.as_bytes())?;
        out.extend_from_slice(&m.partition.to_le_bytes());
        out.extend_from_slice(&m.first_offset.to_le_bytes());
        out.extend_from_slice(&m.last_offset.to_le_bytes());
        out.extend_from_slice(&m.next_offset.to_le_bytes());
        out.extend_from_slice(&m.rows.to_le_bytes());
        put_blob(&mut out, &m.extra)?;
        Ok(out)
    }

    pub fn decode(buf: &[u8]) -> Result<Self, String> {
        let mut r = Reader(buf);
        r.version()?;
        let bytes = r.u64()?;
        let crc32c = r.u32()?;
        let state = match r.u8()? {
            WRITTEN => FileState::Written,
            UPLOADED => FileState::Uploaded { location: r.string()? },
            COMMITTED => FileState::Committed,
            QUARANTINED => FileState::Quarantined { reason: r.string()? },
            tag => return Err(format!("unknown state tag {tag}")),
        };
        let meta = FileMeta {
            table: r.string()?,
            topic: r.string()?,
            partition: i32::from_le_bytes(r.array()?),
            first_offset: i64::from_le_bytes(r.array()?),
            last_offset: i64::from_le_bytes(r.array()?),
            next_offset: i64::from_le_bytes(r.array()?),
            rows: r.u64()?,
            extra: r.blob()?.to_vec(),
        };
        r.end()?;
        Ok(StoredFile { meta, bytes, crc32c, state })
    }
}

impl StoredPending {
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(9 + self.table.len() + 8 * self.ids.len());
        out.push(VERSION);
        put_blob(&mut out, self.table.as_bytes())?;
        let n = u32::try_from(self.ids.len()).map_err(|_| "too many ids".to_string())?;
        out.extend_from_slice(&n.to_le_bytes());
        for id in &self.ids {
            out.extend_from_slice(&id.to_le_bytes());
        }
        Ok(out)
    }

    pub fn decode(buf: &[u8]) -> Result<Self, String> {
        let mut r = Reader(buf);
        r.version()?;
        let table = r.string()?;
        let n = r.u32()?;
        // Bound the allocation by what the buffer can hold, not by the length field.
        let mut ids = Vec::with_capacity((n as usize).min(r.0.len() / 8));
        for _ in 0..n {
            ids.push(r.u64()?);
        }
        r.end()?;
        Ok(StoredPending { table, ids })
    }
}

fn put_blob(out: &mut Vec<u8>, b: &[u8]) -> Result<(), String> {
    let n = u32::try_from(b.len()).map_err(|_| format!("field of {} bytes is too long", b.len()))?;
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(b);
    Ok(())
}

/// A cursor over an encoded value; every read checks bounds so a damaged value is an error,
/// never a panic.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!("value truncated: wanted {n} more bytes, {} left", self.0.len()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn blob(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, String> {
        let b = self.blob()?;
        String::from_utf8(b.to_vec()).map_err(|e| format!("invalid UTF-8 in string field: {e}"))
    }
    fn version(&mut self) -> Result<(), String> {
        match self.u8()? {
            VERSION => Ok(()),
            v => Err(format!("unknown value version {v} (this build reads version {VERSION})")),
        }
    }
    fn end(&self) -> Result<(), String> {
        match self.0.len() {
            0 => Ok(()),
            n => Err(format!("{n} unexpected trailing bytes")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_limits_count_the_incoming_bytes() {
        let u = Usage { bytes: 90, max_bytes: Some(100), free_disk: Some(500), min_free_bytes: Some(400) };
        assert!(!u.over_quota(10), "exactly at the quota is allowed");
        assert!(u.over_quota(11));
        assert!(!u.below_floor(100), "exactly at the floor is allowed");
        assert!(u.below_floor(101));
        let unbounded = Usage { bytes: u64::MAX, max_bytes: None, free_disk: None, min_free_bytes: Some(400) };
        assert!(!unbounded.over_quota(u64::MAX));
        assert!(!unbounded.below_floor(u64::MAX), "unknown free space is no reason to pause");
    }

    fn sample(state: FileState) -> StoredFile {
        StoredFile {
            meta: FileMeta {
                table: "db.events".into(),
                topic: "events".into(),
                partition: -3,
                first_offset: 10,
                last_offset: 19,
                next_offset: 20,
                rows: 10,
                extra: br#"{"file_path":"s3://b/x.parquet"}"#.to_vec(),
            },
            bytes: 4096,
            crc32c: 0xdead_beef,
            state,
        }
    }

    #[test]
    fn every_state_round_trips() {
        for state in [
            FileState::Written,
            FileState::Uploaded { location: "s3://bucket/a.parquet".into() },
            FileState::Committed,
            FileState::Quarantined { reason: "crc mismatch".into() },
        ] {
            let f = sample(state);
            assert_eq!(StoredFile::decode(&f.encode().unwrap()).unwrap(), f);
        }
    }

    #[test]
    fn pending_round_trips() {
        let p = StoredPending { table: "t".into(), ids: vec![1, 2, u64::MAX] };
        assert_eq!(StoredPending::decode(&p.encode().unwrap()).unwrap(), p);
    }

    #[test]
    fn damaged_values_are_errors_not_panics() {
        let enc = sample(FileState::Written).encode().unwrap();
        for n in 0..enc.len() {
            assert!(StoredFile::decode(&enc[..n]).is_err(), "prefix of {n} bytes decoded");
        }
        let mut long = enc.clone();
        long.push(0);
        assert!(StoredFile::decode(&long).is_err());
        let mut bad_tag = enc.clone();
        bad_tag[13] = 9;
        assert!(StoredFile::decode(&bad_tag).is_err());
        let mut bad_version = enc;
        bad_version[0] = 2;
        assert!(StoredFile::decode(&bad_version).unwrap_err().contains("version"));
        // A huge id count must not allocate before failing.
        let mut p = StoredPending { table: String::new(), ids: vec![] }.encode().unwrap();
        p[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(StoredPending::decode(&p).is_err());
    }
}
