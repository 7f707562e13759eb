//! Maintenance of the tables the loops feed, in-process (filesystem catalog, in-memory topics): a
//! merged and expired table reads the same rows, its agent resumes where it was, and `run`
//! maintains on its own within its bounds.

use std::collections::BTreeMap;
use std::time::Duration;

use async_compat::Compat;

use super::Agent;
use super::tests::{config, load, table_rows, until};
use crate::commit::{self, Committer};
use crate::maintain::{self, Health, Policy};
use crate::source::memory::Topics;
use crate::upload::Stores;

/// The events table's maintenance: merge over 3 data manifests, keep 2 snapshots, expire at once.
pub(super) const POLICY: &str = "\n[tables.events]\nmax_manifests = 3\nkeep_snapshots = 2\nexpire_after = \"0s\"\n";

pub(super) fn produce_more(topics: &Topics, partitions: i32, from: i64, n: i64) {
    for p in 0..partitions {
        for i in from..from + n {
            topics.produce("events", p, format!(r#"{{"device":"d{p}","reading":{i}}}"#).as_bytes());
        }
    }
}

pub(super) fn expected(partitions: i32, n: i64) -> Vec<(i32, i64)> {
    (0..partitions).flat_map(|p| (0..n).map(move |o| (p, o))).collect()
}

pub(super) fn health(cfg: &crate::config::Config) -> Health {
    smol::block_on(Compat::new(async { maintain::health(&load(cfg, "events").await.unwrap()).await.unwrap() }))
}

pub(super) fn maintain_once(cfg: &crate::config::Config, policy: &Policy) -> maintain::Report {
    smol::block_on(async {
        let stores = Stores::new(cfg.s3.clone());
        let committer = Committer::connect(&cfg.catalog, &stores, &cfg.agent_id).await.unwrap();
        let scratch = maintain::scratch_dir(&cfg.spool.dir).unwrap();
        let tools = maintain::Tools { committer: &committer, stores: &stores, scratch: &scratch };
        maintain::maintain(&tools, "events", policy).await.unwrap().0
    })
}

#[test]
fn a_maintained_table_reads_the_same_and_its_agent_resumes_where_it_was() {
    let dir = tempfile::tempdir().unwrap();
    // Compaction off: the manifests are merged, the data files stay as they are.
    let cfg = config(dir.path(), "", &format!("{POLICY}compact_per_pass = \"0B\"\n"));
    let topics = Topics::default();
    topics.create("events", 2);
    // Each flush commits at least once (twice when its files roll more than a commit interval apart).
    let mut commits = 0;
    for round in 0..8 {
        produce_more(&topics, 2, round * 30, 30);
        let r = Agent::with_source(cfg.clone(), topics.connect()).unwrap().flush().unwrap();
        assert!(r.events == 60 && r.commits >= 1, "{r:?}");
        commits += r.commits as usize;
    }
    let before = health(&cfg);
    assert_eq!((before.data_manifests, before.snapshots, before.records), (commits, commits, 480), "{before:?}");
    assert_eq!(before.last_maintained, None);

    let policy = cfg.maintenance("events");
    assert_eq!((policy.max_manifests, policy.keep_snapshots, policy.expire_after), (3, 2, Duration::ZERO));
    let report = maintain_once(&cfg, &policy);
    assert_eq!((report.manifests_merged, report.manifests_written), (commits, 1), "{report:?}");
    // The appends and the merge: the newest 2 stay, and the agent's tag is on the 2nd newest.
    assert_eq!(report.snapshots_expired, commits - 1, "{report:?}");
    // Their manifest lists; their manifests are all still listed by the last append, which stays.
    assert_eq!(report.files_deleted, commits - 1, "{report:?}");
    let after = report.health.clone().unwrap();
    assert_eq!((after.data_manifests, after.snapshots, after.records), (1, 2, 480), "{after:?}");
    assert_eq!((after.data_files, after.data_bytes), (before.data_files, before.data_bytes));
    assert!(after.last_maintained.is_some());
    assert_eq!(table_rows(&cfg, "events"), expected(2, 240));

    // Nothing more to do: no commit.
    let again = maintain_once(&cfg, &policy);
    assert!(!again.changed(), "{again:?}");
    assert_eq!(again.health.unwrap().snapshots, 2);

    // The agent's offsets survive in its tag; its next flush takes exactly the new records.
    let md = smol::block_on(Compat::new(load(&cfg, "events"))).unwrap().metadata().clone();
    assert_eq!(
        commit::committed_offsets(&md, "loops"),
        BTreeMap::from([(("events".into(), 0), 240), (("events".into(), 1), 240)])
    );
    std::fs::remove_dir_all(dir.path().join("spool")).unwrap();
    produce_more(&topics, 2, 240, 30);
    let r = Agent::with_source(cfg.clone(), topics.connect()).unwrap().flush().unwrap();
    assert_eq!(r.events, 60, "only the new records, after a lost spool: {r:?}");
    assert_eq!(table_rows(&cfg, "events"), expected(2, 270));
}

#[test]
fn run_maintains_its_tables_within_the_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "", &format!("file_max_age = \"20ms\"\n{POLICY}maintain_interval = \"100ms\"\n"));
    let topics = Topics::default();
    topics.create("events", 2);
    let agent = Agent::with_source(cfg.clone(), topics.connect()).unwrap();
    let shared = &agent.shared;
    let r = agent
        .run_until(async {
            for round in 0..20 {
                produce_more(&topics, 2, round * 10, 10);
                until("the round is committed", || {
                    let r = shared.report.borrow();
                    r.events == (round as u64 + 1) * 20 && r.commits > round as u64
                })
                .await;
                smol::Timer::after(Duration::from_millis(30)).await;
            }
        })
        .unwrap();
    assert!(r.commits >= 10, "{r:?}");
    let h = health(&cfg);
    println!("run: {} commits; the table: {h}", r.commits);
    assert!(h.last_maintained.is_some(), "run never maintained: {h:?}");
    // Bounded: a pass every 100 ms leaves 3 manifests and 2 snapshots (and the tagged one); the
    // appends since the last pass add one of each.
    let half = r.commits as usize / 2;
    assert!(h.data_manifests <= half && h.snapshots <= half, "{h:?} after {r:?}");
    assert_eq!(table_rows(&cfg, "events"), expected(2, 200));
}
