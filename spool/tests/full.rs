//! Quota, free-space floor and a full disk.
//!
//! The full-disk tests use a real filesystem that fills up: a small tmpfs mounted for the test
//! (needs root, or CAP_SYS_ADMIN). Where the mount is refused (CI runners without root, some
//! sandboxes), or with `FRAZIL_NO_TMPFS=1`, they fall back to an INJECTED failure (feature
//! `fault-injection`: the next index commit fails with ENOSPC) and say so on stderr. The
//! fallback checks the spool's own error path, not the kernel's behaviour.

mod common;

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{meta, names, write_tmp};
use frazil_spool::{FileMeta, FileState, Spool, SpoolError, SpoolOptions, Usage};

/// A tmpfs mounted on a fresh temporary directory, unmounted on drop. Declare it before the
/// `Spool` that lives on it, so the spool is dropped (and its files closed) first.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (with the reason and `fallback` on stderr) when mounting is not possible here.
    fn mount(size: &str, test: &str, fallback: &str) -> Option<Tmpfs> {
        if std::env::var_os("FRAZIL_NO_TMPFS").is_some() {
            eprintln!("{test}: FRAZIL_NO_TMPFS is set: {fallback}");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            Ok(o) => {
                eprintln!("{test}: cannot mount a tmpfs ({}): {fallback}", String::from_utf8_lossy(&o.stderr).trim());
                None
            }
            Err(e) => {
                eprintln!("{test}: cannot run mount ({e}): {fallback}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `path` until the filesystem refuses; returns the error the writer got.
    fn fill(&self, path: &Path) -> std::io::Error {
        let mut f = fs::File::create(path).unwrap();
        // Big chunks first, then page-sized ones, until not even one page is left.
        for chunk in [64 << 10, 4 << 10, 1] {
            let buf = vec![0x5a; chunk];
            loop {
                if let Err(e) = f.write_all(&buf) {
                    if chunk == 1 {
                        return e;
                    }
                    break;
                }
            }
        }
        unreachable!()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(self.dir.path()).status().is_ok_and(|s| s.success());
        if !ok {
            // Something still holds it (a failed test's leaked file): detach it anyway.
            let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
        }
    }
}

fn open_opts(dir: &Path, opts: SpoolOptions) -> Spool {
    Spool::open(dir, opts).expect("open spool").0
}

/// What must not change when a call fails: the records, the offsets, the files in data/.
fn snapshot(spool: &Spool) -> (Vec<frazil_spool::SpoolFile>, Vec<String>, Usage) {
    let mut u = spool.usage().unwrap();
    u.free_disk = None; // changes with everything else on the disk
    (spool.files().unwrap(), names(&spool.dir().join("data")), u)
}

fn big_meta(first: i64, extra_bytes: usize) -> FileMeta {
    let mut m = meta("db.t", "events", 0, first, first + 10);
    // A large `extra` forces redb to write new pages (its file grows sparsely), so the commit
    // itself needs space. A real DataFile is 1-2 KB; this is only to make the test certain.
    m.extra = vec![b'x'; extra_bytes];
    m
}

#[test]
fn register_on_full_disk_fails_cleanly_and_spool_keeps_working() {
    let tmpfs = Tmpfs::mount(
        "4m",
        "register_on_full_disk",
        "FALLING BACK to an injected ENOSPC on the index commit (not a real full disk)",
    );
    let scratch = tempfile::tempdir().unwrap();
    let root = tmpfs.as_ref().map_or(scratch.path(), |t| t.path()).join("spool");
    let spool = open_opts(&root, SpoolOptions::default());
    for i in 0..3 {
        spool.register(&write_tmp(&spool, b"warm up"), meta("db.t", "events", 0, i, i + 1)).unwrap();
    }
    let body: Vec<u8> = (0..64 << 10).map(|i| (i % 251) as u8).collect();
    let tmp = write_tmp(&spool, &body);
    let before = snapshot(&spool);
    let offsets = spool.offsets().unwrap();

    let filler = tmpfs.as_ref().map(|t| t.path().join("filler"));
    match (&tmpfs, &filler) {
        (Some(t), Some(f)) => {
            let e = t.fill(f);
            assert_eq!(e.kind(), ErrorKind::StorageFull, "{e}");
            assert!(spool.usage().unwrap().free_disk.unwrap() < 4096);
        }
        _ => spool.inject_commit_failure(ErrorKind::StorageFull),
    }

    let err = spool.register(&tmp, big_meta(3, 512 << 10)).expect_err("register on a full disk succeeded");
    assert!(err.is_full(), "not reported as full: {err:?}");
    assert!(matches!(err, SpoolError::Full { .. }), "{err:?}");
    assert!(err.to_string().contains("disk full"), "{err}");
    // Nothing happened: the file is back where the caller put it, untouched; no half-written
    // or unlisted file in data/; the index, offsets and byte count are as they were.
    assert_eq!(fs::read(&tmp).unwrap(), body, "file not handed back intact");
    assert_eq!(snapshot(&spool), before);
    assert_eq!(spool.offsets().unwrap(), offsets);

    // Space comes back (uploads, removals, an operator): the same Spool works, no reopen.
    if let Some(f) = &filler {
        fs::remove_file(f).unwrap();
    }
    let f = spool.register(&tmp, big_meta(3, 512 << 10)).unwrap();
    assert_eq!(spool.read_verified(f.id).unwrap(), body);
    assert_eq!(f.id, 4, "the failed register must not have used up an id");
    spool.mark_uploaded(f.id, "s3://b/4").unwrap();
    common::commit(&spool, "db.t", &[f.id]);
    assert_eq!(spool.remove_committed().unwrap(), 1);
    assert_eq!(spool.usage().unwrap().bytes, 3 * 7);
    assert_eq!(spool.offsets().unwrap()[&("events".to_string(), 0)], 13);
    drop(spool);

    let (spool, rec) = Spool::open(&root, SpoolOptions::default()).unwrap();
    assert!(rec.orphans_removed.is_empty() && rec.missing.is_empty(), "{rec:?}");
    assert_eq!(spool.files().unwrap().len(), 3);
    for f in spool.files().unwrap() {
        spool.read_verified(f.id).unwrap();
    }
}

#[test]
fn caller_hitting_enospc_in_temp_path_leaves_index_untouched() {
    let tmpfs =
        Tmpfs::mount("1m", "caller_hitting_enospc", "FALLING BACK to a half-written temp file (no real ENOSPC)");
    let scratch = tempfile::tempdir().unwrap();
    let root = tmpfs.as_ref().map_or(scratch.path(), |t| t.path()).join("spool");
    let opts = SpoolOptions { min_free_bytes: Some(64 << 10), ..SpoolOptions::default() };
    let spool = open_opts(&root, opts.clone());
    let kept = spool.register(&write_tmp(&spool, b"kept"), meta("db.t", "events", 0, 0, 5)).unwrap();
    let before = snapshot(&spool);
    assert!(spool.has_room(1).unwrap());

    // The caller writes its Parquet file into temp_path() and the disk fills up under it: its
    // own write fails before the spool is even asked. It then crashes without cleaning up.
    let tmp: PathBuf = spool.temp_path();
    match &tmpfs {
        Some(t) => {
            let e = t.fill(&tmp);
            assert_eq!(e.kind(), ErrorKind::StorageFull, "{e}");
            assert!(!spool.has_room(0).unwrap(), "floor not enforced on a full disk");
            let u = spool.usage().unwrap();
            assert!(u.free_disk.unwrap() < 4096, "{u:?}");
        }
        None => fs::write(&tmp, vec![0u8; 100 << 10]).unwrap(), // a half-written file
    }
    assert_eq!(snapshot(&spool), before, "a caller's failed write touched the spool");
    drop(spool);

    let (spool, rec) = Spool::open(&root, opts).unwrap();
    assert!(names(&root.join("tmp")).is_empty(), "temp file not cleaned at open");
    assert!(rec.orphans_removed.is_empty() && rec.missing.is_empty(), "{rec:?}");
    assert_eq!(snapshot(&spool), before);
    assert!(spool.has_room(1).unwrap(), "space not back after cleanup");
    assert_eq!(spool.read_verified(kept.id).unwrap(), b"kept");
    let f = spool.register(&write_tmp(&spool, b"after"), meta("db.t", "events", 0, 5, 9)).unwrap();
    assert_eq!(spool.read_verified(f.id).unwrap(), b"after");
}

#[test]
fn quota_counts_bytes_in_data_and_drives_has_room() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SpoolOptions { max_bytes: Some(1000), ..SpoolOptions::default() };
    let spool = open_opts(dir.path(), opts.clone());
    let usage = |s: &Spool| s.usage().unwrap();
    assert_eq!(usage(&spool).bytes, 0);
    assert_eq!(usage(&spool).max_bytes, Some(1000));
    assert_eq!(usage(&spool).min_free_bytes, None);
    assert!(spool.has_room(1000).unwrap());
    assert!(!spool.has_room(1001).unwrap());

    let a = spool.register(&write_tmp(&spool, &[1; 400]), meta("db.t", "e", 0, 0, 1)).unwrap();
    let b = spool.register(&write_tmp(&spool, &[2; 500]), meta("db.t", "e", 0, 1, 2)).unwrap();
    assert_eq!(usage(&spool).bytes, 900);
    assert!(spool.has_room(100).unwrap());
    assert!(!spool.has_room(101).unwrap());

    // The spool never refuses data on its own: over the quota, register still works, and
    // has_room tells the caller to stop fetching.
    let c = spool.register(&write_tmp(&spool, &[3; 300]), meta("db.t", "e", 0, 2, 3)).unwrap();
    assert_eq!(usage(&spool).bytes, 1200);
    assert!(!spool.has_room(0).unwrap());

    // Quarantined files leave data/ and stop counting.
    spool.quarantine(a.id, "bad").unwrap();
    assert_eq!(usage(&spool).bytes, 800);
    // Committed files count until removed.
    for id in [b.id, c.id] {
        spool.mark_uploaded(id, &format!("s3://{id}")).unwrap();
    }
    common::commit(&spool, "db.t", &[b.id]);
    assert_eq!(usage(&spool).bytes, 800);
    spool.remove_committed().unwrap();
    assert_eq!(usage(&spool).bytes, 300);
    assert!(spool.has_room(700).unwrap());
    // A file found corrupt by read_verified is quarantined and stops counting too.
    fs::write(&c.path, b"changed").unwrap();
    assert!(spool.read_verified(c.id).is_err());
    assert_eq!(usage(&spool).bytes, 0);
    spool.register(&write_tmp(&spool, &[4; 250]), meta("db.t", "e", 0, 3, 4)).unwrap();
    drop(spool);

    // Reopened (and after a crash): recomputed from the index, not from a directory scan.
    let spool = open_opts(dir.path(), opts);
    assert_eq!(usage(&spool).bytes, 250);
    let states: Vec<_> = spool.files().unwrap().into_iter().map(|f| f.state).collect();
    assert_eq!(states.len(), 3);
    assert_eq!(states[2], FileState::Written);
}

#[test]
fn free_space_floor_uses_the_spools_filesystem() {
    // No floor: has_room ignores the disk.
    let dir = tempfile::tempdir().unwrap();
    let spool = open_opts(dir.path(), SpoolOptions::default());
    assert!(spool.has_room(u64::MAX).unwrap());
    let free = spool.usage().unwrap().free_disk.expect("free space known on Unix");
    assert!(free > 0);
    drop(spool);
    // A floor above the disk's free space: no room; overflow-safe.
    let spool = open_opts(dir.path(), SpoolOptions { min_free_bytes: Some(u64::MAX), ..SpoolOptions::default() });
    assert!(!spool.has_room(0).unwrap());
    assert!(!spool.has_room(u64::MAX).unwrap());
    drop(spool);

    // On a tmpfs of known size the figure is exact, and has_room flips at free - floor.
    let Some(t) = Tmpfs::mount("1m", "free_space_floor", "skipping the exact check on a tmpfs of known size") else {
        return;
    };
    let root = t.path().join("spool");
    let floor = 256 << 10;
    let spool = open_opts(&root, SpoolOptions { min_free_bytes: Some(floor), ..SpoolOptions::default() });
    let free = spool.usage().unwrap().free_disk.unwrap();
    // 1 MiB minus the index (redb's initial file) and the directories.
    assert!(free > 512 << 10 && free < 1 << 20, "{free}");
    assert!(spool.has_room(free - floor).unwrap());
    assert!(!spool.has_room(free - floor + 1).unwrap());
    let ballast = t.path().join("ballast");
    fs::write(&ballast, vec![0u8; 128 << 10]).unwrap();
    assert_eq!(spool.usage().unwrap().free_disk.unwrap(), free - (128 << 10));
    assert!(!spool.has_room(free - floor).unwrap());
    drop(spool);
}

#[test]
fn committed_files_kept_for_queries_are_evicted_oldest_first_when_room_is_needed() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open_opts(dir.path(), SpoolOptions { max_bytes: Some(1000), ..SpoolOptions::default() });
    let ids: Vec<u64> = (0..3)
        .map(|i| spool.register(&write_tmp(&spool, &[i as u8; 300]), meta("db.t", "e", 0, i, i + 1)).unwrap().id)
        .collect();
    for &id in &ids {
        spool.mark_uploaded(id, &format!("s3://{id}")).unwrap();
    }
    common::commit(&spool, "db.t", &ids);
    // Kept: nothing needs room yet, so nothing goes.
    assert_eq!(spool.evict_committed_for_room(0).unwrap(), 0);
    let written = spool.register(&write_tmp(&spool, &[9; 300]), meta("db.t", "e", 0, 3, 4)).unwrap();
    assert!(!spool.has_room(0).unwrap(), "1200 bytes against a quota of 1000");
    // Only as many as room needs, the oldest first; a file not yet committed is never touched.
    assert_eq!(spool.evict_committed_for_room(0).unwrap(), 1);
    assert!(spool.has_room(0).unwrap());
    let left: Vec<u64> = spool.files().unwrap().iter().map(|f| f.id).collect();
    assert_eq!(left, vec![ids[1], ids[2], written.id]);
    assert!(!dir.path().join(format!("data/{:020}.parquet", ids[0])).exists());
    assert_eq!(spool.evict_committed_for_room(500).unwrap(), 2, "for more room, every kept file");
    assert_eq!(spool.files().unwrap().iter().map(|f| f.id).collect::<Vec<_>>(), vec![written.id]);
    assert!(spool.has_room(500).unwrap());
    assert_eq!(spool.evict_committed_for_room(800).unwrap(), 0, "the written file stays, room or not");
    assert!(!spool.has_room(800).unwrap());
    // Chosen removal keeps the rest.
    spool.mark_uploaded(written.id, "s3://w").unwrap();
    common::commit(&spool, "db.t", &[written.id]);
    assert_eq!(spool.remove_committed_where(|f| f.id != written.id).unwrap(), 0);
    assert_eq!(spool.remove_committed_where(|f| f.id == written.id).unwrap(), 1);
}
