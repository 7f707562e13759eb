//! `frazil status`: what the spool holds, read from its index with no network.

use std::fmt;

use frazil_spool::{FileState, Spool, SpoolOptions};
use serde::Serialize;

use crate::Result;
use crate::config::Config;

#[derive(Debug, Serialize)]
pub struct Status {
    pub spool_dir: String,
    pub bytes: u64,
    pub max_bytes: Option<u64>,
    pub free_disk: Option<u64>,
    pub min_free: Option<u64>,
    pub written: u64,
    pub uploaded: u64,
    pub committed: u64,
    pub quarantined: Vec<Quarantined>,
    pub pending_commits: Vec<Pending>,
    pub offsets: Vec<Offset>,
}

#[derive(Debug, Serialize)]
pub struct Quarantined {
    pub id: u64,
    pub table: String,
    pub topic: String,
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct Pending {
    pub table: String,
    pub commit_id: String,
    pub files: usize,
}

#[derive(Debug, Serialize)]
pub struct Offset {
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
}

/// Opens the spool (which recovers it, as a start would) and summarizes it.
pub fn status(cfg: &Config) -> Result<Status> {
    let opts = SpoolOptions { max_bytes: cfg.spool.max_bytes, min_free_bytes: cfg.spool.min_free, ..SpoolOptions::default() };
    let (spool, _) = Spool::open(&cfg.spool.dir, opts)?;
    let usage = spool.usage()?;
    let counts = spool.status()?;
    let quarantined = spool
        .files()?
        .into_iter()
        .filter_map(|f| match f.state {
            FileState::Quarantined { reason } => Some(Quarantined {
                id: f.id,
                table: f.meta.table,
                topic: f.meta.topic,
                partition: f.meta.partition,
                first_offset: f.meta.first_offset,
                last_offset: f.meta.last_offset,
                reason,
            }),
            _ => None,
        })
        .collect();
    let pending_commits =
        spool.pending_commits()?.into_iter().map(|p| Pending { table: p.table, commit_id: p.commit_id, files: p.ids.len() }).collect();
    let offsets = spool.offsets()?.into_iter().map(|((topic, partition), next_offset)| Offset { topic, partition, next_offset }).collect();
    Ok(Status {
        spool_dir: cfg.spool.dir.display().to_string(),
        bytes: usage.bytes,
        max_bytes: usage.max_bytes,
        free_disk: usage.free_disk,
        min_free: usage.min_free_bytes,
        written: counts.written,
        uploaded: counts.uploaded,
        committed: counts.committed,
        quarantined,
        pending_commits,
        offsets,
    })
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / 1048576.0);
        writeln!(f, "spool {}: {} in use{}", self.spool_dir, mib(self.bytes), self.max_bytes.map(|m| format!(" of {}", mib(m))).unwrap_or_default())?;
        if let Some(free) = self.free_disk {
            writeln!(f, "disk: {} free{}", mib(free), self.min_free.map(|m| format!(" (fetching pauses below {})", mib(m))).unwrap_or_default())?;
        }
        writeln!(f, "files: {} written, {} uploaded, {} committed, {} quarantined", self.written, self.uploaded, self.committed, self.quarantined.len())?;
        for q in &self.quarantined {
            writeln!(f, "  quarantined #{}: {} {}/{} offsets {}..={}: {}", q.id, q.table, q.topic, q.partition, q.first_offset, q.last_offset, q.reason)?;
        }
        for p in &self.pending_commits {
            writeln!(f, "pending commit {} to {} ({} files): checked against the table at the next start", p.commit_id, p.table, p.files)?;
        }
        for o in &self.offsets {
            writeln!(f, "{}/{}: next offset {}", o.topic, o.partition, o.next_offset)?;
        }
        Ok(())
    }
}
