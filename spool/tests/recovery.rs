//! What open() repairs, and how damage is reported.

mod common;

use std::fs;

use common::{meta, names, open, write_tmp};
use frazil_spool::{FileState, PendingCommit, Spool, SpoolError, SpoolOptions};

const ID1: &str = "00000000000000000001";

#[test]
fn orphans_in_data_and_leftovers_in_tmp_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path());
    let kept = spool.register(&write_tmp(&spool, b"kept"), meta("t", "e", 0, 0, 1)).unwrap();
    write_tmp(&spool, b"half written");
    fs::create_dir(dir.path().join("tmp/somedir")).unwrap();
    drop(spool);
    // A register that renamed its file but crashed before its transaction committed.
    let orphan = dir.path().join("data/00000000000000000002.parquet");
    fs::write(&orphan, b"orphan").unwrap();

    let (spool, rec) = open(dir.path());
    assert_eq!(rec.orphans_removed, vec![orphan.clone()]);
    assert!(rec.missing.is_empty());
    assert!(!orphan.exists());
    assert!(names(&dir.path().join("tmp")).is_empty());
    assert_eq!(spool.read_verified(kept.id).unwrap(), b"kept");
    // The orphan's id is handed out again, to a real file.
    let next = spool.register(&write_tmp(&spool, b"new"), meta("t", "e", 0, 1, 2)).unwrap();
    assert_eq!(next.id, 2);
    assert_eq!(spool.read_verified(next.id).unwrap(), b"new");
}

#[test]
fn missing_file_is_reported_and_quarantined_once() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path());
    let f = spool.register(&write_tmp(&spool, b"gone"), meta("t", "e", 0, 0, 1)).unwrap();
    spool.mark_uploaded(f.id, "s3://gone").unwrap();
    drop(spool);
    fs::remove_file(&f.path).unwrap();

    let (spool, rec) = open(dir.path());
    assert_eq!(rec.missing.len(), 1);
    // Reported as it was, so the caller still sees where it had been uploaded.
    assert_eq!(rec.missing[0].state, FileState::Uploaded { location: "s3://gone".into() });
    let now = &spool.files().unwrap()[0];
    assert_eq!(now.state, FileState::Quarantined { reason: "file missing".into() });
    assert_eq!(spool.status().unwrap().quarantined, 1);
    let reason = fs::read_to_string(dir.path().join(format!("quarantine/{ID1}.reason"))).unwrap();
    assert_eq!(reason, "file missing\n");
    assert!(matches!(spool.read_verified(f.id), Err(SpoolError::Corrupt { .. })));
    drop(spool);

    // Quarantined once: the next open does not report it again.
    let (_spool, rec) = open(dir.path());
    assert!(rec.missing.is_empty());
}

#[test]
fn committed_and_missing_is_dropped_silently() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path());
    let f = spool.register(&write_tmp(&spool, b"done"), meta("t", "e", 0, 0, 1)).unwrap();
    spool.mark_uploaded(f.id, "s3://done").unwrap();
    common::commit(&spool, "t", &[f.id]);
    drop(spool);
    // remove_committed crashed after the unlink, before its transaction.
    fs::remove_file(&f.path).unwrap();

    let (spool, rec) = open(dir.path());
    assert!(rec.missing.is_empty() && rec.orphans_removed.is_empty());
    assert!(spool.files().unwrap().is_empty());
}

fn corrupt_then_read(damage: impl FnOnce(&std::path::Path)) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path());
    let f = spool.register(&write_tmp(&spool, b"0123456789"), meta("t", "e", 0, 0, 1)).unwrap();
    damage(&f.path);
    let Err(SpoolError::Corrupt { id, reason }) = spool.read_verified(f.id) else {
        panic!("damaged file was not reported as corrupt");
    };
    assert_eq!(id, f.id);
    assert!(!f.path.exists(), "file left in data/");
    let q = dir.path().join(format!("quarantine/{ID1}.parquet"));
    assert!(q.exists(), "file not in quarantine/");
    let r = fs::read_to_string(dir.path().join(format!("quarantine/{ID1}.reason"))).unwrap();
    assert_eq!(r.trim_end(), reason);
    let listed = &spool.files().unwrap()[0];
    assert_eq!(listed.state, FileState::Quarantined { reason: reason.clone() });
    assert_eq!(listed.path, q);
    // Asking again does not move anything again.
    assert!(matches!(spool.read_verified(f.id), Err(SpoolError::Corrupt { .. })));
    drop(spool);
    // Nor does reopening: quarantined files are neither orphans nor missing.
    let (spool, rec) = open(dir.path());
    assert!(rec.missing.is_empty() && rec.orphans_removed.is_empty());
    assert!(q.exists());
    assert_eq!(spool.status().unwrap().quarantined, 1);
    (dir, reason)
}

#[test]
fn flipped_byte_is_quarantined() {
    let (_dir, reason) = corrupt_then_read(|p| {
        let mut b = fs::read(p).unwrap();
        b[3] ^= 0x01;
        fs::write(p, b).unwrap();
    });
    assert!(reason.contains("CRC32C"), "{reason}");
}

#[test]
fn truncated_file_is_quarantined() {
    let (_dir, reason) = corrupt_then_read(|p| {
        fs::OpenOptions::new().write(true).open(p).unwrap().set_len(4).unwrap();
    });
    assert!(reason.contains("size"), "{reason}");
}

#[test]
fn deleted_file_is_quarantined_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path());
    let f = spool.register(&write_tmp(&spool, b"0123456789"), meta("t", "e", 0, 0, 1)).unwrap();
    // Deleted behind the running spool's back (the closed case is
    // missing_file_is_reported_and_quarantined_once).
    fs::remove_file(&f.path).unwrap();
    let Err(SpoolError::Corrupt { id, reason }) = spool.read_verified(f.id) else {
        panic!("deleted file was not reported as corrupt");
    };
    assert_eq!((id, reason.as_str()), (f.id, "file missing"));
    assert_eq!(spool.files().unwrap()[0].state, FileState::Quarantined { reason: "file missing".into() });
    let r = fs::read_to_string(dir.path().join(format!("quarantine/{ID1}.reason"))).unwrap();
    assert_eq!(r, "file missing\n");
    assert_eq!(spool.usage().unwrap().bytes, 0);
    drop(spool);
    // Reported once: the next open neither reports it missing again nor fails.
    let (spool, rec) = open(dir.path());
    assert!(rec.missing.is_empty() && rec.orphans_removed.is_empty());
    assert_eq!(spool.status().unwrap().quarantined, 1);
}

#[test]
fn explicit_quarantine_and_interrupted_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path());
    let a = spool.register(&write_tmp(&spool, b"a"), meta("t", "e", 0, 0, 1)).unwrap();
    let b = spool.register(&write_tmp(&spool, b"b"), meta("t", "e", 0, 1, 2)).unwrap();
    spool.quarantine(a.id, "bad schema").unwrap();
    spool.quarantine(a.id, "second reason is ignored").unwrap();
    assert_eq!(spool.files().unwrap()[0].state, FileState::Quarantined { reason: "bad schema".into() });
    assert!(matches!(spool.quarantine(99, "x"), Err(SpoolError::NotFound { id: 99 })));
    drop(spool);
    // Simulate quarantine() crashing after its rename, before its transaction.
    let qb = dir.path().join("quarantine/00000000000000000002.parquet");
    fs::rename(&b.path, &qb).unwrap();
    fs::write(dir.path().join("quarantine/00000000000000000002.reason"), "disk said no\n").unwrap();

    let (spool, rec) = open(dir.path());
    assert!(rec.missing.is_empty(), "an interrupted quarantine is not a loss");
    let files = spool.files().unwrap();
    assert_eq!(files[1].state, FileState::Quarantined { reason: "disk said no".into() });
    assert_eq!(files[1].path, qb);
    assert_eq!(spool.status().unwrap().bytes, 2);
}

#[test]
fn pending_commits_are_returned_by_open() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path());
    let f = spool.register(&write_tmp(&spool, b"p"), meta("t", "e", 0, 0, 1)).unwrap();
    spool.mark_uploaded(f.id, "s3://p").unwrap();
    let pc = PendingCommit { table: "t".into(), commit_id: "snap-1".into(), ids: vec![f.id] };
    spool.begin_commit(&pc).unwrap();
    drop(spool);
    let (spool, rec) = open(dir.path());
    assert_eq!(rec.pending, vec![pc]);
    spool.finish_commit("snap-1").unwrap();
    assert_eq!(spool.files().unwrap()[0].state, FileState::Committed);
}

#[test]
fn garbage_index_is_corrupt_index_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("index.redb"), vec![0xA5u8; 100_000]).unwrap();
    let err = Spool::open(dir.path(), SpoolOptions::default()).err().expect("garbage index opened");
    let SpoolError::CorruptIndex { path, .. } = &err else { panic!("wrong error: {err:?}") };
    assert_eq!(path, &dir.path().join("index.redb"));
    let msg = err.to_string();
    assert!(msg.contains("move the file aside") && msg.contains("Kafka"), "{msg}");
}

#[test]
fn truncated_index_is_corrupt_index_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (spool, _) = open(dir.path());
        for i in 0..20 {
            spool.register(&write_tmp(&spool, b"x"), meta("t", "e", 0, i, i + 1)).unwrap();
        }
    }
    let path = dir.path().join("index.redb");
    let len = fs::metadata(&path).unwrap().len();
    for cut in [len / 2, 4096, 600, 100] {
        fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(cut).unwrap();
        // redb reports "File truncated below stored layout" (or a short read for a cut inside
        // the header) rather than silently opening a shorter database.
        match Spool::open(dir.path(), SpoolOptions::default()) {
            Err(SpoolError::CorruptIndex { .. }) => {}
            Err(e) => panic!("truncated to {cut}: unexpected error {e:?}"),
            Ok(_) => panic!("truncated to {cut}: opened"),
        }
    }
}

#[test]
fn empty_index_next_to_spool_files_is_corrupt_index_not_a_fresh_start() {
    let dir = tempfile::tempdir().unwrap();
    let f = {
        let (spool, _) = open(dir.path());
        spool.register(&write_tmp(&spool, b"keep me"), meta("t", "e", 0, 0, 1)).unwrap()
    };
    let index = dir.path().join("index.redb");
    fs::OpenOptions::new().write(true).open(&index).unwrap().set_len(0).unwrap();
    // redb would open an empty file as a new database, and recovery would then delete every
    // file in data/ as an orphan.
    match Spool::open(dir.path(), SpoolOptions::default()) {
        Err(SpoolError::CorruptIndex { path, detail }) => {
            assert_eq!(path, index);
            assert!(detail.contains("empty"), "{detail}");
        }
        Err(e) => panic!("unexpected error {e:?}"),
        Ok(_) => panic!("empty index opened as a fresh spool"),
    }
    assert!(f.path.exists(), "a refused open deleted a spool file");
    // The operator moves it aside, as the message says: a fresh start, by decision.
    fs::rename(&index, dir.path().join("index.redb.corrupt")).unwrap();
    let (spool, rec) = open(dir.path());
    assert_eq!(rec.orphans_removed, vec![f.path.clone()]);
    assert!(spool.files().unwrap().is_empty());
}

#[test]
fn empty_index_of_an_interrupted_first_open_is_a_fresh_start() {
    // A crash during the very first open can leave a 0-byte index.redb and nothing else.
    let dir = tempfile::tempdir().unwrap();
    for d in ["data", "tmp", "quarantine"] {
        fs::create_dir(dir.path().join(d)).unwrap();
    }
    fs::write(dir.path().join("index.redb"), b"").unwrap();
    let (spool, _) = open(dir.path());
    let f = spool.register(&write_tmp(&spool, b"x"), meta("t", "e", 0, 0, 1)).unwrap();
    assert_eq!(f.id, 1);
}

#[test]
fn flipped_bytes_in_index_are_corrupt_index_or_harmless_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let want = {
        let (spool, _) = open(dir.path());
        for i in 0..50 {
            spool.register(&write_tmp(&spool, b"x"), meta("t", "e", 0, i, i + 1)).unwrap();
        }
        spool.files().unwrap()
    };
    let path = dir.path().join("index.redb");
    let orig = fs::read(&path).unwrap();
    let (mut refused, mut harmless) = (0, 0);
    // 64 positions spread over the file: header, b-tree pages, free space.
    for k in 0..64 {
        let at = k * orig.len() / 64 + k % 7;
        let mut b = orig.clone();
        b[at] ^= 0xff;
        fs::write(&path, &b).unwrap();
        let outcome = std::panic::catch_unwind(|| Spool::open(dir.path(), SpoolOptions::default()));
        match outcome {
            Err(_) => panic!("flipping byte {at} of the index made open panic"),
            Ok(Err(SpoolError::CorruptIndex { .. })) => refused += 1,
            Ok(Err(e)) => panic!("flipping byte {at}: unexpected error {e:?}"),
            Ok(Ok((spool, rec))) => {
                // redb checksums its pages: an open that succeeds saw no damage that matters.
                assert!(
                    rec.orphans_removed.is_empty() && rec.missing.is_empty(),
                    "flipping byte {at}: open repaired something: {rec:?}"
                );
                assert_eq!(spool.files().unwrap(), want, "flipping byte {at}");
                harmless += 1;
            }
        }
        fs::write(&path, &orig).unwrap();
    }
    assert!(refused > 0, "no flip was detected ({harmless} harmless)");
}

#[test]
fn second_open_is_locked_not_hung() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path());
    let t = write_tmp(&spool, b"in flight");
    let err = Spool::open(dir.path(), SpoolOptions::default()).err().expect("second open succeeded");
    assert!(matches!(err, SpoolError::Locked { .. }), "{err:?}");
    // The refused open must not have touched the live spool's temp files.
    assert!(t.exists());
    drop(spool);
    let (_spool, _) = open(dir.path());
}
