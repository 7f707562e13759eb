//! Power cuts under `flush` and `run`: the spool and a filesystem catalog's warehouse on a
//! `frazil-powerfs` mount, which loses every change that was not fsynced when the power goes.

use frazil_powerfs::PowerFs;

use super::*;

#[test]
fn power_cuts_during_flush_and_run_never_lose_or_double() {
    let cycles: u32 = std::env::var("FRAZIL_AGENT_POWER_CUTS").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    let seed: u64 =
        std::env::var("FRAZIL_KILL_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    println!("power test: {cycles} cuts, seed {seed} (FRAZIL_KILL_SEED={seed} repeats the choices)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let began = Instant::now();

    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    const TOPIC: &str = "powered";
    const PARTITIONS: i32 = 3;
    block_on(create_topic(&kafka, TOPIC, PARTITIONS));
    let mount = servers.dir.path().join("power");
    std::fs::create_dir(&mount).unwrap();
    let mut power = PowerFs::mount(&mount).unwrap_or_else(|e| panic!("{e} (this test needs /dev/fuse and root)"));
    let mount = power.path().to_path_buf();
    let warehouse = format!("file://{}/warehouse", mount.display());

    // The busy config (small files, quick commits), with its spool on the mount and a filesystem
    // catalog whose warehouse is on the mount too.
    // busy_edits moves the spool beside the servers' directory; here it goes onto the mount.
    let mut edits = busy_edits(&mount.join("spool"));
    edits.retain(|(from, _)| from != "/spool\"");
    edits.extend([
        (
            format!("dir = \"{}\"", servers.dir.path().join("spool").display()),
            format!("dir = \"{}\"", mount.join("spool").display()),
        ),
        (format!("uri = \"{}\"", servers.get("FRAZIL_CATALOG")), "type = \"filesystem\"".into()),
        (format!("warehouse = \"{}\"", servers.get("FRAZIL_WAREHOUSE")), format!("warehouse = \"{warehouse}\"")),
    ]);
    let edits: Vec<(&str, &str)> = edits.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let config = config_as(&servers, "power", &[TOPIC], "commit_interval = \"1s\"", &edits);
    let logs = logs_dir("power");

    let mut waves = Waves::new(&kafka, TOPIC, PARTITIONS, &[b"{not json"]);
    waves.wave(5_000);

    let (mut cuts, mut lost, mut torn) = (0u32, 0u32, 0u32);
    let mut finished = Vec::new();
    let mut triggers: BTreeMap<&str, u32> = BTreeMap::new();
    for c in 0..cycles {
        if c > 0 && rng.u32(0..3) != 0 {
            waves.wave(rng.u64(200..1_500));
        }
        let mode = if c % 2 == 0 { "flush" } else { "run" };
        // The cut comes on a timer, or just after a commit or a spool write shows in the log:
        // the moments when the spool and the table's metadata change.
        let (how, needle, nth, delay): (&str, Option<&str>, usize, u64) = match rng.u32(0..10) {
            0..5 => ("timer 30-1500ms", None, 0, rng.u64(30..=1_500)),
            5..8 => ("soon after a commit", Some(" added "), 1, rng.u64(0..=20)),
            _ => ("soon after a spool write", Some("spooled offsets"), rng.usize(1..=8), rng.u64(0..=10)),
        };
        *triggers.entry(how).or_default() += 1;
        let log = logs.join(format!("cycle-{c:03}-{mode}.log"));
        let mut child = spawn_frazil(mode, &config, &log);
        let started = Instant::now();
        let mut watch = LogWatch::new(&log, Box::new(move |l| needle.is_some_and(|n| l.contains(n))));
        let mut deadline = needle.is_none().then(|| started + Duration::from_millis(delay));
        let exited = loop {
            if let Some(st) = child.child().try_wait().expect("try_wait") {
                break Some(st);
            }
            let now = Instant::now();
            if deadline.is_none() && (now - started > Duration::from_secs(4) || watch.hits() >= nth) {
                deadline = Some(now + Duration::from_millis(delay));
            }
            if deadline.is_some_and(|d| now >= d) {
                break None;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        if exited.is_none() {
            child.child().kill().expect("SIGKILL");
        }
        let st = child.wait();
        if st.code().is_some() {
            let text = read_log(&log);
            assert!(
                mode == "flush" && matches!(st.code(), Some(0 | 75)),
                "cycle {c}: frazil {mode} ended with {}:\n{}",
                exit_text(st),
                tail(&text, 40)
            );
            finished.push(format!("cycle {c} {mode}: {}", exit_text(st)));
        }
        // The power goes with the process: nothing unsynced survives it.
        let report = power.cut((rng.u32(0..2) == 0).then(|| rng.u64(..))).expect("power cut");
        cuts += 1;
        every_listed_file_is_there(&mount.join("spool"), &format!("after cut {c} ({mode}, {how})"));
        lost += u32::from(report.lost_anything());
        torn += u32::from(report.torn.is_some_and(|(_, landed, _)| landed > 0));
    }

    // A clean flush, then one more cut: what a finished flush reported committed is durable.
    let final_log = logs.join("final-flush.log");
    let (code, text) = flush(&config, &final_log);
    assert_eq!(code, 0, "the clean flush after {cycles} power cuts failed:\n{}", tail(&text, 60));
    power.cut(None).expect("power cut");
    assert_spool_drained(&config);

    let table = |name: &str| format!("{warehouse}/edge/{name}");
    let mut summary = Value::Null;
    for reader in ["pyiceberg", "duckdb"] {
        let (rows, s) = servers.read_static(&table(TOPIC), reader);
        assert_exactly(reader, &rows, &waves.expected);
        summary = s;
        waves.assert_dead_letters(reader, &servers.read_static(&table(&format!("{TOPIC}__dlq")), reader).0);
    }
    let mut all = text;
    for entry in std::fs::read_dir(&logs).unwrap() {
        all.push_str(&read_log(&entry.unwrap().path()));
    }
    assert_eq!(count(&all, "panicked"), 0, "frazil panicked in some cycle; see {}", logs.display());
    let stats = power.stats();
    assert!(lost * 2 > cuts, "only {lost} of {cuts} cuts lost anything: the filesystem did not forget");
    println!(
        "power test: seed {seed}, {cuts} cuts ({lost} threw unsynced changes away, {torn} tore a write), {} processes ended on their own; timing {triggers:?}",
        finished.len()
    );
    println!(
        "  frazil made {} file and {} directory fsyncs; after restarts: {} pending commits found landed, {} not landed, {} commits made",
        stats.file_syncs,
        stats.dir_syncs,
        count(&all, "pending commit") - count(&all, "did not land"),
        count(&all, "did not land"),
        count(&all, " data files ("),
    );
    println!(
        "  {} events and {} dead letters in the tables exactly once ({} rows read back, {} snapshots); {:.1?} in all",
        waves.expected.len(),
        waves.dead.len(),
        summary["rows"],
        summary["snapshots"],
        began.elapsed()
    );
}

/// After a cut, before the next agent repairs anything: every file the spool's index lists
/// (read from a repaired copy of the index, so the agent's own recovery still has its work) is
/// in `data/` at its recorded size, and nothing is quarantined.
fn every_listed_file_is_there(spool: &Path, after: &str) {
    if !spool.join("index.redb").exists() {
        return; // the first agent never got as far as creating it
    }
    let files = frazil_spool::Spool::files_from_copy(spool, frazil_spool::SpoolOptions::default())
        .unwrap_or_else(|e| panic!("{after}: the spool's index cannot be read: {e}"));
    for f in files {
        let ctx = format!("{after}: file {} ({:?})", f.id, f.state);
        assert!(!matches!(f.state, frazil_spool::FileState::Quarantined { .. }), "{ctx}: quarantined");
        if f.state == frazil_spool::FileState::Committed {
            continue; // its unlink may have been durable before the record's removal
        }
        let len = std::fs::metadata(&f.path).map(|m| m.len());
        assert_eq!(len.ok(), Some(f.bytes), "{ctx}: listed, but {} is not there whole", f.path.display());
    }
}
