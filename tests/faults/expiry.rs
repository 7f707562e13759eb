//! An operator's maintenance job expires old snapshots, then an agent loses its spool: the tag on
//! its last snapshot still tells where it stopped, so nothing is read twice.

use super::*;

/// Runs tests/check/expire.py on the table and returns its JSON answer.
pub(super) fn expire_snapshots(servers: &Servers, table: &str) -> Value {
    let mut cmd = Command::new(venv_python());
    cmd.arg(repo().join("tests/check/expire.py"));
    servers.catalog_args(&mut cmd, table);
    let out = cmd.output().expect("run expire.py");
    assert!(out.status.success(), "expire.py failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("expire.py prints JSON")
}

#[test]
fn offsets_survive_snapshot_expiry_and_a_lost_spool() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let logs = logs_dir("expiry");
    let config = |agent: &str, topic: &str| {
        block_on(create_topic(&kafka, topic, 2));
        let id_edit = format!("id = \"{agent}\"");
        let spool_edit = format!("/spool-{agent}\"");
        config_as(
            &servers,
            agent,
            &[topic],
            "table = \"kept\"",
            &[("id = \"test-gateway\"", &id_edit), ("/spool\"", &spool_edit)],
        )
    };
    let (a, b) = (config("gw-a", "gauges"), config("gw-b", "counters"));
    let flushed = |cfg: &Path, what: &str| {
        let (code, log) = flush(cfg, &logs.join(format!("{what}.log")));
        assert_eq!(code, 0, "{what}: flush failed:\n{}", tail(&log, 30));
    };

    // gw-a commits once; gw-b commits twice on top, so gw-a's snapshot is the oldest.
    let mut gauges = block_on(produce(&kafka, "gauges", 2, 0..3_000));
    flushed(&a, "a-1");
    let mut counters = BTreeMap::new();
    for (round, ids) in [(1, 1_000_000..1_001_000), (2, 1_001_000..1_002_000)] {
        counters.extend(block_on(produce(&kafka, "counters", 2, ids)));
        flushed(&b, &format!("b-{round}"));
    }
    let before = load_table(&servers, "kept");
    let a_snapshot = before["metadata"]["refs"]["frazil-gw-a"]["snapshot-id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no frazil-gw-a ref: {}", before["metadata"]["refs"]));
    assert_eq!(before["metadata"]["refs"]["frazil-gw-a"]["type"], "tag");

    // Everything pyiceberg may expire goes: gw-b's first snapshot. gw-a's survives only because
    // of its tag, cut off from the main branch's history (its child is gone).
    let expired = expire_snapshots(&servers, "kept");
    println!("expire.py: {expired}");
    let kept: Vec<i64> = serde_json::from_value(expired["kept"].clone()).unwrap();
    assert_eq!(expired["expired"].as_array().map(Vec::len), Some(1), "{expired}");
    assert!(kept.contains(&a_snapshot), "{expired}");
    let after = load_table(&servers, "kept");
    let main = after["metadata"]["current-snapshot-id"].as_i64().unwrap();
    let parent = after["metadata"]["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["snapshot-id"] == main)
        .and_then(|s| s["parent-snapshot-id"].as_i64());
    assert!(parent.is_some_and(|p| !kept.contains(&p)), "the main branch should now start at a gap: {expired}");

    // gw-a's disk is replaced: no spool, no index. It must resume after offset 2,999, not at 0.
    std::fs::remove_dir_all(servers.dir.path().join("spool-gw-a")).expect("remove gw-a's spool");
    gauges.extend(block_on(produce(&kafka, "gauges", 2, 3_000..5_000)));
    flushed(&a, "a-2");
    assert_split_exactly(&servers, "kept", 1_000_000, &gauges, &counters);
    let tagged = load_table(&servers, "kept")["metadata"]["refs"]["frazil-gw-a"]["snapshot-id"].clone();
    assert_ne!(tagged, Value::from(a_snapshot), "gw-a's tag moves with its new commit");
}
