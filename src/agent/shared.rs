//! What both loops read, and the stop signal they both watch.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use frazil_spool::Spool;

use super::Report;
use super::claims::Claims;
use super::metrics::Gauges;
use crate::commit::Link;
use crate::config::Config;
use crate::layout::Layouts;
use crate::source::registry::Registry;
use crate::upload::Stores;

/// The agent's shared state. Each field has one writer.
pub(super) struct Shared {
    pub cfg: Config,
    /// The spool index: its own transactions keep it consistent whoever calls.
    pub spool: Arc<Spool>,
    pub stores: Arc<Stores>,
    /// Written by the fetcher (decided and grown layouts) and the publisher (the catalog's tables,
    /// which the fetcher reads to number new fields after another writer's).
    pub layouts: Layouts,
    /// The catalog, connected by whichever loop needs it first.
    pub link: Link,
    /// Where Avro topics' writer schemas come from (when configured); the fetcher's.
    pub registry: Option<Arc<Registry>>,
    /// Counters: the fetcher's (events, files spooled, ...) and the publisher's (commits).
    pub report: RefCell<Report>,
    /// Metrics beyond the report: the fetcher's positions, the publisher's failures and timings.
    pub gauges: Gauges,
    /// Group mode: which spooled rows may be committed. The fetcher claims, the publisher moves
    /// claims with commits and drops fenced ones.
    pub claims: RefCell<Claims>,
}

impl Shared {
    pub fn new(
        cfg: Config,
        spool: Arc<Spool>,
        stores: Arc<Stores>,
        link: Link,
        registry: Option<Arc<Registry>>,
    ) -> Self {
        Shared {
            layouts: Layouts::new(spool.clone()),
            cfg,
            spool,
            stores,
            link,
            registry,
            report: RefCell::new(Report::default()),
            gauges: Gauges::default(),
            claims: RefCell::new(Claims::default()),
        }
    }

    /// Serves `/metrics` and `/health` when `run` was asked to; never completes.
    pub async fn serve_metrics_if_asked(&self, run: bool) {
        if let Some(addr) = self.cfg.metrics_listen.filter(|_| run) {
            match smol::net::TcpListener::bind(addr).await {
                Ok(l) => {
                    log::info!("metrics on http://{addr}/metrics, health on http://{addr}/health");
                    self.serve_metrics(l).await;
                }
                Err(e) => log::error!("metrics.listen {addr}: {e}; running without metrics"),
            }
        }
        std::future::pending::<()>().await;
    }

    /// Rewrites the progress line on a terminal every half second; never completes.
    pub async fn show_progress(&self, terminal: bool) {
        if terminal {
            loop {
                smol::Timer::after(Duration::from_millis(500)).await;
                eprint!("\r\x1b[K{}", self.progress_line());
            }
        }
        std::future::pending::<()>().await;
    }

    /// `12000 events, 3.1 MiB in 4 files spooled, 2 commits to 1 table`.
    pub fn progress_line(&self) -> String {
        let r = self.report.borrow();
        let tables = self.layouts.tables_loaded();
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

    /// The consumer group whose offsets this agent's commits carry (`kafka.group`).
    pub fn group(&self) -> Option<&str> {
        self.cfg.kafka.group.as_ref().map(|g| g.name.as_str())
    }

    pub fn table_name(&self, topic: &str) -> String {
        self.cfg.table_for(topic)
    }

    pub fn dead_letter_table(&self, table: &str) -> String {
        crate::config::dead_letter_table_name(&self.cfg.catalog.dead_letter_table, table)
    }
}

/// Sets the stop signal. It lives as long as the loops run: dropping it stops them too.
pub(super) struct Halt(smol::channel::Sender<()>);

/// The stop signal as both loops see it.
pub(super) struct Stop(smol::channel::Receiver<()>);

impl Stop {
    pub fn new() -> (Halt, Stop) {
        let (tx, rx) = smol::channel::bounded(1);
        (Halt(tx), Stop(rx))
    }

    pub fn is_set(&self) -> bool {
        self.0.is_closed()
    }

    /// Completes once the stop is set.
    pub async fn wait(&self) {
        while self.0.recv().await.is_ok() {}
    }
}

impl Halt {
    pub fn set(&self) {
        self.0.close();
    }
}
