//! Table maintenance, measured: COMMITS flushes of a few events each (one commit each), driven
//! in-process into a table of the filesystem catalog in a local warehouse (no servers), once
//! without maintenance and once with a pass every EVERY commits (as `run` would, every
//! `maintain_interval`), with the default policy except that snapshots expire by count alone.
//! Prints, per mode and as ratios (with / without): flush time p50 and p95 over commits 100..200
//! and over the last 100, the table's data manifests, snapshots, live data files and their mean
//! size, the Parquet objects left in the warehouse, the newest metadata file, and the time iceberg
//! takes to plan a scan of it. With the test venv (tests/servers/install.sh), also pyiceberg's scan
//! planning and DuckDB's `count(*)` over the table after commit 200 and at the end
//! (benches/scan.py). The issue's targets are printed beside the figures; nothing is asserted.
//!
//! ```text
//! cargo bench --bench maintain -- [COMMITS] [EVERY]     # default 2000 commits, a pass every 100
//! MAINTAIN_POLICY='compact_per_pass = "0B"' cargo bench --bench maintain   # keys added to the table's
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
    data_files: u64,
    mean_file_bytes: u64,
    objects: usize,
    metadata_bytes: u64,
    plan: Duration,
    maintain_total: Duration,
    /// benches/scan.py after commit 200 and at the end (None without the venv).
    scans: Option<(Scan, Scan)>,
}

/// What benches/scan.py measured: pyiceberg's planning and DuckDB's scan, in ms.
#[derive(Clone, Copy)]
struct Scan {
    plan_ms: f64,
    duckdb_ms: f64,
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
        ("live data files", off.data_files as f64, on.data_files as f64),
        ("mean data file (KiB)", off.mean_file_bytes as f64 / 1024.0, on.mean_file_bytes as f64 / 1024.0),
        ("Parquet objects in the warehouse", off.objects as f64, on.objects as f64),
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
        match f.scans {
            Some((early, late)) => println!(
                "{name}: pyiceberg plan {:.0} ms after commit 200, {:.0} ms at the end ({}); DuckDB count(*) {:.0} ms, {:.0} ms ({})",
                early.plan_ms,
                late.plan_ms,
                ratio(late.plan_ms, early.plan_ms),
                early.duckdb_ms,
                late.duckdb_ms,
                ratio(late.duckdb_ms, early.duckdb_ms)
            ),
            None => println!("{name}: pyiceberg and DuckDB not timed (no test venv; see tests/servers/install.sh)"),
        }
    }
    let within = |late: f64, early: f64, bound: f64| if late <= early * bound { "met" } else { "NOT met" };
    println!("targets (with maintenance):");
    println!("  data manifests <= 128: {} ({})", on.manifests, if on.manifests <= 128 { "met" } else { "NOT met" });
    // Kept snapshots: the policy's 100, and the agent's tagged one.
    println!(
        "  snapshots <= 100 kept + 1 agent: {} ({})",
        on.snapshots,
        if on.snapshots <= 101 { "met" } else { "NOT met" }
    );
    println!(
        "  live data files <= 1 (one partial file, unpartitioned): {} ({})",
        on.data_files,
        if on.data_files <= 1 { "met" } else { "NOT met" }
    );
    println!("  flush p50 late/early within 1.2x: {}", within(ms(on.late.0), ms(on.early.0), 1.2));
    println!("  flush p95 late/early within 1.2x: {}", within(ms(on.late.1), ms(on.early.1), 1.2));
    if let Some((early, late)) = on.scans {
        println!("  pyiceberg plan flat within 20%: {}", within(late.plan_ms, early.plan_ms, 1.2));
        println!("  DuckDB scan flat within 20%: {}", within(late.duckdb_ms, early.duckdb_ms, 1.2));
    }
}

/// benches/scan.py on the table's newest metadata file; `None` without the test venv.
fn scan(warehouse: &Path) -> Option<Scan> {
    let venv = std::env::var_os("FRAZIL_VENV")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/frazil/venv")))?;
    let python = venv.join("bin/python");
    if !python.exists() {
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/scan.py");
    let out = std::process::Command::new(python).arg(script).arg(newest_metadata(warehouse).0).output().ok()?;
    if !out.status.success() {
        eprintln!("benches/scan.py failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(Scan { plan_ms: v["pyiceberg_plan_ms"].as_f64()?, duckdb_ms: v["duckdb_scan_ms"].as_f64()? })
}

/// The Parquet files under `dir`.
fn parquet_objects(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                n += 1;
            }
        }
    }
    n
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
{}
"#,
        std::env::var("MAINTAIN_POLICY").unwrap_or_default()
    ))
    .expect("bench config")
}

fn measure(commits: usize, every: Option<usize>) -> Figures {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(dir.path());
    let topics = Topics::default();
    topics.create("events", 1);
    let mut took = Vec::with_capacity(commits);
    let mut maintain_total = Duration::ZERO;
    let mut early_scan = None;
    for i in 0..commits {
        if i == 200 {
            early_scan = scan(&dir.path().join("warehouse"));
        }
        for k in 0..5 {
            topics.produce("events", 0, format!(r#"{{"device":"d{k}","reading":{i}}}"#).as_bytes());
        }
        let start = Instant::now();
        let r = Agent::with_source(cfg.clone(), topics.connect()).and_then(|a| a.flush()).expect("flush");
        took.push(start.elapsed());
        assert_eq!(r.commits, 1, "one commit per flush: {r:?}");
        if every.is_some_and(|e| (i + 1) % e == 0) {
            let start = Instant::now();
            frazil::cli::maintain::maintain(&cfg, &["events".to_string()]).expect("maintain");
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
    let warehouse = dir.path().join("warehouse");
    let metadata_bytes = newest_metadata(&warehouse).1;
    let scans = early_scan.zip(scan(&warehouse));
    Figures {
        early: (pct(early, 0.5), pct(early, 0.95)),
        late: (pct(late, 0.5), pct(late, 0.95)),
        manifests: health.data_manifests,
        snapshots: health.snapshots,
        data_files: health.data_files,
        mean_file_bytes: health.mean_file_bytes(),
        objects: parquet_objects(&warehouse),
        metadata_bytes,
        scans,
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

/// The newest `v<N>.metadata.json` under `dir`, and its size.
fn newest_metadata(dir: &Path) -> (std::path::PathBuf, u64) {
    let mut newest = (0u64, std::path::PathBuf::new(), 0u64);
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
                    newest = (n, p.clone(), e.metadata().map(|m| m.len()).unwrap_or(0));
                }
            }
        }
    }
    (newest.1, newest.2)
}
