//! Where reading starts: connect, discover the partitions, and resume each after the last offset
//! the spool index or the table has seen.

use std::collections::BTreeMap;

use super::cursor::Cursor;
use super::{Fetcher, Mode};
use crate::agent::shared::Stop;
use crate::config::StartAt;
use crate::source::Source;
use crate::topic::TopicPartition;
use crate::{Error, Result, commit};

/// Per partition, the next offset this agent committed to a table.
pub(super) type Offsets = BTreeMap<TopicPartition, i64>;

impl Fetcher<'_> {
    /// Connects and discovers the partitions (retrying with backoff), then places a cursor on
    /// each; a flush also fixes each partition's target. `None` when stopped before connecting.
    pub(super) async fn start(&mut self, stop: &Stop) -> Result<Option<Box<dyn Source>>> {
        let (source, partitions) = loop {
            if stop.is_set() {
                return Ok(None);
            }
            let attempt = async {
                let mut s = (self.connect)().await?;
                let tps = s.discover().await?;
                Ok::<_, Error>((s, tps))
            };
            match attempt.await {
                Ok(v) => break v,
                Err(e) => self.wait_to_retry(e).await?,
            }
        };
        self.retry.reset();
        if self.first_assignment(stop).await.is_none() {
            return Ok(None);
        }
        let partitions = self.ours(partitions);
        let cursors = loop {
            match self.cursors_for(source.as_ref(), &partitions).await {
                Ok(v) => break v,
                Err(e) => self.wait_to_retry(e).await?,
            }
        };
        self.cursors = cursors;
        self.show_partitions();
        // A flush drains to the high watermark seen now; records produced later wait for the next run.
        if self.mode == Mode::Flush {
            for (tp, c) in &mut self.cursors {
                c.target = Some(source.watermarks(tp).await?.1);
            }
        }
        Ok(Some(source))
    }

    /// Discovers topics and partitions again and starts reading the new ones.
    pub(super) async fn refresh(&mut self, source: &mut dyn Source) -> Result<()> {
        let found = self.ours(source.discover().await?);
        let new: Vec<TopicPartition> = found.into_iter().filter(|tp| !self.cursors.contains_key(tp)).collect();
        if new.is_empty() {
            return Ok(());
        }
        for (tp, c) in self.cursors_for(source, &new).await? {
            let table = self.shared.table_name(&tp.0);
            log::info!(topic = tp.0.as_str(), partition = tp.1, offset = c.next, table = table.as_str(); "{}/{}: new partition, reading from offset {} into table {table}", tp.0, tp.1, c.next);
            self.cursors.insert(tp, c);
        }
        Ok(())
    }

    /// The partitions of `found` this agent reads (`group.rs`: all of them, less those
    /// `kafka.partitions` or the group's assignment give to others).
    fn ours(&self, found: Vec<TopicPartition>) -> Vec<TopicPartition> {
        found.into_iter().filter(|tp| self.is_ours(tp)).collect()
    }

    /// A cursor for each partition, at the offset after the last one the spool index or the
    /// table has seen (whichever is later), else at the configured start position. In group mode
    /// only the table's group offsets count, and each partition is claimed (`claim.rs`).
    pub(super) async fn cursors_for(
        &self,
        source: &dyn Source,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Cursor>> {
        let (known, dead_floor) = match self.shared.group() {
            Some(group) => self.claim(partitions, group).await?,
            None => {
                let spooled = crate::spill::on_pool(&self.shared.spool, |s| s.offsets()).await?;
                let (mut known, dead_floor) = self.committed_offsets(partitions).await?;
                for (tp, o) in spooled {
                    let e = known.entry(tp).or_insert(o);
                    *e = (*e).max(o);
                }
                (known, dead_floor)
            }
        };
        let mut cursors = BTreeMap::new();
        for tp in partitions {
            let known = known.get(tp).copied();
            let (low, high) = source.watermarks(tp).await?;
            let start = match known {
                Some(o) if o < low => {
                    log::error!(topic = tp.0.as_str(), partition = tp.1, offset = o; "{}/{}: resuming at {o} but Kafka now starts at {low}: offsets {o}..{low} were removed by retention", tp.0, tp.1);
                    low
                }
                Some(o) => o,
                None if self.shared.cfg.kafka.start == StartAt::Latest => high,
                None => low,
            };
            log::info!(topic = tp.0.as_str(), partition = tp.1, offset = start; "{}/{}: starting at offset {start} (log holds {low}..{high})", tp.0, tp.1);
            cursors.insert(tp.clone(), Cursor::new(start, dead_floor.get(tp).copied()));
        }
        Ok(cursors)
    }

    /// Offsets this agent committed to the tables of these partitions, and to their dead-letter
    /// tables, when the catalog answers. Reading resumes after the table's offsets; the
    /// dead-letter table's only filter what is fetched again (they run ahead when its commit
    /// landed and the table's did not). An unreachable catalog is no reason not to start (the
    /// spool index knows where to resume); a refused credential or certificate is: it stops
    /// frazil here, before anything is fetched.
    async fn committed_offsets(&self, partitions: &[TopicPartition]) -> Result<(Offsets, Offsets)> {
        let (mut tables, mut dead) = (Offsets::new(), Offsets::new());
        let committer = match self.shared.link.committer().await {
            Ok(c) => c,
            Err(e @ Error::Config { .. }) => return Err(e),
            Err(e) => {
                log::warn!("catalog not reachable at start ({e}); resuming from the spool index alone");
                return Ok((tables, dead));
            }
        };
        let mut names: Vec<String> = partitions.iter().map(|(t, _)| self.shared.table_name(t)).collect();
        names.sort();
        names.dedup();
        for name in names {
            let dead_table = self.shared.dead_letter_table(&name);
            for (table, out) in [(name, &mut tables), (dead_table, &mut dead)] {
                match committer.load(&table).await {
                    Ok(Some(t)) => {
                        out.extend(commit::committed_offsets(t.metadata(), &self.shared.cfg.agent_id));
                        self.shared.layouts.set_table(&table, t);
                    }
                    Ok(None) => {}
                    Err(e @ Error::Config { .. }) => return Err(e),
                    Err(e) => {
                        log::warn!(table = table.as_str(); "table {table}: could not read committed offsets ({e})")
                    }
                }
            }
        }
        Ok((tables, dead))
    }
}
