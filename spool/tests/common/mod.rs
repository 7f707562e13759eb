//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod memfs;

use std::fs;
use std::path::{Path, PathBuf};

use frazil_spool::{FileMeta, PendingCommit, Recovery, Spool, SpoolOptions};

pub fn open(dir: &Path) -> (Spool, Recovery) {
    Spool::open(dir, SpoolOptions::default()).expect("open spool")
}

pub fn meta(table: &str, topic: &str, partition: i32, first: i64, next: i64) -> FileMeta {
    FileMeta {
        table: table.into(),
        topic: topic.into(),
        partition,
        first_offset: first,
        last_offset: next - 1,
        next_offset: next,
        rows: (next - first) as u64,
        extra: format!(r#"{{"file_path":"{table}/{first}.parquet"}}"#).into_bytes(),
    }
}

/// Writes `contents` to a fresh temp path of the spool, as the caller would.
pub fn write_tmp(spool: &Spool, contents: &[u8]) -> PathBuf {
    let p = spool.temp_path();
    fs::write(&p, contents).unwrap();
    p
}

pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Commits `ids` of `table` as commit "c": the pending record, then finish.
pub fn commit(spool: &Spool, table: &str, ids: &[u64]) {
    let pending = PendingCommit { table: table.into(), commit_id: "c".into(), ids: ids.to_vec() };
    spool.begin_commit(&pending).expect("begin commit");
    spool.finish_commit("c").expect("finish commit");
}
