//! The two loops in-process, with no server: records come from in-memory topics
//! (`source::memory`), tables live in a filesystem catalog in a temporary directory, and each test
//! reads the table back with iceberg's own scan to check that every record landed exactly once.
//! A catalog that cannot be written is a warehouse path that is a plain file (creating anything
//! below it fails), which the test removes to bring the link back.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use async_compat::Compat;
use futures::TryStreamExt;

use super::{Agent, Report, Shared};
use crate::commit::Committer;
use crate::config::Config;
use crate::decode::{META_OFFSET, META_PARTITION};
use crate::source::memory::Topics;
use crate::upload::Stores;

/// A config for topic `events` → table `events` in a filesystem catalog under `dir`.
pub(super) fn config(dir: &Path, extra_kafka: &str, extra_spool: &str) -> Config {
    let d = dir.display();
    Config::parse(&format!(
        r#"
[agent]
id = "loops"
[kafka]
brokers = ["127.0.0.1:9"]  # unused: the topics are in memory
topics = ["events"]
fetch_max_wait = "5ms"
{extra_kafka}
[spool]
dir = "{d}/spool"
min_free = "none"
{extra_spool}
[catalog]
type = "filesystem"
warehouse = "file://{d}/warehouse"
commit_interval = "50ms"
"#
    ))
    .unwrap()
}

/// Fetches of a few dozen records, so that a spool quota is reached a file at a time.
const SMALL_FETCHES: &str = "fetch_max_bytes = \"1KiB\"";

fn produce(topics: &Topics, partitions: i32, per_partition: i64, body: impl Fn(i32, i64) -> String) {
    topics.create("events", partitions);
    for p in 0..partitions {
        for i in 0..per_partition {
            topics.produce("events", p, body(p, i).as_bytes());
        }
    }
}

/// The table as the catalog has it now (`None`: not created).
pub(super) async fn load(cfg: &Config, table: &str) -> Option<iceberg::table::Table> {
    let stores = Stores::new(cfg.s3.clone());
    let committer = Committer::connect(&cfg.catalog, &stores, &cfg.agent_id).await.unwrap();
    committer.load(table).await.unwrap()
}

/// The table's rows, as iceberg's own scan reads them, with these columns.
pub(super) fn scan(cfg: &Config, table: &str, columns: &[&str]) -> Vec<RecordBatch> {
    smol::block_on(Compat::new(async {
        let Some(t) = load(cfg, table).await else { return Vec::new() };
        let scan = t.scan().select(columns.iter().copied()).build().unwrap();
        scan.to_arrow().await.unwrap().try_collect().await.unwrap()
    }))
}

/// Every (partition, offset) in the table, once per row it appears in.
pub(super) fn table_rows(cfg: &Config, table: &str) -> Vec<(i32, i64)> {
    let mut rows = Vec::new();
    for b in scan(cfg, table, &[META_PARTITION, META_OFFSET]) {
        let p = b.column_by_name(META_PARTITION).unwrap().as_primitive::<Int32Type>();
        let o = b.column_by_name(META_OFFSET).unwrap().as_primitive::<Int64Type>();
        rows.extend(p.values().iter().copied().zip(o.values().iter().copied()));
    }
    rows.sort();
    rows
}

/// Asserts that the table holds offsets `0..n` of each partition exactly once.
fn assert_exactly_once(cfg: &Config, partitions: i32, n: i64) {
    let rows = table_rows(cfg, "events");
    let unique: BTreeSet<_> = rows.iter().copied().collect();
    assert_eq!(unique.len(), rows.len(), "a record is in the table twice");
    let expected: BTreeSet<_> = (0..partitions).flat_map(|p| (0..n).map(move |o| (p, o))).collect();
    assert_eq!(unique, expected, "the table misses records or has others");
}

/// Polls `cond` every few milliseconds for at most 30 s.
pub(super) async fn until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting until {what}");
        smol::Timer::after(Duration::from_millis(5)).await;
    }
}

fn report(shared: &Shared) -> Report {
    shared.report.borrow().clone()
}

#[test]
fn a_flush_whose_spool_fills_waits_for_each_publish_and_lands_every_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), SMALL_FETCHES, "max_bytes = \"12KB\"\nfile_max_rows = 40");
    let topics = Topics::default();
    produce(&topics, 3, 400, |p, i| format!(r#"{{"device":"d{p}","reading":{i}}}"#));
    let agent = Agent::with_source(cfg.clone(), topics.connect()).unwrap();
    let r = agent.flush().unwrap();
    assert_eq!((r.events, r.rejected, r.pending_files, r.stopped_early), (1200, 0, 0, false), "{r:?}");
    assert!(r.commits > 2, "the full spool made the flush publish as it went: {r:?}");
    assert_exactly_once(&cfg, 3, 400);
}

#[test]
fn a_flush_stops_early_when_a_full_spool_cannot_be_published_and_the_next_one_finishes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("warehouse"), b"not a directory").unwrap();
    let cfg = config(dir.path(), SMALL_FETCHES, "max_bytes = \"12KB\"\nfile_max_rows = 40");
    let topics = Topics::default();
    produce(&topics, 2, 500, |p, i| format!(r#"{{"device":"d{p}","reading":{i}}}"#));
    let agent = Agent::with_source(cfg.clone(), topics.connect()).unwrap();
    let r = agent.flush().unwrap();
    assert!(r.stopped_early && r.pending_files > 0 && r.commits == 0, "{r:?}");
    assert!(r.events < 1000, "fetching stopped at the quota: {r:?}");
    drop(agent);
    std::fs::remove_file(dir.path().join("warehouse")).unwrap();
    let agent = Agent::with_source(cfg.clone(), topics.connect()).unwrap();
    let r2 = agent.flush().unwrap();
    assert_eq!((r2.pending_files, r2.stopped_early), (0, false), "{r2:?}");
    assert_eq!(r.events + r2.events, 1000, "the second flush resumed where the spool ended: {r:?} {r2:?}");
    assert_exactly_once(&cfg, 2, 500);
}

#[test]
fn run_pauses_on_a_full_spool_retries_the_failed_publish_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = dir.path().join("warehouse");
    std::fs::write(&warehouse, b"not a directory").unwrap();
    let cfg = config(dir.path(), SMALL_FETCHES, "max_bytes = \"12KB\"\nfile_max_rows = 40");
    let topics = Topics::default();
    produce(&topics, 2, 500, |p, i| format!(r#"{{"device":"d{p}","reading":{i}}}"#));
    let agent = Agent::with_source(cfg.clone(), topics.connect()).unwrap();
    let shared = &agent.shared;
    let r = agent
        .run_until(async {
            until("publishing failed twice", || shared.gauges.publish_failures.get() >= 2).await;
            until("the spool is full", || shared.spool.usage().unwrap().over_quota(0)).await;
            // Paused: nothing more is fetched while the spool stays full.
            let (fetches, events) = (topics.fetches(), report(shared).events);
            smol::Timer::after(Duration::from_millis(300)).await;
            assert_eq!((topics.fetches(), report(shared).events), (fetches, events), "fetching went on");
            assert!(events < 1000);
            std::fs::remove_file(&warehouse).unwrap();
            until("every record is committed", || {
                let s = shared.spool.status().unwrap();
                report(shared).events == 1000 && s.written + s.uploaded == 0
            })
            .await;
        })
        .unwrap();
    assert!(r.commits >= 2 && r.pending_files == 0, "{r:?}");
    assert_exactly_once(&cfg, 2, 500);
}

#[test]
fn an_idle_agent_lets_the_broker_hold_fetches_longer_and_goes_back_to_the_short_wait_with_records() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "fetch_idle_wait = \"400ms\"", "");
    let topics = Topics::default();
    produce(&topics, 2, 10, |p, i| format!(r#"{{"device":"d{p}","reading":{i}}}"#));
    let agent = Agent::with_source(cfg.clone(), topics.connect()).unwrap();
    let shared = &agent.shared;
    let ms = Duration::from_millis;
    agent
        .run_until(async {
            until("every record is read", || report(shared).events == 20).await;
            until("the wait grew to its ceiling", || topics.waits().last() == Some(&ms(400))).await;
            let waits = topics.waits();
            assert!(waits.windows(2).all(|w| w[0] <= w[1]), "it only grew while nothing came: {waits:?}");
            assert!(waits.iter().all(|w| (ms(5)..=ms(400)).contains(w)), "{waits:?}");
            // Idle, both partitions go in one request; while records flowed, one each.
            let requests = topics.requests();
            assert!(requests.iter().all(|&(w, n)| n == if w > ms(5) { 2 } else { 1 }), "{requests:?}");
            topics.produce("events", 1, br#"{"device":"d1","reading":10}"#);
            until("the new record is read", || report(shared).events == 21).await;
            let after_idle = || {
                let waits = topics.waits();
                let woke = waits.iter().rposition(|w| *w == ms(400)).expect("idle waits in the window");
                waits[woke + 1..].to_vec()
            };
            until("the wait grows again", || after_idle().iter().any(|w| *w > ms(5))).await;
            assert_eq!(after_idle().first(), Some(&ms(5)), "the first fetch after records: {:?}", topics.waits());
        })
        .unwrap();
    let mut rows = table_rows(&cfg, "events");
    rows.sort();
    let want: Vec<(i32, i64)> = (0..10).map(|o| (0, o)).chain((0..11).map(|o| (1, o))).collect();
    assert_eq!(rows, want, "every record once, the late one too");
}

#[test]
fn new_keys_in_the_middle_of_a_fetch_grow_the_table_and_earlier_rows_read_as_null() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "", "");
    let topics = Topics::default();
    // One fetch takes all: the key `extra` (and a nested one) appear halfway through it.
    produce(&topics, 1, 100, |_, i| match i {
        0..50 => format!(r#"{{"reading":{i},"site":{{"zone":"n"}}}}"#),
        _ => format!(r#"{{"reading":{i},"site":{{"zone":"n","rack":{i}}},"extra":"e{i}"}}"#),
    });
    let agent = Agent::with_source(cfg.clone(), topics.connect()).unwrap();
    let r = agent.flush().unwrap();
    assert_eq!((r.events, r.rejected, r.pending_files), (100, 0, 0), "{r:?}");
    assert_exactly_once(&cfg, 1, 100);
    let (mut extra, mut rack) = (Vec::new(), Vec::new());
    for b in scan(&cfg, "events", &[META_OFFSET, "extra", "site"]) {
        let offsets = b.column_by_name(META_OFFSET).unwrap().as_primitive::<Int64Type>();
        let e = b.column_by_name("extra").unwrap().as_string::<i32>();
        let site = b.column_by_name("site").unwrap().as_struct();
        let r = site.column_by_name("rack").unwrap().as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            let o = offsets.value(i);
            extra.push((o, e.is_valid(i).then(|| e.value(i).to_string())));
            rack.push((o, r.is_valid(i).then(|| r.value(i))));
        }
    }
    assert_eq!(extra.len(), 100);
    for (o, e) in extra {
        assert_eq!(e, (o >= 50).then(|| format!("e{o}")), "offset {o}");
    }
    for (o, r) in rack {
        assert_eq!(r, (o >= 50).then_some(o), "offset {o}");
    }
}

#[test]
fn a_stop_during_a_roll_spools_and_commits_everything_taken_and_a_restart_goes_on_from_there() {
    let dir = tempfile::tempdir().unwrap();
    // Eight buffers fall due by age within milliseconds of each other; the stop comes as soon as
    // the first of them is written, with the others still in memory.
    let cfg = config(dir.path(), "", "file_max_age = \"300ms\"");
    let topics = Topics::default();
    produce(&topics, 8, 200, |p, i| format!(r#"{{"device":"d{p}","reading":{i}}}"#));
    let agent = Agent::with_source(cfg.clone(), topics.connect()).unwrap();
    let shared: &Shared = &agent.shared;
    let r = agent
        .run_until(async {
            until("every record is taken", || report(shared).events == 1600).await;
            until("the roll wrote its first file", || report(shared).files_spooled >= 1).await;
        })
        .unwrap();
    assert_eq!((r.events, r.pending_files), (1600, 0), "{r:?}");
    assert_exactly_once(&cfg, 8, 200);
    drop(agent);
    // A restart fetches nothing twice, and takes what came since.
    for p in 0..8 {
        topics.produce("events", p, br#"{"device":"late","reading":-1}"#);
    }
    let agent = Agent::with_source(cfg.clone(), topics.connect()).unwrap();
    let r = agent.flush().unwrap();
    assert_eq!((r.events, r.pending_files), (8, 0), "{r:?}");
    assert_exactly_once(&cfg, 8, 201);
}

#[test]
fn a_broker_that_fails_and_a_log_cut_by_retention_lose_nothing_still_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "", "");
    let topics = Topics::default();
    produce(&topics, 2, 100, |p, i| format!(r#"{{"device":"d{p}","reading":{i}}}"#));
    // Retention removed partition 1's first 40 records before the agent first read it.
    topics.truncate(&("events".to_string(), 1), 40);
    topics.fail_next(3);
    let agent = Agent::with_source(cfg.clone(), topics.connect()).unwrap();
    let r = agent.flush().unwrap();
    assert_eq!((r.events, r.pending_files), (160, 0), "{r:?}");
    let rows = table_rows(&cfg, "events");
    let expected: Vec<(i32, i64)> = (0..100).map(|o| (0, o)).chain((40..100).map(|o| (1, o))).collect();
    assert_eq!(rows, expected);
}
