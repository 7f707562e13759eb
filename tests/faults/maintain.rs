//! Table maintenance (compaction, manifest merging, expiry, the orphan sweep) while two agents and a
//! foreign pyiceberg writer keep committing, and maintenance killed at each crash point. Whatever
//! maintenance does, both readers see every event and every foreign row exactly once, each agent's
//! tag still carries its offsets, and each agent's next flush resumes where it was.

use std::sync::atomic::{AtomicBool, Ordering};

use super::agents::{AGENTS, agent_configs, flush_rounds, produce_more, wait_for_agents};
use super::*;

/// The shared table's maintenance: merge once over 3 data manifests, keep 2 snapshots of main,
/// expire the rest at once, and in `run` every second.
const POLICY: &str = "\n[tables.\"shared\"]\nmax_manifests = 3\nkeep_snapshots = 2\nexpire_after = \"0s\"\n\
    maintain_interval = \"1s\"\n";

fn with_policy(config: &Path, policy: &str) {
    let text = std::fs::read_to_string(config).expect("read config") + policy;
    write_config(config, &text);
}

/// `frazil maintain --json`; its exit status, the reports (when it printed them) and its log.
fn maintain(config: &Path, env: &[(&str, &str)]) -> (ExitStatus, Option<Value>, String) {
    let out = frazil_command()
        .args(["maintain", "--json", "--config", path_str(config)])
        .env("FRAZIL_LOG", "info")
        .envs(env.iter().copied())
        .output()
        .expect("run frazil maintain");
    (out.status, serde_json::from_slice(&out.stdout).ok(), String::from_utf8_lossy(&out.stderr).to_string())
}

/// The report on `table` among `frazil maintain --json`'s.
fn report<'a>(reports: &'a Value, table: &str) -> &'a Value {
    reports.as_array().and_then(|a| a.iter().find(|r| r["table"] == table)).unwrap_or_else(|| panic!("{reports}"))
}

/// Where a table is: through the REST catalog, or in a warehouse with no catalog service.
enum Where<'a> {
    Rest(&'a Servers),
    Files { servers: &'a Servers, location: String },
}

impl Where<'_> {
    /// The table's metadata as a reader loads it.
    fn metadata(&self, table: &str) -> Value {
        match self {
            Where::Rest(servers) => load_table(servers, table)["metadata"].clone(),
            Where::Files { servers, location } => {
                let dir = local_path(servers, &format!("{location}/metadata"));
                let hint = std::fs::read_to_string(dir.join("version-hint.text")).expect("version hint");
                let text = std::fs::read_to_string(dir.join(format!("v{}.metadata.json", hint.trim()))).unwrap();
                serde_json::from_str(&text).expect("metadata JSON")
            }
        }
    }

    /// Both readers see the agents' events exactly (`low`: ids below 1,000,000, `high`: the
    /// rest) and the foreign writer's rows (ids from [`FOREIGN`]) once each.
    fn assert_exactly(
        &self,
        table: &str,
        low: &BTreeMap<(i32, i64), Produced>,
        high: &BTreeMap<(i32, i64), Produced>,
        foreign: &[u64],
    ) {
        let read = |reader: &str| match self {
            Where::Rest(servers) => servers.read_table(table, reader).0,
            Where::Files { servers, location } => servers.read_static(location, reader).0,
        };
        let split = |reader: &str| {
            let (theirs, ours): (Vec<Value>, Vec<Value>) =
                read(reader).into_iter().partition(|r| r["id"].as_u64().is_some_and(|id| id >= FOREIGN));
            let mut ids: Vec<u64> = theirs.iter().map(|r| r["id"].as_u64().unwrap()).collect();
            ids.sort_unstable();
            assert_eq!(ids, foreign, "{reader}: the foreign writer's rows, each once");
            ours
        };
        assert_split_rows(split, 1_000_000, low, high);
    }
}

/// The ids of the foreign writer's rows start here, far above the agents'.
const FOREIGN: u64 = 1_000_000_000;

/// tests/check/append.py: a foreign writer appends `count` rows from id `first` (merge append).
fn foreign_append(servers: &Servers, table: &str, first: u64, count: u64) -> Value {
    let mut cmd = Command::new(venv_python());
    cmd.arg(repo().join("tests/check/append.py"));
    servers.catalog_args(&mut cmd, table);
    let out = cmd.args(["--first-id", &first.to_string(), "--count", &count.to_string()]).output().expect("append.py");
    assert!(out.status.success(), "append.py failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("append.py prints JSON")
}

/// The file s3s-fs keeps an `s3://bucket/key` object in.
fn local_path(servers: &Servers, url: &str) -> PathBuf {
    let key = url.strip_prefix("s3://").unwrap_or_else(|| panic!("not an s3 URL: {url}"));
    servers.dir.path().join("servers/s3").join(key)
}

/// The manifest lists in the table's metadata dir that no snapshot of its metadata lists.
fn unreferenced_lists(servers: &Servers, table: &str) -> BTreeSet<String> {
    let md = load_table(servers, table)["metadata"].clone();
    let listed: BTreeSet<&str> =
        md["snapshots"].as_array().unwrap().iter().map(|s| s["manifest-list"].as_str().unwrap()).collect();
    let dir = local_path(servers, &format!("{}/metadata", md["location"].as_str().unwrap()));
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("snap-") && !listed.iter().any(|l| l.ends_with(&format!("/{n}"))))
        .collect()
}

/// The offsets `agent`'s tag carries for `topic`.
fn tagged_offsets(md: &Value, agent: &str, topic: &str) -> BTreeMap<i32, i64> {
    let id = &md["refs"][format!("frazil-{agent}")]["snapshot-id"];
    let snapshot = md["snapshots"].as_array().unwrap().iter().find(|s| s["snapshot-id"] == *id);
    let summary =
        snapshot.unwrap_or_else(|| panic!("{agent}'s tag names no snapshot: {}", md["refs"]))["summary"].clone();
    assert_eq!(summary["frazil.agent"], agent, "{agent}'s tag is on a snapshot of its own: {summary}");
    offsets_of(&[summary], agent, topic)
}

#[test]
fn maintenance_beside_two_agents_keeps_every_event_once() {
    maintained_beside_two_agents(false);
}

#[test]
fn maintenance_beside_two_agents_keeps_every_event_once_with_no_catalog() {
    maintained_beside_two_agents(true);
}

fn maintained_beside_two_agents(no_catalog: bool) {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let logs = logs_dir(if no_catalog { "maintain-no-catalog" } else { "maintain" });
    let mut edits = Vec::new();
    let mut proxy = None;
    let place = if no_catalog {
        // As in `two_agents_share_one_table_with_no_catalog_service`: conditional creates one at a time.
        let s3 = Proxy::start(servers.get("FRAZIL_S3_ENDPOINT"));
        s3.keep_host();
        let warehouse = "s3://warehouse/nocatalog";
        edits = vec![
            (format!("uri = \"{}\"", servers.get("FRAZIL_CATALOG")), "type = \"filesystem\"".to_string()),
            (format!("warehouse = \"{}\"", servers.get("FRAZIL_WAREHOUSE")), format!("warehouse = \"{warehouse}\"")),
            (format!("endpoint = \"{}\"", servers.get("FRAZIL_S3_ENDPOINT")), format!("endpoint = \"{}\"", s3.url)),
        ];
        proxy = Some(s3);
        Where::Files { servers: &servers, location: format!("{warehouse}/edge/shared") }
    } else {
        Where::Rest(&servers)
    };
    let configs = agent_configs(&servers, &kafka, "table = \"shared\"\ncommit_interval = \"1s\"", &edits);
    configs.iter().for_each(|c| with_policy(c, POLICY));
    let mut expected: Vec<BTreeMap<(i32, i64), Produced>> = vec![BTreeMap::new(), BTreeMap::new()];
    let mut next: Vec<u64> = AGENTS.iter().map(|a| a.3).collect();

    // `frazil maintain` on a loop (as a timer would run it, only faster) while both agents flush,
    // and, beside a REST catalog, a foreign pyiceberg writer appending between passes.
    let stop = AtomicBool::new(false);
    let mut foreign: Vec<u64> = Vec::new();
    let (passes, (commits, conflicts)) = std::thread::scope(|scope| {
        let maintainer = scope.spawn(|| {
            let mut passes: Vec<(ExitStatus, Option<Value>, String)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                passes.push(maintain(&configs[0], &[]));
                if !no_catalog {
                    let first = FOREIGN + foreign.len() as u64;
                    foreign_append(&servers, "shared", first, 50);
                    foreign.extend(first..first + 50);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            passes
        });
        let flushed = flush_rounds(&kafka, &configs, &logs, 6, |r| 600 + 200 * r, &mut expected, &mut next);
        stop.store(true, Ordering::Relaxed);
        (maintainer.join().expect("the maintenance loop"), flushed)
    });
    let (mut compacted, mut merged, mut expired) = (0, 0, 0);
    for (status, reports, log) in &passes {
        assert!(status.success(), "frazil maintain failed ({}):\n{log}", exit_text(*status));
        let r = report(reports.as_ref().expect("reports"), "shared");
        compacted += r["files_compacted"].as_u64().unwrap();
        merged += r["manifests_merged"].as_u64().unwrap();
        expired += r["snapshots_expired"].as_u64().unwrap();
    }
    println!(
        "{} maintenance passes beside {commits} commits ({conflicts} conflicts) and {} foreign rows: {compacted} files compacted, {merged} manifests merged, {expired} snapshots expired",
        passes.len(),
        foreign.len()
    );
    assert!(compacted > 0 && expired > 0, "maintenance did nothing in {} passes", passes.len());
    place.assert_exactly("shared", &expected[0], &expected[1], &foreign);

    // Both as `frazil run`, which maintain on their own: only the elected one (the smallest id
    // among the agents committing) does.
    let paths: Vec<PathBuf> = AGENTS.iter().map(|(a, ..)| logs.join(format!("run-{a}.log"))).collect();
    let mut children: Vec<Guard> = configs.iter().zip(&paths).map(|(c, l)| spawn_frazil("run", c, l)).collect();
    for _ in 0..6 {
        produce_more(&kafka, 400, &mut expected, &mut next);
        std::thread::sleep(Duration::from_millis(800));
    }
    std::thread::sleep(Duration::from_millis(1_500));
    for c in &mut children {
        assert!(Command::new("kill").args(["-TERM", &c.child().id().to_string()]).status().unwrap().success());
    }
    wait_for_agents(children, &paths, "run");
    let maintained: Vec<usize> = paths.iter().map(|p| count(&read_log(p), "maintenance: table shared")).collect();
    assert!(maintained[0] > 0 && maintained[1] == 0, "agent-north maintains, agent-south does not: {maintained:?}");

    // One last pass: the table is within the policy's bounds, and both readers agree.
    let (status, reports, log) = maintain(&configs[1], &[]);
    assert!(status.success(), "{log}");
    let health = &report(reports.as_ref().unwrap(), "shared")["health"];
    assert!(health["data_manifests"].as_u64().unwrap() <= 3, "{health}");
    assert!(health["snapshots"].as_u64().unwrap() <= 2 + 2, "2 kept and each agent's tagged one at most: {health}");
    place.assert_exactly("shared", &expected[0], &expected[1], &foreign);
    let md = place.metadata("shared");
    for (i, (agent, topic, ..)) in AGENTS.iter().enumerate() {
        assert_eq!(tagged_offsets(&md, agent, topic), ends(&expected[i]), "{agent}'s tag");
    }

    // Each agent's next flush resumes where it was.
    flush_rounds(&kafka, &configs, &logs, 1, |_| 500, &mut expected, &mut next);
    place.assert_exactly("shared", &expected[0], &expected[1], &foreign);
    drop(proxy);
}

#[test]
fn a_maintenance_crash_leaves_the_table_whole() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let logs = logs_dir("maintain-crash");
    block_on(create_topic(&kafka, "crash", 2));
    let config = config_as(&servers, "crash", &["crash"], "table = \"shared\"", &[]);
    with_policy(&config, POLICY);
    // The same agent with compaction off, so the merge has small manifests to merge; and with the
    // orphan sweep on (objects are aged by hand below: the shortest grace is an hour).
    let no_compaction = servers.dir.path().join("crash-no-compaction.toml");
    let sweeping = servers.dir.path().join("crash-sweeping.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    write_config(&no_compaction, &format!("{text}compact_per_pass = \"0B\"\n"));
    write_config(&sweeping, &format!("{text}orphan_after = \"1h\"\n"));
    let mut expected = BTreeMap::new();
    let mut next = 0;
    let mut flush_more = |n: u64, what: &str, expected: &mut BTreeMap<(i32, i64), Produced>| {
        expected.extend(block_on(produce(&kafka, "crash", 2, next..next + n)));
        next += n;
        let (code, log) = flush(&config, &logs.join(format!("{what}.log")));
        assert_eq!(code, 0, "{what}:\n{}", tail(&log, 30));
    };
    for round in 0..6 {
        flush_more(300, &format!("flush-{round}"), &mut expected);
    }
    let before = status_json(&config, &[]);
    let health = &before["tables"].as_array().unwrap().iter().find(|t| t["table"] == "shared").unwrap()["health"];
    assert!(health["data_manifests"].as_u64().unwrap() >= 6, "one manifest per commit before any merge: {health}");

    // Each crash point in turn; after each, the table reads whole, and the next pass goes on.
    // Only the crashes may strand a manifest list: the compaction's or the merge's that never
    // committed (one each), and those of the snapshots whose expiry was cut short.
    let location = load_table(&servers, "shared")["metadata"]["location"].as_str().unwrap().to_string();
    let dir = local_path(&servers, &location);
    let objects = |dir: &Path| -> BTreeSet<PathBuf> {
        let out = Command::new("find").arg(dir).args(["-type", "f"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().map(PathBuf::from).collect()
    };
    let compacted = |dir: &Path| -> BTreeSet<PathBuf> {
        objects(dir).into_iter().filter(|p| p.to_string_lossy().contains("/compacted-")).collect()
    };
    let mut stranded = BTreeSet::new();
    let mut stray = BTreeSet::new();
    let points = [
        ("compact-before-commit", &config),
        ("compact-after-commit", &config),
        ("merge-before-commit", &no_compaction),
        ("merge-after-commit", &no_compaction),
        ("expire-after-commit", &config),
    ];
    for (round, (point, config)) in points.into_iter().enumerate() {
        let (status, _, log) = maintain(config, &[("FRAZIL_FAULT", point)]);
        assert!(
            !status.success() && log.contains(&format!("aborting at {point}")),
            "{point}: {}\n{log}",
            exit_text(status)
        );
        assert_table_exactly(&servers, "shared", &expected);
        let now = unreferenced_lists(&servers, "shared");
        assert!(now.is_superset(&stranded), "{point}: {now:?} {stranded:?}");
        if point.ends_with("-before-commit") {
            assert_eq!(now.len(), stranded.len() + 1, "{point}: the uncommitted list: {now:?}");
        }
        if point == "compact-before-commit" {
            stray = compacted(&dir);
            assert_eq!(stray.len(), 1, "the uncommitted compaction's file: {stray:?}");
        }
        stranded = now;
        // New commits on top, so the next pass has small files and manifests again.
        for r in 0..4 {
            flush_more(100, &format!("flush-{round}-{r}"), &mut expected);
        }
    }
    let (status, reports, log) = maintain(&config, &[]);
    assert!(status.success(), "{log}");
    let r = report(reports.as_ref().unwrap(), "shared");
    assert!(r["files_compacted"].as_u64().unwrap() > 0 && r["snapshots_expired"].as_u64().unwrap() > 0, "{r}");
    assert!(r["files_deleted"].as_u64().unwrap() >= r["snapshots_expired"].as_u64().unwrap(), "{r}");
    assert!(r["health"]["data_manifests"].as_u64().unwrap() <= 3, "{r}");
    assert_table_exactly(&servers, "shared", &expected);
    let left = unreferenced_lists(&servers, "shared");
    assert!(
        left.is_subset(&stranded),
        "a clean pass deletes the lists of what it expires: {left:?} beyond {stranded:?}"
    );
    println!("maintenance crashes: {} manifest lists stranded by the crashes, none by the clean pass", stranded.len());

    // Two hours later (every object aged by hand), the sweep removes what the crashes stranded
    // (the uncommitted compaction's file among them) and nothing the table reads; killed before
    // its deletes, it deletes nothing.
    let mut age = Command::new("find");
    age.arg(&dir).args(["-type", "f", "-exec", "touch", "-d", "2 hours ago", "{}", "+"]);
    assert!(age.status().unwrap().success());
    let all = objects(&dir);
    let (status, _, log) = maintain(&sweeping, &[("FRAZIL_FAULT", "orphans-before-delete")]);
    assert!(!status.success() && log.contains("aborting at orphans-before-delete"), "{log}");
    assert_eq!(objects(&dir), all, "nothing is deleted before the sweep's deletes");
    let (status, reports, log) = maintain(&sweeping, &[]);
    assert!(status.success(), "{log}");
    let swept = report(reports.as_ref().unwrap(), "shared")["orphans_deleted"].as_u64().unwrap();
    assert!(unreferenced_lists(&servers, "shared").is_empty(), "the stranded lists are swept");
    assert!(compacted(&dir).is_disjoint(&stray), "the uncommitted compaction's file is swept");
    assert_table_exactly(&servers, "shared", &expected);
    println!("orphan sweep: {swept} of {} objects deleted", all.len());

    // pyiceberg's own expiry on top of frazil's, then the agent resumes where it was.
    let expired = super::expiry::expire_snapshots(&servers, "shared");
    println!("expire.py after frazil maintain: {expired}");
    flush_more(500, "after", &mut expected);
    assert_table_exactly(&servers, "shared", &expected);
    let md = load_table(&servers, "shared")["metadata"].clone();
    assert_eq!(tagged_offsets(&md, "test-gateway", "crash"), ends(&expected), "the agent's tag");
}
