//! Compaction, re-anchored tags and the orphan sweep, in-process (filesystem catalog, in-memory
//! topics): the rows stay exactly once, replaced files leave the storage when the last snapshot
//! reading them expires, and every agent resumes where it was.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use async_compat::Compat;

use super::Agent;
use super::maintain_tests::{POLICY, expected, health, maintain_once, produce_more};
use super::tests::{config, load, table_rows};
use crate::commit;
use crate::maintain::{self, COMPACTION_ID};
use crate::source::memory::Topics;

/// The Parquet files under `dir`, recursively.
fn parquet_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Runs `f` with the tools a maintenance pass works with, for `cfg`'s catalog and stores.
fn with_tools<T>(cfg: &crate::config::Config, f: impl AsyncFnOnce(&maintain::Tools<'_>) -> T) -> T {
    let stores = crate::upload::Stores::new(cfg.s3.clone());
    smol::block_on(Compat::new(async {
        let committer = commit::Committer::connect(&cfg.catalog, &stores, &cfg.agent_id).await.unwrap();
        let scratch = maintain::scratch_dir(&cfg.spool.dir).unwrap();
        f(&maintain::Tools { committer: &committer, stores: &stores, scratch: &scratch }).await
    }))
}

fn metadata(cfg: &crate::config::Config) -> iceberg::spec::TableMetadata {
    smol::block_on(Compat::new(load(cfg, "events"))).unwrap().metadata().clone()
}

#[test]
fn small_files_are_compacted_and_leave_the_storage_with_the_last_snapshot_reading_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "", POLICY);
    let warehouse = dir.path().join("warehouse");
    let topics = Topics::default();
    topics.create("events", 2);
    for round in 0..6 {
        produce_more(&topics, 2, round * 30, 30);
        Agent::with_source(cfg.clone(), topics.connect()).unwrap().flush().unwrap();
    }
    let before = health(&cfg);
    let originals = parquet_files(&warehouse);
    assert!(before.data_files >= 6 && originals.len() as u64 == before.data_files, "{before:?} {originals:?}");

    let policy = cfg.maintenance("events");
    let report = maintain_once(&cfg, &policy);
    assert_eq!((report.files_compacted, report.files_written), (before.data_files as usize, 1), "{report:?}");
    let after = report.health.clone().unwrap();
    assert_eq!((after.data_files, after.data_manifests, after.records), (1, 1, 360), "{after:?}");
    assert_eq!(table_rows(&cfg, "events"), expected(2, 180));
    let md = metadata(&cfg);
    let summary = &md.current_snapshot().unwrap().summary().additional_properties;
    assert!(summary.contains_key(COMPACTION_ID) && !summary.contains_key(commit::protocol::AGENT), "{summary:?}");
    assert_eq!(summary["deleted-data-files"], before.data_files.to_string());
    assert_eq!(summary["total-records"], "360");
    // The agent's tag still reads the originals: they stay until it moves on.
    assert_eq!(parquet_files(&warehouse).len(), originals.len() + 1);
    assert_eq!(
        commit::committed_offsets(&md, "loops"),
        BTreeMap::from([(("events".into(), 0), 180), (("events".into(), 1), 180)])
    );

    produce_more(&topics, 2, 180, 30);
    let r = Agent::with_source(cfg.clone(), topics.connect()).unwrap().flush().unwrap();
    assert_eq!(r.events, 60, "only the new records: {r:?}");
    let report = maintain_once(&cfg, &policy);
    assert!(report.files_compacted >= 2 && report.files_written == 1, "{report:?}");
    let left = parquet_files(&warehouse);
    assert!(originals.iter().all(|o| !left.contains(o)), "replaced files are read by no snapshot: {left:?}");
    // The first compacted file and the last append's are read by the append's snapshot (kept),
    // the second compacted file by the current one.
    assert_eq!(left.len(), 1 + r.commits as usize + 1, "{left:?}");
    assert_eq!(table_rows(&cfg, "events"), expected(2, 210));
}

#[test]
fn a_retired_agents_tag_moves_with_its_offsets_and_stops_pinning_old_files() {
    let dir = tempfile::tempdir().unwrap();
    let live = config(dir.path(), "", POLICY);
    // A second agent, with a smaller id, that commits once to partition 2 and stops.
    let mut retired = live.clone();
    retired.agent_id = "a-retired".into();
    retired.spool.dir = dir.path().join("spool-retired");
    let (topics, old_topics) = (Topics::default(), Topics::default());
    topics.create("events", 2);
    old_topics.create("events", 3);
    for i in 0..20 {
        old_topics.produce("events", 2, format!(r#"{{"device":"old","reading":{i}}}"#).as_bytes());
    }
    let r = Agent::with_source(retired.clone(), old_topics.connect()).unwrap().flush().unwrap();
    assert_eq!(r.events, 20);
    // Retired: no commit for 4 s; the policy's `retired_after` is shortened to 2 s for the test.
    std::thread::sleep(Duration::from_secs(4));
    let first = commit::last_commit(&metadata(&live), "a-retired").unwrap().clone();
    let (first_commit, first_commit_at) = (first.snapshot_id(), first.timestamp_ms());
    let landed = first.summary().additional_properties.clone();
    for round in 0..5 {
        produce_more(&topics, 2, round * 10, 10);
        Agent::with_source(live.clone(), topics.connect()).unwrap().flush().unwrap();
    }
    let now = chrono::Utc::now().timestamp_millis();
    let policy = maintain::Policy { retired_after: Duration::from_secs(2), ..live.maintenance("events") };
    assert_eq!(maintain::retired_tags(&metadata(&live), now, &policy).len(), 1);

    // Normally 1; the live agent's tag too when this machine took over 2 s since its last flush.
    let report = maintain_once(&live, &policy);
    assert!(report.tags_reanchored >= 1, "{report:?}");
    let md = metadata(&live);
    let tag_of = |md: &iceberg::spec::TableMetadata| md.snapshot_for_ref("frazil-a-retired").map(|s| s.snapshot_id());
    let moved = commit::last_commit(&md, "a-retired").unwrap().summary().additional_properties.clone();
    assert!(moved.contains_key(maintain::REANCHORED_FROM), "{moved:?}");
    let first = md.snapshot_by_id(first_commit).map(|s| s.timestamp_ms());
    assert_eq!(first, None, "expired");
    assert_eq!(moved[maintain::COMMITTED_AT], first_commit_at.to_string(), "when the agent committed");
    for key in [commit::protocol::COMMIT_ID, commit::protocol::AGENT, "frazil.offsets.events"] {
        assert_eq!(moved.get(key), landed.get(key), "{key}");
    }
    assert!(commit::commit_landed(&md, "a-retired", &landed[commit::protocol::COMMIT_ID]));
    assert_eq!(commit::committed_offsets(&md, "a-retired"), BTreeMap::from([(("events".into(), 2), 20)]));
    // The snapshot its tag held is gone; the retired agent no longer counts as the maintainer.
    assert!(md.snapshot_by_id(moved[maintain::REANCHORED_FROM].parse().unwrap()).is_none());
    assert!(maintain::is_maintainer(&md, "loops", now, Duration::from_secs(600)));
    // A second pass leaves the moved tag where it is: on a kept snapshot.
    maintain_once(&live, &policy);
    assert_eq!(tag_of(&metadata(&live)), tag_of(&md));

    let rows = table_rows(&live, "events");
    let mut want = expected(2, 50);
    want.extend((0..20).map(|o| (2, o)));
    want.sort();
    assert_eq!(rows, want);
    // The retired agent comes back: it takes exactly its new records.
    for i in 20..25 {
        old_topics.produce("events", 2, format!(r#"{{"device":"old","reading":{i}}}"#).as_bytes());
    }
    let r = Agent::with_source(retired, old_topics.connect()).unwrap().flush().unwrap();
    assert_eq!(r.events, 5, "{r:?}");
    assert_eq!(table_rows(&live, "events").iter().filter(|(p, _)| *p == 2).count(), 25);
}

#[test]
fn the_sweep_deletes_old_orphans_and_nothing_a_snapshot_or_a_young_upload_needs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "", "[tables.events]\norphan_after = \"1h\"\ncompact_per_pass = \"0B\"\n");
    let topics = Topics::default();
    topics.create("events", 2);
    for round in 0..3 {
        produce_more(&topics, 2, round * 10, 10);
        Agent::with_source(cfg.clone(), topics.connect()).unwrap().flush().unwrap();
    }
    let live = parquet_files(&dir.path().join("warehouse"));
    let data = live[0].parent().unwrap().to_path_buf();
    let old = SystemTime::now() - Duration::from_secs(2 * 3600);
    for f in &live {
        std::fs::File::options().write(true).open(f).unwrap().set_modified(old).unwrap();
    }
    let stray = data.join("crashed-compaction.parquet");
    let young = data.join("upload-in-flight.parquet");
    for f in [&stray, &young] {
        std::fs::write(f, b"PAR1").unwrap();
    }
    std::fs::File::options().write(true).open(&stray).unwrap().set_modified(old).unwrap();

    let report = maintain_once(&cfg, &cfg.maintenance("events"));
    assert_eq!(report.orphans_deleted, 1, "{report:?}");
    assert!(!stray.exists() && young.exists());
    assert!(live.iter().all(|f| f.exists()), "a live file was deleted");
    assert_eq!(table_rows(&cfg, "events"), expected(2, 30));
}

#[test]
fn a_compaction_that_lost_a_source_is_abandoned_and_only_a_file_nobody_reads_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "", POLICY);
    let topics = Topics::default();
    topics.create("events", 2);
    let flush_round = |round: i64| {
        produce_more(&topics, 2, round * 10, 10);
        Agent::with_source(cfg.clone(), topics.connect()).unwrap().flush().unwrap();
    };
    (0..4).for_each(flush_round);
    let local = |url: &str| std::path::PathBuf::from(url.strip_prefix("file://").unwrap());
    let policy = cfg.maintenance("events");
    with_tools(&cfg, async |tools| {
        let table = tools.committer.load("events").await.unwrap().unwrap();

        // Two maintainers plan on one snapshot: the same sources make the same file, byte for byte.
        let a = maintain::prepare(tools, &table, &policy).await.unwrap().expect("small files to compact");
        let written_by_a = std::fs::read(local(&a.outputs()[0])).unwrap();
        // b writes its own (it never overwrites an object that exists).
        std::fs::remove_file(local(&a.outputs()[0])).unwrap();
        let b = maintain::prepare(tools, &table, &policy).await.unwrap().unwrap();
        assert_eq!(a.outputs(), b.outputs());
        assert!(std::fs::read(local(&b.outputs()[0])).unwrap() == written_by_a, "the same sources, other bytes");
        let (_, won) = maintain::commit_prepared(tools, table.clone(), b).await.unwrap();
        assert!(won.replaced >= 4, "{won:?}");
        // The loser's sources are gone; its file is the winner's, which the table reads: it stays.
        let output = a.outputs()[0].clone();
        let (_, lost) = maintain::commit_prepared(tools, table, a).await.unwrap();
        assert_eq!(lost.replaced, 0, "{lost:?}");
        assert!(local(&output).exists(), "the winner's file was deleted");
    });
    assert_eq!(table_rows(&cfg, "events"), expected(2, 40));

    // A maintainer plans on an older snapshot than the one that wins: a different file, deleted.
    (4..6).for_each(flush_round);
    let (stale, table) = with_tools(&cfg, async |tools| {
        let table = tools.committer.load("events").await.unwrap().unwrap();
        (maintain::prepare(tools, &table, &policy).await.unwrap().unwrap(), table)
    });
    let output = stale.outputs()[0].clone();
    assert!(local(&output).exists());
    flush_round(6);
    let winner = maintain_once(&cfg, &policy);
    assert!(winner.files_compacted > 0, "{winner:?}");
    let (_, lost) = with_tools(&cfg, async |tools| maintain::commit_prepared(tools, table, stale).await.unwrap());
    assert_eq!(lost.replaced, 0, "{lost:?}");
    assert!(!local(&output).exists(), "an abandoned compaction's file is deleted");
    assert_eq!(table_rows(&cfg, "events"), expected(2, 70));
}

#[test]
fn files_from_before_and_after_a_schema_change_become_one_file_of_the_new_schema() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "", POLICY);
    let topics = Topics::default();
    topics.create("events", 1);
    for round in 0..6 {
        for i in 0..10 {
            // From round 3 on, events carry a new key: the table grows a column.
            let body = match round {
                0..3 => format!(r#"{{"device":"d","reading":{i}}}"#),
                _ => format!(r#"{{"device":"d","reading":{i},"site":"north"}}"#),
            };
            topics.produce("events", 0, body.as_bytes());
        }
        Agent::with_source(cfg.clone(), topics.connect()).unwrap().flush().unwrap();
    }
    let report = maintain_once(&cfg, &cfg.maintenance("events"));
    assert_eq!(report.files_written, 1, "{report:?}");
    assert_eq!(report.health.unwrap().data_files, 1);
    assert_eq!(table_rows(&cfg, "events"), expected(1, 60));
    let mut sites: Vec<(i64, Option<String>)> = Vec::new();
    for b in super::tests::scan(&cfg, "events", &[crate::decode::META_OFFSET, "site"]) {
        use arrow_array::Array;
        use arrow_array::cast::AsArray;
        let offsets = b.column(0).as_primitive::<arrow_array::types::Int64Type>();
        let site = b.column(1).as_string::<i32>();
        for r in 0..b.num_rows() {
            sites.push((offsets.value(r), site.is_valid(r).then(|| site.value(r).to_string())));
        }
    }
    sites.sort();
    let want: Vec<(i64, Option<String>)> = (0..60).map(|o| (o, (o >= 30).then(|| "north".to_string()))).collect();
    assert_eq!(sites, want);
}

#[test]
fn each_partition_is_compacted_on_its_own_into_its_own_directory() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "", &format!("{POLICY}partition_by = [\"identity(device)\"]\n"));
    let topics = Topics::default();
    topics.create("events", 2);
    // Kafka partition p carries device "d<p>": two table partitions.
    for round in 0..4 {
        produce_more(&topics, 2, round * 10, 10);
        Agent::with_source(cfg.clone(), topics.connect()).unwrap().flush().unwrap();
    }
    let before = health(&cfg);
    assert!(before.data_files >= 8, "{before:?}");
    let report = maintain_once(&cfg, &cfg.maintenance("events"));
    assert_eq!((report.files_compacted as u64, report.files_written), (before.data_files, 2), "{report:?}");
    assert_eq!(report.health.unwrap().data_files, 2);
    assert_eq!(table_rows(&cfg, "events"), expected(2, 40));
    let compacted: Vec<String> = parquet_files(&dir.path().join("warehouse"))
        .iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("compacted-"))
        .map(|p| p.parent().unwrap().file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert_eq!(compacted.iter().collect::<std::collections::BTreeSet<_>>().len(), 2, "{compacted:?}");
    assert!(compacted.iter().all(|d| d == "device=d0" || d == "device=d1"), "{compacted:?}");
}
