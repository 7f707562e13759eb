//! Deterministic crashes at the instants between an effect outside the process and its record in
//! the index (`FRAZIL_FAULT`, src/fault.rs), which random kills reach only by luck.

use super::*;

/// The `.parquet` objects under a table's data directory in s3s-fs's root.
fn data_objects(servers: &Servers, table: &str) -> usize {
    fn walk(dir: &Path, n: &mut usize) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, n);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(
        &servers
            .dir
            .path()
            .join(format!("servers/s3/warehouse/wh/edge/{table}/data")),
        &mut n,
    );
    n
}

/// Commit ids of the table's snapshots.
fn commit_ids(servers: &Servers, table: &str) -> Vec<String> {
    let loaded = load_table(servers, table);
    loaded["metadata"]["snapshots"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["summary"]["frazil.commit-id"].as_str().map(String::from))
        .collect()
}

#[test]
fn a_crash_between_an_effect_and_its_record_is_recovered() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let logs = logs_dir("points");
    for (i, point) in ["after-upload", "before-commit", "after-commit"]
        .into_iter()
        .enumerate()
    {
        let topic = format!("point_{}", point.replace('-', "_"));
        block_on(create_topic(&kafka, &topic, 2));
        let config = busy_config(&servers, &topic, &topic, "");
        // A first commit, so the crash hits a table with history; then more to publish.
        let mut expected = block_on(produce(&kafka, &topic, 2, 0..500));
        let (code, log) = flush(&config, &logs.join(format!("{point}-0.log")));
        assert_eq!(code, 0, "{point}: first flush:\n{}", tail(&log, 30));
        expected.extend(block_on(produce(&kafka, &topic, 2, 500..3_000)));

        let path = logs.join(format!("{point}-1.log"));
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
        let ids = commit_ids(&servers, &topic);
        let objects_before = data_objects(&servers, &topic);
        match point {
            "after-upload" => {
                assert!(pending.is_empty() && st["uploaded"] == 0, "{st}");
                assert_eq!(ids.len(), 1, "only the first commit: {ids:?}");
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

        let (code, log) = flush(&config, &logs.join(format!("{point}-2.log")));
        assert_eq!(code, 0, "{point}: flush after the crash:\n{}", tail(&log, 30));
        match point {
            "before-commit" => assert_eq!(count(&log, "did not land"), 1, "{}", tail(&log, 30)),
            "after-commit" => assert_eq!(count(&log, "had landed"), 1, "{}", tail(&log, 30)),
            _ => {}
        }
        let summary = assert_table_exactly(&servers, &topic, &expected);
        let summaries = assert_no_commit_twice(&servers, &topic);
        assert_spool_drained(&config);
        assert_eq!(offsets_of(&summaries, "test-gateway", &topic), ends(&expected));
        // The upload done before the crash is done again under the same name: no orphan object.
        let files: usize = summary["current_snapshot_summary"]["total-data-files"]
            .as_str()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{point}: no total-data-files in {summary}"));
        assert_eq!(data_objects(&servers, &topic), files, "{point}: objects vs data files");
        println!(
            "{point}: {} events exactly once after the crash; {} snapshots, {files} data files ({} objects before the restart) [{}/3]",
            expected.len(),
            summaries.len(),
            objects_before,
            i + 1
        );
    }
}
