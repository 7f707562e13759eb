//! The rules of `state.rs` seen through the kernel, with the std calls programs use.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use frazil_powerfs::PowerFs;

fn sync_dir(p: &Path) {
    File::open(p).unwrap().sync_all().unwrap();
}

#[test]
fn only_what_was_synced_survives_a_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fs = PowerFs::mount(tmp.path()).unwrap();
    let root = fs.path().to_path_buf();

    // Durable: a file synced in a directory synced in the synced root.
    fs::create_dir(root.join("d")).unwrap();
    let mut f = File::create(root.join("d/kept")).unwrap();
    f.write_all(b"kept").unwrap();
    f.sync_all().unwrap();
    drop(f);
    sync_dir(&root.join("d"));
    sync_dir(&root);
    // Not durable: bytes written after the sync, a file never synced whose name is, a file whose
    // name is not, and a rename whose source directory was never synced.
    fs::OpenOptions::new().append(true).open(root.join("d/kept")).unwrap().write_all(b" and lost").unwrap();
    fs::write(root.join("d/empty"), b"unsynced bytes").unwrap();
    sync_dir(&root.join("d"));
    fs::create_dir(root.join("e")).unwrap();
    sync_dir(&root);
    let mut gone = File::create(root.join("gone")).unwrap();
    gone.write_all(b"x").unwrap();
    gone.sync_all().unwrap();
    drop(gone);
    fs::rename(root.join("d/kept"), root.join("e/moved")).unwrap();
    sync_dir(&root.join("e"));
    assert_eq!(fs::read(root.join("e/moved")).unwrap(), b"kept and lost");

    let report = fs.cut(None).unwrap();
    assert!(report.lost_anything(), "{report:?}");
    assert_eq!(fs::read(root.join("d/kept")).unwrap(), b"kept", "the rename's source was not synced");
    assert_eq!(fs::read(root.join("e/moved")).unwrap(), b"kept", "its target was: a second name");
    assert_eq!(fs::read(root.join("d/empty")).unwrap(), b"", "a durable name, an unsynced file");
    assert!(!root.join("gone").exists(), "the root was not synced after gone was created");

    // A hard link from a staged file, as object_store's create-if-absent does on a local disk.
    fs::write(root.join("e/.staged"), b"meta").unwrap();
    File::open(root.join("e/.staged")).unwrap().sync_all().unwrap();
    fs::hard_link(root.join("e/.staged"), root.join("e/v1")).unwrap();
    assert!(fs::hard_link(root.join("e/.staged"), root.join("e/v1")).is_err());
    fs::remove_file(root.join("e/.staged")).unwrap();
    sync_dir(&root.join("e"));
    fs.cut(Some(0)).unwrap();
    let mut names: Vec<_> = fs::read_dir(root.join("e")).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["moved", "v1"]);
    assert_eq!(fs::read(root.join("e/v1")).unwrap(), b"meta");

    // remove_dir_all deletes while it lists.
    for i in 0..300 {
        fs::write(root.join("d").join(format!("f{i:03}")), b"").unwrap();
    }
    fs::remove_dir_all(root.join("d")).unwrap();
    assert!(!root.join("d").exists());
    let stats = fs.stats();
    assert_eq!(stats.cuts, 2);
    assert!(stats.file_syncs >= 3 && stats.dir_syncs >= 5, "{stats:?}");
}
