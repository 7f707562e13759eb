//! Rolling hot buffers into spool files: the spill stage at work.

use frazil_spool::{FileMeta, SpoolFile};

use super::Fetcher;
use super::buffer::Rolled;
use super::cursor::over_budget;
use crate::Result;
use crate::decode;
use crate::spill::{self, Part};
use crate::topic::TopicPartition;

impl Fetcher<'_> {
    /// Turns due hot buffers (all of them when `all`) into spool files: those at a file's size,
    /// rows or age, then the largest ones until the rest fit `spool.buffer_max_bytes`.
    pub(super) async fn roll(&mut self, all: bool) -> Result<()> {
        for tp in self.due(all) {
            let Some(mut r) = self.buffer(&tp).roll()? else { continue };
            // After a lost spool the agent may fetch again records whose dead letters are already
            // committed: the dead-letter table's own offsets say which.
            if let Some(floor) = self.cursor(&tp).dead_floor {
                r.dead.retain(|d| d.offset >= floor);
            }
            let parts = self.parts(&tp, &r)?;
            if parts.is_empty() {
                continue; // only dead letters that are already committed
            }
            match spill::spill(self.shared.spool.clone(), parts).await {
                Ok(files) => self.spilled(&tp, &r, &files),
                Err(e) if spill::is_disk_full(&e) => {
                    // Keep the rows in memory; fetching pauses until the disk has room again.
                    let (first, last) = (r.first_offset, r.last_offset);
                    log::warn!(topic = tp.0.as_str(), partition = tp.1, offset = first; "{}/{}: disk full while spooling offsets {first}..={last}; keeping them in memory ({e})", tp.0, tp.1);
                    self.buffer(&tp).restore(r);
                    self.disk_full = true;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The partitions whose buffers roll now.
    fn due(&self, all: bool) -> Vec<TopicPartition> {
        let s = &self.shared.cfg.spool;
        let (due, rest): (Vec<_>, Vec<_>) = self
            .cursors
            .iter()
            .filter_map(|(tp, c)| c.buffer.as_ref().filter(|b| !b.is_empty()).map(|b| (tp, b)))
            .partition(|(_, b)| all || b.due(s.file_max_bytes, s.file_max_rows, s.file_max_age));
        let rest: Vec<_> = rest.into_iter().map(|(tp, b)| (tp, b.held() as u64)).collect();
        due.into_iter().map(|(tp, _)| tp).chain(over_budget(rest, s.buffer_max_bytes)).cloned().collect()
    }

    /// What a roll writes: the table's rows and the dead letters of the same offsets, each with
    /// its table's layout.
    fn parts(&self, tp: &TopicPartition, r: &Rolled) -> Result<Vec<Part>> {
        let table = self.shared.table_name(&tp.0);
        let dead_table = self.shared.dead_letter_table(&table);
        let meta = |table: &str, rows: u64| FileMeta {
            table: table.to_string(),
            topic: tp.0.clone(),
            partition: tp.1,
            first_offset: r.first_offset,
            last_offset: r.last_offset,
            next_offset: r.last_offset + 1,
            rows,
            extra: Vec::new(),
        };
        let mut parts = Vec::new();
        if r.rows > 0 {
            let w = self.written(&table);
            parts.push(Part {
                schema: w.schema,
                spec: w.spec,
                sort: w.sort,
                batches: r.batches.clone(),
                meta: meta(&table, r.rows),
            });
        }
        if !r.dead.is_empty() {
            let w = self.dead_letter_layout(&dead_table)?;
            let batch = decode::dead_letter_batch(&tp.0, &r.dead, &w.schema)?;
            let meta = meta(&dead_table, r.dead.len() as u64);
            parts.push(Part { schema: w.schema, spec: w.spec, sort: w.sort, batches: vec![batch], meta });
        }
        Ok(parts)
    }

    /// Counts and logs a roll that reached the spool.
    fn spilled(&mut self, tp: &TopicPartition, r: &Rolled, files: &[SpoolFile]) {
        let bytes: u64 = files.iter().map(|f| f.bytes).sum();
        let (first, last, rows, dead) = (r.first_offset, r.last_offset, r.rows, r.dead.len());
        log::debug!(
            "{}/{}: spooled offsets {first}..={last} ({rows} rows, {dead} dead letters, {bytes} bytes)",
            tp.0,
            tp.1
        );
        let dead_table = self.shared.dead_letter_table(&self.shared.table_name(&tp.0));
        for d in &r.dead {
            log::warn!(topic = tp.0.as_str(), partition = tp.1, offset = d.offset, table = dead_table.as_str(); "{}/{} offset {}: to dead-letter table {dead_table}: {}", tp.0, tp.1, d.offset, d.reason);
        }
        let mut report = self.shared.report.borrow_mut();
        report.files_spooled += files.len() as u64;
        report.bytes_spooled += bytes;
        report.rejected += dead as u64;
        self.disk_full = false;
    }
}
