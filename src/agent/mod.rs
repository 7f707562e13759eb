//! The agent: two loops on one single-threaded smol executor.
//!
//! - The [`fetcher`] owns everything about reading: the source, one cursor per partition (next
//!   offset, fetch size, hot buffer) and the pause state. It runs source → decode → spill.
//! - The [`publisher`] owns everything about publishing: when each table was last published,
//!   and the upload stage. It runs spool → upload → commit.
//! - [`Shared`] is what both read: the configuration, the spool, each table's layout, the catalog
//!   link and the counters. Each of its fields says which loop writes it.
//!
//! The loops talk through channels: the fetcher asks for a publish when the spool is full
//! (`kick`), the publisher says when a cycle ended (`published`), and the fetcher's end tells the
//! publisher to make its last cycle (`done`). Blocking work (Parquet encoding, fsync, redb
//! commits, HTTP through ureq) runs on smol's blocking pool, so neither loop stalls the other.

mod claims;
#[cfg(test)]
mod compact_tests;
mod fetcher;
mod group_state;
#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod maintain_tests;
mod metrics;
mod publisher;
#[cfg(test)]
mod read_tests;
mod reads;
#[cfg(test)]
mod schema_tests;
mod shared;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use frazil_spool::Spool;

use crate::config::Config;
use crate::source::{self, Connect};
use crate::upload::Stores;
use crate::{Result, commit};
use fetcher::Fetcher;
pub use group_state::{GROUP_STATE, GroupState};
use publisher::Publisher;
use shared::{Shared, Stop};

/// What a run or flush did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Records taken from Kafka.
    pub events: u64,
    /// Records that could not be decoded (logged with topic/partition/offset).
    pub rejected: u64,
    pub files_spooled: u64,
    /// Bytes of the spool files written.
    pub bytes_spooled: u64,
    pub files_committed: u64,
    pub commits: u64,
    /// Spool files not yet committed when the agent stopped (they are safe and go out next time).
    pub pending_files: u64,
    /// A flush stopped before the high watermark because the spool was full and could not be
    /// emptied (the rest is still in Kafka).
    pub stopped_early: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Keep going until asked to stop.
    Run,
    /// Drain every partition up to the high watermark seen at start, commit, stop.
    Flush,
}

pub struct Agent {
    shared: Shared,
    connect: Connect,
}

impl Agent {
    /// Opens the spool (recovering it after a crash) and prepares the stages, reading from the
    /// configured Kafka brokers. Nothing remote is contacted yet, so an agent starts even when
    /// every link is down.
    pub fn open(cfg: Config) -> Result<Agent> {
        let connect = source::kafka(&cfg.kafka);
        Agent::with_source(cfg, connect)
    }

    /// [`open`](Self::open), reading from another source (in tests, [`source::memory`]).
    pub fn with_source(cfg: Config, connect: Connect) -> Result<Agent> {
        let (spool, recovery) = Spool::open(&cfg.spool.dir, crate::spill::options(&cfg.spool))?;
        for path in &recovery.orphans_removed {
            log::info!("spool: removed {} (never reached the index; its events will be fetched again)", path.display());
        }
        for f in &recovery.missing {
            let m = &f.meta;
            log::error!(
                "spool: file {} of {}/{} offsets {}..={} is missing; those events are not in the spool any more",
                f.path.display(),
                m.topic,
                m.partition,
                m.first_offset,
                m.last_offset
            );
        }
        let registry =
            cfg.schema_registry.as_ref().map(crate::source::registry::Registry::new).transpose()?.map(Arc::new);
        let stores = Arc::new(Stores::new(cfg.s3.clone()));
        let link = commit::Link::new(&cfg.catalog, stores.clone(), &cfg.agent_id);
        Ok(Agent { shared: Shared::new(cfg, Arc::new(spool), stores, link, registry), connect })
    }

    /// Drains every partition to the high watermark seen at start, uploads and commits all of it.
    /// `Ok` with `pending_files > 0` means the link failed and the data stays safely spooled.
    pub fn flush(&self) -> Result<Report> {
        self.flush_within(None)
    }

    /// [`flush`](Self::flush), ended cleanly after `limit` if it has not finished by then: what
    /// was taken is spooled and committed, and the report says `stopped_early`.
    pub fn flush_within(&self, limit: Option<Duration>) -> Result<Report> {
        smol::block_on(self.drive(Mode::Flush, async {
            match limit {
                Some(d) => {
                    smol::Timer::after(d).await;
                    log::warn!("flush: --max-duration of {d:.0?} reached");
                }
                None => std::future::pending().await,
            }
        }))
    }

    /// Runs until `stop` completes (e.g. on SIGTERM), then spools what it holds, commits, returns.
    pub fn run_until(&self, stop: impl Future<Output = ()>) -> Result<Report> {
        // A plain block_on: smol's would drive the I/O reactor from this thread, and async-io's
        // own thread then spins through ten short sleeps after every event it sees, most of an
        // idle agent's wake-ups (benches/idle.sh). Here that thread blocks on the reactor and
        // wakes this one only when a timer or socket is ready. rskafka's I/O runs on the tokio
        // thread either way. A flush is short and busy: it keeps smol's.
        smol::future::block_on(self.drive(Mode::Run, stop))
    }

    /// Runs both loops until the fetcher ends (a flush reached its watermarks, or `stop`), then
    /// waits for the publisher's last cycle.
    async fn drive(&self, mode: Mode, stop: impl Future<Output = ()>) -> Result<Report> {
        let shared = &self.shared;
        let (halt, stopping) = Stop::new();
        let (kick_tx, kick_rx) = smol::channel::bounded::<()>(1);
        let (published_tx, published_rx) = smol::channel::bounded::<()>(1);
        let (done_tx, done_rx) = smol::channel::bounded::<()>(1);
        let (reads_tx, reads_rx) = smol::channel::bounded(1);
        // Joined for this run or flush only; dropping it leaves the group.
        let membership = source::group::Membership::start(&shared.cfg.kafka);
        let assignments = membership.as_ref().map(|m| m.assignments().clone());
        let fetch = async {
            let mut fetcher = Fetcher::new(shared, mode, &self.connect, reads_rx, assignments);
            let r = fetcher.run(&stopping, &kick_tx, &published_rx).await;
            drop(done_tx);
            r
        };
        let publish = async {
            let mut publisher = Publisher::new(shared);
            publisher.run(mode, &kick_rx, &done_rx, &published_tx).await
        };
        let watch = async {
            stop.await;
            log::info!("stopping: spooling what is buffered, then committing");
            halt.set();
            if mode == Mode::Flush {
                // Ended before the high watermarks: the rest waits in Kafka for the next flush.
                shared.report.borrow_mut().stopped_early = true;
            }
        };
        // A flush on a terminal shows how far it got, on one line rewritten in place.
        let terminal = mode == Mode::Flush && std::io::IsTerminal::is_terminal(&std::io::stderr());
        let side = async {
            let metrics = async { shared.serve_metrics_if_asked(mode == Mode::Run).await };
            let progress = async { shared.show_progress(terminal).await };
            let reads = async { shared.serve_reads(reads_tx).await };
            smol::future::zip(smol::future::zip(watch, metrics), smol::future::zip(progress, reads)).await;
        };
        let (fetched, published) = smol::future::or(smol::future::zip(fetch, publish), async {
            side.await;
            unreachable!("the metrics, progress and read-state tasks never complete")
        })
        .await;
        if terminal {
            eprintln!("\r\x1b[K{}", shared.progress_line());
        }
        fetched?;
        published?;
        let mut report = shared.report.borrow().clone();
        let status = shared.spool.status()?;
        report.pending_files = status.written + status.uploaded;
        Ok(report)
    }
}
