//! A server stopped and started again under `frazil run`: the catalog, the object store, the broker.

use super::*;

#[test]
fn the_catalog_restarted_mid_run() {
    restarted_mid_run("catalog");
}

#[test]
fn the_object_store_restarted_mid_run() {
    restarted_mid_run("s3");
}

#[test]
fn the_broker_restarted_mid_run() {
    restarted_mid_run("kafka");
}

/// `server` is stopped four times under `frazil run` while events keep coming, and started again
/// each time: on even rounds with SIGTERM at a random moment, on odd ones with SIGKILL (the catalog
/// and the object store right after frazil's log shows its next request to them on the wire, so
/// they die with it applied or not; the broker at a random moment). Every event must land once.
fn restarted_mid_run(server: &str) {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let topic = format!("restart_{server}");
    block_on(create_topic(&kafka, &topic, 2));
    let config = busy_config(&servers, &topic, &topic, "commit_interval = \"1s\"\nrequest_timeout = \"5s\"");
    let log = logs_dir(&topic).join("run.log");
    let mut rng = fastrand::Rng::new();
    // The log line of a request that changes the server's state (ureq logs each one at debug).
    let on_the_wire = match server {
        "catalog" => Some(format!("ureq::run: POST {}/", servers.get("FRAZIL_CATALOG"))),
        "s3" => Some(format!("ureq::run: PUT {}/", servers.get("FRAZIL_S3_ENDPOINT"))),
        _ => None,
    };

    let mut run = spawn_frazil("run", &config, &log);
    let mut expected = block_on(produce(&kafka, &topic, 2, 0..1_000));
    assert!(
        wait_until(Duration::from_secs(60), || servers.rows_now(&topic) == 1_000),
        "first events did not land:\n{}",
        tail(&read_log(&log), 40)
    );

    let restarts = 4;
    let mut next = 1_000u64;
    let mut how = Vec::new();
    for r in 0..restarts {
        // New events; the server goes away while frazil takes them in.
        let wire = on_the_wire.clone();
        let mut watch = LogWatch::new(&log, Box::new(move |l| wire.as_deref().is_some_and(|w| l.contains(w))));
        let requests = watch.hits();
        expected.extend(block_on(produce(&kafka, &topic, 2, next..next + 1_500)));
        next += 1_500;
        let hard = r % 2 == 1;
        if hard && on_the_wire.is_some() {
            let start = Instant::now();
            while watch.hits() == requests {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "no request to the {server} seen:\n{}",
                    tail(&read_log(&log), 30)
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            // A request takes some tens of ms: the kill lands before or after it applies.
            std::thread::sleep(Duration::from_millis(rng.u64(0..=60)));
            how.push("SIGKILL during a request");
        } else if hard {
            std::thread::sleep(Duration::from_millis(rng.u64(0..2_000)));
            how.push("SIGKILL at a random moment");
        } else {
            std::thread::sleep(Duration::from_millis(rng.u64(0..2_000)));
            how.push("SIGTERM at a random moment");
        }
        servers.ctl("stop", server, hard);
        // More while it is down (the broker can take them only once it is back): they wait in
        // the spool, or in the broker.
        if server != "kafka" {
            expected.extend(block_on(produce(&kafka, &topic, 2, next..next + 500)));
            next += 500;
        }
        std::thread::sleep(Duration::from_secs(3));
        assert!(
            run.child().try_wait().unwrap().is_none(),
            "frazil run exited while the {server} was down:\n{}",
            tail(&read_log(&log), 40)
        );
        servers.ctl("start", server, false);
        if server == "kafka" {
            expected.extend(block_on(produce(&kafka, &topic, 2, next..next + 500)));
            next += 500;
        }
        let total = expected.len();
        assert!(
            wait_until(Duration::from_secs(90), || servers.rows_now(&topic) >= total),
            "restart {r}: events did not land after the {server} came back:\n{}",
            tail(&read_log(&log), 40)
        );
    }
    assert!(Command::new("kill").args(["-TERM", &run.child().id().to_string()]).status().unwrap().success());
    let st = run.wait();
    let text = read_log(&log);
    assert_eq!(st.code(), Some(0), "frazil run after SIGTERM: {}\n{}", exit_text(st), tail(&text, 40));
    assert_table_exactly(&servers, &topic, &expected);
    let summaries = assert_no_commit_twice(&servers, &topic);
    assert_eq!(offsets_of(&summaries, "test-gateway", &topic), ends(&expected));
    println!(
        "{server} restarts: {restarts} restarts under `frazil run` ({how:?}), {} events exactly once in {} snapshots; frazil logged {} failed publishes, {} fetch retries, {} unknown commit outcomes, {} pending commits found landed, {} not",
        expected.len(),
        summaries.len(),
        count(&text, "frazil::agent::publisher: publish: "),
        count(&text, "; retrying in "),
        count(&text, "outcome unknown"),
        count(&text, "had landed"),
        count(&text, "did not land"),
    );
}
