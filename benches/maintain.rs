//! Table maintenance, measured: COMMITS flushes of a few events each (one commit each), driven
//! in-process into a table of the filesystem catalog in a local warehouse (no servers), once
//! without maintenance and once with a pass every EVERY commits (as `run` would, every
//! `maintain_interval`), with the default policy except that snapshots expire by count alone.
//! Prints, per mode and as ratios (with / without): flush time p50 and p95 over commits 100..200
//! and over the last 100, the table's data manifests, snapshots and newest metadata file, and the
//! time iceberg takes to plan a scan of it. Nothing is asserted.
//!
//! ```text
//! cargo bench --bench maintain -- [COMMITS] [EVERY]     # default 2000 commits, a pass every 100
//! ```

use std::path::Path;
use std::time::{Duration, Instant};

use async_compat::Compat;
use frazil::agent::Agent;
use frazil::commit::Committer;
use frazil::config::Config;
use frazil::source::memory::Topics;
use frazil::upload::Stores;

struct Figures {
    early: (Duration, Duration),
    late: (Duration, Duration),
    manifests: usize,
    snapshots: usize,
    metadata_bytes: u64,
    plan: Duration,
    maintain_total: Duration,
}

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter(|a| a != "--bench").filter_map(|a| a.parse().ok()).collect();
    let commits = args.first().copied().unwrap_or(2000).max(300) as usize;
    let every = args.get(1).copied().unwrap_or(100).max(1) as usize;
    let off = measure(commits, None);
    let on = measure(commits, Some(every));
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let ratio = |a: f64, b: f64| if b > 0.0 { format!("{:.2}x", a / b) } else { "-".into() };
    println!("maintenance bench: {commits} commits, a pass every {every} (with) or none (without)");
    println!("{:<34} {:>12} {:>12} {:>8}", "", "without", "with", "with/without");
    let rows: Vec<(&str, f64, f64)> = vec![
        ("flush p50, commits 100-200 (ms)", ms(off.early.0), ms(on.early.0)),
        ("flush p95, commits 100-200 (ms)", ms(off.early.1), ms(on.early.1)),
        ("flush p50, last 100 (ms)", ms(off.late.0), ms(on.late.0)),
        ("flush p95, last 100 (ms)", ms(off.late.1), ms(on.late.1)),
        ("data manifests", off.manifests as f64, on.manifests as f64),
        ("snapshots", off.snapshots as f64, on.snapshots as f64),
        ("newest metadata file (KiB)", off.metadata_bytes as f64 / 1024.0, on.metadata_bytes as f64 / 1024.0),
        ("scan planning (ms)", ms(off.plan), ms(on.plan)),
        ("maintenance, all passes (ms)", ms(off.maintain_total), ms(on.maintain_total)),
    ];
    for (name, a, b) in &rows {
        println!("{name:<34} {a:>12.1} {b:>12.1} {:>8}", ratio(*b, *a));
    }
    for (name, f) in [("without", &off), ("with", &on)] {
        println!(
            "{name}: late/early flush p50 {}, p95 {}",
            ratio(ms(f.late.0), ms(f.early.0)),
            ratio(ms(f.late.1), ms(f.early.1))
        );
    }
}

fn config(dir: &Path) -> Config {
    let d = dir.display();
    Config::parse(&format!(
        r#"
[agent]
id = "bench"
[kafka]
brokers = ["127.0.0.1:9"]
topics = ["events"]
fetch_max_wait = "1ms"
[spool]
dir = "{d}/spool"
min_free = "none"
[catalog]
type = "filesystem"
warehouse = "file://{d}/warehouse"
[tables.events]
expire_after = "0s"
"#
    ))
    .expect("bench config")
}

fn measure(commits: usize, every: Option<usize>) -> Figures {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(dir.path());
    let topics = Topics::default();
    topics.create("events", 1);
    let policy = cfg.maintenance("events");
    let policy = &policy;
    let mut took = Vec::with_capacity(commits);
    let mut maintain_total = Duration::ZERO;
    for i in 0..commits {
        for k in 0..5 {
            topics.produce("events", 0, format!(r#"{{"device":"d{k}","reading":{i}}}"#).as_bytes());
        }
        let start = Instant::now();
        let r = Agent::with_source(cfg.clone(), topics.connect()).and_then(|a| a.flush()).expect("flush");
        took.push(start.elapsed());
        assert_eq!(r.commits, 1, "one commit per flush: {r:?}");
        if every.is_some_and(|e| (i + 1) % e == 0) {
            let start = Instant::now();
            with_committer(&cfg, |c| async move {
                frazil::maintain::maintain(&c, "events", policy).await.expect("maintain");
            });
            maintain_total += start.elapsed();
        }
    }
    let pct = |xs: &[Duration], p: f64| {
        let mut v = xs.to_vec();
        v.sort();
        v[((v.len() - 1) as f64 * p).round() as usize]
    };
    let early = &took[100..200];
    let late = &took[commits - 100..];
    let (health, plan) = with_committer(&cfg, |c| async move {
        let t = c.load("events").await.expect("load").expect("the table exists");
        let start = Instant::now();
        let files = futures::TryStreamExt::try_collect::<Vec<_>>(
            t.scan().build().expect("scan").plan_files().await.expect("plan"),
        )
        .await
        .expect("plan files");
        let plan = start.elapsed();
        assert!(!files.is_empty());
        (frazil::maintain::health(&t).await.expect("health"), plan)
    });
    let metadata_bytes = newest_metadata(&dir.path().join("warehouse"));
    Figures {
        early: (pct(early, 0.5), pct(early, 0.95)),
        late: (pct(late, 0.5), pct(late, 0.95)),
        manifests: health.data_manifests,
        snapshots: health.snapshots,
        metadata_bytes,
        plan,
        maintain_total,
    }
}

fn with_committer<T, F: std::future::Future<Output = T>>(cfg: &Config, f: impl FnOnce(Committer) -> F) -> T {
    smol::block_on(Compat::new(async {
        let c = Committer::connect(&cfg.catalog, &Stores::new(cfg.s3.clone()), &cfg.agent_id).await.expect("connect");
        f(c).await
    }))
}

/// The size of the newest `v<N>.metadata.json` under `dir`.
fn newest_metadata(dir: &Path) -> u64 {
    let mut newest = (0u64, 0u64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(n) = name.strip_prefix('v').and_then(|n| n.strip_suffix(".metadata.json")) {
                let n: u64 = n.parse().unwrap_or(0);
                if n >= newest.0 {
                    newest = (n, e.metadata().map(|m| m.len()).unwrap_or(0));
                }
            }
        }
    }
    newest.1
}
