//! How a table is shaped: partitioned, raw and text values, time fields, per-table settings.

use super::*;
use serde_json::Value;

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

#[test]
fn records_that_would_poison_the_table_are_dead_letters_and_every_reader_reads_it() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let config = servers.config(&["poison"], "\n[tables.poison]\nmax_new_fields = 50");
    block_on(create_topic(&kafka, "poison", 1));
    let wide = (0..3000).map(|i| format!("\"k{i}\":{i}")).collect::<Vec<_>>().join(",");
    let values: Vec<(String, bool)> = vec![
        (r#"{"num":1,"site":{"zone":"n"}}"#.into(), true),
        (r#"{"num":2,"Num":2}"#.into(), false),
        (r#"{"NUM":3}"#.into(), false),
        (r#"{"site":{"Zone":"x"}}"#.into(), false),
        (r#"{"":1}"#.into(), false),
        (r#"{"a.b":1}"#.into(), false),
        (r#"{"a":{"b":2}}"#.into(), true),
        (format!(r#"{{"{}":1}}"#, "x".repeat(5000)), false),
        (format!("{{{wide}}}"), false),
        (r#"{"num":3,"extra":"e"}"#.into(), true),
    ];
    let offsets =
        block_on(produce_raw(&kafka, "poison", 0, values.iter().map(|(v, _)| Some(v.as_bytes().to_vec())).collect()));
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 0, "flush failed:\n{log}");
    let kept: Vec<i64> = offsets.iter().zip(&values).filter(|(_, (_, ok))| *ok).map(|(o, _)| *o).collect();
    let dead: Vec<i64> = offsets.iter().zip(&values).filter(|(_, (_, ok))| !*ok).map(|(o, _)| *o).collect();
    for reader in ["pyiceberg", "duckdb"] {
        // The whole table reads, with no two columns differing only in case.
        let (rows, _) = servers.read_table("poison", reader);
        let mut got: Vec<i64> = rows.iter().map(|r| r["_kafka_offset"].as_i64().unwrap()).collect();
        got.sort();
        assert_eq!(got, kept, "{reader}: {rows:?}");
        let names: Vec<String> = rows[0].as_object().unwrap().keys().map(|k| k.to_lowercase()).collect();
        let unique: std::collections::BTreeSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{reader}: {names:?}");
        let (letters, _) = servers.read_table("poison__dlq", reader);
        let mut got: Vec<i64> = letters.iter().map(|r| r["offset"].as_i64().unwrap()).collect();
        got.sort();
        assert_eq!(got, dead, "{reader}: {letters:?}");
    }
}

#[test]
fn fixed_tables_from_given_columns_never_grow_and_every_reader_reads_them() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let columns = r#"columns = ["num long", "site struct<zone: string>", "at timestamptz"]"#;
    let config = servers.config(
        &["strict", "loose"],
        &format!(
            "\n[tables.strict]\nschema = \"fixed\"\n{columns}\n\
             [tables.loose]\nschema = \"fixed\"\nunknown_keys = \"extra\"\n{columns}"
        ),
    );
    // (record, its `_extra` in the loose table; `None`: it has no unknown key).
    let values: Vec<(&str, Option<Value>)> = vec![
        (r#"{"num":1,"site":{"zone":"n"},"at":"2024-05-06T07:08:09Z"}"#, None),
        (r#"{"num":2,"color":"red"}"#, Some(json!({"color": "red"}))),
        (r#"{"num":3,"site":{"zone":"s","rack":7}}"#, Some(json!({"site": {"rack": 7}}))),
        (r#"{"num":4,"at":1715000000000}"#, None),
        (r#"{"Num":5,"a.b":{"c":1}}"#, Some(json!({"Num": 5, "a.b": {"c": 1}}))),
    ];
    for topic in ["strict", "loose"] {
        block_on(create_topic(&kafka, topic, 1));
        block_on(produce_raw(&kafka, topic, 0, values.iter().map(|(v, _)| Some(v.as_bytes().to_vec())).collect()));
    }
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 0, "flush failed:\n{log}");
    let known: Vec<i64> = (0..values.len() as i64).filter(|o| values[*o as usize].1.is_none()).collect();
    let unknown: Vec<i64> = (0..values.len() as i64).filter(|o| values[*o as usize].1.is_some()).collect();
    for reader in ["pyiceberg", "duckdb"] {
        let (rows, _) = servers.read_table("strict", reader);
        let mut got: Vec<i64> = rows.iter().map(|r| r["_kafka_offset"].as_i64().unwrap()).collect();
        got.sort();
        assert_eq!(got, known, "{reader}: {rows:?}");
        let names: std::collections::BTreeSet<&str> = rows[0].as_object().unwrap().keys().map(String::as_str).collect();
        let meta = ["_kafka_partition", "_kafka_offset", "_kafka_timestamp", "_kafka_key"];
        let given: std::collections::BTreeSet<&str> = ["num", "site", "at"].into_iter().chain(meta).collect();
        assert_eq!(names, given, "{reader}: the strict table has the given columns alone");
        // Both spellings of `at` read as the same kind of time.
        let at: Vec<&str> = rows.iter().filter_map(|r| r["at"].as_str()).collect();
        assert_eq!(at.len(), 2, "{reader}: {rows:?}");
        assert!(at.iter().any(|t| t.starts_with("2024-05-06T07:08:09")), "{reader}: {at:?}");
        assert!(at.iter().any(|t| t.starts_with("2024-05-06T12:53:20")), "{reader}: {at:?}");
        let (letters, _) = servers.read_columns("strict__dlq", reader, &["offset", "reason"]);
        let mut dead: Vec<i64> = letters.iter().map(|r| r["offset"].as_i64().unwrap()).collect();
        dead.sort();
        assert_eq!(dead, unknown, "{reader}: {letters:?}");
        assert!(letters.iter().all(|l| l["reason"].as_str().unwrap().contains("of the table, whose schema is fixed")));

        let (rows, _) = servers.read_table("loose", reader);
        assert_eq!(rows.len(), values.len(), "{reader}: every record is a row of the loose table");
        for r in &rows {
            let o = r["_kafka_offset"].as_i64().unwrap() as usize;
            let extra = r["_extra"].as_str().map(|t| serde_json::from_str::<Value>(t).unwrap());
            assert_eq!(extra, values[o].1, "{reader}: offset {o}");
            assert_eq!(r.as_object().unwrap().len(), given.len() + 1, "{reader}: {r}");
        }
    }
}
