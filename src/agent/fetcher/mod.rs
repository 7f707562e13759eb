//! The fetch loop: source → decode → spill. It keeps a few fetches in flight, each for another
//! partition, taking turns; takes each answer's records into the partition's hot buffer; and
//! rolls buffers into spool files when they are due. When the spool is full it pauses and asks the
//! publisher to make room.

mod buffer;
mod claim;
mod cursor;
mod group;
mod growth;
mod hot;
mod idle;
mod pause;
mod roll;
mod start;
mod take;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::LocalBoxFuture;
use futures::stream::FuturesUnordered;
use smol::channel::{Receiver, Sender};

use super::Mode;
use super::reads::HotReply;
use super::shared::{Shared, Stop};
use crate::backoff::Backoff;
use crate::source::{Ask, Connect, Fetched, Source, is_offset_out_of_range};
use crate::topic::TopicPartition;
use crate::{Error, Result};
use cursor::Cursor;
use pause::{Pause, pause_reason, usage_text};

/// How far a partition's fetch size grows to get past one oversized record batch.
const MAX_GROWN_FETCH: i32 = 64 * 1024 * 1024;

/// In flush mode, how many times in a row the broker may fail before the flush gives up.
const FLUSH_BROKER_ATTEMPTS: u32 = 8;

/// Fetch requests under way: each answers for every partition it asked, with the offset asked.
type InFlight = FuturesUnordered<LocalBoxFuture<'static, Vec<(TopicPartition, i64, Result<Fetched>)>>>;

/// The fetch loop's own state.
pub(super) struct Fetcher<'a> {
    shared: &'a Shared,
    mode: Mode,
    connect: &'a Connect,
    cursors: BTreeMap<TopicPartition, Cursor>,
    /// Retries of failed broker calls.
    retry: Backoff,
    /// How long to wait before looking again for room in a full spool (`run`).
    paused: Backoff,
    pause: Pause,
    /// Set when spooling hit a full disk, cleared by the next file spooled.
    disk_full: bool,
    /// The next fetch starts at the first partition at or after this one.
    turn: TopicPartition,
    /// How long the broker may hold the next fetch: short while records flow, longer when idle.
    idle: idle::IdleWait,
    refreshed: Instant,
    /// Requests for the hot rows (the read state), answered between two fetch answers.
    reads: Receiver<HotReply>,
    /// Group mode: the membership's assignments, and the partitions the latest one gives this
    /// agent (`None` without a group).
    assignments: Option<Receiver<crate::source::group::Assignment>>,
    assigned: Option<std::collections::BTreeSet<TopicPartition>>,
}

/// What the fetch loop woke up for. Dropping the fetch side loses nothing: a `FuturesUnordered`
/// keeps its futures when the `next()` that polled them is dropped.
enum Next {
    Fetched(Option<Vec<(TopicPartition, i64, Result<Fetched>)>>),
    Read(HotReply),
    /// Stopped while fetches were held open: their answers are not waited for (nothing was
    /// taken from them, so nothing is lost).
    Stopped,
}

/// What to do after looking for room in the spool.
enum Room {
    Fetch,
    /// `run`: look again (the spool is still full).
    Wait,
    /// A flush found the spool full even after a publish: stop here.
    StopEarly,
}

impl<'a> Fetcher<'a> {
    pub fn new(
        shared: &'a Shared,
        mode: Mode,
        connect: &'a Connect,
        reads: Receiver<HotReply>,
        assignments: Option<Receiver<crate::source::group::Assignment>>,
    ) -> Self {
        Fetcher {
            shared,
            mode,
            connect,
            cursors: BTreeMap::new(),
            retry: Backoff::new(Duration::from_millis(200), Duration::from_secs(30)),
            paused: Backoff::new(Duration::from_millis(500), Duration::from_secs(30)),
            pause: Pause::default(),
            disk_full: false,
            turn: (String::new(), 0),
            idle: idle::IdleWait::new(shared.cfg.kafka.fetch_max_wait, shared.cfg.kafka.fetch_idle_wait),
            refreshed: Instant::now(),
            reads,
            assignments,
            assigned: None,
        }
    }

    /// Fetches until `stop` (or, in a flush, until every partition reached its target), then
    /// rolls every buffer into the spool.
    pub async fn run(&mut self, stop: &Stop, kick: &Sender<()>, published: &Receiver<()>) -> Result<()> {
        let Some(mut source) = self.start(stop).await? else { return Ok(()) };
        let mut pool = InFlight::new();
        while !stop.is_set() {
            self.answer_reads();
            if let Err(e) = self.reclaim_fenced(source.as_ref()).await {
                self.wait_to_retry(e).await?;
                continue;
            }
            match self.follow_group(source.as_mut()).await {
                Ok(true) => {
                    let _ = kick.try_send(());
                }
                Ok(false) => {}
                Err(e) => {
                    self.wait_to_retry(e).await?;
                    continue;
                }
            }
            match self.room(stop, kick, published).await? {
                Room::Fetch => {}
                Room::Wait => continue,
                Room::StopEarly => break,
            }
            // `run` picks up topics and partitions that appeared since (a flush reads what was
            // there at its start).
            if self.mode == Mode::Run && self.refreshed.elapsed() >= self.shared.cfg.kafka.refresh_interval {
                self.refreshed = Instant::now();
                if let Err(e) = self.refresh(source.as_mut()).await {
                    let every = self.shared.cfg.kafka.refresh_interval;
                    log::warn!("looking for new topics and partitions: {e}; trying again in {every:.0?}");
                }
            }
            self.send_fetches(source.as_ref(), &mut pool);
            let fetched = async { Next::Fetched(pool.next().await) };
            let read = async {
                match self.reads.recv().await {
                    Ok(reply) => Next::Read(reply),
                    Err(_) => std::future::pending().await,
                }
            };
            let stopped = async {
                stop.wait().await;
                Next::Stopped
            };
            let answer = match smol::future::or(fetched, smol::future::or(read, stopped)).await {
                Next::Read(reply) => {
                    self.answer_read(reply);
                    continue;
                }
                Next::Stopped => break,
                Next::Fetched(answer) => answer,
            };
            let Some(answers) = answer else {
                if self.mode == Mode::Flush {
                    break;
                }
                // Nothing to read yet (a pattern that matches no topic so far): wait for the next refresh.
                self.sleep_answering_reads(self.shared.cfg.kafka.refresh_interval.min(Duration::from_secs(1))).await;
                continue;
            };
            if let Some(e) = self.answers(source.as_ref(), answers).await? {
                self.roll(false).await?;
                self.wait_to_retry(e).await?;
                continue;
            }
            self.roll(false).await?;
            self.retry.reset();
        }
        self.roll(true).await
    }

    fn cursor(&mut self, tp: &TopicPartition) -> &mut Cursor {
        self.cursors.get_mut(tp).expect("a discovered partition")
    }

    /// Logs a failed broker call and waits before the next try; gives up (returns the error) on
    /// a configuration error, which would fail the same way again, and in a flush after
    /// [`FLUSH_BROKER_ATTEMPTS`].
    async fn wait_to_retry(&mut self, e: Error) -> Result<()> {
        if matches!(e, Error::Config { .. })
            || self.mode == Mode::Flush && self.retry.attempts() >= FLUSH_BROKER_ATTEMPTS
        {
            return Err(e);
        }
        let delay = self.retry.next_delay();
        log::warn!("{e}; retrying in {delay:.1?}");
        self.sleep_answering_reads(delay).await;
        Ok(())
    }

    /// Keeps up to `fetches_in_flight` fetches going, each for another partition, taking turns:
    /// records of one partition are decoded while the broker serves the next. Idle, every
    /// partition goes in one request (one per broker): one answer wakes the agent per wait.
    fn send_fetches(&mut self, source: &dyn Source, pool: &mut InFlight) {
        let kafka = &self.shared.cfg.kafka;
        let mut wanted: Vec<TopicPartition> =
            self.cursors.iter().filter(|(_, c)| c.wants_more()).map(|(tp, _)| tp.clone()).collect();
        let start = wanted.iter().position(|tp| *tp >= self.turn).unwrap_or(0);
        wanted.rotate_left(start);
        let busy = self.cursors.values().filter(|c| c.in_flight).count();
        let requests: Vec<Vec<TopicPartition>> = if !self.idle.is_idle() {
            wanted.into_iter().take(kafka.fetches_in_flight.saturating_sub(busy)).map(|tp| vec![tp]).collect()
        } else if busy == 0 && !wanted.is_empty() {
            vec![wanted]
        } else {
            Vec::new() // the fetches of the busy spell come back first (within the short wait)
        };
        let wait = self.idle.next();
        for tps in requests {
            let asks: Vec<Ask> = tps
                .into_iter()
                .map(|tp| {
                    let c = self.cursors.get_mut(&tp).expect("listed above");
                    c.in_flight = true;
                    Ask { offset: c.next, max_bytes: c.grown.unwrap_or(kafka.fetch_max_bytes as i32), tp }
                })
                .collect();
            let fetch = source.fetch(asks.clone(), wait);
            pool.push(Box::pin(async move {
                asks.into_iter().zip(fetch.await).map(|(ask, result)| (ask.tp, ask.offset, result)).collect()
            }));
        }
    }

    /// True while the spool is under its quota and disk floor (and the disk was not found full),
    /// once committed files kept for queries are evicted. A fetch started under the quota may
    /// overshoot it by one fetch plus the hot buffers.
    async fn room_to_fetch(&self) -> Result<bool> {
        if self.disk_full {
            return Ok(false);
        }
        // Asked before every fetch, so asked here: an atomic and a statvfs, no fsync, while a hop
        // to the blocking pool would wake two threads each time (most of an idle agent's
        // wake-ups).
        if self.shared.spool.has_room(0)? {
            return Ok(true);
        }
        // Committed files kept for offline queries make room first (eviction stops as soon as
        // there is room, so none goes if room came back meanwhile).
        let (room, evicted) = crate::spill::on_pool(&self.shared.spool, |s| {
            let evicted = s.evict_committed_for_room(0)?;
            Ok((s.has_room(0)?, evicted))
        })
        .await?;
        if evicted > 0 {
            log::info!("spool: removed {evicted} committed files kept for queries, to make room");
        }
        Ok(room)
    }

    /// Looks for room in the spool. Without it, fetching pauses (logged, with its reason) and
    /// the publisher is asked to publish now: `run` waits and looks again; a flush waits for that
    /// publish and stops early if it could not make room (the link is down: everything taken so
    /// far is safe in the spool).
    async fn room(&mut self, stop: &Stop, kick: &Sender<()>, published: &Receiver<()>) -> Result<Room> {
        if !self.room_to_fetch().await? {
            if let Some(lasting) = self.pause.full(Instant::now()) {
                log::warn!(
                    "{}: fetching paused until uploads free space{lasting}; Kafka keeps the data",
                    self.pause_reason()
                );
            }
            // A cycle that ended before this kick says nothing about room made after it.
            while published.try_recv().is_ok() {}
            let _ = kick.try_send(());
            if self.mode == Mode::Run {
                let delay = self.paused.next_delay();
                self.sleep_answering_reads(delay).await;
                self.roll(false).await?;
                return Ok(Room::Wait);
            }
            smol::future::or(
                async {
                    let _ = published.recv().await;
                },
                stop.wait(),
            )
            .await;
            if !self.room_to_fetch().await? {
                log::warn!("{} after publishing; flush stops early, run it again later", self.pause_reason());
                self.shared.report.borrow_mut().stopped_early = true;
                return Ok(Room::StopEarly);
            }
        }
        if self.pause.room() {
            log::info!("spool has room again ({}); fetching resumes", self.usage_text());
            self.paused.reset();
        }
        Ok(Room::Fetch)
    }

    fn usage_text(&self) -> String {
        match self.shared.spool.usage() {
            Ok(u) => usage_text(&u),
            Err(e) => format!("usage unknown: {e}"),
        }
    }

    /// Why [`Self::room_to_fetch`] said no, naming the setting or the condition.
    fn pause_reason(&self) -> String {
        match self.shared.spool.usage() {
            Ok(u) => pause_reason(&u, self.disk_full),
            Err(e) => format!("spool full (usage unknown: {e})"),
        }
    }
}

/// What an answer to a fetch led to.
enum Answered {
    /// The partition's fetch size grew; fetch it again at once.
    Grown,
    /// Nothing new: the partition is read up to its high watermark.
    NothingNew,
    /// Records were taken, or the cursor moved past what retention removed.
    Moved,
    /// To try again after a backoff.
    Failed(Error),
}

impl Fetcher<'_> {
    /// Handles the answers of one fetch request; returns the first failure to retry after. The
    /// wait grows only when every partition asked came back with nothing new.
    async fn answers(
        &mut self,
        source: &dyn Source,
        answers: Vec<(TopicPartition, i64, Result<Fetched>)>,
    ) -> Result<Option<Error>> {
        let (asked, mut nothing_new, mut failure) = (answers.len(), 0, None);
        for (tp, offset, result) in answers {
            let Some(c) = self.cursors.get_mut(&tp) else { continue };
            c.in_flight = false;
            if c.next != offset {
                continue; // the partition was read again from elsewhere (a fenced commit) meanwhile
            }
            // The next turn starts after this partition.
            self.turn = (tp.0.clone(), tp.1.saturating_add(1));
            match self.answer(source, &tp, result).await? {
                Answered::NothingNew => nothing_new += 1,
                Answered::Failed(e) if failure.is_none() => failure = Some(e),
                Answered::Failed(e) => log::debug!("{e}"),
                Answered::Grown | Answered::Moved => {}
            }
        }
        if nothing_new == asked {
            self.idle.nothing_new(asked, self.cursors.len());
        }
        Ok(failure)
    }
}

impl Fetcher<'_> {
    /// Handles one fetch's answer: records are taken into the partition's buffer; an empty answer
    /// below the high watermark grows the fetch size; an offset removed by retention moves the
    /// cursor to the log's start.
    async fn answer(&mut self, source: &dyn Source, tp: &TopicPartition, result: Result<Fetched>) -> Result<Answered> {
        let f = match result {
            Ok(f) => f,
            Err(e) if is_offset_out_of_range(&e) => {
                let (low, _) = source.watermarks(tp).await?;
                let c = self.cursor(tp);
                log::error!(
                    topic = tp.0.as_str(), partition = tp.1, offset = c.next;
                    "{}/{}: offset {} is no longer in Kafka (retention removed it); continuing at {low}",
                    tp.0, tp.1, c.next
                );
                c.next = low;
                return Ok(Answered::Moved);
            }
            Err(e) => return Ok(Answered::Failed(e)),
        };
        if f.records.is_empty() && self.cursor(tp).next < f.high_watermark {
            return Ok(self.nothing_returned(tp, f.high_watermark));
        }
        let mut answered = Answered::NothingNew;
        if let Some(last) = f.records.last() {
            self.idle.records();
            let n = last.offset + 1;
            let c = self.cursor(tp);
            c.grown = None;
            c.stalled_at = None;
            answered = match self.take(tp, &f.records).await {
                Ok(()) => {
                    self.cursor(tp).next = n;
                    Answered::Moved
                }
                // The schema registry could not be asked: nothing was taken, and the same
                // records are fetched again after the backoff.
                Err(e) if e.is_transient() => Answered::Failed(e),
                Err(e) => return Err(e),
            };
        }
        let next = self.cursor(tp).next;
        self.shared.gauges.positions.borrow_mut().insert(tp.clone(), (next, f.high_watermark));
        Ok(answered)
    }

    /// A fetch that returns nothing below the high watermark met a record batch larger than the
    /// fetch size (a broker that does not hand out an oversized first batch): the partition's
    /// size doubles up to [`MAX_GROWN_FETCH`]. Past that, the offsets hold transaction markers
    /// (offsets but no records) or a batch larger still.
    fn nothing_returned(&mut self, tp: &TopicPartition, high_watermark: i64) -> Answered {
        let max_bytes = self.shared.cfg.kafka.fetch_max_bytes as i32;
        let biggest = max_bytes.max(MAX_GROWN_FETCH);
        let flush = self.mode == Mode::Flush;
        let c = self.cursor(tp);
        let size = c.grown.unwrap_or(max_bytes);
        if size < biggest {
            let grown = size.saturating_mul(2).min(biggest);
            log::debug!("{}/{}: nothing returned at offset {}; fetching up to {grown} bytes", tp.0, tp.1, c.next);
            c.grown = Some(grown);
            return Answered::Grown;
        }
        let what = format!(
            "{}/{}: offsets {}..{high_watermark} return no records even in a {biggest}-byte fetch (transaction \
             markers, or a record batch larger than that: raise kafka.fetch_max_bytes)",
            tp.0, tp.1, c.next
        );
        if flush {
            // A flush stops reading this partition where it is; nothing is skipped.
            log::warn!(topic = tp.0.as_str(), partition = tp.1, offset = c.next; "{what}; flush stops reading this partition at offset {}", c.next);
            c.target = Some(c.next);
        } else if c.stalled_at != Some(c.next) {
            // `run` keeps asking, as for a partition with nothing new; records produced after
            // the markers come with the next fetch.
            c.stalled_at = Some(c.next);
            log::info!(topic = tp.0.as_str(), partition = tp.1, offset = c.next; "{what}; waiting for newer records");
        }
        Answered::NothingNew
    }
}
