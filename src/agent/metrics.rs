//! `run`'s Prometheus metrics and health check, served on a loopback address by a tiny HTTP/1.1
//! responder on the agent's own executor (`[metrics] listen`, off by default).
//!
//! `GET /metrics`: the text exposition format. `GET /health`: 200 while the last publish cycle
//! succeeded (or none has run yet), else 503 with the reason.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, SystemTime};

use smol::io::{AsyncReadExt, AsyncWriteExt};

use super::shared::Shared;
use crate::topic::TopicPartition;

/// What the agent records for metrics beyond its report.
#[derive(Default)]
pub struct Gauges {
    /// Per partition: the next offset to fetch and the broker's high watermark at the last fetch.
    pub positions: RefCell<BTreeMap<TopicPartition, (i64, i64)>>,
    pub publish_failures: Cell<u64>,
    /// The last publish cycle's error, while the latest one failed.
    pub last_error: RefCell<Option<String>>,
    pub last_commit: Cell<Option<SystemTime>>,
    pub commit_seconds_sum: Cell<f64>,
    pub commit_seconds_count: Cell<u64>,
    /// Commit attempts another writer's commit refused first (each retried on the new table).
    pub commit_conflicts: Cell<u64>,
    /// Read-state requests answered, and the longest a copy of the hot rows held up fetching.
    pub reads_served: Cell<u64>,
    pub read_pause_max: Cell<Duration>,
    /// Group mode: commits the fence refused (another agent committed the partition first).
    pub fenced_commits: Cell<u64>,
    /// Group mode: the generation of the latest assignment (`-1`: dropped from the group), and
    /// this agent's member id in it.
    pub group_generation: Cell<Option<i32>>,
    pub group_member: RefCell<String>,
    /// Group mode: the partitions this agent reads (assigned, or fixed by `kafka.partitions`).
    pub group_partitions: RefCell<std::collections::BTreeSet<TopicPartition>>,
}

impl Gauges {
    pub fn read_state_served(&self, paused: Duration) {
        self.reads_served.set(self.reads_served.get() + 1);
        self.read_pause_max.set(self.read_pause_max.get().max(paused));
        log::debug!("read state: hot rows copied in {paused:.1?}");
    }

    pub fn commit_took(&self, d: Duration) {
        self.commit_seconds_sum.set(self.commit_seconds_sum.get() + d.as_secs_f64());
        self.commit_seconds_count.set(self.commit_seconds_count.get() + 1);
        self.last_commit.set(Some(SystemTime::now()));
    }
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The text exposition format, one metric at a time.
#[derive(Default)]
struct Text(String);

impl Text {
    fn metric(&mut self, name: &str, kind: &str, help: &str, samples: Vec<(String, String)>) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(self.0, "{name}{labels} {value}");
        }
    }

    /// A metric with one sample and no labels.
    fn one(&mut self, name: &str, kind: &str, help: &str, value: impl ToString) {
        self.metric(name, kind, help, vec![(String::new(), value.to_string())]);
    }
}

impl Shared {
    /// The metrics in Prometheus' text format.
    pub(super) fn prometheus(&self) -> String {
        let mut t = Text::default();
        self.counters(&mut t);
        self.spool_metrics(&mut t);
        let lag: Vec<(String, String)> = self
            .gauges
            .positions
            .borrow()
            .iter()
            .map(|((topic, p), (next, high))| {
                (format!("{{topic=\"{}\",partition=\"{p}\"}}", label(topic)), (high - next).max(0).to_string())
            })
            .collect();
        let help = "Records in Kafka not yet fetched (high watermark minus next offset).";
        t.metric("frazil_partition_lag", "gauge", help, lag);
        t.0
    }

    /// What the loops counted, and the commits' timing.
    fn counters(&self, t: &mut Text) {
        let r = self.report.borrow().clone();
        let g = &self.gauges;
        t.one("frazil_events_total", "counter", "Records taken from Kafka.", r.events);
        t.one("frazil_dead_letters_total", "counter", "Records that went to a dead-letter table.", r.rejected);
        t.one("frazil_files_spooled_total", "counter", "Spool files written.", r.files_spooled);
        t.one("frazil_files_committed_total", "counter", "Spool files committed to their tables.", r.files_committed);
        t.one("frazil_commits_total", "counter", "Table commits that landed.", r.commits);
        let failures = g.publish_failures.get();
        t.one("frazil_publish_failures_total", "counter", "Publish cycles (upload and commit) that failed.", failures);
        // A summary's samples are `<name>_sum` and `<name>_count`: the suffix takes the labels' place.
        t.metric(
            "frazil_commit_seconds",
            "summary",
            "Time a commit took, from the pending record to the catalog's answer.",
            vec![
                ("_sum".into(), format!("{:.6}", g.commit_seconds_sum.get())),
                ("_count".into(), g.commit_seconds_count.get().to_string()),
            ],
        );
        let help = "Commit attempts another writer's commit refused first (each retried on the table as it became).";
        t.one("frazil_commit_conflicts_total", "counter", help, g.commit_conflicts.get());
        let served = g.reads_served.get();
        t.one("frazil_read_state_requests_total", "counter", "Read-state requests answered (queries).", served);
        let pause = g.read_pause_max.get().as_secs_f64();
        let help = "The longest a read-state request held up fetching (copying the hot rows).";
        t.one("frazil_read_state_pause_seconds_max", "gauge", help, format!("{pause:.6}"));
        if let Some(group) = self.group() {
            let name = format!("{{group=\"{}\"}}", label(group));
            let help = "Commits the group's fence refused: another agent committed the partition first.";
            t.metric(
                "frazil_group_fenced_commits_total",
                "counter",
                help,
                vec![(name.clone(), g.fenced_commits.get().to_string())],
            );
            let owned = g.group_partitions.borrow().len();
            let help = "Partitions this agent reads for its group.";
            t.metric("frazil_group_partitions", "gauge", help, vec![(name.clone(), owned.to_string())]);
            if let Some(generation) = g.group_generation.get() {
                let help = "The group generation of this agent's latest assignment (-1: dropped from the group).";
                t.metric("frazil_group_generation", "gauge", help, vec![(name, generation.to_string())]);
            }
        }
        if let Some(at) = g.last_commit.get() {
            let secs = at.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
            let help = "When the last commit landed (Unix time).";
            t.one("frazil_last_commit_timestamp_seconds", "gauge", help, format!("{secs:.3}"));
        }
    }

    /// The spool's size, quota, free disk and files by state (nothing when the index cannot be read).
    fn spool_metrics(&self, t: &mut Text) {
        let (Ok(u), Ok(s)) = (self.spool.usage(), self.spool.status()) else { return };
        t.one("frazil_spool_bytes", "gauge", "Bytes of spool files on disk.", u.bytes);
        if let Some(m) = u.max_bytes {
            t.one("frazil_spool_max_bytes", "gauge", "The spool's quota (spool.max_bytes).", m);
        }
        if let Some(f) = u.free_disk {
            t.one("frazil_spool_free_disk_bytes", "gauge", "Free space on the spool's filesystem.", f);
        }
        let states = [
            ("written", s.written),
            ("uploaded", s.uploaded),
            ("committed", s.committed),
            ("quarantined", s.quarantined),
        ];
        let samples = states.into_iter().map(|(state, n)| (format!("{{state=\"{state}\"}}"), n.to_string())).collect();
        t.metric("frazil_spool_files", "gauge", "Spool files by state.", samples);
    }

    /// 200 and "ok", or 503 and why.
    fn health(&self) -> (u16, String) {
        match self.gauges.last_error.borrow().as_ref() {
            None => (200, "ok\n".into()),
            Some(e) => (503, format!("the last publish failed: {e}\n")),
        }
    }

    /// Serves `/metrics` and `/health` until dropped (the agent stopping drops it).
    pub(super) async fn serve_metrics(&self, listener: smol::net::TcpListener) {
        loop {
            let mut conn = match listener.accept().await {
                Ok((c, _)) => c,
                Err(e) => {
                    // E.g. out of file descriptors: do not spin.
                    log::warn!("metrics: accept: {e}");
                    smol::Timer::after(Duration::from_secs(1)).await;
                    continue;
                }
            };
            // One request per connection, answered with Connection: close, one connection at a
            // time (a scrape endpoint on loopback); a slow client gets 5 s.
            let mut buf = vec![0u8; 4096];
            let read = smol::future::or(async { conn.read(&mut buf).await.ok() }, async {
                smol::Timer::after(Duration::from_secs(5)).await;
                None
            })
            .await;
            let Some(n) = read else { continue };
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let (status, kind, body) = match path {
                "/metrics" => (200, "text/plain; version=0.0.4", self.prometheus()),
                "/health" => {
                    let (s, b) = self.health();
                    (s, "text/plain", b)
                }
                _ => (404, "text/plain", "try /metrics or /health\n".into()),
            };
            let reason = match status {
                200 => "OK",
                503 => "Service Unavailable",
                _ => "Not Found",
            };
            let head = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes()).await;
            let _ = conn.write_all(body.as_bytes()).await;
            let _ = conn.close().await;
        }
    }
}
