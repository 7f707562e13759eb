//! Commits the catalog applied but whose answer never reached frazil.

use super::*;

fn show(ex: &[Exchange]) -> String {
    ex.iter()
        .filter(|e| e.commit || e.fault != Fault::Pass)
        .map(|e| {
            format!(
                "{} {} commit={} id={} fault={:?} catalog={:?} client={:?}",
                e.method,
                e.path,
                e.commit,
                e.commit_id.as_deref().unwrap_or("-"),
                e.fault,
                e.upstream,
                e.answered
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_commit_applied_but_unanswered_is_not_doubled() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    const TOPIC: &str = "unanswered";
    block_on(create_topic(&kafka, TOPIC, 2));
    let proxy = Proxy::start(servers.get("FRAZIL_CATALOG"));
    let real = servers.get("FRAZIL_CATALOG").to_string();
    let config = config_as(
        &servers,
        "proxied",
        &[TOPIC],
        "",
        &[(&format!("uri = \"{real}\""), &format!("uri = \"{}\"", proxy.url))],
    );
    let logs = logs_dir("proxy");

    // A first, clean flush creates the table.
    let mut expected = block_on(produce(&kafka, TOPIC, 2, 0..500));
    let (code, log) = flush(&config, &logs.join("0-baseline.log"));
    assert_eq!(code, 0, "baseline flush:\n{}", tail(&log, 40));
    let baseline = proxy.take();
    assert!(
        baseline.iter().any(|e| e.commit && e.upstream == Some(200)),
        "the proxy saw no commit:\n{}",
        show(&baseline)
    );
    let mut snapshots = assert_no_commit_twice(&servers, TOPIC).len();
    let mut next_id = 500u64;

    // (name, fault, how many times, then): `then` takes over once the fault was applied that often.
    let scenarios = [
        ("forward, then answer 500", Fault::ForwardThen500, 1, Fault::Pass),
        ("forward, then drop the connection", Fault::ForwardThenDrop, 1, Fault::Pass),
        ("answer 503 twice without forwarding", Fault::Refuse503, 2, Fault::Pass),
        ("forward, then answer 500, every time", Fault::ForwardThen500, u32::MAX, Fault::ForwardThen500),
        ("forward, then drop, then the catalog is down", Fault::ForwardThenDrop, 1, Fault::Down),
    ];
    let mut report = Vec::new();
    for (i, (name, fault, times, then)) in scenarios.into_iter().enumerate() {
        let n = 800;
        expected.extend(block_on(produce(&kafka, TOPIC, 2, next_id..next_id + n)));
        next_id += n;
        proxy.take();
        if times == u32::MAX {
            proxy.set(fault);
        } else {
            proxy.arm(fault, times, then);
        }
        let (code1, log1) = flush(&config, &logs.join(format!("{}-faulty.log", i + 1)));
        let seen1 = proxy.take();
        proxy.set(Fault::Pass);
        let (code2, log2) = flush(&config, &logs.join(format!("{}-clean.log", i + 1)));
        let seen2 = proxy.take();
        let ctx = format!(
            "scenario `{name}`:\n-- proxy, faulty flush:\n{}\n-- faulty flush (exit {code1}):\n{}\n-- proxy, clean flush:\n{}\n-- clean flush (exit {code2}):\n{}",
            show(&seen1),
            tail(&log1, 30),
            show(&seen2),
            tail(&log2, 30)
        );
        assert!(matches!(code1, 0 | 75), "{ctx}");
        assert_eq!(code2, 0, "{ctx}");

        let faulted: Vec<&Exchange> = seen1.iter().filter(|e| e.commit && e.fault != Fault::Pass).collect();
        assert!(!faulted.is_empty(), "the fault never hit a commit\n{ctx}");
        if matches!(fault, Fault::ForwardThen500 | Fault::ForwardThenDrop) {
            // The faulty commit really reached the catalog and was applied there.
            assert!(faulted.iter().all(|e| e.upstream == Some(200)), "{ctx}");
            let applied = faulted[0].commit_id.clone().expect("the commit carries its id");
            assert!(
                log1.contains("had landed") || log2.contains("had landed"),
                "frazil never noticed its commit {applied} had landed\n{ctx}"
            );
        } else {
            assert!(faulted.iter().all(|e| e.upstream.is_none()), "{ctx}");
        }
        let summaries = assert_no_commit_twice(&servers, TOPIC);
        assert_table_exactly(&servers, TOPIC, &expected);
        let commit_ids: BTreeSet<String> = seen1.iter().chain(&seen2).filter_map(|e| e.commit_id.clone()).collect();
        // One new snapshot per scenario: the retried or re-checked commit did not add a second one.
        assert_eq!(summaries.len(), snapshots + 1, "{ctx}");
        snapshots = summaries.len();
        let line = format!(
            "{name}: faulty flush exit {code1} ({} commit requests: {} faulted, {} applied by the catalog; {} `outcome unknown`, {} `had landed`), clean flush exit {code2} ({} commit requests; {} `had landed`); {} distinct commit ids sent; table has {} snapshots, none doubled",
            seen1.iter().filter(|e| e.commit).count(),
            faulted.len(),
            seen1.iter().filter(|e| e.commit && e.upstream == Some(200)).count(),
            count(&log1, "outcome unknown"),
            count(&log1, "had landed"),
            seen2.iter().filter(|e| e.commit).count(),
            count(&log2, "had landed"),
            commit_ids.len(),
            snapshots,
        );
        println!("{line}");
        report.push(line);
    }

    // Last: the commit is applied, and while its answer is held another agent commits on top of
    // it; then the answer is a 500. When frazil looks, its commit is no longer the table's current
    // snapshot, only an ancestor of it.
    const OTHER: &str = "intruder";
    block_on(create_topic(&kafka, OTHER, 2));
    let other = config_as(
        &servers,
        "intruder",
        &[OTHER],
        &format!("table = \"{TOPIC}\""),
        &[("id = \"test-gateway\"", "id = \"other-agent\""), ("/spool\"", "/spool-intruder\"")],
    );
    let theirs = block_on(produce(&kafka, OTHER, 2, 1_000_000..1_000_600));
    expected.extend(block_on(produce(&kafka, TOPIC, 2, next_id..next_id + 800)));
    proxy.take();
    proxy.hold(Duration::from_secs(5));
    proxy.arm(Fault::ForwardThen500, 1, Fault::Pass);
    let before = proxy.faulted_forwarded();
    let log_a = logs.join("6-faulty.log");
    let a = spawn_frazil("flush", &config, &log_a);
    let start = Instant::now();
    while proxy.faulted_forwarded() == before {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the held commit never reached the catalog:\n{}",
            tail(&read_log(&log_a), 30)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (code_b, log_b) = flush(&other, &logs.join("6-other-agent.log"));
    let code_a = a.wait().code();
    proxy.hold(Duration::ZERO);
    let seen = proxy.take();
    let text_a = read_log(&log_a);
    let ctx = format!(
        "-- proxy:\n{}\n-- held flush (exit {code_a:?}):\n{}\n-- other agent (exit {code_b}):\n{}",
        show(&seen),
        tail(&text_a, 30),
        tail(&log_b, 20)
    );
    assert_eq!(code_b, 0, "{ctx}");
    assert!(matches!(code_a, Some(0 | 75)), "{ctx}");
    let (code2, log2) = flush(&config, &logs.join("6-clean.log"));
    assert_eq!(code2, 0, "{ctx}\n-- clean flush:\n{}", tail(&log2, 30));
    assert!(text_a.contains("had landed") || log2.contains("had landed"), "{ctx}");
    let held = seen
        .iter()
        .find(|e| e.commit && e.fault == Fault::ForwardThen500)
        .and_then(|e| e.commit_id.clone())
        .expect("the held commit");
    let summaries = assert_no_commit_twice(&servers, TOPIC);
    assert_eq!(summaries.len(), snapshots + 2, "{ctx}");
    let at =
        summaries.iter().position(|s| s["frazil.commit-id"] == held.as_str()).expect("the held commit is in the table");
    assert_eq!(
        summaries.get(at + 1).map(|s| &s["frazil.agent"]),
        Some(&Value::from("other-agent")),
        "the other agent did not commit on top:\n{ctx}"
    );
    for reader in ["pyiceberg", "duckdb"] {
        let (rows, _) = servers.read_table(TOPIC, reader);
        let (ours, others): (Vec<Value>, Vec<Value>) =
            rows.into_iter().partition(|r| r["id"].as_u64().expect("id") < 1_000_000);
        assert_exactly(reader, &ours, &expected);
        assert_exactly(&format!("{reader} (other agent)"), &others, &theirs);
    }
    println!(
        "held, another agent committed on top, then 500: flush exit {code_a:?} ({} `outcome unknown`, {} `had landed`), other agent exit {code_b}; commit {held} is an ancestor, not the head; no commit twice",
        count(&text_a, "outcome unknown"),
        count(&text_a, "had landed")
    );
    println!(
        "proxy test: {} + {} events exactly once after {} scenarios",
        expected.len(),
        theirs.len(),
        report.len() + 1
    );
}
