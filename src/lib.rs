//! frazil: Kafka events into Apache Iceberg tables from the edge of the network, exactly once.
//!
//! One folder per stage, in the order a batch passes through them:
//! `source` (records from Kafka via rskafka, behind a trait) → `decode` (records to Arrow rows)
//! → `spill` (rows to Parquet files in the local spool, crate `frazil-spool`) → `upload` (spool
//! files to objects in the warehouse) → `commit` (objects into Iceberg snapshots, exactly once).
//! Below the stages: `topic` (the partition name they share), `config` and `error`. Beside them:
//! `layout` (each table's schema, partition spec, sort order and catalog table), and `read` (what
//! a query needs from the agent: its hot rows and files, and which of them an exact answer keeps).
//!
//! `maintain` keeps the tables healthy (manifests merged, old snapshots expired).
//!
//! `agent` runs the stages in two loops on one single-threaded smol executor: a fetcher (source
//! → decode → spill) and a publisher (spool → upload → commit). `cli` holds the commands beside
//! it (`check`, `status`, `query`). ARCHITECTURE.md draws the whole.

pub mod agent;
mod backoff;
pub mod cli;
pub mod commit;
pub mod config;
pub mod decode;
mod error;
pub mod fault;
pub mod layout;
pub mod logging;
pub mod maintain;
pub mod memory;
pub mod read;
pub mod source;
pub mod spill;
mod tls;
pub mod topic;
pub mod upload;

pub use error::{Error, Result};
