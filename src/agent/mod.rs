//! The agent: the stages wired together on one single-threaded smol executor.
//!
//! Two loops share the thread: `fetch` (source → decode → spool) and `publish` (spool → upload →
//! commit). Blocking work (Parquet encoding, fsync, redb commits, HTTP through ureq) runs on
//! smol's blocking pool, so neither loop stalls the other for long.

mod buffer;
mod check;
mod fetch;
mod metrics;
mod pause;
mod publish;
mod schemas;
mod status;
mod tables;

/// Bytes as MiB with one decimal, for log lines and reports.
fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / 1048576.0)
}

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use frazil_spool::{Spool, SpoolOptions};
use iceberg::spec::Schema;
use iceberg::table::Table;

use crate::commit::Committer;
use crate::config::Config;
use crate::source::TopicPartition;
use crate::upload::Stores;
use crate::{Error, Result};
use buffer::PartitionBuffer;
pub use check::{Checked, check};
pub use status::{Status, status};

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
    cfg: Config,
    spool: Arc<Spool>,
    stores: Arc<Stores>,
    committer: RefCell<Option<Rc<Committer>>>,
    schemas: RefCell<HashMap<String, Arc<Schema>>>,
    /// Per table, the partition spec its spool files are split by (decided with the schema).
    specs: RefCell<HashMap<String, Arc<iceberg::spec::PartitionSpec>>>,
    /// The order each table's spool files are written in (decided with the spec).
    sorts: RefCell<HashMap<String, Arc<iceberg::spec::SortOrder>>>,
    tables: RefCell<HashMap<String, Table>>,
    /// Per partition, the next offset after the dead letters this agent committed to the
    /// dead-letter table (read at start): a record below it that fails again is not written twice.
    dead_floor: RefCell<BTreeMap<TopicPartition, i64>>,
    buffers: RefCell<BTreeMap<TopicPartition, PartitionBuffer>>,
    report: RefCell<Report>,
    /// Publish cycles finished, and whether the last one succeeded: the fetch loop watches these
    /// while it waits for room in a full spool.
    publishes: Cell<u64>,
    /// The configuration error the catalog connection failed with, if it did (key, problem, fix).
    catalog_refused: RefCell<Option<(String, String, String)>>,
    /// When each table was last published (uploaded and committed); a table whose own commit
    /// interval has not passed since is left for a later cycle. Absent: since the agent opened.
    published_at: RefCell<HashMap<String, std::time::Instant>>,
    opened_at: std::time::Instant,
    last_publish_ok: Cell<bool>,
    /// Set when spooling hit a full disk, cleared by the next file spooled.
    disk_full: Cell<bool>,
    gauges: metrics::Gauges,
    /// Where Avro topics' writer schemas come from (when configured).
    registry: Option<Arc<crate::source::registry::Registry>>,
}

impl Agent {
    /// Opens the spool (recovering it after a crash) and prepares the stages. Nothing remote is
    /// contacted yet, so an agent starts even when every link is down.
    pub fn open(cfg: Config) -> Result<Agent> {
        let opts = SpoolOptions {
            max_bytes: cfg.spool.max_bytes,
            min_free_bytes: cfg.spool.min_free,
            ..SpoolOptions::default()
        };
        let (spool, recovery) = Spool::open(&cfg.spool.dir, opts)?;
        for path in &recovery.orphans_removed {
            log::info!("spool: removed {} (never reached the index; its events will be fetched again)", path.display());
        }
        for f in &recovery.missing {
            log::error!(
                "spool: file {} of {}/{} offsets {}..={} is missing; those events are not in the spool any more",
                f.path.display(),
                f.meta.topic,
                f.meta.partition,
                f.meta.first_offset,
                f.meta.last_offset
            );
        }
        let registry =
            cfg.schema_registry.as_ref().map(crate::source::registry::Registry::new).transpose()?.map(Arc::new);
        Ok(Agent {
            registry,
            stores: Arc::new(Stores::new(cfg.s3.clone())),
            cfg,
            spool: Arc::new(spool),
            committer: RefCell::new(None),
            schemas: RefCell::new(HashMap::new()),
            specs: RefCell::new(HashMap::new()),
            sorts: RefCell::new(HashMap::new()),
            tables: RefCell::new(HashMap::new()),
            dead_floor: RefCell::new(BTreeMap::new()),
            buffers: RefCell::new(BTreeMap::new()),
            report: RefCell::new(Report::default()),
            publishes: Cell::new(0),
            catalog_refused: RefCell::new(None),
            published_at: RefCell::new(HashMap::new()),
            opened_at: std::time::Instant::now(),
            last_publish_ok: Cell::new(false),
            disk_full: Cell::new(false),
            gauges: metrics::Gauges::default(),
        })
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
        smol::block_on(self.drive(Mode::Run, stop))
    }

    async fn drive(&self, mode: Mode, stop: impl Future<Output = ()>) -> Result<Report> {
        let stopping = Cell::new(false);
        let (done_tx, done_rx) = smol::channel::bounded::<()>(1);
        // The fetch loop asks for an early publish when the spool is full.
        let (kick_tx, kick_rx) = smol::channel::bounded::<()>(1);
        let fetch = async {
            let r = self.fetch_loop(mode, &stopping, &kick_tx).await;
            let _ = done_tx.try_send(());
            r
        };
        let publish = async {
            loop {
                // Tables are looked at as often as the shortest commit interval asks; each is
                // published when its own interval has passed, or at once when the spool is full.
                let tick = async {
                    smol::Timer::after(self.cfg.shortest_commit_interval()).await;
                    Some(false)
                };
                let kick = async {
                    let _ = kick_rx.recv().await;
                    Some(true)
                };
                let done = async {
                    let _ = done_rx.recv().await;
                    None
                };
                let Some(all) = smol::future::or(smol::future::or(tick, kick), done).await else { break };
                let result = self.publish(all).await;
                crate::memory::release();
                self.last_publish_ok.set(result.is_ok());
                self.publishes.set(self.publishes.get() + 1);
                *self.gauges.last_error.borrow_mut() = result.as_ref().err().map(ToString::to_string);
                if let Err(e) = result {
                    self.gauges.publish_failures.set(self.gauges.publish_failures.get() + 1);
                    log::warn!(
                        "publish: {e}; the files stay spooled and are retried in {:?}",
                        self.cfg.shortest_commit_interval()
                    );
                }
            }
            self.final_publish(mode).await
        };
        let watch = async {
            stop.await;
            log::info!("stopping: spooling what is buffered, then committing");
            stopping.set(true);
            if mode == Mode::Flush {
                // Ended before the high watermarks: the rest waits in Kafka for the next flush.
                self.report.borrow_mut().stopped_early = true;
            }
            std::future::pending::<()>().await;
        };
        let serve = async {
            if let Some(addr) = self.cfg.metrics_listen.filter(|_| mode == Mode::Run) {
                match smol::net::TcpListener::bind(addr).await {
                    Ok(l) => {
                        log::info!("metrics on http://{addr}/metrics, health on http://{addr}/health");
                        self.serve_metrics(l).await;
                    }
                    Err(e) => log::error!("metrics.listen {addr}: {e}; running without metrics"),
                }
            }
            std::future::pending::<()>().await;
        };
        // A flush on a terminal shows how far it got, on one line rewritten in place.
        let terminal = mode == Mode::Flush && std::io::IsTerminal::is_terminal(&std::io::stderr());
        let progress = async {
            if terminal {
                loop {
                    smol::Timer::after(Duration::from_millis(500)).await;
                    eprint!("\r\x1b[K{}", self.progress_line());
                }
            }
            std::future::pending::<()>().await;
        };
        let (fetched, published) = smol::future::or(smol::future::zip(fetch, publish), async {
            smol::future::zip(smol::future::zip(watch, serve), progress).await;
            unreachable!("the watch never completes")
        })
        .await;
        if terminal {
            eprintln!("\r\x1b[K{}", self.progress_line());
        }
        fetched?;
        published?;
        let mut report = self.report.borrow().clone();
        let status = self.spool.status()?;
        report.pending_files = status.written + status.uploaded;
        Ok(report)
    }

    /// The last publish before returning: in flush mode it insists (with backoff) for a while,
    /// since committing is the point; in run mode one attempt, so a shutdown stays quick.
    async fn final_publish(&self, mode: Mode) -> Result<()> {
        let attempts = if mode == Mode::Flush { 5 } else { 1 };
        let mut backoff = crate::backoff::Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
        for attempt in 1..=attempts {
            match self.publish(true).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() || matches!(e, Error::Spool(_)) => {
                    log::warn!("publish (attempt {attempt} of {attempts}): {e}");
                }
                Err(e) => return Err(e),
            }
            if attempt < attempts {
                smol::Timer::after(backoff.next_delay()).await;
            }
        }
        Ok(())
    }

    /// `12000 events, 3.1 MiB in 4 files spooled, 2 commits to 1 table`.
    fn progress_line(&self) -> String {
        let r = self.report.borrow();
        let tables = self.tables.borrow().len();
        let s = |n: usize| if n == 1 { "" } else { "s" };
        format!(
            "{} events, {:.1} MiB in {} file{} spooled, {} commit{} to {tables} table{}",
            r.events,
            r.bytes_spooled as f64 / 1048576.0,
            r.files_spooled,
            s(r.files_spooled as usize),
            r.commits,
            s(r.commits as usize),
            s(tables)
        )
    }

    /// The catalog client, connected on first use (and again after a failure).
    async fn committer(&self) -> Result<Rc<Committer>> {
        if let Some(c) = self.committer.borrow().as_ref() {
            return Ok(c.clone());
        }
        // Refused credentials or certificates stay refused for this process: say so again
        // without asking the catalog (or its token endpoint) once more.
        if let Some((key, problem, fix)) = self.catalog_refused.borrow().clone() {
            return Err(Error::Config { key, problem, fix });
        }
        let c = match Committer::connect(&self.cfg.catalog, &self.stores, &self.cfg.agent_id).await {
            Ok(c) => Rc::new(c),
            Err(Error::Config { key, problem, fix }) => {
                *self.catalog_refused.borrow_mut() = Some((key.clone(), problem.clone(), fix.clone()));
                return Err(Error::Config { key, problem, fix });
            }
            Err(e) => return Err(e),
        };
        *self.committer.borrow_mut() = Some(c.clone());
        Ok(c)
    }

    fn table_name(&self, topic: &str) -> String {
        self.cfg.table_for(topic)
    }
}
