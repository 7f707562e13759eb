//! Two agents, each with its own topic and spool, committing to one table at once.

use super::*;

#[test]
fn two_agents_on_different_topics_commit_to_one_table_concurrently() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let logs = logs_dir("two-agents");
    let configs = agent_configs(&servers, &kafka, "table = \"shared\"\ncommit_interval = \"1s\"", &[]);
    let mut expected: Vec<BTreeMap<(i32, i64), Produced>> = vec![BTreeMap::new(), BTreeMap::new()];
    let mut next: Vec<u64> = AGENTS.iter().map(|a| a.3).collect();
    let rounds = 4;
    let (mut commits, mut conflicts) =
        flush_rounds(&kafka, &configs, &logs, rounds, |round| 1_500 + 500 * round, &mut expected, &mut next);

    // Then both as `frazil run`, committing every second while events keep coming, until SIGTERM.
    let paths: Vec<PathBuf> = AGENTS.iter().map(|(a, ..)| logs.join(format!("run-{a}.log"))).collect();
    let mut children: Vec<Guard> = configs.iter().zip(&paths).map(|(c, l)| spawn_frazil("run", c, l)).collect();
    for _ in 0..6 {
        produce_more(&kafka, 700, &mut expected, &mut next);
        std::thread::sleep(Duration::from_millis(700));
    }
    std::thread::sleep(Duration::from_millis(1_500));
    for c in &mut children {
        assert!(Command::new("kill").args(["-TERM", &c.child().id().to_string()]).status().unwrap().success());
    }
    let (c, k) = wait_for_agents(children, &paths, "run");
    commits += c;
    conflicts += k;

    assert_split_exactly(&servers, "shared", 1_000_000, &expected[0], &expected[1]);
    let summaries = assert_no_commit_twice(&servers, "shared");
    for (i, (agent, topic, ..)) in AGENTS.iter().enumerate() {
        assert_eq!(offsets_of(&summaries, agent, topic), ends(&expected[i]), "{agent}'s offsets in its last snapshot");
        let mine = summaries.iter().filter(|s| s["frazil.agent"] == *agent).count();
        assert!(mine > 0, "{agent} made no snapshot");
    }
    println!(
        "two agents: {rounds} rounds of concurrent flushes and one of concurrent runs, {} + {} events exactly once, {commits} commits ({} snapshots), {conflicts} times `conflicted` in the logs",
        expected[0].len(),
        expected[1].len(),
        summaries.len()
    );
}

/// The two agents of these tests: (agent, topic, partitions, first id). Ids never overlap, so
/// each row tells its topic.
pub(super) const AGENTS: [(&str, &str, i32, u64); 2] =
    [("agent-north", "north", 2, 0), ("agent-south", "south", 3, 1_000_000)];

/// Creates each agent's topic and writes its config: its own id and spool, the busy settings,
/// `catalog_extra` in [catalog], and `extra_edits` on top.
pub(super) fn agent_configs(
    servers: &Servers,
    kafka: &str,
    catalog_extra: &str,
    extra_edits: &[(String, String)],
) -> Vec<PathBuf> {
    AGENTS
        .iter()
        .map(|&(agent, topic, partitions, _)| {
            block_on(create_topic(kafka, topic, partitions));
            let mut edits = busy_edits(&servers.dir.path().join(format!("spool-{topic}")));
            edits.push(("id = \"test-gateway\"".into(), format!("id = \"{agent}\"")));
            edits.extend_from_slice(extra_edits);
            let edits: Vec<(&str, &str)> = edits.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            config_as(servers, agent, &[topic], catalog_extra, &edits)
        })
        .collect()
}

/// Produces `n` more events to each agent's topic, recording them in `expected`.
pub(super) fn produce_more(kafka: &str, n: u64, expected: &mut [BTreeMap<(i32, i64), Produced>], next: &mut [u64]) {
    for (i, (_, topic, partitions, _)) in AGENTS.iter().enumerate() {
        expected[i].extend(block_on(produce(kafka, topic, *partitions, next[i]..next[i] + n)));
        next[i] += n;
    }
}

/// `rounds` rounds of: `size(round)` new events per topic, then both agents' `flush` at once.
/// Returns the commits and conflicts their logs show.
pub(super) fn flush_rounds(
    kafka: &str,
    configs: &[PathBuf],
    logs: &Path,
    rounds: u64,
    size: impl Fn(u64) -> u64,
    expected: &mut [BTreeMap<(i32, i64), Produced>],
    next: &mut [u64],
) -> (usize, usize) {
    let (mut commits, mut conflicts) = (0, 0);
    for round in 0..rounds {
        produce_more(kafka, size(round), expected, next);
        let paths: Vec<PathBuf> = AGENTS.iter().map(|(a, ..)| logs.join(format!("round-{round}-{a}.log"))).collect();
        let children: Vec<Guard> = configs.iter().zip(&paths).map(|(c, l)| spawn_frazil("flush", c, l)).collect();
        let (c, k) = wait_for_agents(children, &paths, &format!("round {round}"));
        commits += c;
        conflicts += k;
    }
    (commits, conflicts)
}

/// Waits for both agents, requires exit 0 from each, and returns the commits and `conflicted`
/// lines their logs show.
pub(super) fn wait_for_agents(children: Vec<Guard>, paths: &[PathBuf], what: &str) -> (usize, usize) {
    let (mut commits, mut conflicts) = (0, 0);
    let ended: Vec<ExitStatus> = children.into_iter().map(Guard::wait).collect();
    for ((st, path), (agent, ..)) in ended.into_iter().zip(paths).zip(AGENTS) {
        let log = read_log(path);
        assert_eq!(st.code(), Some(0), "{what}: {agent} ended with {}:\n{}", exit_text(st), tail(&log, 40));
        let (c, k) = (count(&log, " data files ("), count(&log, "conflicted"));
        commits += c;
        conflicts += k;
        println!("{what}: {agent}: exit 0, {c} commits, {k} conflicts");
    }
    (commits, conflicts)
}

/// The catalog-less mode: the same two agents with no catalog service, the table's metadata kept
/// in the warehouse (S3) and each commit a create-if-absent write of the next metadata version.
/// Read back with no catalog either: pyiceberg's StaticTable and DuckDB's iceberg_scan.
#[test]
fn two_agents_share_one_table_with_no_catalog_service() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let logs = logs_dir("two-agents-filesystem");
    let warehouse = "s3://warehouse/nocatalog";
    // The agents reach S3 through a proxy that passes conditional creates on one at a time:
    // s3s-fs alone let two agents' creates of the same metadata version both succeed when they
    // came in the same millisecond, which S3 never does (see `common::proxy`).
    let s3 = Proxy::start(servers.get("FRAZIL_S3_ENDPOINT"));
    s3.keep_host();
    let no_catalog = [
        (format!("uri = \"{}\"", servers.get("FRAZIL_CATALOG")), "type = \"filesystem\"".to_string()),
        (format!("warehouse = \"{}\"", servers.get("FRAZIL_WAREHOUSE")), format!("warehouse = \"{warehouse}\"")),
        (format!("endpoint = \"{}\"", servers.get("FRAZIL_S3_ENDPOINT")), format!("endpoint = \"{}\"", s3.url)),
    ];
    let configs = agent_configs(&servers, &kafka, "table = \"shared\"", &no_catalog);
    let mut expected: Vec<BTreeMap<(i32, i64), Produced>> = vec![BTreeMap::new(), BTreeMap::new()];
    let mut next: Vec<u64> = AGENTS.iter().map(|a| a.3).collect();
    let (commits, conflicts) =
        flush_rounds(&kafka, &configs, &logs, 4, |round| 1_000 + 300 * round, &mut expected, &mut next);

    // Versions 1..=N all exist (each commit created the next one), and the hint names N.
    let table = format!("{warehouse}/edge/shared");
    let metadata_dir = servers.dir.path().join("servers/s3/warehouse/nocatalog/edge/shared/metadata");
    let hint: u64 = std::fs::read_to_string(metadata_dir.join("version-hint.text")).unwrap().trim().parse().unwrap();
    let versions: BTreeSet<u64> = std::fs::read_dir(&metadata_dir)
        .unwrap()
        .filter_map(|e| {
            e.unwrap()
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix('v')?.strip_suffix(".metadata.json")?.parse().ok())
        })
        .collect();
    assert_eq!(versions, (1..=hint).collect::<BTreeSet<u64>>(), "metadata versions are 1..={hint} with no gap");
    assert!(
        hint as usize > commits,
        "every commit wrote a version (plus the table's creation): {hint} versions, {commits} commits"
    );

    assert_split_rows(|reader| servers.read_static(&table, reader).0, 1_000_000, &expected[0], &expected[1]);
    println!(
        "no catalog: {} + {} events exactly once in {hint} metadata versions, {commits} commits, {conflicts} conflicts",
        expected[0].len(),
        expected[1].len()
    );
}
