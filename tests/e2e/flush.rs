//! `frazil flush` against real servers: every event lands once, bad records become dead
//! letters, new fields grow the table.

use super::*;

/// From frazil's log: data files and spool files added by its commits.
fn added_files(log: &str) -> (u64, u64) {
    let mut totals = (0, 0);
    for line in log.lines().filter(|l| l.contains(" added ") && l.contains(" data files (")) {
        let num_before = |marker: &str| -> u64 {
            let head = &line[..line.find(marker).expect("marker")];
            head.rsplit(|c: char| !c.is_ascii_digit()).find(|w| !w.is_empty()).expect("a number").parse().unwrap()
        };
        totals.0 += num_before(" data files (");
        totals.1 += num_before(" spool files");
    }
    totals
}

fn snapshots(summary: &serde_json::Value) -> u64 {
    summary["snapshots"].as_u64().expect("snapshot count")
}

#[test]
fn flush_lands_every_event_exactly_once_and_only_new_events_after() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let config = servers.config(&["telemetry"], "");
    block_on(create_topic(&kafka, "telemetry", 4));
    let mut expected = block_on(produce(&kafka, "telemetry", 4, 0..100_000));
    assert_eq!(expected.len(), 100_000);

    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 0, "flush failed:\n{log}");
    // Small spool files (2 MiB of input each here) go out merged into fewer, larger data files.
    let (data_files, spool_files) = added_files(&log);
    assert!(
        spool_files > 4 && data_files < spool_files,
        "no merge happened: {data_files} data files from {spool_files} spool files\n{log}"
    );

    for reader in ["pyiceberg", "duckdb"] {
        let (rows, summary) = servers.read_table("telemetry", reader);
        assert_exactly(reader, &rows, &expected);
        assert_eq!(summary["format_version"], 2, "{reader}: {summary}");
    }
    let (_, first) = servers.read_table("telemetry", "pyiceberg");
    let props = &first["current_snapshot_summary"];
    assert_eq!(props["frazil.agent"], "test-gateway", "{first}");
    assert!(props["frazil.commit-id"].as_str().is_some_and(|s| s.len() == 36), "{first}");
    let offsets: serde_json::Value =
        serde_json::from_str(props["frazil.offsets.telemetry"].as_str().expect("offsets key")).unwrap();
    assert_eq!(offsets, serde_json::json!({"0": 25_000, "1": 25_000, "2": 25_000, "3": 25_000}));

    // Nothing new: no new snapshot.
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 0, "second flush failed:\n{log}");
    let (_, again) = servers.read_table("telemetry", "pyiceberg");
    assert_eq!(snapshots(&again), snapshots(&first), "an empty flush added a snapshot");

    // 10,000 more: exactly those are added, in one more snapshot.
    expected.extend(block_on(produce(&kafka, "telemetry", 4, 100_000..110_000)));
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 0, "third flush failed:\n{log}");
    for reader in ["pyiceberg", "duckdb"] {
        let (rows, summary) = servers.read_table("telemetry", reader);
        assert_exactly(reader, &rows, &expected);
        assert_eq!(snapshots(&summary), snapshots(&first) + 1, "{reader}: {summary}");
    }
}

#[test]
fn bad_records_go_to_the_dead_letter_table_with_their_reason() {
    use base64::Engine;
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let config = servers.config(&["mixed"], "");
    block_on(create_topic(&kafka, "mixed", 1));
    let mut expected = block_on(produce(&kafka, "mixed", 1, 0..10));
    // The first flush fixes the table's schema (id: long, readings: list); then the bad ones come.
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 0, "first flush failed:\n{log}");
    // (value, what the reason must say)
    let bad: Vec<(Option<&[u8]>, &str)> = vec![
        (Some(b"not json"), "invalid JSON"),
        (Some(b"[1,2,3]"), "not a JSON object"),
        (Some(b"42"), "not a JSON object"),
        (None, "no value"),
        (Some(br#"{"id": "seven", "device": "dev-7"}"#), "column `id`"),
        (Some(br#"{"id": 7, "readings": {"not": "a list"}}"#), "readings"),
    ];
    let offsets = block_on(produce_raw(&kafka, "mixed", 0, bad.iter().map(|(v, _)| v.map(<[u8]>::to_vec)).collect()));
    expected.extend(block_on(produce(&kafka, "mixed", 1, 10..20)));

    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 0, "flush failed:\n{log}");
    for offset in &offsets {
        assert!(
            log.contains(&format!("mixed/0 offset {offset}: to dead-letter table mixed__dlq")),
            "offset {offset} not reported:\n{log}"
        );
    }
    assert!(log.contains("(6 to dead-letter tables)"), "{log}");
    for reader in ["pyiceberg", "duckdb"] {
        let (rows, _) = servers.read_table("mixed", reader);
        assert_exactly(reader, &rows, &expected);
        let (mut dead, _) = servers.read_table("mixed__dlq", reader);
        dead.sort_by_key(|r| r["offset"].as_i64());
        assert_eq!(dead.len(), bad.len(), "{reader}: {dead:?}");
        for ((row, (value, why)), offset) in dead.iter().zip(&bad).zip(&offsets) {
            assert_eq!(
                (row["topic"].as_str(), row["partition"].as_i64(), row["offset"].as_i64()),
                (Some("mixed"), Some(0), Some(*offset)),
                "{reader}: {row}"
            );
            let raw = value.map(|v| serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(v)));
            assert_eq!(
                row["value"],
                raw.unwrap_or(serde_json::Value::Null),
                "{reader}: the raw value, byte for byte: {row}"
            );
            assert_eq!(row["key"], "YmFk", "{reader}: the raw key (\"bad\"): {row}");
            assert!(
                row["reason"].as_str().is_some_and(|r| r.contains(why)),
                "{reader}: reason should say `{why}`: {row}"
            );
            assert!(row["timestamp"].as_str().is_some_and(|t| t.ends_with("+00:00")), "{reader}: {row}");
        }
    }
    // A second flush finds nothing new: no dead letter twice.
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 0, "{log}");
    assert_eq!(servers.read_table("mixed__dlq", "pyiceberg").0.len(), bad.len());
}

#[test]
fn new_fields_grow_the_table_and_older_rows_read_as_null() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let config = servers.config(&["growing"], "");
    block_on(create_topic(&kafka, "growing", 2));
    let v1 = |i: u64| json!({"id": i, "device": format!("dev-{}", i % 7), "temp": i as f64 / 4.0});
    // Version 2 adds a number, a struct and a list; version 3 a string, and a key that needs escaping.
    let v2 = |i: u64| {
        let mut v = v1(i);
        v["battery"] = json!(i % 100);
        v["location"] = json!({"lat": 48.1, "lon": 11.5 + i as f64});
        v["alarms"] = json!([format!("a{}", i % 3)]);
        v
    };
    let v3 = |i: u64| {
        let mut v = if i.is_multiple_of(2) { v2(i) } else { v1(i) };
        v["fw"] = json!(format!("1.{}", i % 4));
        v["_kafka_note"] = json!("mine");
        v
    };
    let mut expected = block_on(produce_with(&kafka, "growing", 2, 0..400, v1));
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 0, "{log}");
    // Old and new shapes mixed in one flush, then a third shape in the next.
    expected.extend(block_on(produce_with(&kafka, "growing", 2, 400..700, v2)));
    expected.extend(block_on(produce_with(&kafka, "growing", 2, 700..800, v1)));
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("adds alarms (list), battery (long), location (struct)"), "{log}");
    assert!(log.contains("schema grown by alarms, battery, location"), "{log}");
    expected.extend(block_on(produce_with(&kafka, "growing", 2, 800..1_000, v3)));
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("(0 to dead-letter tables)"), "no record was refused:\n{log}");
    // New keys inside a struct column, one of them a struct itself; mixed with rows without them.
    let v4 = |i: u64| {
        let mut v = v2(i);
        if i.is_multiple_of(3) {
            v["location"]["alt"] = json!(500 + i);
            v["location"]["grid"] = json!({"x": i % 10, "y": "g"});
        }
        v
    };
    expected.extend(block_on(produce_with(&kafka, "growing", 2, 1_000..1_300, v4)));
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("schema grown by location.alt, location.grid"), "{log}");
    assert!(log.contains("(0 to dead-letter tables)"), "no record was refused:\n{log}");
    // The key that clashes with frazil's own columns reads back under its escaped name.
    for e in expected.values_mut() {
        if let Some(note) = e.value.as_object_mut().unwrap().remove("_kafka_note") {
            e.value["__kafka_note"] = note;
        }
    }

    for reader in ["pyiceberg", "duckdb"] {
        let (rows, _) = servers.read_table("growing", reader);
        assert_exactly(reader, &rows, &expected);
        let old = rows.iter().find(|r| r["id"] == 0).unwrap();
        assert!(old["battery"].is_null() && old["location"].is_null() && old["fw"].is_null(), "{reader}: {old}");
    }

    // The same while the catalog is unreachable: the schema grows in the spool alone; the table is
    // created later with the first schema (so a catalog's renumbering cannot differ from the
    // files) and then grown to the current one, before the commit.
    block_on(create_topic(&kafka, "growing_offline", 2));
    let online = servers.config(&["growing_offline"], "");
    let real = std::fs::read_to_string(&online).unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let offline = servers.dir.path().join("offline.toml");
    write_config(&offline, &real.replace(servers.get("FRAZIL_CATALOG"), &format!("http://127.0.0.1:{dead}")));
    let mut expected = block_on(produce_with(&kafka, "growing_offline", 2, 0..300, v1));
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&offline)]);
    assert_eq!(code, 75, "{log}");
    expected.extend(block_on(produce_with(&kafka, "growing_offline", 2, 300..600, v2)));
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&offline)]);
    assert_eq!(code, 75, "{log}");
    assert!(log.contains("adds alarms (list), battery (long), location (struct)"), "{log}");
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&online)]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("schema grown by alarms, battery, location"), "{log}");
    assert_table_exactly(&servers, "growing_offline", &expected);
}
