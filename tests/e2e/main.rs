//! End to end against real servers: JSON events from tansu into an Iceberg table in rustberg on
//! s3s-fs, read back by pyiceberg and by DuckDB, each on its own.
//!
//! - `flush`: what `frazil flush` lands: every event exactly once, bad records as dead letters,
//!   new fields as a grown schema.
//! - `tables`: how tables are shaped: partitions, raw and text values, time fields, per-table
//!   settings.
//! - `run`: `frazil run`: topics found by pattern while running, commits within the interval,
//!   and what SIGTERM commits.

#[path = "../common/mod.rs"]
mod common;

mod flush;
mod run;
mod tables;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::json;

/// tests/check/partitions.py's report on a table, with a filter `column = value`.
fn partitions(servers: &Servers, table: &str, column: &str, value: &str) -> serde_json::Value {
    let mut cmd = Command::new(venv_python());
    cmd.arg(repo().join("tests/check/partitions.py"));
    servers.catalog_args(&mut cmd, table);
    let out = cmd.args(["--column", column, "--value", value]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn start_run(config: &std::path::Path) -> std::process::Child {
    frazil_command()
        .args(["run", "--config", path_str(config)])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start frazil run")
}

fn sigterm_and_wait(child: std::process::Child) -> String {
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().expect("frazil exits");
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "frazil run did not exit cleanly on SIGTERM ({:?}):\n{log}", out.status);
    log
}
