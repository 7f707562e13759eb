//! Agents sharing one topic through a Kafka consumer group (`kafka.group`): three agents on a
//! 12-partition topic produced to without pause; one SIGKILLed while it holds spooled rows, a
//! fourth added, one SIGSTOPped past its session timeout and resumed (its stale commit must be
//! refused by the fence). Every (partition, offset) lands exactly once. When tansu keeps the
//! stopped member in the group (it sometimes does for minutes), a standby given its partitions
//! statically takes them over, so the fence is tested either way.

use super::*;

const TOPIC: &str = "plant";
const PARTITIONS: i32 = 12;

/// Agent `n`'s config: its own id and spool, the group, a short session timeout, and
/// `extra_kafka` in [kafka].
fn member_config(servers: &Servers, n: usize, commit_interval: &str, extra_kafka: &str) -> PathBuf {
    let spool = format!("spool-g{n}");
    let edits = [
        ("id = \"test-gateway\"".to_string(), format!("id = \"member-{n}\"")),
        ("[spool]".to_string(), format!("group = \"line\"\nsession_timeout = \"6s\"\n{extra_kafka}\n[spool]")),
        ("/spool\"".to_string(), format!("/{spool}\"")),
    ];
    let edits: Vec<(&str, &str)> = edits.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    config_as(servers, &format!("member-{n}"), &[TOPIC], &format!("commit_interval = \"{commit_interval}\""), &edits)
}

/// Spool files of agent `n` not yet removed: rows spooled and (soon) committed or not.
fn spooled_files(servers: &Servers, n: usize) -> usize {
    let dir = servers.dir.path().join(format!("spool-g{n}/data"));
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// The test's producer: events to every partition, a batch every 200 ms.
struct Producer<'a> {
    kafka: &'a str,
    next: u64,
    expected: BTreeMap<(i32, i64), Produced>,
}

impl Producer<'_> {
    /// Produces for `d`, or until `until` holds (checked between batches); returns whether it held.
    fn produce_while(&mut self, d: Duration, mut until: impl FnMut() -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < d {
            let n = 120;
            self.expected.extend(block_on(produce(self.kafka, TOPIC, PARTITIONS, self.next..self.next + n)));
            self.next += n;
            if until() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }

    fn produce_for(&mut self, d: Duration) {
        self.produce_while(d, || false);
    }
}

#[test]
fn agents_in_one_group_share_a_topic_exactly_once_through_kill_join_and_pause() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let logs = logs_dir("group");
    block_on(create_topic(&kafka, TOPIC, PARTITIONS));
    // Member 2 commits less often, so it holds spooled rows when it is paused.
    let configs: Vec<PathBuf> =
        (1..=4).map(|n| member_config(&servers, n, if n == 2 { "4s" } else { "1s" }, "")).collect();
    let log = |n: usize| logs.join(format!("member-{n}.log"));
    let mut agents: BTreeMap<usize, Guard> = BTreeMap::new();
    for n in 1..=3 {
        agents.insert(n, spawn_frazil("run", &configs[n - 1], &log(n)));
    }
    let mut p = Producer { kafka: &kafka, next: 0, expected: BTreeMap::new() };

    // Member 1 is SIGKILLed after its first commit, while it holds spooled rows.
    let committed = p.produce_while(Duration::from_secs(60), || count(&read_log(&log(1)), " data files (") > 0);
    assert!(committed, "member 1 made no commit:\n{}", tail(&read_log(&log(1)), 30));
    let holding = p.produce_while(Duration::from_secs(20), || spooled_files(&servers, 1) > 0);
    assert!(holding, "member 1 never held spooled rows");
    let mut killed = agents.remove(&1).unwrap();
    killed.child().kill().unwrap();
    let _ = killed.wait();
    println!("member 1 SIGKILLed holding {} spool files", spooled_files(&servers, 1));
    // Its partitions move once the coordinator misses its heartbeats.
    p.produce_for(Duration::from_secs(12));

    // A fourth member joins.
    agents.insert(4, spawn_frazil("run", &configs[3], &log(4)));
    p.produce_for(Duration::from_secs(10));

    // Member 2 stops past its session timeout, right after a commit while it holds spooled rows.
    let before = count(&read_log(&log(2)), " data files (");
    let fresh = p.produce_while(Duration::from_secs(60), || count(&read_log(&log(2)), " data files (") > before);
    assert!(fresh, "member 2 made no commit:\n{}", tail(&read_log(&log(2)), 30));
    assert!(p.produce_while(Duration::from_secs(10), || spooled_files(&servers, 2) > 0), "member 2 held no rows");
    let pid = agents[&2].0.as_ref().unwrap().id().to_string();
    let signal = |sig: &str| assert!(Command::new("kill").args([sig, &pid]).status().unwrap().success());
    signal("-STOP");
    let stopped_log = read_log(&log(2)).len();
    let others = [3, 4].map(|n| (n, read_log(&log(n)).len()));
    // Member 2's partitions, as its group state recorded them.
    let state: Value =
        serde_json::from_slice(&std::fs::read(servers.dir.path().join("spool-g2/group.json")).unwrap()).unwrap();
    let parts: Vec<String> = state["partitions"]
        .as_array()
        .expect("member 2's partitions")
        .iter()
        .map(|tp| tp.as_str().unwrap().rsplit_once('/').unwrap().1.to_string())
        .collect();
    // tansu notices a silent member only when another one's heartbeat looks (15-25 s here with a
    // 6 s session timeout); then the group gives its partitions to the others, who commit them.
    let taken = || {
        parts.iter().all(|p| {
            let line = format!("{TOPIC}/{p}: assigned to this agent");
            others.iter().any(|(n, at)| read_log(&log(*n))[*at..].contains(&line))
        })
    };
    if !p.produce_while(Duration::from_secs(45), taken) {
        // tansu sometimes keeps a silent member in the group for minutes. A standby given member
        // 2's partitions through `kafka.partitions` (same group, so fenced the same way) takes
        // them over instead, as an operator would.
        println!(
            "member 2's partitions did not move within 45 s (tansu kept it in the group); a standby reads {parts:?}"
        );
        let standby = member_config(&servers, 5, "1s", &format!("partitions = {{ {TOPIC} = [{}] }}", parts.join(", ")));
        agents.insert(5, spawn_frazil("run", &standby, &log(5)));
        let took_over = p.produce_while(Duration::from_secs(60), || count(&read_log(&log(5)), " data files (") > 0);
        assert!(took_over, "the standby made no commit:\n{}", tail(&read_log(&log(5)), 30));
    } else {
        // Member 2's commit is refused only once the members that took its partitions have
        // committed rows of them: wait for two commits by each taker after it took the last of
        // them (rows are produced to every partition all along, so the second holds some).
        let committed_after_taking = || {
            others.iter().all(|(n, at)| {
                let text = read_log(&log(*n));
                let after = &text[*at..];
                let mine: Vec<&String> =
                    parts.iter().filter(|p| after.contains(&format!("{TOPIC}/{p}: assigned to this agent"))).collect();
                let last =
                    mine.iter().filter_map(|p| after.find(&format!("{TOPIC}/{p}: assigned to this agent"))).max();
                mine.is_empty() || last.is_some_and(|i| count(&after[i..], " data files (") >= 2)
            })
        };
        let committed = p.produce_while(Duration::from_secs(60), committed_after_taking);
        let logs = others.map(|(n, at)| format!("member {n}:\n{}", tail(&read_log(&log(n))[at..], 20)));
        assert!(
            committed,
            "the members that took member 2's partitions {parts:?} did not commit them:\n{}",
            logs.join("\n")
        );
    }
    p.produce_for(Duration::from_secs(5));
    signal("-CONT");
    // Its commit of rows others took over meanwhile is refused, and it says so.
    let fenced =
        p.produce_while(Duration::from_secs(30), || read_log(&log(2))[stopped_log..].contains("commit fenced"));
    if !fenced {
        let logs = [3, 4].map(|n| format!("member {n}:\n{}", tail(&read_log(&log(n)), 40)));
        panic!("member 2's stale commit was not refused:\n{}\n{}", tail(&read_log(&log(2)), 40), logs.join("\n"));
    }
    // `frazil status` beside the running member reports the group and the refusal.
    let st = status_json(&configs[1], &["--offline"]);
    let g = &st["group"];
    assert_eq!(g["group"], "line", "{st}");
    assert!(g["running"]["fenced_commits"].as_u64().is_some_and(|n| n >= 1), "{st}");
    assert!(g["running"]["partitions"].is_array(), "{st}");
    p.produce_for(Duration::from_secs(4));

    // Everything produced lands; then the members stop.
    let want = p.expected.len();
    let start = Instant::now();
    while servers.rows_now(TOPIC) < want {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "rows did not all land: {} of {want}",
            servers.rows_now(TOPIC)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for (n, mut g) in agents {
        let pid = g.child().id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let st = g.wait();
        assert_eq!(st.code(), Some(0), "member {n} ended with {}:\n{}", exit_text(st), tail(&read_log(&log(n)), 30));
    }

    for reader in ["pyiceberg", "duckdb"] {
        assert_exactly(reader, &servers.read_table(TOPIC, reader).0, &p.expected);
    }
    let summaries = assert_no_commit_twice(&servers, TOPIC);
    let last = summaries.iter().rev().find(|s| s["frazil.group"] == "line").expect("a group commit");
    let recorded: BTreeMap<String, i64> =
        serde_json::from_str(last[format!("frazil.group-offsets.{TOPIC}")].as_str().expect("group offsets")).unwrap();
    let recorded: BTreeMap<i32, i64> = recorded.into_iter().map(|(k, v)| (k.parse().unwrap(), v)).collect();
    assert_eq!(recorded, ends(&p.expected), "the group's offsets are where every partition ends");
    let fenced: Vec<usize> = (1..=5).map(|n| count(&read_log(&log(n)), "commit fenced")).collect();
    let generations: Vec<usize> = (1..=5).map(|n| count(&read_log(&log(n)), "assigns this agent")).collect();
    println!(
        "group: {want} events on {PARTITIONS} partitions exactly once, {} snapshots; fenced partition commits per member {fenced:?}, assignments per member {generations:?}",
        summaries.len()
    );
}
