//! Two agents, each with its own topic and spool, committing to one table at once.

use super::*;

#[test]
fn two_agents_on_different_topics_commit_to_one_table_concurrently() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let logs = logs_dir("two-agents");
    // (agent, topic, partitions, first id): ids never overlap, so each row tells its topic.
    let agents = [
        ("agent-north", "north", 2, 0u64),
        ("agent-south", "south", 3, 1_000_000u64),
    ];
    let mut configs = Vec::new();
    for (agent, topic, partitions, _) in agents {
        block_on(create_topic(&kafka, topic, partitions));
        let spool = servers.dir.path().join(format!("spool-{topic}"));
        let mut edits = busy_edits(&spool);
        edits.push(("id = \"test-gateway\"".into(), format!("id = \"{agent}\"")));
        let edits: Vec<(&str, &str)> = edits
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        configs.push(config_as(
            &servers,
            agent,
            &[topic],
            "table = \"shared\"\ncommit_interval = \"1s\"",
            &edits,
        ));
    }
    let mut expected: Vec<BTreeMap<(i32, i64), Produced>> = vec![BTreeMap::new(), BTreeMap::new()];
    let mut next: Vec<u64> = agents.iter().map(|a| a.3).collect();
    let rounds = 4;
    let mut conflicts = 0;
    let mut commits = 0;
    for round in 0..rounds {
        for (i, (_, topic, partitions, _)) in agents.iter().enumerate() {
            let n = 1_500 + 500 * round as u64;
            expected[i].extend(block_on(produce(
                &kafka,
                topic,
                *partitions,
                next[i]..next[i] + n,
            )));
            next[i] += n;
        }
        let paths: Vec<PathBuf> = agents
            .iter()
            .map(|(a, ..)| logs.join(format!("round-{round}-{a}.log")))
            .collect();
        let children: Vec<Guard> = configs
            .iter()
            .zip(&paths)
            .map(|(c, l)| spawn_frazil("flush", c, l))
            .collect();
        let (c, k) = wait_for_agents(children, &paths, &agents, &format!("round {round}"));
        commits += c;
        conflicts += k;
    }

    // Then both as `frazil run`, committing every second while events keep coming, until SIGTERM.
    let paths: Vec<PathBuf> = agents
        .iter()
        .map(|(a, ..)| logs.join(format!("run-{a}.log")))
        .collect();
    let mut children: Vec<Guard> = configs
        .iter()
        .zip(&paths)
        .map(|(c, l)| spawn_frazil("run", c, l))
        .collect();
    for _ in 0..6 {
        for (i, (_, topic, partitions, _)) in agents.iter().enumerate() {
            let n = 700;
            expected[i].extend(block_on(produce(
                &kafka,
                topic,
                *partitions,
                next[i]..next[i] + n,
            )));
            next[i] += n;
        }
        std::thread::sleep(Duration::from_millis(700));
    }
    std::thread::sleep(Duration::from_millis(1_500));
    for c in &mut children {
        assert!(
            Command::new("kill")
                .args(["-TERM", &c.child().id().to_string()])
                .status()
                .unwrap()
                .success()
        );
    }
    let (c, k) = wait_for_agents(children, &paths, &agents, "run");
    commits += c;
    conflicts += k;

    assert_split_exactly(&servers, "shared", 1_000_000, &expected[0], &expected[1]);
    let summaries = assert_no_commit_twice(&servers, "shared");
    for (i, (agent, topic, ..)) in agents.iter().enumerate() {
        assert_eq!(
            offsets_of(&summaries, agent, topic),
            ends(&expected[i]),
            "{agent}'s offsets in its last snapshot"
        );
        let mine = summaries
            .iter()
            .filter(|s| s["frazil.agent"] == *agent)
            .count();
        assert!(mine > 0, "{agent} made no snapshot");
    }
    println!(
        "two agents: {rounds} rounds of concurrent flushes and one of concurrent runs, {} + {} events exactly once, {commits} commits ({} snapshots), {conflicts} times `conflicted` in the logs",
        expected[0].len(),
        expected[1].len(),
        summaries.len()
    );
}

/// Waits for both agents, requires exit 0 from each, and returns the commits and `conflicted`
/// lines their logs show.
fn wait_for_agents(
    children: Vec<Guard>,
    paths: &[PathBuf],
    agents: &[(&str, &str, i32, u64)],
    what: &str,
) -> (usize, usize) {
    let (mut commits, mut conflicts) = (0, 0);
    let ended: Vec<ExitStatus> = children.into_iter().map(Guard::wait).collect();
    for ((st, path), (agent, ..)) in ended.into_iter().zip(paths).zip(agents) {
        let log = read_log(path);
        assert_eq!(
            st.code(),
            Some(0),
            "{what}: {agent} ended with {}:\n{}",
            exit_text(st),
            tail(&log, 40)
        );
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
    let agents = [("agent-north", "north", 2, 0u64), ("agent-south", "south", 3, 1_000_000u64)];
    let warehouse = "s3://warehouse/nocatalog";
    let mut configs = Vec::new();
    for (agent, topic, partitions, _) in agents {
        block_on(create_topic(&kafka, topic, partitions));
        let spool = servers.dir.path().join(format!("spool-{topic}"));
        let mut edits = busy_edits(&spool);
        edits.push(("id = \"test-gateway\"".into(), format!("id = \"{agent}\"")));
        edits.push((format!("uri = \"{}\"", servers.get("FRAZIL_CATALOG")), "type = \"filesystem\"".into()));
        edits.push((format!("warehouse = \"{}\"", servers.get("FRAZIL_WAREHOUSE")), format!("warehouse = \"{warehouse}\"")));
        let edits: Vec<(&str, &str)> = edits.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        configs.push(config_as(&servers, agent, &[topic], "table = \"shared\"", &edits));
    }
    let mut expected: Vec<BTreeMap<(i32, i64), Produced>> = vec![BTreeMap::new(), BTreeMap::new()];
    let mut next: Vec<u64> = agents.iter().map(|a| a.3).collect();
    let (mut commits, mut conflicts) = (0, 0);
    for round in 0..4 {
        for (i, (_, topic, partitions, _)) in agents.iter().enumerate() {
            let n = 1_000 + 300 * round as u64;
            expected[i].extend(block_on(produce(&kafka, topic, *partitions, next[i]..next[i] + n)));
            next[i] += n;
        }
        let paths: Vec<PathBuf> = agents.iter().map(|(a, ..)| logs.join(format!("round-{round}-{a}.log"))).collect();
        let children: Vec<Guard> = configs.iter().zip(&paths).map(|(c, l)| spawn_frazil("flush", c, l)).collect();
        let (c, k) = wait_for_agents(children, &paths, &agents, &format!("round {round}"));
        commits += c;
        conflicts += k;
    }

    // Versions 1..=N all exist (each commit created the next one), and the hint names N.
    let table = format!("{warehouse}/edge/shared");
    let metadata_dir = servers.dir.path().join("servers/s3/warehouse/nocatalog/edge/shared/metadata");
    let hint: u64 = std::fs::read_to_string(metadata_dir.join("version-hint.text")).unwrap().trim().parse().unwrap();
    let versions: BTreeSet<u64> = std::fs::read_dir(&metadata_dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str().and_then(|n| n.strip_prefix('v')?.strip_suffix(".metadata.json")?.parse().ok()))
        .collect();
    assert_eq!(versions, (1..=hint).collect::<BTreeSet<u64>>(), "metadata versions are 1..={hint} with no gap");
    assert!(hint as usize > commits, "every commit wrote a version (plus the table's creation): {hint} versions, {commits} commits");

    assert_split_rows(|reader| servers.read_static(&table, reader).0, 1_000_000, &expected[0], &expected[1]);
    println!("no catalog: {} + {} events exactly once in {hint} metadata versions, {commits} commits, {conflicts} conflicts", expected[0].len(), expected[1].len());
}
