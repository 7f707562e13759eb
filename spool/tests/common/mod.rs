//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod memfs;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use frazil_spool::{FileMeta, PendingCommit, Recovery, Spool, SpoolOptions};
use proptest::prelude::*;

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

/// The register action of the model tests: `rows` events of `partition` for table `t<table>`,
/// starting `back` offsets before the partition's cursor (a replay after a crash re-fetches
/// events already spooled). With `pair`, a second file (the table's dead letters) covering the
/// same offsets is registered in the same call (`register_all`).
#[derive(Debug, Clone)]
pub struct Registration {
    pub table: u8,
    pub partition: u8,
    pub rows: u8,
    pub back: u8,
    pub pair: bool,
}

impl Registration {
    pub fn strategy() -> impl Strategy<Value = Registration> {
        (0..2u8, 0..3u8, 1..20u8, 0..8u8, any::<bool>()).prop_map(|(table, partition, rows, back, pair)| Registration {
            table,
            partition,
            rows,
            back,
            pair,
        })
    }

    /// The files' metas, given each partition's cursor (the next offset not yet registered).
    pub fn metas(&self, cursor: &BTreeMap<i32, i64>) -> Vec<FileMeta> {
        let p = i32::from(self.partition);
        let first = (cursor.get(&p).copied().unwrap_or(0) - i64::from(self.back)).max(0);
        let next = first + i64::from(self.rows);
        let mut tables = vec![format!("t{}", self.table)];
        if self.pair {
            tables.push(format!("t{}__dlq", self.table));
        }
        tables.iter().map(|t| meta(t, "events", p, first, next)).collect()
    }
}
