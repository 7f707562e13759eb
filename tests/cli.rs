//! The operator's commands against real servers: `check`, a second agent on a busy spool, and
//! `flush --max-duration`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn check_says_what_works_and_what_does_not() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    block_on(create_topic(&kafka, "checked", 2));
    let config = servers.config(&["checked"], "");
    let (code, out) = frazil_out(&["check", "--config", path_str(&config)]);
    assert_eq!(code, 0, "{out}");
    for line in ["ok   config:", "ok   spool ", "ok   broker ", "reading 2 partitions of checked", "ok   catalog ", "0 of 1 tables exist", "ok   object store: wrote, read back and removed s3://warehouse/wh/.frazil-check-test-gateway"] {
        assert!(out.contains(line), "no `{line}` in:\n{out}");
    }

    // The catalog unreachable: its line says so, the exit code says "try later".
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let text = std::fs::read_to_string(&config).unwrap().replace(servers.get("FRAZIL_CATALOG"), &format!("http://127.0.0.1:{dead}"));
    write_config(&config, &text);
    let (code, out) = frazil_out(&["check", "--config", path_str(&config)]);
    assert_eq!(code, 75, "{out}");
    assert!(out.contains(&format!("FAIL catalog http://127.0.0.1:{dead}")) && out.contains("ok   broker"), "{out}");

    // A bad key: named, with a guess, exit 78.
    write_config(&config, &text.replace("brokers", "brokrs"));
    let (code, out) = frazil_out(&["check", "--config", path_str(&config)]);
    assert_eq!(code, 78, "{out}");
    assert!(out.contains("FAIL config") && out.contains("did you mean `brokers`?"), "{out}");
}

#[test]
fn a_second_agent_on_a_busy_spool_exits_at_once_with_its_own_code() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    block_on(create_topic(&kafka, "busy", 1));
    let config = servers.config(&["busy"], "");
    let log = servers.dir.path().join("run.log");
    let mut run = start_frazil("run", &config, &log, &[]);
    assert!(wait_until(Duration::from_secs(30), || std::fs::read_to_string(&log).unwrap_or_default().contains("starting at offset")));
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_frazil"))
        .args(["flush", "--config", path_str(&config)])
        .env("FRAZIL_LOG_FORMAT", "json")
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "it should not wait for the lock");
    assert_eq!(out.status.code(), Some(73), "{out:?}");
    // Logged as one JSON object per line.
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect();
    let error = lines.iter().find(|l| l["level"] == "ERROR").expect("an error line");
    let msg = error["msg"].as_str().unwrap();
    assert!(msg.contains("is already open") && msg.contains("another `frazil run` or `frazil flush`"), "{msg}");
    // `status` still reads the spool beside the running agent.
    assert_eq!(status_json(&config, &["--offline"])["agent_running"], true);
    assert!(Command::new("kill").args(["-TERM", &run.child().id().to_string()]).status().unwrap().success());
    assert!(run.wait().success());
}

#[test]
fn flush_max_duration_ends_cleanly_and_the_next_flush_finishes() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    block_on(create_topic(&kafka, "long", 2));
    let expected = block_on(produce(&kafka, "long", 2, 0..60_000));
    let config = servers.config(&["long"], "");
    // Small fetches: draining 60,000 events takes far longer than the bound.
    let text = std::fs::read_to_string(&config).unwrap().replace("[spool]", "fetch_max_bytes = \"16KiB\"\n\n[spool]");
    write_config(&config, &text);
    let started = Instant::now();
    let (code, out) = servers.frazil(&["flush", "--config", path_str(&config), "--max-duration", "2s"]);
    let took = started.elapsed();
    assert_eq!(code, 75, "stopped early means try later:\n{out}");
    assert!(out.contains("--max-duration of 2s reached"), "{out}");
    assert!(took < Duration::from_secs(30), "it ended {took:?} after starting");
    let partial = servers.rows_now("long");
    assert!(partial > 0 && partial < expected.len(), "what was taken is committed: {partial} rows");
    let (code, out) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 0, "{out}");
    let (rows, _) = servers.read_table("long", "pyiceberg");
    assert_exactly("pyiceberg", &rows, &expected);
}

/// `frazil <args>`: exit code and stdout+stderr.
fn frazil_out(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_frazil")).args(args).output().expect("run frazil");
    (out.status.code().unwrap_or(-1), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}
