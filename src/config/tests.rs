//! Parsing and validation of the TOML config, the README reference included.

use super::*;

const MINIMAL: &str = r#"
[kafka]
brokers = ["127.0.0.1:9092"]
topics = ["events"]
[catalog]
uri = "http://127.0.0.1:8181"
"#;

fn err(text: &str) -> (String, String, String) {
    match Config::parse(text).unwrap_err() {
        Error::Config { key, problem, fix } => (key, problem, fix),
        other => panic!("not a config error: {other}"),
    }
}

#[test]
fn minimal_config_gets_defaults() {
    let c = Config::parse(MINIMAL).unwrap();
    assert_eq!(c.kafka.start, StartAt::Earliest);
    assert_eq!(c.kafka.fetch_max_bytes, 4 * 1024 * 1024);
    assert_eq!(c.kafka.fetches_in_flight, 2);
    assert_eq!(c.spool.buffer_max_bytes, 8 << 20);
    assert_eq!(c.spool.dir, PathBuf::from("/var/lib/frazil"));
    assert_eq!(c.catalog.namespace, vec!["frazil".to_string()]);
    assert_eq!(c.catalog.commit_interval, Duration::from_secs(60));
    assert_eq!(c.catalog.warehouse, None);
    assert!(!c.agent_id.is_empty());
    assert_eq!(c.spool.max_bytes, Some(4 << 30));
    assert_eq!(c.spool.min_free, Some(256 << 20));
    let c = Config::parse(&format!("{MINIMAL}\n[spool]\nmax_bytes = \"none\"\nmin_free = \"1GB\"\n")).unwrap();
    assert_eq!((c.spool.max_bytes, c.spool.min_free), (None, Some(1_000_000_000)));
    assert_eq!(c.spool.keep_committed, Duration::ZERO, "committed files go at once unless asked");
}

#[test]
fn committed_files_can_be_kept_for_offline_queries() {
    let c = Config::parse(&format!("{MINIMAL}\n[spool]\nkeep_committed = \"6h\"\nkeep_committed_size = \"1GiB\"\n"))
        .unwrap();
    assert_eq!((c.spool.keep_committed, c.spool.keep_committed_bytes), (Duration::from_secs(6 * 3600), 1 << 30));
    assert_eq!(
        Config::parse(&format!("{MINIMAL}\n[spool]\nkeep_committed = \"1h\"\n")).unwrap().spool.keep_committed_bytes,
        256 << 20
    );
    let (key, _, fix) = err(&format!("{MINIMAL}\n[spool]\nkeep_committed = \"6\"\n"));
    assert_eq!(key, "spool.keep_committed");
    assert!(fix.contains("6h"), "{fix}");
}

#[test]
fn unknown_key_is_named() {
    let (key, problem, fix) = err(&MINIMAL.replace("topics", "topics = [\"a\"]\nbrokrs = 1\n#"));
    assert_eq!(key, "brokrs");
    assert!(problem.contains("line 5"), "{problem}");
    assert!(fix.contains("did you mean `brokers`?"), "{fix}");
    let (_, _, fix) = err(&format!("{MINIMAL}[spool]\nmax_byte = \"1GiB\"\n"));
    assert!(fix.contains("`max_bytes`"), "{fix}");
    // Not a typo of anything: no guess.
    let (_, _, fix) = err(&format!("{MINIMAL}[spool]\ncolour = 1\n"));
    assert!(!fix.contains("did you mean"), "{fix}");
}

#[test]
fn bad_values_name_key_and_fix() {
    let (key, problem, fix) = err(&format!("{MINIMAL}\n[spool]\nfile_max_age = \"10\"\n"));
    assert_eq!(key, "spool.file_max_age");
    assert!(problem.contains("no unit"));
    assert!(fix.contains("10s"));
    let (key, ..) = err(&MINIMAL.replace("topics = [\"events\"]", "topics = [\"events\"]\nstart = \"middle\""));
    assert_eq!(key, "kafka.start");
    let (key, ..) = err(&MINIMAL.replace("http://127.0.0.1:8181", "127.0.0.1:8181"));
    assert_eq!(key, "catalog.uri");
    let (key, ..) = err(&MINIMAL.replace("[\"127.0.0.1:9092\"]", "[\"localhost\"]"));
    assert_eq!(key, "kafka.brokers");
    let (key, ..) = err(&format!("[agent]\nid = \"a b\"\n{MINIMAL}"));
    assert_eq!(key, "agent.id");
    let (key, ..) = err(&MINIMAL.replace("[\"events\"]", "[]"));
    assert_eq!(key, "kafka.topics");
    let (key, _, fix) = err(&MINIMAL.replace("topics = [\"events\"]", "topics = [\"events\"]\nfetches_in_flight = 0"));
    assert_eq!((key.as_str(), fix.as_str()), ("kafka.fetches_in_flight", "use between 1 and 256, e.g. 2"));
    let (key, ..) = err(&format!("{MINIMAL}\n[spool]\nbuffer_max_bytes = \"lots\"\n"));
    assert_eq!(key, "spool.buffer_max_bytes");
}

#[test]
fn the_idle_fetch_wait_defaults_to_a_second_and_is_never_below_the_busy_wait() {
    let c = Config::parse(MINIMAL).unwrap();
    assert_eq!((c.kafka.fetch_max_wait, c.kafka.fetch_idle_wait), (Duration::from_millis(10), Duration::from_secs(1)));
    let with = |lines: &str| MINIMAL.replace("topics = [\"events\"]", &format!("topics = [\"events\"]\n{lines}"));
    let c = Config::parse(&with("fetch_max_wait = \"500ms\"\nfetch_idle_wait = \"500ms\"")).unwrap();
    assert_eq!(c.kafka.fetch_idle_wait, Duration::from_millis(500), "equal to the busy wait: no backoff");
    let (key, _, fix) = err(&with("fetch_max_wait = \"2s\""));
    assert_eq!(key, "kafka.fetch_idle_wait");
    assert!(fix.contains("kafka.fetch_max_wait (2s)"), "{fix}");
    let (key, ..) = err(&with("fetch_idle_wait = \"2min\""));
    assert_eq!(key, "kafka.fetch_idle_wait");
}

#[test]
fn s3_http_endpoint_allows_http() {
    let c =
        Config::parse(&format!("{MINIMAL}\n[storage.s3]\nendpoint = \"http://127.0.0.1:9000\"\npath_style = true\n"))
            .unwrap();
    assert!(c.s3.allow_http);
    assert!(c.s3.path_style);
}

#[test]
fn table_names_are_safe() {
    assert_eq!(table_name("{topic}", "Sensor.Readings-v2"), "sensor_readings_v2");
    assert_eq!(table_name("raw_{topic}", "a"), "raw_a");
}

#[test]
fn topics_by_pattern_and_tables_by_entry() {
    let text = MINIMAL.replace("topics = [\"events\"]", "topic_pattern = \"^fleet_\"\nrefresh_interval = \"5s\"")
        + "dead_letter_table = \"dlq_{table}\"\n[catalog.tables]\nfleet_b = \"bravo\"\n";
    let c = Config::parse(&text).unwrap();
    assert!(c.kafka.reads("fleet_a") && !c.kafka.reads("other") && !c.kafka.reads("__fleet_x"));
    assert_eq!(c.kafka.refresh_interval, Duration::from_secs(5));
    assert_eq!((c.table_for("fleet_a"), c.table_for("fleet_b")), ("fleet_a".to_string(), "bravo".to_string()));
    assert_eq!(dead_letter_table_name(&c.catalog.dead_letter_table, "bravo"), "dlq_bravo");

    let (key, problem, _) = err(&MINIMAL.replace("topics = [\"events\"]", "topic_pattern = \"(\""));
    assert_eq!(key, "kafka.topic_pattern");
    assert!(problem.contains("not a regular expression"), "{problem}");
    let (key, ..) = err(&format!("{MINIMAL}[catalog.tables]\nevents = \"Bad.Name\"\n"));
    assert_eq!(key, "catalog.tables.\"events\"");
    let (key, problem, _) = err(&MINIMAL.replace("topics = [\"events\"]", "topics = []"));
    assert_eq!(key, "kafka.topics");
    assert!(problem.contains("topic_pattern"), "{problem}");
    let (key, ..) = err(&format!("{MINIMAL}dead_letter_table = \"{{table}}\"\n"));
    assert_eq!(key, "catalog.dead_letter_table");
}

/// The reference in the README is a config that parses, with every key it shows.
#[test]
fn the_readme_reference_parses() {
    let readme = include_str!("../../README.md");
    let reference = readme.find("## Configuration reference").expect("the reference section");
    let start = reference + readme[reference..].find("```toml\n").expect("a toml block in it") + "```toml\n".len();
    let text = &readme[start..start + readme[start..].find("```").unwrap()];
    let c = Config::parse(text).unwrap_or_else(|e| panic!("README reference: {e}"));
    assert_eq!(c.table_for("sensors.temp"), "temperatures");
    assert!(c.kafka.topic_pattern.is_some());
    assert_eq!(c.kafka.group.as_ref().map(|g| g.name.as_str()), Some("plant-7"));
    assert_eq!(c.kafka.static_partitions("telemetry"), Some(&[0, 1][..]));
}

/// The config the packages install at /etc/frazil/frazil.toml parses, and its spool is the
/// directory the packages create for the frazil user.
#[test]
fn the_packaged_config_parses() {
    let c = Config::parse(include_str!("../../packaging/frazil.toml"))
        .unwrap_or_else(|e| panic!("packaging/frazil.toml: {e}"));
    assert_eq!(c.spool.dir, std::path::PathBuf::from("/var/lib/frazil"));
    assert_eq!(c.kafka.topics, ["telemetry"]);
}

#[test]
fn a_world_readable_config_with_a_secret_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("frazil.toml");
    std::fs::write(&path, format!("{MINIMAL}[storage.s3]\nsecret_access_key = \"s\"\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    match Config::load(&path).unwrap_err() {
        Error::Config { key, fix, .. } => {
            assert_eq!(key, "storage.s3.secret_access_key");
            assert!(fix.contains("chmod 600"), "{fix}");
        }
        other => panic!("{other}"),
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    Config::load(&path).unwrap();
    // No secret: the file may be world-readable.
    std::fs::write(&path, MINIMAL).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    Config::load(&path).unwrap();
}

#[test]
fn environment_overrides_keys() {
    let env = [
        ("FRAZIL__STORAGE__S3__SECRET_ACCESS_KEY", "from-env"),
        ("FRAZIL__KAFKA__BROKERS", r#"["10.0.0.5:9092"]"#),
        ("FRAZIL__SPOOL__FILE_MAX_ROWS", "500"),
        ("FRAZIL__CATALOG__NAMESPACE", "edge.site1"),
        ("PATH", "/usr/bin"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let c = Config::parse_with_env(MINIMAL, env).unwrap();
    assert_eq!(c.s3.secret_access_key.as_deref(), Some("from-env"));
    assert_eq!(c.kafka.brokers, vec!["10.0.0.5:9092".to_string()]);
    assert_eq!(c.spool.file_max_rows, 500);
    assert_eq!(c.catalog.namespace, vec!["edge".to_string(), "site1".to_string()]);
    // A misspelt variable is named like a misspelt key.
    match Config::parse_with_env(MINIMAL, [("FRAZIL__KAFKA__BROKRS".to_string(), "x".to_string())]).unwrap_err() {
        Error::Config { key, fix, .. } => assert_eq!((key.as_str(), fix.contains("`brokers`")), ("brokrs", true)),
        other => panic!("{other}"),
    }
}

#[test]
fn secrets_can_come_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s3-secret");
    std::fs::write(&path, "from-a-file\n").unwrap();
    let text = format!("{MINIMAL}[storage.s3]\nsecret_access_key_file = \"{}\"\n", path.display());
    assert_eq!(Config::parse(&text).unwrap().s3.secret_access_key.as_deref(), Some("from-a-file"));
    let (key, ..) = err(&format!("{text}secret_access_key = \"inline\"\n"));
    assert_eq!(key, "storage.s3.secret_access_key_file");
    let (key, problem, _) = err(&format!("{MINIMAL}[storage.s3]\nsecret_access_key_file = \"/nonexistent/s\"\n"));
    assert_eq!(key, "storage.s3.secret_access_key_file");
    assert!(problem.contains("cannot read"), "{problem}");
}

#[test]
fn table_settings_fall_back_key_by_key_to_star_then_global() {
    let c = Config::parse(&format!(
        r#"{MINIMAL}commit_interval = "5m"
[spool]
upload_target_size = "64MiB"
[tables."*"]
partition_by = ["day(_kafka_timestamp)"]
commit_interval = "30s"
[tables.temperatures]
partition_by = ["identity(site)"]
sort_by = ["site", "_kafka_timestamp desc nulls first"]
upload_target_size = "8MiB"
"#
    ))
    .unwrap();
    let names = |t: &str| c.partition_fields(t, false).iter().map(|f| f.name()).collect::<Vec<_>>();
    assert_eq!(names("temperatures"), ["site"]);
    assert_eq!(names("other"), ["_kafka_timestamp_day"]);
    assert!(c.partition_fields("other", true).is_empty(), "dead-letter tables are never partitioned");
    assert_eq!(c.sort_keys("temperatures", false).len(), 2);
    assert!(c.sort_keys("temperatures", false)[1].descending && c.sort_keys("temperatures", false)[1].nulls_first);
    assert!(c.sort_keys("other", false).is_empty() && c.sort_keys("temperatures", true).is_empty());
    assert_eq!(c.upload_target_bytes("temperatures"), 8 << 20);
    assert_eq!(c.upload_target_bytes("other"), 64 << 20);
    // temperatures sets no interval: "*"'s, not the global one.
    assert_eq!(c.commit_interval("temperatures"), Duration::from_secs(30));
    assert_eq!(c.catalog.commit_interval, Duration::from_secs(300));
    assert_eq!(c.shortest_commit_interval(), Duration::from_secs(30));
    assert_eq!(Config::parse(MINIMAL).unwrap().shortest_commit_interval(), Duration::from_secs(60));
}

#[test]
fn bad_table_settings_name_the_table_and_key() {
    let (key, problem, fix) = err(&format!("{MINIMAL}[tables.t]\nsort_by = [\"site sideways\"]\n"));
    assert_eq!(key, "tables.\"t\".sort_by");
    assert!(problem.contains("site sideways"), "{problem}");
    assert!(fix.contains("desc"), "{fix}");
    let (key, ..) = err(&format!("{MINIMAL}[tables.t]\ncommit_interval = \"0s\"\n"));
    assert_eq!(key, "tables.\"t\".commit_interval");
    let (key, ..) = err(&format!("{MINIMAL}[tables.t]\nupload_target_size = \"lots\"\n"));
    assert_eq!(key, "tables.\"t\".upload_target_size");
    let (key, ..) = err(&format!("{MINIMAL}[tables.t]\npartition_by = [\"week(ts)\"]\n"));
    assert_eq!(key, "tables.\"t\".partition_by");
    // The old place of partition_by says where it went.
    let (key, problem, fix) = err(&format!("{MINIMAL}\n[catalog.partition_by]\nt = [\"day(ts)\"]\n"));
    assert_eq!(key, "catalog.partition_by");
    assert!(problem.contains("moved") && fix.contains("[tables."), "{problem} / {fix}");
}

#[test]
fn catalog_credentials_token_or_client_credentials() {
    let with = |extra: &str| Config::parse(&format!("{MINIMAL}{extra}\n"));
    assert_eq!(with("").unwrap().catalog.auth, CatalogAuth::None);
    assert_eq!(with("token = \"t0k\"").unwrap().catalog.auth, CatalogAuth::Token("t0k".into()));
    assert_eq!(
        with("credential = \"gw-7:s3:cret\"").unwrap().catalog.auth,
        CatalogAuth::Client {
            id: "gw-7".into(),
            secret: "s3:cret".into(),
            endpoint: "http://127.0.0.1:8181/v1/oauth/tokens".into(),
            scope: "catalog".into()
        }
    );
    let c = with("credential = \"a:b\"\noauth2_server_uri = \"https://idp.example/token\"\nscope = \"lake\"").unwrap();
    assert!(
        matches!(c.catalog.auth, CatalogAuth::Client { ref endpoint, ref scope, .. } if endpoint == "https://idp.example/token" && scope == "lake")
    );
    let (key, ..) = err(&format!("{MINIMAL}credential = \"no-colon\"\n"));
    assert_eq!(key, "catalog.credential");
    let (key, problem, _) = err(&format!("{MINIMAL}credential = \"a:b\"\ntoken = \"t\"\n"));
    assert_eq!(key, "catalog.credential");
    assert!(problem.contains("catalog.token"), "{problem}");
    let (key, ..) = err(&format!("{MINIMAL}credential = \"a:b\"\noauth2_server_uri = \"idp.example\"\n"));
    assert_eq!(key, "catalog.oauth2_server_uri");
}

#[test]
fn kafka_tls_and_sasl_settings() {
    let with = |extra: &str| {
        Config::parse(&MINIMAL.replace("topics = [\"events\"]", &format!("topics = [\"events\"]\n{extra}")))
    };
    let c = with("").unwrap();
    assert!(c.kafka.tls.is_none() && c.kafka.sasl.is_none());
    assert_eq!(
        with("tls = true").unwrap().kafka.tls,
        Some(KafkaTls { ca_file: None, cert_file: None, key_file: None })
    );
    // Naming a CA file turns TLS on.
    assert!(with("ca_file = \"/etc/ssl/ca.pem\"").unwrap().kafka.tls.is_some());
    let (key, ..) = err(&MINIMAL.replace("topics = [\"events\"]", "topics = [\"events\"]\ncert_file = \"c.pem\""));
    assert_eq!(key, "kafka.key_file");
    let (key, ..) =
        err(&MINIMAL.replace("topics = [\"events\"]", "topics = [\"events\"]\ntls = false\nca_file = \"ca.pem\""));
    assert_eq!(key, "kafka.tls");
    let sasl =
        with("sasl_mechanism = \"scram-sha-512\"\nusername = \"gw\"\npassword = \"pw\"").unwrap().kafka.sasl.unwrap();
    assert_eq!(
        (sasl.mechanism, sasl.username.as_str(), sasl.password.as_str()),
        (SaslMechanism::ScramSha512, "gw", "pw")
    );
    let (key, ..) =
        err(&MINIMAL.replace("topics = [\"events\"]", "topics = [\"events\"]\nsasl_mechanism = \"GSSAPI\""));
    assert_eq!(key, "kafka.sasl_mechanism");
    let (key, ..) = err(&MINIMAL
        .replace("topics = [\"events\"]", "topics = [\"events\"]\nsasl_mechanism = \"PLAIN\"\nusername = \"gw\""));
    assert_eq!(key, "kafka.password");
    let (key, ..) = err(&MINIMAL.replace("topics = [\"events\"]", "topics = [\"events\"]\nusername = \"gw\""));
    assert_eq!(key, "kafka.sasl_mechanism");
}

#[test]
fn a_filesystem_catalog_needs_a_warehouse_url_and_no_uri() {
    let fs = |warehouse: &str| {
        Config::parse(&format!(
            "[kafka]\nbrokers = [\"127.0.0.1:9092\"]\ntopics = [\"e\"]\n[catalog]\ntype = \"filesystem\"\n{warehouse}\n"
        ))
    };
    let c = fs("warehouse = \"file:///var/lib/lake\"").unwrap();
    assert_eq!(
        (c.catalog.kind, c.catalog.uri.as_str(), c.catalog.warehouse.as_deref()),
        (CatalogKind::Filesystem, "", Some("file:///var/lib/lake"))
    );
    assert!(fs("warehouse = \"s3://lake/wh\"").is_ok());
    for bad in ["", "warehouse = \"/var/lib/lake\"", "warehouse = \"lake\""] {
        let Err(Error::Config { key, .. }) = fs(bad) else { panic!("`{bad}` accepted") };
        assert_eq!(key, "catalog.warehouse");
    }
    let (key, ..) = err("[kafka]\nbrokers = [\"127.0.0.1:9092\"]\ntopics = [\"e\"]\n[catalog]\nnamespace = \"edge\"\n");
    assert_eq!(key, "catalog.uri");
    let (key, ..) = err("[kafka]\nbrokers = [\"127.0.0.1:9092\"]\ntopics = [\"e\"]\n[catalog]\ntype = \"hive\"\n");
    assert_eq!(key, "catalog.type");
}

#[test]
fn printed_settings_never_show_a_secret() {
    let text = format!(
        "{}\n[schema_registry]\nurl = \"http://r\"\nusername = \"u\"\npassword = \"reg-SECRET\"\n[storage.s3]\naccess_key_id = \"k\"\nsecret_access_key = \"s3-SECRET\"\nsession_token = \"tok-SECRET\"\n",
        MINIMAL
            .replace(
                "topics = [\"events\"]",
                "topics = [\"events\"]\nsasl_mechanism = \"PLAIN\"\nusername = \"u\"\npassword = \"kafka-SECRET\""
            )
            .replace(
                "uri = \"http://127.0.0.1:8181\"",
                "uri = \"http://127.0.0.1:8181\"\ncredential = \"id:oauth-SECRET\""
            )
    );
    let printed = format!("{:?}", Config::parse(&text).unwrap());
    assert!(!printed.contains("SECRET"), "{printed}");
    assert!(printed.contains("<redacted>"), "{printed}");
    let token =
        MINIMAL.replace("uri = \"http://127.0.0.1:8181\"", "uri = \"http://127.0.0.1:8181\"\ntoken = \"tok-SECRET\"");
    assert!(!format!("{:?}", Config::parse(&token).unwrap()).contains("SECRET"));
}

#[test]
fn fixed_schemas_and_given_columns_are_read_per_table() {
    use crate::decode::UnknownKeys;
    let c = Config::parse(&format!(
        r#"{MINIMAL}
[tables."*"]
schema = "fixed"
[tables.loose]
schema = "fixed"
unknown_keys = "extra"
columns = ["device string", "temp double"]
[tables.growing]
schema = "grow"
"#
    ))
    .unwrap();
    assert_eq!(c.unknown_keys("other"), UnknownKeys::DeadLetter);
    assert_eq!(c.unknown_keys("loose"), UnknownKeys::Extra);
    assert_eq!(c.unknown_keys("growing"), UnknownKeys::Grow);
    assert_eq!(Config::parse(MINIMAL).unwrap().unknown_keys("t"), UnknownKeys::Grow);
    let given = c.given_schema("loose").expect("given columns");
    assert_eq!(given.as_struct().fields().iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["device", "temp"]);
    assert!(c.given_schema("other").is_none());
}

#[test]
fn bad_schema_settings_name_the_key_and_the_fix() {
    let t = |body: &str| err(&format!("{MINIMAL}[tables.t]\n{body}\n"));
    let (key, problem, fix) = t("schema = \"strict\"");
    assert_eq!(key, "tables.\"t\".schema");
    assert!(problem.contains("`strict`") && fix.contains("\"fixed\""), "{problem} / {fix}");
    let (key, problem, _) = t("unknown_keys = \"extra\"");
    assert_eq!(key, "tables.\"t\".unknown_keys");
    assert!(problem.contains("only to a table whose schema is fixed"), "{problem}");
    let (key, ..) = t("schema = \"fixed\"\nunknown_keys = \"drop\"");
    assert_eq!(key, "tables.\"t\".unknown_keys");
    let (key, problem, _) = t("columns = [\"temp dubble\"]");
    assert_eq!(key, "tables.\"t\".columns");
    assert!(problem.contains("`dubble` is not an Iceberg type"), "{problem}");
    let (key, ..) = t("columns = [\"a long\"]\nschema_file = \"/nonexistent.json\"");
    assert_eq!(key, "tables.\"t\".columns");
    let (key, problem, _) = t("schema_file = \"/nonexistent.json\"");
    assert_eq!(key, "tables.\"t\".schema_file");
    assert!(problem.contains("cannot read"), "{problem}");
    // Given columns are held to the rules a growing table is.
    let (key, problem, _) = t("columns = [\"num long\", \"NUM long\"]");
    assert_eq!(key, "tables.\"t\".columns");
    assert!(problem.contains("differs only in case"), "{problem}");
    assert!(t("columns = [\"site struct<a.b: long>\"]").1.contains("a dot"));
    assert!(t("columns = [\"_kafka_offset long\"]").1.contains("meta columns"));
    let (_, problem, fix) = t("max_columns = 1\ncolumns = [\"a long\", \"b long\"]");
    assert!(problem.contains("max_columns") && fix.contains("raise the limit"), "{problem} / {fix}");
    // Unknown keys kept as JSON are a JSON table's.
    let avro = MINIMAL.replace("[kafka]\n", "[kafka]\nformat = \"avro\"\n")
        + "[schema_registry]\nurl = \"http://127.0.0.1:8081\"\n[tables.events]\nschema = \"fixed\"\nunknown_keys = \"extra\"\n";
    let (key, problem, _) = err(&avro);
    assert_eq!(key, "tables.\"events\".unknown_keys");
    assert!(problem.contains("Avro topic events"), "{problem}");
    let protobuf = avro.replace("format = \"avro\"", "format = \"protobuf\"");
    assert!(err(&protobuf).1.contains("Protobuf topic events"));
}

#[test]
fn a_topic_whose_values_name_registered_schemas_needs_the_registry() {
    for format in ["avro", "protobuf", "json_schema"] {
        let text = MINIMAL.replace("[kafka]\n", &format!("[kafka]\nformat = \"{format}\"\n"));
        let (key, problem, fix) = err(&text);
        assert_eq!(key, "schema_registry.url", "{format}");
        assert!(problem.contains("\"protobuf\"") && fix.contains("[schema_registry]"), "{problem} / {fix}");
        let with_registry = text + "[schema_registry]\nurl = \"http://127.0.0.1:8081\"\n";
        assert!(Config::parse(&with_registry).unwrap().kafka.format.registered(), "{format}");
    }
    let (key, _, fix) = err(&MINIMAL.replace("[kafka]\n", "[kafka]\nformat = \"proto\"\n"));
    assert_eq!(key, "kafka.format");
    assert!(fix.contains("\"protobuf\"") && fix.contains("\"json_schema\""), "{fix}");
}

#[test]
fn a_group_and_static_partitions_are_checked() {
    let with = |kafka: &str| MINIMAL.replace("topics = [\"events\"]", &format!("topics = [\"events\"]\n{kafka}"));
    let c = Config::parse(&with("group = \"plant-7\"\npartitions = { events = [3, 1, 3] }")).unwrap();
    let g = c.kafka.group.clone().unwrap();
    assert_eq!(
        (g.name.as_str(), g.session_timeout, g.heartbeat_interval),
        ("plant-7", Duration::from_secs(30), Duration::from_secs(3))
    );
    assert_eq!(c.kafka.static_partitions("events"), Some(&[1, 3][..]));
    assert_eq!(err(&with("group = \"a b\"")).0, "kafka.group");
    assert_eq!(err(&with("group = \"g\"\nsession_timeout = \"1s\"")).0, "kafka.session_timeout");
    assert_eq!(err(&with("session_timeout = \"10s\"")).0, "kafka.session_timeout");
    assert_eq!(err(&with("partitions = { other = [0] }")).0, "kafka.partitions.\"other\"");
    assert_eq!(err(&with("partitions = { events = [-1] }")).0, "kafka.partitions.\"events\"");
    assert_eq!(err(&format!("[agent]\nid = \"group-a\"\n{MINIMAL}")).0, "agent.id", "it would read as a group's tag");
}
