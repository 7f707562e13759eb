//! A bounded spool and a dead link, against real servers: fetching pauses when the spool is full,
//! nothing is dropped, and everything lands exactly once when the link comes back.

mod common;

use common::*;

/// A config whose spool quota is tiny, so a few files fill it.
fn tiny_spool(servers: &Servers, topic: &str) -> std::path::PathBuf {
    let config = servers.config(&[topic], "");
    // Small fetches, so the quota is reached while the partitions are still being drained.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("file_max_age = \"1s\"", "file_max_age = \"1s\"\nfile_max_rows = 2000\nmax_bytes = \"200KiB\"")
        .replace("[spool]", "fetch_max_bytes = \"64KiB\"\n\n[spool]");
    std::fs::write(&config, text).unwrap();
    config
}

#[test]
fn a_full_spool_pauses_fetching_and_loses_nothing() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    block_on(create_topic(&kafka, "bounded", 2));
    let expected = block_on(produce(&kafka, "bounded", 2, 0..30_000));
    let config = tiny_spool(&servers, "bounded");

    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 0, "flush failed:\n{log}");
    assert!(log.contains("fetching paused"), "the quota was never reached:\n{log}");
    assert!(log.contains("fetching resumes"), "fetching never resumed:\n{log}");
    for reader in ["pyiceberg", "duckdb"] {
        let (rows, _) = servers.read_table("bounded", reader);
        assert_exactly(reader, &rows, &expected);
    }
}

#[test]
fn with_the_catalog_down_flush_keeps_data_spooled_and_a_later_flush_commits_it_once() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    block_on(create_topic(&kafka, "remote", 2));
    let expected = block_on(produce(&kafka, "remote", 2, 0..30_000));
    let config = tiny_spool(&servers, "remote");
    let real = std::fs::read_to_string(&config).unwrap();
    // A port nothing listens on: the link is down.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(&config, real.replace(servers.get("FRAZIL_CATALOG"), &format!("http://127.0.0.1:{dead}"))).unwrap();

    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 75, "flush with the catalog down must say `try later` (75):\n{log}");
    assert!(log.contains("spool full"), "{log}");
    let status = status_json(&config, &[]);
    assert!(status["written"].as_u64().unwrap() > 0, "nothing spooled: {status}");
    assert!(status["bytes"].as_u64().unwrap() > 0, "{status}");
    // It says what it could and could not reach, and still reports the spool and the broker.
    assert_eq!(status["catalog"]["reachable"], false, "{status}");
    assert!(status["catalog"]["error"].as_str().is_some_and(|e| e.contains(&dead.to_string())), "the error names the catalog: {status}");
    assert_eq!(status["broker"]["reachable"], true, "{status}");
    let remote = &status["tables"][0];
    assert_eq!(remote["table"], "remote", "{status}");
    assert!(remote["files_written"].as_u64().unwrap() > 0 && remote["exists"].is_null(), "{status}");
    for p in status["partitions"].as_array().unwrap() {
        assert_eq!(p["high_watermark"], 15_000, "{status}");
        assert_eq!(p["to_fetch"], p["high_watermark"].as_i64().unwrap() - p["spooled"].as_i64().unwrap(), "{status}");
        assert!(p["committed"].is_null() && p["to_commit"].is_null(), "{status}");
    }
    let offline = status_json(&config, &["--offline"]);
    assert!(offline["catalog"].is_null() && offline["broker"].is_null(), "{offline}");
    assert!(offline["partitions"].as_array().unwrap().iter().all(|p| p["high_watermark"].is_null()), "{offline}");

    // The link is back: two flushes bring everything over, exactly once.
    std::fs::write(&config, real).unwrap();
    for _ in 0..2 {
        let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
        assert_eq!(code, 0, "flush failed:\n{log}");
    }
    for reader in ["pyiceberg", "duckdb"] {
        let (rows, _) = servers.read_table("remote", reader);
        assert_exactly(reader, &rows, &expected);
    }
}
