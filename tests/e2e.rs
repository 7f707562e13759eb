//! End to end against real servers: JSON events from tansu into an Iceberg table in rustberg on
//! s3s-fs, read back by pyiceberg and by DuckDB, each on its own.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::json;

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

#[test]
fn a_topic_pattern_picks_up_topics_created_while_running() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let config = servers.config(&[], "commit_interval = \"1s\"\n\n[catalog.tables]\nfleet_b = \"fleet_bravo\"");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("topics = []", "topic_pattern = \"^fleet_\"\nrefresh_interval = \"1s\"");
    std::fs::write(&config, text).unwrap();
    for (topic, partitions) in [("fleet_a", 2), ("fleet_b", 1), ("other", 1)] {
        block_on(create_topic(&kafka, topic, partitions));
    }
    let mut a = block_on(produce(&kafka, "fleet_a", 2, 0..500));
    let b = block_on(produce(&kafka, "fleet_b", 1, 10_000..10_300));
    block_on(produce(&kafka, "other", 1, 20_000..20_100));

    let log = servers.dir.path().join("run.log");
    let mut run = start_frazil("run", &config, &log, &[]);
    let landed = |table: &str, n: usize| wait_until(Duration::from_secs(60), || servers.rows_now(table) == n);
    assert!(landed("fleet_a", 500) && landed("fleet_bravo", 300), "{}", std::fs::read_to_string(&log).unwrap());
    // A topic created while frazil runs, and more events for one it already reads.
    block_on(create_topic(&kafka, "fleet_c", 2));
    let c = block_on(produce(&kafka, "fleet_c", 2, 30_000..30_400));
    a.extend(block_on(produce(&kafka, "fleet_a", 2, 500..600)));
    assert!(landed("fleet_c", 400) && landed("fleet_a", 600), "{}", std::fs::read_to_string(&log).unwrap());
    assert!(Command::new("kill").args(["-TERM", &run.child().id().to_string()]).status().unwrap().success());
    assert!(run.wait().success());

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("fleet_c/0: new partition") && text.contains("fleet_c/1: new partition"), "{text}");
    for (table, expected) in [("fleet_a", &a), ("fleet_bravo", &b), ("fleet_c", &c)] {
        for reader in ["pyiceberg", "duckdb"] {
            let (rows, _) = servers.read_table(table, reader);
            assert_exactly(&format!("{reader} {table}"), &rows, expected);
        }
    }
    let st = status_json(&config, &[]);
    let tables: Vec<&str> = st["tables"].as_array().unwrap().iter().map(|t| t["table"].as_str().unwrap()).collect();
    assert!(
        !tables.contains(&"other") && !text.contains("other/0"),
        "a topic the pattern does not match is not read: {tables:?}"
    );
    assert!(
        ["fleet_a", "fleet_bravo", "fleet_c"].iter().all(|t| tables.contains(t)),
        "status lists the pattern's tables: {tables:?}"
    );
}

#[test]
fn a_partitioned_table_gets_one_file_per_partition_value_and_prunes() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let config = servers.config(
        &["zoned"],
        "commit_interval = \"1s\"\n\n[tables.zoned]\npartition_by = [\"identity(zone)\", \"day(_kafka_timestamp)\"]",
    );
    block_on(create_topic(&kafka, "zoned", 2));
    let zones = ["north", "south", "east"];
    let make = |i: u64| json!({"id": i, "zone": zones[(i % 3) as usize], "temp": i as f64 / 2.0});
    let mut expected = block_on(produce_with(&kafka, "zoned", 2, 0..3_000, make));
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("partitioned by"), "{log}");
    expected.extend(block_on(produce_with(&kafka, "zoned", 2, 3_000..4_500, make)));
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 0, "{log}");
    assert_table_exactly(&servers, "zoned", &expected);

    let report = partitions(&servers, "zoned", "zone", "north");
    let spec: Vec<(&str, &str)> = report["spec"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["source"].as_str().unwrap(), f["transform"].as_str().unwrap()))
        .collect();
    assert_eq!(spec, [("zone", "identity"), ("_kafka_timestamp", "day")], "{report}");
    // Every data file holds one zone, its partition tuple says which, and its path too.
    let files = report["files"].as_array().unwrap();
    let mut per_zone = std::collections::BTreeMap::new();
    for f in files {
        let zone = f["partition"]["zone"].as_str().unwrap_or_else(|| panic!("no zone in {f}"));
        assert!(f["path"].as_str().unwrap().contains(&format!("/zone={zone}/")), "{f}");
        *per_zone.entry(zone.to_string()).or_insert(0) += f["records"].as_u64().unwrap();
    }
    assert_eq!(per_zone, zones.iter().map(|z| (z.to_string(), 1_500)).collect(), "{report}");
    // A filter on the partition column plans only that zone's files, in pyiceberg and in DuckDB.
    let north = files.iter().filter(|f| f["partition"]["zone"] == "north").count() as u64;
    assert_eq!(report["pyiceberg_planned"], north, "{report}");
    assert_eq!(report["duckdb_rows"], 1_500, "{report}");
    assert_eq!(report["duckdb_files_scanned"], north, "DuckDB's profile (Total Files Read): {report}");
    println!(
        "partitioned: {} files for 3 zones; a zone filter plans {north} (pyiceberg), DuckDB read {}",
        files.len(),
        report["duckdb_files_scanned"]
    );
}

#[test]
fn raw_and_text_topics_keep_values_and_headers_as_they_are() {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let config = servers.config(&["blobs", "lines"], "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[spool]", "format = \"raw\"\n\n[kafka.formats]\nlines = \"text\"\n\n[spool]");
    write_config(&config, &text);
    let headers = |i: u8| {
        [("trace".to_string(), vec![i]), ("src".to_string(), b"gw".to_vec())]
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let mut blobs = Vec::new();
    for topic in ["blobs", "lines"] {
        block_on(create_topic(&kafka, topic, 1));
    }
    // Bytes that are neither JSON nor UTF-8, an empty value, a tombstone.
    for (i, v) in [Some(vec![0xff, 0x00, 0x7f]), Some(vec![]), None].into_iter().enumerate() {
        blobs.push((Some(vec![b'k', i as u8]), v, headers(i as u8)));
    }
    let blob_offsets = block_on(produce_with_headers(&kafka, "blobs", 0, blobs.clone()));
    let lines =
        vec![(None, Some("héllo wörld".as_bytes().to_vec()), headers(9)), (None, Some(vec![0xc3, 0x28]), headers(8))];
    let line_offsets = block_on(produce_with_headers(&kafka, "lines", 0, lines));

    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 0, "{log}");
    for reader in ["pyiceberg", "duckdb"] {
        let (mut rows, _) = servers.read_table("blobs", reader);
        rows.sort_by_key(|r| r["_kafka_offset"].as_i64());
        assert_eq!(rows.len(), 3, "{reader}: {rows:?}");
        for ((row, (key, value, hs)), offset) in rows.iter().zip(&blobs).zip(&blob_offsets) {
            assert_eq!(row["_kafka_offset"], *offset, "{reader}: {row}");
            assert_eq!(row["_kafka_key"], b64(key.as_ref().unwrap()), "{reader}: {row}");
            assert_eq!(
                row["value"],
                value.as_ref().map_or(serde_json::Value::Null, |v| b64(v).into()),
                "{reader}: {row}"
            );
            let mut got: Vec<(String, String)> = row["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (e["key"].as_str().unwrap().to_string(), e["value"].as_str().unwrap().to_string()))
                .collect();
            got.sort();
            let mut want: Vec<(String, String)> = hs.iter().map(|(k, v)| (k.clone(), b64(v))).collect();
            want.sort();
            assert_eq!(got, want, "{reader}: {row}");
        }
        let (rows, _) = servers.read_table("lines", reader);
        assert_eq!(rows.len(), 1, "{reader}: {rows:?}");
        assert_eq!(rows[0]["value"], "héllo wörld", "{reader}");
        let (dead, _) = servers.read_table("lines__dlq", reader);
        assert_eq!(dead.len(), 1, "{reader}: {dead:?}");
        assert_eq!(dead[0]["offset"], line_offsets[1], "{reader}");
        assert!(dead[0]["reason"].as_str().unwrap().contains("not UTF-8"), "{reader}: {dead:?}");
    }
}

#[test]
fn time_fields_become_timestamps_from_text_or_epoch_numbers() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let config = servers.config(&["readings"], "\n[tables.readings]\npartition_by = [\"day(event_time)\"]");
    let text = std::fs::read_to_string(&config).unwrap()
        + "\n[json]\ntimestamp_fields = [\"event_time\"]\nepoch_unit = \"ms\"\n";
    write_config(&config, &text);
    block_on(create_topic(&kafka, "readings", 2));
    // Three days apart; even ids give the time as RFC 3339 text with an offset, odd ones as epoch ms.
    let ms = |i: u64| 1_714_979_289_123 + (i % 3) as i64 * 86_400_000 + i as i64;
    let make = |i: u64| {
        let t = chrono::DateTime::from_timestamp_millis(ms(i))
            .unwrap()
            .with_timezone(&chrono::FixedOffset::east_opt(7_200).unwrap());
        let when = if i.is_multiple_of(2) {
            json!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, false))
        } else {
            json!(ms(i))
        };
        json!({"id": i, "event_time": when})
    };
    let mut expected = block_on(produce_with(&kafka, "readings", 2, 0..600, make));
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains(r#""name":"event_time","required":false,"type":"timestamptz""#), "{log}");
    // Read back as UTC timestamps, whichever way they were written.
    for e in expected.values_mut() {
        let i = e.value["id"].as_u64().unwrap();
        e.value["event_time"] = json!(
            chrono::DateTime::from_timestamp_millis(ms(i)).unwrap().format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
        );
    }
    assert_table_exactly(&servers, "readings", &expected);
    let report = partitions(&servers, "readings", "id", "0");
    let days: std::collections::BTreeSet<&str> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["partition"]["event_time_day"].as_str().unwrap())
        .collect();
    assert_eq!(days.into_iter().collect::<Vec<_>>(), ["2024-05-06", "2024-05-07", "2024-05-08"], "{report}");
}

#[test]
fn per_table_settings_sort_each_file_and_set_each_tables_commit_pace() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    // `quick` commits every second with its rows sorted; `slow` keeps the global hour, so `run`
    // leaves it spooled until it stops.
    let config = servers.config(
        &["quick", "slow"],
        "commit_interval = \"1h\"\n\n[tables.quick]\nsort_by = [\"site nulls last\", \"_kafka_offset desc\"]\ncommit_interval = \"1s\"",
    );
    block_on(create_topic(&kafka, "quick", 2));
    block_on(create_topic(&kafka, "slow", 1));
    let quick = block_on(produce(&kafka, "quick", 2, 0..2_000));
    let slow = block_on(produce(&kafka, "slow", 1, 0..500));

    let child = start_run(&config);
    let landed = wait_until(Duration::from_secs(90), || servers.rows_now("quick") == 2_000);
    let slow_meanwhile = servers.rows_now("slow");
    let log = sigterm_and_wait(child);
    assert!(landed, "quick's rows did not land within its commit interval:\n{log}");
    assert_eq!(slow_meanwhile, 0, "slow was committed before its interval passed:\n{log}");
    assert!(log.contains("table quick: rows written in sort order"), "{log}");
    // The stop publishes every table, whatever its interval.
    assert_table_exactly(&servers, "quick", &quick);
    assert_table_exactly(&servers, "slow", &slow);

    let mut cmd = Command::new(venv_python());
    cmd.arg(repo().join("tests/check/sorting.py"));
    servers.catalog_args(&mut cmd, "quick");
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["sort_order"],
        json!([{"column": "site", "direction": "asc", "null_order": "nulls-last"}, {"column": "_kafka_offset", "direction": "desc", "null_order": "nulls-last"}]),
        "{report}"
    );
    let files = report["files"].as_array().unwrap();
    assert!(!files.is_empty() && files.iter().all(|f| f["sorted"] == json!(true)), "{report}");
    assert_eq!(files.iter().map(|f| f["rows"].as_u64().unwrap()).sum::<u64>(), 2_000, "{report}");
    // A table with no sort_by of its own (and no "*" entry) is created unsorted.
    let mut cmd = Command::new(venv_python());
    cmd.arg(repo().join("tests/check/sorting.py"));
    servers.catalog_args(&mut cmd, "slow");
    let out = cmd.output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["sort_order"], json!([]), "{report}");
}

/// tests/check/partitions.py's report on a table, with a filter `column = value`.
fn partitions(servers: &Servers, table: &str, column: &str, value: &str) -> serde_json::Value {
    let mut cmd = Command::new(venv_python());
    cmd.arg(repo().join("tests/check/partitions.py"));
    servers.catalog_args(&mut cmd, table);
    let out = cmd.args(["--column", column, "--value", value]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn start_run(config: &std::path::Path) -> std::process::Child {
    frazil_command()
        .args(["run", "--config", path_str(config)])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start frazil run")
}

fn sigterm_and_wait(child: std::process::Child) -> String {
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().expect("frazil exits");
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "frazil run did not exit cleanly on SIGTERM ({:?}):\n{log}", out.status);
    log
}

#[test]
fn run_commits_events_within_its_interval() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let config = servers.config(&["live"], "commit_interval = \"2s\"");
    block_on(create_topic(&kafka, "live", 2));
    let child = start_run(&config);
    let mut expected = block_on(produce(&kafka, "live", 2, 0..1_000));
    // file_max_age 1s + commit_interval 2s: well within 30 s even on a loaded machine.
    let landed = wait_until(Duration::from_secs(30), || servers.rows_now("live") == 1_000);
    expected.extend(block_on(produce(&kafka, "live", 2, 1_000..1_200)));
    let landed_again = landed && wait_until(Duration::from_secs(30), || servers.rows_now("live") == 1_200);
    let log = sigterm_and_wait(child);
    assert!(landed && landed_again, "events did not land while running:\n{log}");
    let (rows, _) = servers.read_table("live", "pyiceberg");
    assert_exactly("pyiceberg", &rows, &expected);
}

#[test]
fn sigterm_commits_what_run_has_taken() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    // No interval commit can happen during the test: only the shutdown commits.
    let config = servers.config(&["calm"], "commit_interval = \"1h\"");
    block_on(create_topic(&kafka, "calm", 2));
    let child = start_run(&config);
    let expected = block_on(produce(&kafka, "calm", 2, 0..1_500));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(servers.rows_now("calm"), 0, "nothing should be committed before the shutdown");
    // `status` reads the spool beside the running agent: all fetched and spooled, none committed.
    let st = status_json(&config, &[]);
    assert_eq!(st["agent_running"], true, "{st}");
    assert_eq!((&st["broker"]["reachable"], &st["catalog"]["reachable"]), (&json!(true), &json!(true)), "{st}");
    assert_eq!(st["tables"][0]["exists"], false, "the table comes with the first commit: {st}");
    assert!(st["tables"][0]["files_written"].as_u64().unwrap() > 0, "{st}");
    let parts = st["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{st}");
    assert_eq!(parts.iter().map(|p| p["spooled"].as_i64().unwrap()).sum::<i64>(), 1_500, "{st}");
    assert!(parts.iter().all(|p| p["to_fetch"] == 0 && p["to_commit"].is_null()), "{st}");
    let log = sigterm_and_wait(child);
    assert!(log.contains("stopping"), "{log}");
    // Stopped: the spool is opened normally, the last commit and its offsets come from the table.
    let st = status_json(&config, &[]);
    assert_eq!(st["agent_running"], false, "{st}");
    let last = &st["tables"][0]["last_commit"];
    assert!(last["commit_id"].as_str().is_some_and(|c| c.len() == 36), "{st}");
    let parts = st["partitions"].as_array().unwrap();
    assert!(
        parts.iter().all(|p| p["to_fetch"] == 0 && p["to_commit"] == 0 && p["committed"] == p["high_watermark"]),
        "{st}"
    );
    assert_table_exactly(&servers, "calm", &expected);
}
