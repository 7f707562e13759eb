//! Deterministic crashes at the instants between an effect outside the process and its record in
//! the index (`FRAZIL_FAULT`, src/fault.rs), which random kills reach only by luck.

use super::*;

/// The `.parquet` objects under a table's data directory in s3s-fs's root.
fn data_objects(servers: &Servers, table: &str) -> BTreeSet<PathBuf> {
    fn walk(dir: &Path, out: &mut BTreeSet<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.insert(p);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&servers.dir.path().join(format!("servers/s3/warehouse/wh/edge/{table}/data")), &mut out);
    out
}

/// Commit ids of the snapshots of the tables.
fn commit_ids(servers: &Servers, tables: &[&str]) -> Vec<String> {
    let mut ids = Vec::new();
    for table in tables {
        let loaded = load_table(servers, table);
        ids.extend(
            loaded["metadata"]["snapshots"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["summary"]["frazil.commit-id"].as_str().map(String::from)),
        );
    }
    ids
}

/// Two bad records to partition 0 (they go to the dead-letter table); returns their offsets.
fn produce_bad(kafka: &str, topic: &str) -> Vec<(i32, i64)> {
    let bad = vec![Some(b"{not json".to_vec()), Some(br#"{"id": "wrong type"}"#.to_vec())];
    block_on(produce_raw(kafka, topic, 0, bad)).into_iter().map(|o| (0, o)).collect()
}

/// Both readers find exactly the dead letters `expected` in the dead-letter table.
fn assert_dead_letters(servers: &Servers, table: &str, expected: &BTreeSet<(i32, i64)>) {
    for reader in ["pyiceberg", "duckdb"] {
        let (rows, _) = servers.read_table(table, reader);
        let mut seen = BTreeSet::new();
        for r in &rows {
            let at = (r["partition"].as_i64().unwrap() as i32, r["offset"].as_i64().unwrap());
            assert!(seen.insert(at), "{reader}: dead letter {at:?} twice in {table}");
        }
        assert_eq!(&seen, expected, "{reader}: the dead letters in {table}");
    }
}

#[test]
fn a_crash_between_an_effect_and_its_record_is_recovered() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let logs = logs_dir("points");
    // (crash point, what is lost with the crash: the spool, as when a gateway's disk is replaced,
    // or the uploads not committed yet, as when an orphan sweep ran while the agent was away)
    let cases = [
        ("after-upload", None),
        ("before-commit", None),
        ("after-commit", None),
        // Dead-letter tables commit first: the crash lands after the dead letters' commit, before
        // the table's. With the spool gone, reading resumes at the table's offsets and fetches the
        // bad records again; the dead-letter table's own offsets keep them from landing twice.
        ("after-commit", Some("spool")),
        // Uploaded, not committed, and the objects gone: they are uploaded again from the spool.
        ("before-commit", Some("uploads")),
    ];
    for (i, (point, lost)) in cases.into_iter().enumerate() {
        let lose_spool = lost == Some("spool");
        let topic =
            format!("point_{}{}", point.replace('-', "_"), lost.map(|l| format!("_lost_{l}")).unwrap_or_default());
        let dead_table = format!("{topic}__dlq");
        block_on(create_topic(&kafka, &topic, 2));
        let config = busy_config(&servers, &topic, &topic, "");
        // A first commit, so the crash hits tables with history; then more to publish.
        let mut expected = block_on(produce(&kafka, &topic, 2, 0..500));
        let mut dead: BTreeSet<(i32, i64)> = produce_bad(&kafka, &topic).into_iter().collect();
        let (code, log) = flush(&config, &logs.join(format!("{topic}-0.log")));
        assert_eq!(code, 0, "{point}: first flush:\n{}", tail(&log, 30));
        expected.extend(block_on(produce(&kafka, &topic, 2, 500..1_500)));
        dead.extend(produce_bad(&kafka, &topic));
        expected.extend(block_on(produce(&kafka, &topic, 2, 1_500..3_000)));

        let committed_objects = data_objects(&servers, &topic);
        let path = logs.join(format!("{topic}-1.log"));
        let status = spawn_frazil_with("flush", &config, &path, &[("FRAZIL_FAULT", point)]).wait();
        let log = read_log(&path);
        assert!(
            log.contains(&format!("fault injection: aborting at {point}")),
            "{point}: the fault point was not reached ({}):\n{}",
            exit_text(status),
            tail(&log, 30)
        );
        assert_eq!(exit_text(status), "signal 6", "{point}: {}", tail(&log, 10));

        // What the crash left: the effect happened, its record did not.
        let st = status_json(&config, &["--offline"]);
        let pending: Vec<String> = st["pending_commits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["commit_id"].as_str().unwrap().to_string())
            .collect();
        let ids = commit_ids(&servers, &[&topic, &dead_table]);
        let objects_before = data_objects(&servers, &topic).len();
        match point {
            "after-upload" => {
                assert!(pending.is_empty() && st["uploaded"] == 0, "{st}");
                assert_eq!(ids.len(), 2, "only the first commits: {ids:?}");
                assert!(objects_before > 1, "the upload reached the object store");
            }
            "before-commit" => {
                assert_eq!(pending.len(), 1, "{st}");
                assert!(!ids.contains(&pending[0]), "{ids:?}");
            }
            _ => {
                assert_eq!(pending.len(), 1, "{st}");
                assert!(ids.contains(&pending[0]), "the catalog applied {}: {ids:?}", pending[0]);
            }
        }
        if lose_spool {
            std::fs::remove_dir_all(servers.dir.path().join(format!("spool-{topic}"))).expect("remove the spool");
        }
        if lost == Some("uploads") {
            let uploads: Vec<PathBuf> =
                data_objects(&servers, &topic).difference(&committed_objects).cloned().collect();
            assert!(!uploads.is_empty(), "{point}: the crashed flush uploaded something");
            uploads.iter().for_each(|p| std::fs::remove_file(p).expect("remove an upload"));
        }

        let (code, log) = flush(&config, &logs.join(format!("{topic}-2.log")));
        assert_eq!(code, 0, "{point}: flush after the crash:\n{}", tail(&log, 30));
        match (point, lose_spool) {
            ("before-commit", _) => assert_eq!(count(&log, "did not land"), 1, "{}", tail(&log, 30)),
            ("after-commit", false) => assert_eq!(count(&log, "had landed"), 1, "{}", tail(&log, 30)),
            _ => {}
        }
        if lost == Some("uploads") {
            assert!(count(&log, "gone from the store before its commit") > 0, "{}", tail(&log, 30));
        }
        let summary = assert_table_exactly(&servers, &topic, &expected);
        assert_dead_letters(&servers, &dead_table, &dead);
        let summaries = assert_no_commit_twice(&servers, &topic);
        assert_no_commit_twice(&servers, &dead_table);
        assert_spool_drained(&config);
        assert_eq!(offsets_of(&summaries, "test-gateway", &topic), ends(&expected));
        // The upload done before the crash is done again under the same name: no orphan object.
        let files: usize = summary["current_snapshot_summary"]["total-data-files"]
            .as_str()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{point}: no total-data-files in {summary}"));
        assert_eq!(data_objects(&servers, &topic).len(), files, "{point}: objects vs data files");
        println!(
            "{point}{}: {} events exactly once after the crash, {} dead letters; {} snapshots, {files} data files ({} objects before the restart) [{}/{}]",
            lost.map(|l| format!(" and lost {l}")).unwrap_or_default(),
            expected.len(),
            dead.len(),
            summaries.len(),
            objects_before,
            i + 1,
            cases.len()
        );
    }
}
