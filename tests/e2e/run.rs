//! `frazil run`, the long-running agent: topics found while running, commits on its interval,
//! a clean exit on SIGTERM.

use super::*;

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
