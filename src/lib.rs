//! frazil: Kafka events into Apache Iceberg tables from the edge of the network, exactly once.
//!
//! The pipeline has one folder per stage:
//! `source` (Kafka via rskafka) → `decode` (JSON to Arrow) → `spool` (Parquet files in the local,
//! crash-safe spool) → `upload` (object store) → `commit` (Iceberg REST catalog).
//! `agent` wires the stages together on a single-threaded smol executor; `config` reads the TOML file.

pub mod agent;
mod backoff;
pub mod commit;
pub mod config;
pub mod decode;
mod error;
pub mod fault;
pub mod logging;
pub mod memory;
pub mod source;
pub mod spool;
mod tls;
pub mod upload;

pub use error::{Error, Result};
