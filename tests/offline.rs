//! A bounded spool and a dead link, against real servers: fetching pauses when the spool is full,
//! nothing is dropped, and everything lands exactly once when the link comes back. A million
//! events wait out an outage of the catalog and the object store within the spool's quota.

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

/// A config whose spool quota is tiny, so a few files fill it.
fn tiny_spool(servers: &Servers, topic: &str) -> std::path::PathBuf {
    let config = servers.config(&[topic], "");
    // Small fetches, so the quota is reached while the partitions are still being drained.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("file_max_age = \"1s\"", "file_max_age = \"1s\"\nfile_max_rows = 2000\nmax_bytes = \"200KiB\"")
        .replace("[spool]", "fetch_max_bytes = \"64KiB\"\n\n[spool]");
    std::fs::write(&config, text).unwrap();
    config
}

#[test]
fn a_full_spool_pauses_fetching_and_loses_nothing() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    block_on(create_topic(&kafka, "bounded", 2));
    let expected = block_on(produce(&kafka, "bounded", 2, 0..30_000));
    let config = tiny_spool(&servers, "bounded");

    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 0, "flush failed:\n{log}");
    assert!(log.contains("fetching paused"), "the quota was never reached:\n{log}");
    assert!(log.contains("fetching resumes"), "fetching never resumed:\n{log}");
    assert_table_exactly(&servers, "bounded", &expected);
}

#[test]
fn with_the_catalog_down_flush_keeps_data_spooled_and_a_later_flush_commits_it_once() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    block_on(create_topic(&kafka, "remote", 2));
    let expected = block_on(produce(&kafka, "remote", 2, 0..30_000));
    let config = tiny_spool(&servers, "remote");
    let real = std::fs::read_to_string(&config).unwrap();
    // A port nothing listens on: the link is down.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(&config, real.replace(servers.get("FRAZIL_CATALOG"), &format!("http://127.0.0.1:{dead}"))).unwrap();

    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 75, "flush with the catalog down must say `try later` (75):\n{log}");
    assert!(log.contains("spool full"), "{log}");
    let status = status_json(&config, &[]);
    assert!(status["written"].as_u64().unwrap() > 0, "nothing spooled: {status}");
    assert!(status["bytes"].as_u64().unwrap() > 0, "{status}");
    // It says what it could and could not reach, and still reports the spool and the broker.
    assert_eq!(status["catalog"]["reachable"], false, "{status}");
    assert!(
        status["catalog"]["error"].as_str().is_some_and(|e| e.contains(&dead.to_string())),
        "the error names the catalog: {status}"
    );
    assert_eq!(status["broker"]["reachable"], true, "{status}");
    let remote = &status["tables"][0];
    assert_eq!(remote["table"], "remote", "{status}");
    assert!(remote["files_written"].as_u64().unwrap() > 0 && remote["exists"].is_null(), "{status}");
    for p in status["partitions"].as_array().unwrap() {
        assert_eq!(p["high_watermark"], 15_000, "{status}");
        assert_eq!(p["to_fetch"], p["high_watermark"].as_i64().unwrap() - p["spooled"].as_i64().unwrap(), "{status}");
        assert!(p["committed"].is_null() && p["to_commit"].is_null(), "{status}");
    }
    let offline = status_json(&config, &["--offline"]);
    assert!(offline["catalog"].is_null() && offline["broker"].is_null(), "{offline}");
    assert!(offline["partitions"].as_array().unwrap().iter().all(|p| p["high_watermark"].is_null()), "{offline}");

    // The link is back: two flushes bring everything over, exactly once.
    std::fs::write(&config, real).unwrap();
    for _ in 0..2 {
        let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
        assert_eq!(code, 0, "flush failed:\n{log}");
    }
    assert_table_exactly(&servers, "remote", &expected);
}

/// `FRAZIL_OUTAGE_EVENTS` (default 1,000,000) events arrive while the catalog and the object store
/// are both down (stopped: every connection refused). `frazil run` keeps them all in its spool,
/// never above its quota, then drains the spool completely when both come back.
#[test]
fn a_long_outage_is_waited_out_in_the_spool_within_its_quota() {
    let n: u64 = std::env::var("FRAZIL_OUTAGE_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    // 1,000,000 of these events take about 10.5 MiB of Parquet: the quota is a real bound, not a formality.
    const QUOTA: u64 = 16 << 20;
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    block_on(create_topic(&kafka, "outage", 4));
    let config = servers.config(&["outage"], "commit_interval = \"2s\"\nrequest_timeout = \"5s\"");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("file_max_bytes = \"2MiB\"", "file_max_bytes = \"8MiB\"\nmax_bytes = \"16MiB\"")
        .replace("file_max_age = \"1s\"", "file_max_age = \"5s\"")
        .replace("[spool]", "fetch_max_bytes = \"4MiB\"\n\n[spool]");
    std::fs::write(&config, text).unwrap();
    servers.ctl("stop", "catalog", true);
    servers.ctl("stop", "s3", true);

    let log = servers.dir.path().join("outage.log");
    let mut run = start_frazil("run", &config, &log, &[]);
    let started = Instant::now();
    block_on(produce_small(&kafka, "outage", 4, 0..n));
    println!("outage: {n} events produced in {:.1?}", started.elapsed());

    // Everything goes into the spool, which never passes its quota. `status` reads it beside the agent.
    let (mut peak, mut polls, mut last) = (0u64, 0, serde_json::Value::Null);
    let spooled_all = wait_until(Duration::from_secs(600), || {
        let st = status_json(&config, &[]);
        let bytes = st["bytes"].as_u64().unwrap();
        assert!(bytes <= QUOTA, "the spool holds {bytes} bytes, above its quota of {QUOTA}: {st}");
        assert_eq!(st["catalog"]["reachable"], false, "{st}");
        peak = peak.max(bytes);
        polls += 1;
        let spooled: i64 = st["partitions"].as_array().unwrap().iter().filter_map(|p| p["spooled"].as_i64()).sum();
        last = st;
        spooled == n as i64
    });
    let offline_for = started.elapsed();
    // The pause lines say which limit stopped fetching (the quota, or the disk this runs on).
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let pauses: Vec<&str> = text.lines().filter(|l| l.contains("fetching paused")).collect();
    assert!(
        spooled_all,
        "not everything reached the spool; last status: {last}\npauses:\n{}\nlog tail:\n{}",
        pauses.join("\n"),
        tail_of(&log)
    );
    assert!(run.child().try_wait().unwrap().is_none(), "frazil run exited during the outage:\n{}", tail_of(&log));
    let st = status_json(&config, &["--offline"]);
    assert!(st["written"].as_u64().unwrap() > 0 && st["committed"] == 0, "{st}");
    println!(
        "outage: all {n} events spooled after {offline_for:.1?}, peak {:.1} MiB of a {} MiB quota ({polls} status polls)",
        peak as f64 / 1048576.0,
        QUOTA >> 20
    );

    // The link returns: the spool drains completely.
    servers.ctl("start", "s3", false);
    servers.ctl("start", "catalog", false);
    let back = Instant::now();
    let drained = wait_until(Duration::from_secs(600), || {
        let st = status_json(&config, &[]);
        let t = &st["tables"][0];
        t["files_written"] == 0
            && t["files_uploaded"] == 0
            && st["partitions"].as_array().unwrap().iter().all(|p| p["to_commit"] == 0)
    });
    assert!(drained, "the spool did not drain:\n{}", tail_of(&log));
    println!("outage: drained in {:.1?} after the link returned", back.elapsed());
    assert!(Command::new("kill").args(["-TERM", &run.child().id().to_string()]).status().unwrap().success());
    let status = run.wait();
    assert!(status.success(), "frazil run after SIGTERM: {status:?}\n{}", tail_of(&log));

    // Every id once, at the partition and offset it was produced to (id i: partition i % 4, offset i / 4).
    for reader in ["pyiceberg", "duckdb"] {
        let (rows, _) = servers.read_columns("outage", reader, &["id", "_kafka_partition", "_kafka_offset"]);
        assert_eq!(rows.len() as u64, n, "{reader}: row count");
        let mut seen = vec![false; n as usize];
        for r in &rows {
            let id = r["id"].as_u64().unwrap_or_else(|| panic!("{reader}: {r}"));
            assert!(
                id < n && !std::mem::replace(&mut seen[id as usize], true),
                "{reader}: id {id} twice or out of range"
            );
            assert_eq!(
                (r["_kafka_partition"].as_u64(), r["_kafka_offset"].as_u64()),
                (Some(id % 4), Some(id / 4)),
                "{reader}: {r}"
            );
        }
    }
}

fn tail_of(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
