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
    let (code, status) = {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_frazil"))
            .args(["status", "--json", "--config", path_str(&config)])
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string())
    };
    assert_eq!(code, Some(0), "status failed: {status}");
    let status: serde_json::Value = serde_json::from_str(&status).expect("status --json is JSON");
    assert!(status["written"].as_u64().unwrap() > 0, "nothing spooled: {status}");
    assert!(status["bytes"].as_u64().unwrap() > 0, "{status}");

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
