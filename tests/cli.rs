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
    for line in [
        "ok   config:",
        "ok   spool ",
        "ok   broker ",
        "reading 2 partitions of checked",
        "ok   catalog ",
        "0 of 1 tables exist",
        "ok   object store: wrote, read back and removed s3://warehouse/wh/.frazil-check-test-gateway",
    ] {
        assert!(out.contains(line), "no `{line}` in:\n{out}");
    }

    // The catalog unreachable: its line says so, the exit code says "try later".
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(servers.get("FRAZIL_CATALOG"), &format!("http://127.0.0.1:{dead}"));
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
    assert!(wait_until(Duration::from_secs(30), || std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("starting at offset")));
    let started = Instant::now();
    let out = frazil_command()
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

    // A JSON log line about one partition or table carries it as fields, for log shippers.
    block_on(produce(&kafka, "long", 2, 60_000..60_010));
    let out = frazil_command()
        .args(["flush", "--config", path_str(&config)])
        .env("FRAZIL_LOG_FORMAT", "json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stderr).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let start = lines
        .iter()
        .find(|l| l["msg"].as_str().is_some_and(|m| m.starts_with("long/1: starting at offset")))
        .expect("a start line");
    assert_eq!(
        (start["topic"].as_str(), start["partition"].as_i64(), start["offset"].as_i64()),
        (Some("long"), Some(1), Some(30_000)),
        "{start}"
    );
    let commit = lines
        .iter()
        .find(|l| l["msg"].as_str().is_some_and(|m| m.contains(": commit ") && m.contains(" added ")))
        .expect("a commit line");
    assert_eq!(commit["table"].as_str(), Some("long"), "{commit}");
    assert!(commit["commit_id"].as_str().is_some_and(|id| commit["msg"].as_str().unwrap().contains(id)), "{commit}");
}

/// `frazil <args>`: exit code and stdout+stderr.
#[test]
fn run_serves_metrics_and_a_health_check_that_follows_the_link() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    block_on(create_topic(&kafka, "measured", 2));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = servers.config(&["measured"], "commit_interval = \"1s\"\nrequest_timeout = \"3s\"");
    let text = std::fs::read_to_string(&config).unwrap() + &format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n");
    write_config(&config, &text);
    let log = servers.dir.path().join("run.log");
    let mut run = start_frazil("run", &config, &log, &[]);
    let get = |path: &str| -> Option<(u16, String)> {
        let mut resp = ureq::get(&format!("http://127.0.0.1:{port}{path}"))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .ok()?;
        Some((resp.status().as_u16(), resp.body_mut().read_to_string().ok()?))
    };
    let metric = |text: &str, name: &str| -> Vec<f64> {
        text.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect()
    };
    block_on(produce(&kafka, "measured", 2, 0..1_000));
    assert!(
        wait_until(Duration::from_secs(60), || servers.rows_now("measured") == 1_000),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let (status, text) = get("/metrics").expect("metrics answer");
    assert_eq!(status, 200);
    assert_eq!(metric(&text, "frazil_events_total"), [1000.0], "{text}");
    assert_eq!(metric(&text, "frazil_partition_lag{"), [0.0, 0.0], "{text}");
    assert!(
        metric(&text, "frazil_commits_total")[0] >= 1.0 && metric(&text, "frazil_commit_seconds_count")[0] >= 1.0,
        "{text}"
    );
    assert!(
        text.contains("frazil_spool_files{state=\"written\"}") && text.contains("frazil_last_commit_timestamp_seconds"),
        "{text}"
    );
    assert_eq!(get("/health"), Some((200, "ok\n".to_string())));

    // The catalog goes away: health turns 503 and says why; it comes back: 200 again.
    servers.ctl("stop", "catalog", false);
    block_on(produce(&kafka, "measured", 2, 1_000..1_100));
    assert!(
        wait_until(Duration::from_secs(60), || get("/health")
            .is_some_and(|(s, b)| s == 503 && b.contains("the last publish failed"))),
        "health never turned 503"
    );
    servers.ctl("start", "catalog", false);
    assert!(
        wait_until(Duration::from_secs(60), || get("/health").is_some_and(|(s, _)| s == 200)),
        "health never recovered"
    );
    assert!(wait_until(Duration::from_secs(60), || servers.rows_now("measured") == 1_100));
    let (_, text) = get("/metrics").unwrap();
    assert!(metric(&text, "frazil_publish_failures_total")[0] >= 1.0, "{text}");
    assert!(Command::new("kill").args(["-TERM", &run.child().id().to_string()]).status().unwrap().success());
    assert!(run.wait().success());
}

#[test]
fn flush_on_a_terminal_shows_progress_and_in_a_log_only_the_summary() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    block_on(create_topic(&kafka, "shown", 2));
    block_on(produce(&kafka, "shown", 2, 0..20_000));
    let config = servers.config(&["shown"], "");
    // `script` gives frazil a pseudo-terminal for stderr.
    let cmd = format!("FRAZIL_LOG=warn {} flush --config {}", env!("CARGO_BIN_EXE_frazil"), path_str(&config));
    let out = Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().expect("run script(1)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let last = text.rsplit('\r').find(|l| l.contains("events,")).unwrap_or_default();
    assert!(last.contains("20000 events,") && last.contains("spooled, 1 commit to 1 table"), "{text:?}");
    // Not a terminal: no progress line, only log lines.
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 0);
    assert!(!log.contains('\r') && !log.contains("MiB in"), "{log}");
}
