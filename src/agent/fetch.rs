//! The fetch loop: Kafka → hot buffers → spool files.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use frazil_spool::FileMeta;
use futures::StreamExt;
use rskafka::record::RecordAndOffset;

use super::buffer::PartitionBuffer;
use super::pause::{Pause, pause_reason, usage_text};
use super::{Agent, Mode};
use crate::backoff::Backoff;
use crate::config::StartAt;
use crate::decode::{self, Decoder, Format, Message};
use crate::source::{Source, TopicPartition, is_offset_out_of_range};
use crate::spool::Part;
use crate::{Error, Result, commit};

/// How far a partition's fetch size grows to get past one oversized record batch.
const MAX_GROWN_FETCH: i32 = 64 * 1024 * 1024;

/// In flush mode, how many times in a row the broker may fail before the flush gives up.
const FLUSH_BROKER_ATTEMPTS: u32 = 8;

impl Agent {
    pub(super) async fn fetch_loop(
        &self,
        mode: Mode,
        stopping: &Cell<bool>,
        kick: &smol::channel::Sender<()>,
    ) -> Result<()> {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        let retry = async |e: crate::Error, backoff: &mut Backoff| -> Result<()> {
            // A configuration error (refused credentials, say) is the same the next time.
            if matches!(e, Error::Config { .. }) || mode == Mode::Flush && backoff.attempts() >= FLUSH_BROKER_ATTEMPTS {
                return Err(e);
            }
            let delay = backoff.next_delay();
            log::warn!("{e}; retrying in {delay:.1?}");
            smol::Timer::after(delay).await;
            Ok(())
        };
        let (mut source, mut partitions) = loop {
            if stopping.get() {
                return Ok(());
            }
            let attempt = async {
                let mut s = Source::connect(&self.cfg.kafka).await?;
                let tps = s.discover().await?;
                Ok::<_, crate::Error>((s, tps))
            };
            match attempt.await {
                Ok(v) => break v,
                Err(e) => retry(e, &mut backoff).await?,
            }
        };
        backoff.reset();
        let mut next = loop {
            match self.start_offsets(&source, &partitions).await {
                Ok(v) => break v,
                Err(e) => retry(e, &mut backoff).await?,
            }
        };
        // Flush drains to the high watermark seen now; records produced later wait for the next run.
        let mut targets: Option<BTreeMap<TopicPartition, i64>> = match mode {
            Mode::Run => None,
            Mode::Flush => {
                let mut t = BTreeMap::new();
                for tp in &partitions {
                    t.insert(tp.clone(), source.watermarks(tp).await?.1);
                }
                Some(t)
            }
        };
        let max_bytes = self.cfg.kafka.fetch_max_bytes as i32;
        // A fetch that returns nothing below the high watermark met a record batch larger than the
        // fetch size (a broker that does not hand out an oversized first batch): that partition's
        // size doubles up to this bound.
        let biggest = max_bytes.max(MAX_GROWN_FETCH);
        let mut sizes: BTreeMap<TopicPartition, i32> = BTreeMap::new();
        let mut stalled: BTreeSet<(TopicPartition, i64)> = BTreeSet::new();
        let mut refreshed = Instant::now();
        let mut paused = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut pause = Pause::default();
        let mut pool: futures::stream::FuturesUnordered<
            futures::future::LocalBoxFuture<'static, (TopicPartition, Result<crate::source::Fetched>)>,
        > = futures::stream::FuturesUnordered::new();
        let mut in_flight: BTreeSet<TopicPartition> = BTreeSet::new();
        let mut turn: TopicPartition = (String::new(), 0);
        loop {
            if stopping.get() {
                break;
            }
            if !self.room_to_fetch().await? {
                if let Some(lasting) = pause.full(Instant::now()) {
                    log::warn!(
                        "{}: fetching paused until uploads free space{lasting}; Kafka keeps the data",
                        self.pause_reason()
                    );
                }
                let seen = self.publishes.get();
                let _ = kick.try_send(());
                if mode == Mode::Flush {
                    // Wait for that publish; if it could not free room, the link is down: stop here,
                    // everything taken so far is safe in the spool.
                    while self.publishes.get() == seen && !stopping.get() {
                        smol::Timer::after(Duration::from_millis(100)).await;
                    }
                    if !self.room_to_fetch().await? {
                        log::warn!("{} after publishing; flush stops early, run it again later", self.pause_reason());
                        self.report.borrow_mut().stopped_early = true;
                        break;
                    }
                } else {
                    smol::Timer::after(paused.next_delay()).await;
                    self.roll(false).await?;
                    continue;
                }
            }
            if pause.room() {
                log::info!("spool has room again ({}); fetching resumes", self.usage_text());
                paused.reset();
            }
            // `run` picks up topics and partitions that appeared since (a flush reads what was there at its start).
            if mode == Mode::Run && refreshed.elapsed() >= self.cfg.kafka.refresh_interval {
                refreshed = Instant::now();
                if let Err(e) = self.refresh(&mut source, &mut partitions, &mut next).await {
                    log::warn!(
                        "looking for new topics and partitions: {e}; trying again in {:.0?}",
                        self.cfg.kafka.refresh_interval
                    );
                }
            }
            // Keep up to `fetches_in_flight` fetches going, each for another partition, taking
            // turns: records of one partition are decoded while the broker serves the next.
            let wanted: Vec<&TopicPartition> = partitions
                .iter()
                .filter(|tp| !in_flight.contains(*tp) && targets.as_ref().is_none_or(|t| next[*tp] < t[*tp]))
                .collect();
            let start = wanted.iter().position(|tp| **tp >= turn).unwrap_or(0);
            for tp in wanted[start..].iter().chain(&wanted[..start]) {
                if in_flight.len() >= self.cfg.kafka.fetches_in_flight {
                    break;
                }
                let size = sizes.get(*tp).copied().unwrap_or(max_bytes);
                let fetch = source.fetch(tp, next[*tp], size, self.cfg.kafka.fetch_max_wait);
                let tp = (*tp).clone();
                in_flight.insert(tp.clone());
                pool.push(Box::pin(async move { (tp, fetch.await) }));
            }
            let Some((tp, result)) = pool.next().await else {
                if mode == Mode::Flush {
                    break;
                }
                // Nothing to read yet (a pattern that matches no topic so far): wait for the next refresh.
                smol::Timer::after(self.cfg.kafka.refresh_interval.min(Duration::from_secs(1))).await;
                continue;
            };
            in_flight.remove(&tp);
            // The next turn starts after this partition.
            turn = (tp.0.clone(), tp.1.saturating_add(1));
            let tp = &tp;
            let mut failure = None;
            match result {
                Ok(f) if f.records.is_empty() && next[tp] < f.high_watermark => {
                    let size = sizes.get(tp).copied().unwrap_or(max_bytes);
                    if size < biggest {
                        let grown = size.saturating_mul(2).min(biggest);
                        log::debug!(
                            "{}/{}: nothing returned at offset {}; fetching up to {grown} bytes",
                            tp.0,
                            tp.1,
                            next[tp]
                        );
                        sizes.insert(tp.clone(), grown);
                        continue;
                    }
                    // Nothing readable even at the largest size: transaction markers (which
                    // hold offsets but no records), or a batch larger than `biggest`.
                    let what = format!(
                        "{}/{}: offsets {}..{} return no records even in a {biggest}-byte fetch (transaction markers, or a \
                         record batch larger than that: raise kafka.fetch_max_bytes)",
                        tp.0, tp.1, next[tp], f.high_watermark
                    );
                    match targets.as_mut() {
                        // A flush stops reading this partition where it is; nothing is skipped.
                        Some(t) => {
                            log::warn!(topic = tp.0.as_str(), partition = tp.1, offset = next[tp]; "{what}; flush stops reading this partition at offset {}", next[tp]);
                            t.insert(tp.clone(), next[tp]);
                        }
                        // `run` keeps asking, as for a partition with nothing new; records
                        // produced after the markers come with the next fetch.
                        None => {
                            if stalled.insert((tp.clone(), next[tp])) {
                                log::info!(topic = tp.0.as_str(), partition = tp.1, offset = next[tp]; "{what}; waiting for newer records");
                            }
                        }
                    }
                }
                Ok(f) => {
                    if let Some(last) = f.records.last() {
                        sizes.remove(tp);
                        stalled.retain(|(t, _)| t != tp);
                        let n = last.offset + 1;
                        match self.take(tp, &f.records).await {
                            Ok(()) => {
                                next.insert(tp.clone(), n);
                            }
                            // The schema registry could not be asked: nothing was taken, and
                            // the same records are fetched again after the backoff.
                            Err(e) if e.is_transient() => failure = Some(e),
                            Err(e) => return Err(e),
                        }
                    }
                    self.gauges.positions.borrow_mut().insert(tp.clone(), (next[tp], f.high_watermark));
                }
                Err(e) if is_offset_out_of_range(&e) => {
                    let (low, _) = source.watermarks(tp).await?;
                    log::error!(
                        topic = tp.0.as_str(), partition = tp.1, offset = next[tp];
                        "{}/{}: offset {} is no longer in Kafka (retention removed it); continuing at {low}",
                        tp.0,
                        tp.1,
                        next[tp]
                    );
                    next.insert(tp.clone(), low);
                }
                Err(e) => failure = Some(e),
            }
            self.roll(false).await?;
            match failure {
                Some(e) => retry(e, &mut backoff).await?,
                None => backoff.reset(),
            }
        }
        self.roll(true).await
    }

    /// Discovers topics and partitions again and starts reading the new ones.
    async fn refresh(
        &self,
        source: &mut Source,
        partitions: &mut Vec<TopicPartition>,
        next: &mut BTreeMap<TopicPartition, i64>,
    ) -> Result<()> {
        let found = source.discover().await?;
        let new: Vec<TopicPartition> = found.into_iter().filter(|tp| !next.contains_key(tp)).collect();
        if new.is_empty() {
            return Ok(());
        }
        let starts = self.start_offsets(source, &new).await?;
        for (tp, start) in starts {
            log::info!(topic = tp.0.as_str(), partition = tp.1, offset = start, table = self.table_name(&tp.0).as_str(); "{}/{}: new partition, reading from offset {start} into table {}", tp.0, tp.1, self.table_name(&tp.0));
            next.insert(tp.clone(), start);
            partitions.push(tp);
        }
        Ok(())
    }

    /// True while the spool is under its quota and disk floor (and the disk was not found full).
    /// A fetch started under the quota may overshoot it by one fetch plus the hot buffers.
    async fn room_to_fetch(&self) -> Result<bool> {
        if self.disk_full.get() {
            return Ok(false);
        }
        let spool = self.spool.clone();
        Ok(blocking::unblock(move || spool.has_room(0)).await?)
    }

    fn usage_text(&self) -> String {
        match self.spool.usage() {
            Ok(u) => usage_text(&u),
            Err(e) => format!("usage unknown: {e}"),
        }
    }

    /// Why [`Self::room_to_fetch`] said no, naming the setting or the condition.
    fn pause_reason(&self) -> String {
        match self.spool.usage() {
            Ok(u) => pause_reason(&u, self.disk_full.get()),
            Err(e) => format!("spool full (usage unknown: {e})"),
        }
    }

    /// Where each partition starts: after the last offset the spool index or the table has seen
    /// (whichever is later), else at the configured start position.
    async fn start_offsets(
        &self,
        source: &Source,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        let spooled = {
            let spool = self.spool.clone();
            blocking::unblock(move || spool.offsets()).await?
        };
        let committed = self.committed_offsets(partitions).await?;
        let mut next = BTreeMap::new();
        for tp in partitions {
            let known = [spooled.get(tp), committed.get(tp)].into_iter().flatten().max().copied();
            let (low, high) = source.watermarks(tp).await?;
            let start = match known {
                Some(o) if o < low => {
                    log::error!(topic = tp.0.as_str(), partition = tp.1, offset = o; "{}/{}: resuming at {o} but Kafka now starts at {low}: offsets {o}..{low} were removed by retention", tp.0, tp.1);
                    low
                }
                Some(o) => o,
                None if self.cfg.kafka.start == StartAt::Latest => high,
                None => low,
            };
            log::info!(topic = tp.0.as_str(), partition = tp.1, offset = start; "{}/{}: starting at offset {start} (log holds {low}..{high})", tp.0, tp.1);
            next.insert(tp.clone(), start);
        }
        Ok(next)
    }

    /// Offsets this agent committed to the tables of these partitions, when the catalog answers.
    /// Without it the spool index alone decides (it has recorded every offset ever spooled).
    /// An unreachable catalog is no reason not to start (the spool index knows where to resume);
    /// a refused credential or certificate is: it stops frazil here, before anything is fetched.
    async fn committed_offsets(&self, partitions: &[TopicPartition]) -> Result<BTreeMap<TopicPartition, i64>> {
        let mut out = BTreeMap::new();
        let committer = match self.committer().await {
            Ok(c) => c,
            Err(e @ Error::Config { .. }) => return Err(e),
            Err(e) => {
                log::warn!("catalog not reachable at start ({e}); resuming from the spool index alone");
                return Ok(out);
            }
        };
        let mut names: Vec<String> = partitions.iter().map(|(t, _)| self.table_name(t)).collect();
        names.sort();
        names.dedup();
        for name in names {
            let dead = crate::config::dead_letter_table_name(&self.cfg.catalog.dead_letter_table, &name);
            // Reading resumes after the table's offsets; the dead-letter table's only filter what
            // is fetched again (they run ahead when its commit landed and the table's did not).
            for (table, floor) in [(name, false), (dead, true)] {
                match committer.load(&table).await {
                    Ok(Some(t)) => {
                        let committed = commit::committed_offsets(t.metadata(), &self.cfg.agent_id);
                        if floor {
                            self.dead_floor.borrow_mut().extend(committed);
                        } else {
                            out.extend(committed);
                        }
                        self.tables.borrow_mut().insert(table, t);
                    }
                    Ok(None) => {}
                    Err(e @ Error::Config { .. }) => return Err(e),
                    Err(e) => {
                        log::warn!(table = table.as_str(); "table {table}: could not read committed offsets ({e})")
                    }
                }
            }
        }
        Ok(out)
    }

    /// Takes fetched records of one partition into its hot buffer. For an Avro topic the writer
    /// schemas are looked up first, and the table grows before any record is decoded; a registry
    /// that cannot be reached fails the call before anything is taken.
    async fn take(&self, tp: &TopicPartition, records: &[RecordAndOffset]) -> Result<()> {
        let format = self.cfg.kafka.format_for(&tp.0);
        let table = self.table_name(&tp.0);
        let writers = match format {
            Format::Avro => self.writer_schemas(records).await?,
            _ => BTreeMap::new(),
        };
        if !self.buffers.borrow().contains_key(tp) {
            let schema = self.schema_for(&table, format, records, &writers).await?;
            let decoder = Decoder::new(format, &schema, self.cfg.time_fields.epoch_unit)?;
            self.buffers
                .borrow_mut()
                .insert(tp.clone(), PartitionBuffer::new(decoder, self.cfg.kafka.max_record_bytes));
        }
        if format == Format::Avro {
            self.follow_writers(&table, tp, &writers)?;
        }
        let mut buffers = self.buffers.borrow_mut();
        let buf = buffers.get_mut(tp).expect("inserted above");
        self.report.borrow_mut().events += records.len() as u64;
        for r in records {
            let msg = Message {
                partition: tp.1,
                offset: r.offset,
                timestamp_ms: r.record.timestamp.timestamp_millis(),
                key: r.record.key.as_deref(),
                value: r.record.value.as_deref(),
            };
            buf.push(&msg, &r.record.headers);
        }
        if buf.has_fresh_keys() {
            drop(buffers);
            self.grow_schema(&table)?;
            buffers = self.buffers.borrow_mut();
        }
        buffers.get_mut(tp).expect("inserted above").settle(false)
    }

    /// Turns due hot buffers (all of them when `all`) into spool files: those at a file's size,
    /// rows or age, then the largest ones until the rest fit `spool.buffer_max_bytes`.
    async fn roll(&self, all: bool) -> Result<()> {
        let s = &self.cfg.spool;
        let due: Vec<TopicPartition> = {
            let buffers = self.buffers.borrow();
            let (due, rest): (Vec<_>, Vec<_>) = buffers
                .iter()
                .filter(|(_, b)| !b.is_empty())
                .partition(|(_, b)| all || b.due(s.file_max_bytes, s.file_max_rows, s.file_max_age));
            let rest: Vec<_> = rest.into_iter().map(|(tp, b)| (tp, b.bytes() as u64)).collect();
            due.into_iter().map(|(tp, _)| tp).chain(over_budget(rest, s.buffer_max_bytes)).cloned().collect()
        };
        for tp in due {
            let Some(mut r) = self.buffers.borrow_mut().get_mut(&tp).expect("listed above").roll()? else { continue };
            // After a lost spool the agent may fetch again records whose dead letters are already
            // committed: the dead-letter table's own offsets say which.
            let floor = self.dead_floor.borrow().get(&tp).copied();
            if let Some(floor) = floor {
                r.dead.retain(|d| d.offset >= floor);
            }
            let table = self.table_name(&tp.0);
            let dead_table = crate::config::dead_letter_table_name(&self.cfg.catalog.dead_letter_table, &table);
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
                let schema = self.schemas.borrow()[&table].clone();
                let spec = self.specs.borrow()[&table].clone();
                let sort = self.sorts.borrow()[&table].clone();
                parts.push(Part { schema, spec, sort, batches: r.batches.clone(), meta: meta(&table, r.rows) });
            }
            if !r.dead.is_empty() {
                let schema = self.dead_letter_schema(&dead_table)?;
                let batch = decode::dead_letter_batch(&tp.0, &r.dead, &schema)?;
                let spec = self.specs.borrow()[&dead_table].clone();
                let sort = self.sorts.borrow()[&dead_table].clone();
                parts.push(Part {
                    schema,
                    spec,
                    sort,
                    batches: vec![batch],
                    meta: meta(&dead_table, r.dead.len() as u64),
                });
            }
            if parts.is_empty() {
                continue; // only dead letters that are already committed
            }
            let (first, last, rows) = (r.first_offset, r.last_offset, r.rows);
            match crate::spool::spill(self.spool.clone(), parts).await {
                Ok(files) => {
                    let bytes: u64 = files.iter().map(|f| f.bytes).sum();
                    log::debug!(
                        "{}/{}: spooled offsets {first}..={last} ({rows} rows, {} dead letters, {bytes} bytes)",
                        tp.0,
                        tp.1,
                        r.dead.len()
                    );
                    for d in &r.dead {
                        log::warn!(topic = tp.0.as_str(), partition = tp.1, offset = d.offset, table = dead_table.as_str(); "{}/{} offset {}: to dead-letter table {dead_table}: {}", tp.0, tp.1, d.offset, d.reason);
                    }
                    let mut report = self.report.borrow_mut();
                    report.files_spooled += files.len() as u64;
                    report.bytes_spooled += bytes;
                    report.rejected += r.dead.len() as u64;
                    self.disk_full.set(false);
                }
                Err(e) if crate::spool::is_disk_full(&e) => {
                    // Keep the rows in memory; fetching pauses until the disk has room again.
                    log::warn!(topic = tp.0.as_str(), partition = tp.1, offset = first; "{}/{}: disk full while spooling offsets {first}..={last}; keeping them in memory ({e})", tp.0, tp.1);
                    self.buffers.borrow_mut().get_mut(&tp).expect("listed above").restore(r);
                    self.disk_full.set(true);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The buffers to roll so that the rest hold at most `budget` bytes: the largest first, so the
/// fewest and fullest files are written.
fn over_budget<K>(mut buffers: Vec<(K, u64)>, budget: u64) -> Vec<K> {
    buffers.sort_by_key(|(_, bytes)| std::cmp::Reverse(*bytes));
    let mut total: u64 = buffers.iter().map(|(_, b)| b).sum();
    let mut out = Vec::new();
    for (k, bytes) in buffers {
        if total <= budget {
            break;
        }
        total -= bytes;
        out.push(k);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::over_budget;

    #[test]
    fn the_largest_buffers_roll_until_the_rest_fit_the_budget() {
        let buffers = vec![("a", 3), ("b", 5), ("c", 1), ("d", 4)];
        assert_eq!(over_budget(buffers.clone(), 13), Vec::<&str>::new());
        assert_eq!(over_budget(buffers.clone(), 12), vec!["b"]);
        assert_eq!(over_budget(buffers.clone(), 4), vec!["b", "d"]);
        assert_eq!(over_budget(buffers.clone(), 0), vec!["b", "d", "a", "c"]);
        assert!(over_budget(Vec::<(&str, u64)>::new(), 0).is_empty());
    }
}
