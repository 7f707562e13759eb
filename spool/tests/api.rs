//! The happy paths and the refusals of the public API.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{meta, open, write_tmp};
use frazil_spool::{FileState, PendingCommit, Spool, SpoolError, Status};

#[test]
fn spool_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Spool>();
    check::<Arc<Spool>>();
}

#[test]
fn round_trip_through_every_state() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, rec) = open(dir.path());
    assert!(rec.orphans_removed.is_empty() && rec.missing.is_empty() && rec.pending.is_empty());

    let body = b"PAR1 not really parquet PAR1".to_vec();
    let tmp = write_tmp(&spool, &body);
    let f = spool.register(&tmp, meta("db.t", "events", 0, 0, 10)).unwrap();
    assert!(!tmp.exists(), "register moves the temp file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&f.path), 0o600, "a spool file is its owner's only");
        assert_eq!(mode(&dir.path().join("index.redb")), 0o600, "so is the index");
        assert_eq!(mode(&dir.path().join("data")), 0o700, "and the directories the spool makes");
    }
    assert_eq!(f.id, 1);
    assert_eq!(f.state, FileState::Written);
    assert_eq!(f.bytes, body.len() as u64);
    assert_eq!(f.crc32c, crc32c::crc32c(&body));
    assert_eq!(f.path, dir.path().join("data").join("00000000000000000001.parquet"));
    assert_eq!(spool.files().unwrap(), vec![f.clone()]);
    assert_eq!(spool.read_verified(f.id).unwrap(), body);

    spool.mark_uploaded(f.id, "s3://b/1.parquet").unwrap();
    spool.mark_uploaded(f.id, "s3://b/1.parquet").unwrap(); // idempotent
    assert!(matches!(spool.mark_uploaded(f.id, "s3://b/other.parquet"), Err(SpoolError::WrongState { id: 1, .. })));
    assert_eq!(spool.files().unwrap()[0].state, FileState::Uploaded { location: "s3://b/1.parquet".into() });

    let pc = PendingCommit { table: "db.t".into(), commit_id: "c1".into(), ids: vec![f.id] };
    spool.begin_commit(&pc).unwrap();
    assert_eq!(spool.pending_commits().unwrap(), vec![pc.clone()]);
    spool.finish_commit("c1").unwrap();
    assert!(spool.pending_commits().unwrap().is_empty());
    assert_eq!(spool.files().unwrap()[0].state, FileState::Committed);
    assert_eq!(spool.status().unwrap(), Status { committed: 1, bytes: body.len() as u64, ..Status::default() });
    assert!(matches!(spool.quarantine(f.id, "x"), Err(SpoolError::WrongState { .. })));
    assert!(matches!(spool.mark_uploaded(f.id, "s3://b/1.parquet"), Err(SpoolError::WrongState { .. })));

    assert_eq!(spool.remove_committed().unwrap(), 1);
    assert!(!f.path.exists());
    assert!(spool.files().unwrap().is_empty());
    assert_eq!(spool.status().unwrap(), Status::default());
    assert_eq!(spool.remove_committed().unwrap(), 0);
    // Offsets outlive the files that raised them.
    assert_eq!(spool.offsets().unwrap()[&("events".to_string(), 0)], 10);
    assert!(matches!(spool.read_verified(f.id), Err(SpoolError::NotFound { id: 1 })));
}

#[test]
fn offsets_only_go_up() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path());
    let reg = |p: i32, first: i64, next: i64| {
        let t = write_tmp(&spool, format!("{p}/{first}").as_bytes());
        spool.register(&t, meta("t", "events", p, first, next)).unwrap();
    };
    reg(0, 0, 100);
    reg(0, 20, 50); // a replay of older events must not rewind
    reg(1, 7, 8);
    let want: BTreeMap<_, _> = [(("events".to_string(), 0), 100), (("events".to_string(), 1), 8)].into();
    assert_eq!(spool.offsets().unwrap(), want);
    reg(0, 100, 150);
    assert_eq!(spool.offsets().unwrap()[&("events".to_string(), 0)], 150);
    drop(spool);
    let (spool, _) = open(dir.path());
    assert_eq!(spool.offsets().unwrap()[&("events".to_string(), 0)], 150);
}

#[test]
fn ids_are_never_reused_across_removal_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path());
    let a = spool.register(&write_tmp(&spool, b"a"), meta("t", "e", 0, 0, 1)).unwrap();
    spool.mark_uploaded(a.id, "s3://a").unwrap();
    common::commit(&spool, "t", &[a.id]);
    spool.remove_committed().unwrap();
    drop(spool);
    let (spool, _) = open(dir.path());
    let b = spool.register(&write_tmp(&spool, b"b"), meta("t", "e", 0, 1, 2)).unwrap();
    assert!(b.id > a.id);
}

#[test]
fn pending_commit_abandon_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path());
    let mut ids = Vec::new();
    for (i, table) in ["t", "t", "u"].iter().enumerate() {
        let i = i as i64;
        let f = spool.register(&write_tmp(&spool, b"x"), meta(table, "e", 0, i, i + 1)).unwrap();
        ids.push(f.id);
    }
    let pc = |id: &str, ids: Vec<u64>| PendingCommit { table: "t".into(), commit_id: id.into(), ids };
    let conflict = |r| matches!(r, Err(SpoolError::CommitConflict { .. }));

    assert!(conflict(spool.begin_commit(&pc("c1", vec![ids[0]]))), "not uploaded yet");
    for &id in &ids {
        spool.mark_uploaded(id, &format!("s3://{id}")).unwrap();
    }
    assert!(conflict(spool.begin_commit(&pc("c1", vec![ids[2]]))), "file of another table");
    assert!(conflict(spool.begin_commit(&pc("c1", vec![999]))), "unknown file");
    assert!(conflict(spool.begin_commit(&pc("c1", vec![ids[0], ids[0]]))), "listed twice");

    spool.begin_commit(&pc("c1", vec![ids[0], ids[1]])).unwrap();
    spool.begin_commit(&pc("c1", vec![ids[0], ids[1]])).unwrap(); // same again: no-op
    assert!(conflict(spool.begin_commit(&pc("c1", vec![ids[0]]))), "same id, other files");
    assert!(conflict(spool.begin_commit(&pc("c2", vec![ids[1]]))), "file already pending");

    spool.abandon_commit("c1").unwrap();
    assert!(spool.pending_commits().unwrap().is_empty());
    assert!(spool.files().unwrap().iter().all(|f| matches!(f.state, FileState::Uploaded { .. })));
    assert!(matches!(spool.abandon_commit("c1"), Err(SpoolError::CommitNotFound { .. })));
    assert!(matches!(spool.finish_commit("c1"), Err(SpoolError::CommitNotFound { .. })));

    // The abandoned files can go into a new commit.
    spool.begin_commit(&pc("c2", vec![ids[1], ids[0]])).unwrap();
    spool.finish_commit("c2").unwrap();
    let states: Vec<_> = spool.files().unwrap().into_iter().map(|f| f.state).collect();
    assert_eq!(states[..2], [FileState::Committed, FileState::Committed]);
    assert!(matches!(states[2], FileState::Uploaded { .. }));
}

#[test]
fn meta_key_values_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path());
    assert_eq!(spool.get_meta("schema/db.t").unwrap(), None);
    spool.put_meta("schema/db.t", b"v1").unwrap();
    spool.put_meta("schema/db.t", b"v2").unwrap();
    spool.put_meta("empty", b"").unwrap();
    drop(spool);
    let (spool, _) = open(dir.path());
    assert_eq!(spool.get_meta("schema/db.t").unwrap().as_deref(), Some(&b"v2"[..]));
    assert_eq!(spool.get_meta("empty").unwrap().as_deref(), Some(&b""[..]));
}

#[test]
fn concurrent_registers_get_distinct_ids() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(open(dir.path()).0);
    let handles: Vec<_> = (0..4)
        .map(|p| {
            let spool = Arc::clone(&spool);
            std::thread::spawn(move || {
                for i in 0..5 {
                    let t = write_tmp(&spool, format!("{p}-{i}").as_bytes());
                    spool.register(&t, meta("t", "e", p, i, i + 1)).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let files = spool.files().unwrap();
    assert_eq!(files.len(), 20);
    let ids: Vec<u64> = files.iter().map(|f| f.id).collect();
    assert_eq!(ids, (1..=20).collect::<Vec<_>>());
    for f in &files {
        spool.read_verified(f.id).unwrap();
    }
    assert_eq!(spool.offsets().unwrap().values().copied().collect::<Vec<_>>(), vec![5; 4]);
}

#[test]
fn temp_paths_are_unique_and_in_tmp() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path());
    let (a, b) = (spool.temp_path(), spool.temp_path());
    assert_ne!(a, b);
    assert_eq!(a.parent().unwrap(), dir.path().join("tmp"));
    assert_eq!(spool.dir(), dir.path());
}

#[cfg(unix)]
#[test]
fn spool_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("spool");
    let _ = open(&root);
    for d in ["", "data", "tmp", "quarantine"] {
        let mode = std::fs::metadata(root.join(d)).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{d:?} is {mode:o}");
    }
}

#[test]
fn a_reader_follows_the_writer_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, _) = open(dir.path());
    let first = writer.register(&write_tmp(&writer, b"one"), meta("db.t", "events", 0, 0, 10)).unwrap();

    let reader = Spool::open_read_only(dir.path(), Default::default()).unwrap();
    assert_eq!(reader.files().unwrap(), vec![first.clone()]);
    assert_eq!(reader.usage().unwrap().bytes, 3);

    // The writer goes on; the reader sees each commit.
    let second = writer.register(&write_tmp(&writer, b"two!"), meta("db.t", "events", 0, 10, 20)).unwrap();
    writer.mark_uploaded(first.id, "s3://b/1.parquet").unwrap();
    let files = reader.files().unwrap();
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(files[1], second);
    assert!(matches!(files[0].state, FileState::Uploaded { .. }));
    assert_eq!(reader.offsets().unwrap()[&("events".to_string(), 0)], 20);

    // A reader changes nothing, not even a file in tmp/.
    let tmp = write_tmp(&writer, b"three");
    assert!(matches!(reader.register(&tmp, meta("db.t", "events", 0, 20, 30)), Err(SpoolError::ReadOnly { .. })));
    assert!(tmp.exists(), "the refused register left its file alone");
    assert!(matches!(reader.quarantine(second.id, "x"), Err(SpoolError::ReadOnly { .. })));
    assert!(matches!(reader.put_meta("k", b"v"), Err(SpoolError::ReadOnly { .. })));
    assert!(matches!(reader.remove_committed(), Err(SpoolError::ReadOnly { .. })));
    assert_eq!(writer.files().unwrap().len(), 2);
    assert_eq!(writer.files().unwrap()[1].state, FileState::Written);

    // Readers never let a second writer in.
    assert!(matches!(Spool::open(dir.path(), Default::default()), Err(SpoolError::Locked { .. })));
}

#[test]
fn a_reader_needs_a_spool() {
    let dir = tempfile::tempdir().unwrap();
    assert!(Spool::open_read_only(&dir.path().join("none"), Default::default()).is_err());
}

#[test]
fn a_spool_left_by_a_crash_is_read_from_a_repaired_copy_without_taking_its_lock() {
    let live = tempfile::tempdir().unwrap();
    let (writer, _) = open(live.path());
    writer.register(&write_tmp(&writer, b"one"), meta("db.t", "events", 0, 0, 10)).unwrap();
    // A copy taken while the writer has it open is what a kill -9 leaves: never closed cleanly.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    for name in ["index.redb", "data/00000000000000000001.parquet"] {
        std::fs::copy(live.path().join(name), dir.path().join(name)).unwrap();
    }
    assert!(Spool::open_read_only(dir.path(), Default::default()).is_err(), "a read-only open cannot repair");
    let files = Spool::files_from_copy(dir.path(), Default::default()).unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].path, dir.path().join("data/00000000000000000001.parquet"), "paths point into the spool");
    assert_eq!(files[0].meta, meta("db.t", "events", 0, 0, 10));
    let copies = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("frazil-index-{}-", std::process::id()))
        })
        .count();
    assert_eq!(copies, 0, "the copy is removed");
    // The spool itself was neither repaired nor locked: a start opens it as usual.
    drop(writer);
    let (reopened, _) = open(dir.path());
    assert_eq!(reopened.files().unwrap().len(), 1);
}

#[test]
fn discard_forgets_uncommitted_files_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path());
    let reg = |first: i64| {
        spool.register(&write_tmp(&spool, b"0123456789"), meta("db.t", "events", 0, first, first + 10)).unwrap()
    };
    let (written, uploaded, pending, committed) = (reg(0), reg(10), reg(20), reg(30));
    spool.mark_uploaded(uploaded.id, "s3://b/u.parquet").unwrap();
    spool.mark_uploaded_many(&[pending.id, committed.id], "s3://b/p.parquet").unwrap();
    let pc = |id: &str, ids: Vec<u64>| PendingCommit { table: "db.t".into(), commit_id: id.into(), ids };
    spool.begin_commit(&pc("c", vec![committed.id])).unwrap();
    spool.finish_commit("c").unwrap();
    spool.begin_commit(&pc("p", vec![pending.id])).unwrap();
    let before = spool.usage().unwrap().bytes;

    for refused in [pending.id, committed.id] {
        assert!(matches!(spool.discard(&[written.id, refused]), Err(SpoolError::WrongState { .. })));
    }
    assert_eq!(spool.files().unwrap().len(), 4, "a refused discard changes nothing");
    assert_eq!(spool.discard(&[written.id, uploaded.id, 999]).unwrap(), 2, "an id not listed is skipped");
    assert!(!written.path.exists() && !uploaded.path.exists());
    let left: Vec<u64> = spool.files().unwrap().iter().map(|f| f.id).collect();
    assert_eq!(left, vec![pending.id, committed.id]);
    assert_eq!(spool.usage().unwrap().bytes, before - 20);
    assert_eq!(spool.offsets().unwrap()[&("events".to_string(), 0)], 40, "the stored offset stays");
    drop(spool);
    let (_, rec) = open(dir.path());
    assert!(rec.orphans_removed.is_empty() && rec.missing.is_empty(), "{rec:?}");
}
