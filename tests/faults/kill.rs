//! kill -9 at random moments and just after chosen steps, under `flush` and `run`.

use super::*;

/// Where in its work a killed process was, judged from the last step its (debug) log shows:
/// frazil's own lines and ureq's request/response lines (the port tells the catalog from S3).
fn phase_at_kill(log: &str, catalog_port: &str, s3_port: &str) -> String {
    if log.lines().all(|l| !l.contains("starting at offset")) {
        return "startup (spool recovery, settling, broker connect)".into();
    }
    let service = |l: &str| {
        if l.contains(&format!(":{catalog_port}/")) {
            "catalog"
        } else if l.contains(&format!(":{s3_port}/")) {
            "S3"
        } else {
            "?"
        }
    };
    let mut last_request = None;
    let mut answered = false;
    let mut last_frazil = "";
    for l in log.lines() {
        if let Some(rest) = l.split("ureq::run: ").nth(1) {
            let method = rest.split_whitespace().next().unwrap_or("");
            if ["GET", "PUT", "POST", "DELETE", "HEAD"].contains(&method) {
                last_request = Some(format!("{method} {}", service(rest)));
                answered = false;
                last_frazil = "";
            } else if method == "Response" {
                answered = true;
            }
        } else if l.contains(" frazil") {
            last_frazil = l;
        }
    }
    let step = |l: &str| {
        if l.contains("spooled offsets") {
            "spooling"
        } else if l.contains("merged ") {
            "after a merged upload"
        } else if l.contains(" added ") {
            "after a commit"
        } else if l.contains("removed") {
            "after removing committed files"
        } else if l.contains("outcome unknown") || l.contains("conflicted") {
            "in a commit retry"
        } else if l.contains("had landed") || l.contains("did not land") {
            "after settling a pending commit"
        } else {
            "fetching"
        }
    };
    match (last_frazil, last_request) {
        ("", Some(r)) if answered => format!("{r} answered"),
        ("", Some(r)) => format!("{r} in flight"),
        (l, _) => step(l).into(),
    }
}

#[test]
fn kill_dash_nine_during_flush_and_run_never_loses_or_doubles() {
    let cycles: u32 = std::env::var("FRAZIL_KILL_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let seed: u64 =
        std::env::var("FRAZIL_KILL_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    println!(
        "kill test: {cycles} cycles, seed {seed} (FRAZIL_KILL_SEED={seed} repeats the choices; kill timing still varies)"
    );
    let mut rng = fastrand::Rng::with_seed(seed);
    let began = Instant::now();

    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let port = |url: &str| url.rsplit(':').next().unwrap().trim_end_matches('/').to_string();
    let (catalog_port, s3_port) = (port(servers.get("FRAZIL_CATALOG")), port(servers.get("FRAZIL_S3_ENDPOINT")));
    const TOPIC: &str = "crashy";
    const PARTITIONS: i32 = 3;
    block_on(create_topic(&kafka, TOPIC, PARTITIONS));
    let config = busy_config(&servers, "kill", TOPIC, "commit_interval = \"1s\"");
    let logs = logs_dir("kill");

    // Two bad records after each wave: they must reach the dead-letter table exactly once too.
    let mut waves = Waves::new(&kafka, TOPIC, PARTITIONS, &[b"{not json", br#"{"id": "wrong type"}"#]);
    waves.wave(10_000);

    let mut kills = 0u32;
    let mut phases: BTreeMap<String, u32> = BTreeMap::new();
    let mut finished: Vec<String> = Vec::new();
    let mut wave_count = 1u32;
    // How each cycle's kill is timed: a plain timer, or shortly after the log shows the n-th
    // occurrence of a step (a catalog POST: a commit or create in flight; an S3 PUT: an upload or a
    // manifest write; a spool file written), so kills also land in the short publish windows.
    let commit_post = format!("ureq::run: POST http://127.0.0.1:{catalog_port}/");
    let s3_put = format!("ureq::run: PUT http://127.0.0.1:{s3_port}/");
    let mut triggers: BTreeMap<String, u32> = BTreeMap::new();
    for c in 0..cycles {
        // New events before most cycles, so each process starts with a backlog to work through.
        // (Smaller waves in longer runs, so the table to check at the end stays about the same size.)
        if c > 0 && rng.u32(0..4) != 0 {
            waves.wave((rng.u64(1_000..4_000) * 50 / u64::from(cycles.max(50))).max(200));
            wave_count += 1;
        }
        let mode = if c % 2 == 0 { "flush" } else { "run" };
        // (what, which occurrence, delay after it; no matcher: a plain timer)
        let post = commit_post.clone();
        let (how, matcher, nth, delay): (&str, Option<LineMatcher>, usize, u64) = match rng.u32(0..20) {
            0..7 => ("timer 30-1200ms", None, 0, rng.u64(30..=1_200)),
            // A flush commits once, at its end.
            7..10 => (
                "soon after a catalog POST",
                Some(Box::new(move |l| l.contains(&post))),
                if mode == "flush" { 1 } else { rng.usize(1..=2) },
                rng.u64(0..=40),
            ),
            10..13 => {
                // The catalog answered a POST (a commit applied): kill before or while the spool records it.
                let mut armed = false;
                let answered = move |l: &str| {
                    if l.contains(&post) {
                        armed = true;
                    } else if armed && l.contains("ureq::run: Response") {
                        armed = false;
                        return true;
                    }
                    false
                };
                ("right after the catalog answered a POST", Some(Box::new(answered)), 1, rng.u64(0..=3))
            }
            13..16 => {
                let put = s3_put.clone();
                ("soon after an S3 PUT", Some(Box::new(move |l| l.contains(&put))), rng.usize(1..=6), rng.u64(0..=15))
            }
            _ => (
                "soon after a spool write",
                Some(Box::new(|l| l.contains("spooled offsets"))),
                rng.usize(1..=12),
                rng.u64(0..=10),
            ),
        };
        let delay = Duration::from_millis(delay);
        *triggers.entry(how.to_string()).or_default() += 1;
        let log = logs.join(format!("cycle-{c:03}-{mode}.log"));
        let mut child = spawn_frazil(mode, &config, &log);
        // Waits for the trigger (at most 3 s), then `delay`, watching for an early exit.
        let started = Instant::now();
        let timer = matcher.is_none();
        let mut watch = LogWatch::new(&log, matcher.unwrap_or_else(|| Box::new(|_| false)));
        let mut deadline = if timer { Some(started + delay) } else { None };
        let mut exited = None;
        loop {
            if let Some(st) = child.child().try_wait().expect("try_wait") {
                exited = Some(st);
                break;
            }
            let now = Instant::now();
            if deadline.is_none() && (now - started > Duration::from_secs(3) || watch.hits() >= nth) {
                deadline = Some(now + delay);
            }
            if deadline.is_some_and(|d| now >= d) {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        match exited {
            None => {
                child.child().kill().expect("SIGKILL");
                let st = child.wait();
                let text = read_log(&log);
                if st.code().is_some() {
                    // It finished on its own between the last look and the kill.
                    finished.push(format!("cycle {c} {mode} ({how}): {} (just before the kill)", exit_text(st)));
                    assert!(
                        mode == "flush" && matches!(st.code(), Some(0 | 75)),
                        "cycle {c}: frazil {mode} ended with {}:\n{}",
                        exit_text(st),
                        tail(&text, 40)
                    );
                } else {
                    kills += 1;
                    *phases.entry(phase_at_kill(&text, &catalog_port, &s3_port)).or_default() += 1;
                }
            }
            Some(st) => {
                let text = read_log(&log);
                finished.push(format!("cycle {c} {mode} ({how}): {} after {:?}", exit_text(st), started.elapsed()));
                assert!(
                    mode == "flush" && matches!(st.code(), Some(0 | 75)),
                    "cycle {c}: frazil {mode} ended on its own with {}:\n{}",
                    exit_text(st),
                    tail(&text, 40)
                );
            }
        }
    }

    // What the restarts after the kills found, from every cycle's log.
    let mut all = String::new();
    for entry in std::fs::read_dir(&logs).unwrap() {
        all.push_str(&read_log(&entry.unwrap().path()));
    }
    let final_log = logs.join("final-flush.log");
    let (code, text) = flush(&config, &final_log);
    assert_eq!(code, 0, "the clean flush after {cycles} kill cycles failed:\n{}", tail(&text, 60));
    all.push_str(&text);
    assert_spool_drained(&config);

    let (expected, dead_expected) = (&waves.expected, &waves.dead);
    let summary = assert_table_exactly(&servers, TOPIC, expected);
    let dead_table = format!("{TOPIC}__dlq");
    for reader in ["pyiceberg", "duckdb"] {
        waves.assert_dead_letters(reader, &servers.read_table(&dead_table, reader).0);
    }
    let dead_summaries = assert_no_commit_twice(&servers, &dead_table);
    let summaries = assert_no_commit_twice(&servers, TOPIC);
    // Each table's last snapshot covers the records it took; together they cover every record.
    let mut all_ends = ends(expected);
    for (p, o) in dead_expected {
        let e = all_ends.entry(*p).or_insert(0);
        *e = (*e).max(o + 1);
    }
    let (main, dead) =
        (offsets_of(&summaries, "test-gateway", TOPIC), offsets_of(&dead_summaries, "test-gateway", TOPIC));
    let mut covered = main.clone();
    for (p, o) in dead {
        let e = covered.entry(p).or_insert(0);
        *e = (*e).max(o);
    }
    assert_eq!(covered, all_ends, "the last snapshots' offsets (table {main:?})");
    let panics = count(&all, "panicked");
    assert_eq!(panics, 0, "frazil panicked in some cycle; see {}", logs.display());

    println!(
        "kill test: seed {seed}, {cycles} cycles, {kills} SIGKILLs landed, {} processes ended on their own",
        finished.len()
    );
    for f in &finished {
        println!("  {f}");
    }
    println!("  kill timing chosen: {triggers:?}");
    println!("  kills by phase (the last step each killed process logged):");
    for (p, n) in &phases {
        println!("    {n:3}  {p}");
    }
    println!(
        "  after restarts: {} times unfinished or unlisted spool files were removed, {} pending commits found landed, {} pending commits found not landed, {} commits made",
        count(&all, "unfinished file") + count(&all, "never reached the index"),
        count(&all, "pending commit") - count(&all, "did not land"),
        count(&all, "did not land"),
        count(&all, " data files ("),
    );
    println!(
        "  {} events in {wave_count} waves, {} snapshots, all in the table exactly once, and {} dead letters in {dead_table} exactly once; {:.1?} in all",
        expected.len(),
        summary["snapshots"],
        dead_expected.len(),
        began.elapsed()
    );
}
