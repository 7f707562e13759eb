use super::*;

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// A file `/d/name` with `bytes`, nothing synced.
fn file_in_dir(s: &mut State, dir: &str, name: &str, bytes: &[u8]) -> (Ino, Ino) {
    let d = match s.lookup(ROOT, os(dir)) {
        Ok(a) => a.ino,
        Err(_) => s.create(ROOT, os(dir), Kind::Dir, 0o700).unwrap().ino,
    };
    let f = s.create(d, os(name), Kind::File, 0o600).unwrap().ino;
    s.write(f, 0, bytes).unwrap();
    (d, f)
}

fn files(s: &State) -> Vec<(String, Vec<u8>)> {
    s.snapshot().into_iter().filter(|(p, _)| !p.ends_with('/')).collect()
}

#[test]
fn nothing_unsynced_survives_a_cut() {
    let mut s = State::default();
    file_in_dir(&mut s, "d", "a", b"hello");
    let r = s.cut(None);
    assert!(r.lost_anything());
    assert_eq!(s.snapshot().keys().collect::<Vec<_>>(), ["/"]);
}

#[test]
fn a_synced_file_needs_its_directory_synced_too() {
    let mut s = State::default();
    let (d, f) = file_in_dir(&mut s, "d", "a", b"hello");
    s.sync(f).unwrap();
    s.sync(d).unwrap();
    // The root never learned of d.
    s.cut(None);
    assert!(files(&s).is_empty());

    let (d, f) = file_in_dir(&mut s, "d", "a", b"hello");
    s.sync(f).unwrap();
    s.sync(d).unwrap();
    s.sync(ROOT).unwrap();
    s.write(f, 5, b" world").unwrap();
    s.cut(None);
    assert_eq!(files(&s), [("/d/a".to_string(), b"hello".to_vec())], "the unsynced append is gone");
}

#[test]
fn a_durable_name_without_a_synced_file_comes_back_empty() {
    let mut s = State::default();
    let (d, _) = file_in_dir(&mut s, "d", "a", b"hello");
    s.sync(d).unwrap();
    s.sync(ROOT).unwrap();
    s.cut(None);
    assert_eq!(files(&s), [("/d/a".to_string(), Vec::new())]);
}

#[test]
fn a_rename_between_directories_is_durable_only_with_both_synced() {
    let setup = || {
        let mut s = State::default();
        let (tmp, f) = file_in_dir(&mut s, "tmp", "x", b"data");
        let data = s.create(ROOT, os("data"), Kind::Dir, 0o700).unwrap().ino;
        for ino in [f, tmp, data, ROOT] {
            s.sync(ino).unwrap();
        }
        s.rename(tmp, os("x"), data, os("1"), false).unwrap();
        (s, tmp, data)
    };
    let names = |s: &State| files(s).into_iter().map(|(p, _)| p).collect::<Vec<_>>();

    let (mut s, _, data) = setup();
    s.sync(data).unwrap();
    s.cut(None);
    assert_eq!(names(&s), ["/data/1", "/tmp/x"], "target synced only: both names");

    let (mut s, tmp, _) = setup();
    s.sync(tmp).unwrap();
    s.cut(None);
    assert!(names(&s).is_empty(), "source synced only: the file is lost");

    let (mut s, tmp, data) = setup();
    s.sync(tmp).unwrap();
    s.sync(data).unwrap();
    s.cut(None);
    assert_eq!(names(&s), ["/data/1"]);
}

#[test]
fn an_unlink_is_undone_unless_its_directory_is_synced() {
    let mut s = State::default();
    let (d, f) = file_in_dir(&mut s, "d", "a", b"x");
    for ino in [f, d, ROOT] {
        s.sync(ino).unwrap();
    }
    s.unlink(d, os("a")).unwrap();
    assert!(files(&s).is_empty());
    s.cut(None);
    assert_eq!(files(&s).len(), 1, "the unlink was never made durable");
    s.unlink(d, os("a")).unwrap();
    s.sync(d).unwrap();
    s.cut(None);
    assert!(files(&s).is_empty());
}

#[test]
fn a_hard_link_and_the_removal_of_the_staging_name() {
    let mut s = State::default();
    let (d, f) = file_in_dir(&mut s, "d", "staged", b"meta");
    s.sync(f).unwrap();
    s.link(f, d, os("v1")).unwrap();
    assert_eq!(s.link(f, d, os("v1")).unwrap_err(), libc::EEXIST);
    s.unlink(d, os("staged")).unwrap();
    s.sync(d).unwrap();
    s.sync(ROOT).unwrap();
    s.cut(None);
    assert_eq!(files(&s), [("/d/v1".to_string(), b"meta".to_vec())]);
}

#[test]
fn a_torn_write_keeps_a_page_aligned_prefix() {
    let mut s = State::default();
    let (d, f) = file_in_dir(&mut s, "d", "a", &[1u8; 100]);
    for ino in [f, d, ROOT] {
        s.sync(ino).unwrap();
    }
    // 3 pages and a bit, starting mid-page: boundaries at 4096, 8192, 12288 (and the start).
    s.write(f, 100, &[2u8; 12_300]).unwrap();
    let mut kept = std::collections::BTreeSet::new();
    for r in 0..8 {
        let mut t = State::default();
        let (d, f) = file_in_dir(&mut t, "d", "a", &[1u8; 100]);
        for ino in [f, d, ROOT] {
            t.sync(ino).unwrap();
        }
        t.write(f, 100, &[2u8; 12_300]).unwrap();
        let report = t.cut(Some(r));
        let (_, landed, len) = report.torn.unwrap();
        assert_eq!(len, 12_300);
        let bytes = &files(&t)[0].1;
        assert_eq!(bytes.len() as u64, 100 + landed);
        assert!(bytes[..100].iter().all(|&b| b == 1) && bytes[100..].iter().all(|&b| b == 2));
        assert!(landed == 0 || (100 + landed) % 4096 == 0, "{landed} does not end at a page boundary");
        kept.insert(landed);
    }
    assert_eq!(kept.into_iter().collect::<Vec<_>>(), [0, 3996, 8092, 12_188]);
    // A synced write is never torn.
    s.sync(f).unwrap();
    assert_eq!(s.cut(Some(1)).torn, None);
}

#[test]
fn posix_errors() {
    let mut s = State::default();
    let (d, _) = file_in_dir(&mut s, "d", "a", b"x");
    assert_eq!(s.create(d, os("a"), Kind::File, 0o600).unwrap_err(), libc::EEXIST);
    assert_eq!(s.rmdir(ROOT, os("d")).unwrap_err(), libc::ENOTEMPTY);
    assert_eq!(s.unlink(ROOT, os("d")).unwrap_err(), libc::EISDIR);
    assert_eq!(s.lookup(d, os("b")).unwrap_err(), libc::ENOENT);
    let b = s.create(d, os("b"), Kind::File, 0o600).unwrap();
    assert_eq!(s.rename(d, os("a"), d, os("b"), true).unwrap_err(), libc::EEXIST);
    s.rename(d, os("a"), d, os("b"), false).unwrap();
    assert_eq!(s.list(d).unwrap().len(), 1);
    assert_ne!(s.lookup(d, os("b")).unwrap().ino, b.ino, "the rename replaced b");
    assert_eq!(s.read(s.lookup(d, os("b")).unwrap().ino, 0, 10).unwrap(), b"x");
}

#[test]
fn paths_resolve_from_the_root() {
    let mut s = State::default();
    let (d, f) = file_in_dir(&mut s, "d", "a", b"x");
    assert_eq!(s.resolve(Path::new("/d/a")).unwrap(), f);
    assert_eq!(s.resolve(Path::new("d")).unwrap(), d);
    assert_eq!(s.resolve(Path::new("/")).unwrap(), ROOT);
    assert_eq!(s.resolve(Path::new("/d/b")).unwrap_err(), libc::ENOENT);
    assert_eq!(s.parent_of(Path::new("/d/new")).unwrap(), (d, os("new")));
    assert_eq!(s.parent_of(Path::new("/x/new")).unwrap_err(), libc::ENOENT);
}
