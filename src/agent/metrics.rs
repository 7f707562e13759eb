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
}

impl Gauges {
    pub fn commit_took(&self, d: Duration) {
        self.commit_seconds_sum.set(self.commit_seconds_sum.get() + d.as_secs_f64());
        self.commit_seconds_count.set(self.commit_seconds_count.get() + 1);
        self.last_commit.set(Some(SystemTime::now()));
    }
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Shared {
    /// The metrics in Prometheus' text format.
    pub(super) fn prometheus(&self) -> String {
        let r = self.report.borrow().clone();
        let g = &self.gauges;
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let one = |v: String| vec![(String::new(), v)];
        metric("frazil_events_total", "counter", "Records taken from Kafka.", one(r.events.to_string()));
        metric(
            "frazil_dead_letters_total",
            "counter",
            "Records that went to a dead-letter table.",
            one(r.rejected.to_string()),
        );
        metric("frazil_files_spooled_total", "counter", "Spool files written.", one(r.files_spooled.to_string()));
        metric(
            "frazil_files_committed_total",
            "counter",
            "Spool files committed to their tables.",
            one(r.files_committed.to_string()),
        );
        metric("frazil_commits_total", "counter", "Table commits that landed.", one(r.commits.to_string()));
        metric(
            "frazil_publish_failures_total",
            "counter",
            "Publish cycles (upload and commit) that failed.",
            one(g.publish_failures.get().to_string()),
        );
        // A summary's samples are `<name>_sum` and `<name>_count`: the suffix takes the labels' place.
        metric(
            "frazil_commit_seconds",
            "summary",
            "Time a commit took, from the pending record to the catalog's answer.",
            vec![
                ("_sum".into(), format!("{:.6}", g.commit_seconds_sum.get())),
                ("_count".into(), g.commit_seconds_count.get().to_string()),
            ],
        );
        if let Some(t) = g.last_commit.get() {
            let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
            metric(
                "frazil_last_commit_timestamp_seconds",
                "gauge",
                "When the last commit landed (Unix time).",
                one(format!("{secs:.3}")),
            );
        }
        if let (Ok(u), Ok(s)) = (self.spool.usage(), self.spool.status()) {
            metric("frazil_spool_bytes", "gauge", "Bytes of spool files on disk.", one(u.bytes.to_string()));
            if let Some(m) = u.max_bytes {
                metric("frazil_spool_max_bytes", "gauge", "The spool's quota (spool.max_bytes).", one(m.to_string()));
            }
            if let Some(f) = u.free_disk {
                metric(
                    "frazil_spool_free_disk_bytes",
                    "gauge",
                    "Free space on the spool's filesystem.",
                    one(f.to_string()),
                );
            }
            metric(
                "frazil_spool_files",
                "gauge",
                "Spool files by state.",
                [
                    ("written", s.written),
                    ("uploaded", s.uploaded),
                    ("committed", s.committed),
                    ("quarantined", s.quarantined),
                ]
                .into_iter()
                .map(|(state, n)| (format!("{{state=\"{state}\"}}"), n.to_string()))
                .collect(),
            );
        }
        let lag: Vec<(String, String)> = g
            .positions
            .borrow()
            .iter()
            .map(|((topic, p), (next, high))| {
                (format!("{{topic=\"{}\",partition=\"{p}\"}}", label(topic)), (high - next).max(0).to_string())
            })
            .collect();
        metric(
            "frazil_partition_lag",
            "gauge",
            "Records in Kafka not yet fetched (high watermark minus next offset).",
            lag,
        );
        out
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
