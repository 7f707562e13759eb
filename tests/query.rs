//! `frazil query` against real servers: the answer is the table's snapshot plus what the agent
//! holds in its spool and in memory, every event exactly once, while rows move between them, with
//! the catalog down, and with `--offline`.
//!
//! The query engine is its own binary, built once by tests/run.sh as its package builds it
//! (`bash cross/build.sh --query <host triple>`); `frazil query` is pointed at it (`FRAZIL_QUERY_BIN`).

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// `target/<host triple>/query`, where cross/build.sh puts frazil-query.
fn query_dir() -> PathBuf {
    let rustc = Command::new("rustc").arg("-vV").output().expect("rustc -vV");
    let text = String::from_utf8_lossy(&rustc.stdout).to_string();
    let host = text.lines().find_map(|l| l.strip_prefix("host: ")).expect("rustc names its host");
    let dir = repo().join("target").join(host).join("query");
    assert!(
        dir.join("frazil-query").is_file(),
        "{}/frazil-query is missing: build it with `bash cross/build.sh --query {host}` (tests/run.sh does)",
        dir.display()
    );
    dir
}

/// `frazil query <args> --config <config>`, running the frazil-query built for the tests.
fn query(config: &Path, args: &[&str]) -> Output {
    frazil_command()
        .arg("query")
        .args(args)
        .args(["--config", path_str(config)])
        .env("FRAZIL_QUERY_BIN", query_dir().join("frazil-query"))
        .output()
        .expect("run frazil query")
}

/// The answer's rows (`--format json`) and its coverage report (stderr).
fn query_json(config: &Path, sql: &str, extra: &[&str]) -> (Vec<Value>, String) {
    let out = query(config, &[&["--format", "json"], extra, &[sql]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "frazil query {sql:?} failed:\n{stderr}");
    let rows = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (rows, stderr)
}

fn count(config: &Path, table: &str, extra: &[&str]) -> (u64, String) {
    let (rows, stderr) = query_json(config, &format!("SELECT count(*) AS n FROM {table}"), extra);
    (rows[0]["n"].as_u64().unwrap_or_else(|| panic!("no count in {rows:?}")), stderr)
}

/// Every produced event once, with its values, in rows of `_kafka_partition, _kafka_offset, id, device, temp`.
fn assert_answer_exactly(what: &str, rows: &[Value], expected: &BTreeMap<(i32, i64), Produced>) {
    let mut seen = BTreeMap::new();
    for r in rows {
        let at = (r["_kafka_partition"].as_i64().unwrap() as i32, r["_kafka_offset"].as_i64().unwrap());
        assert!(seen.insert(at, r).is_none(), "{what}: {at:?} appears twice");
    }
    let missing: Vec<_> = expected.keys().filter(|k| !seen.contains_key(k)).take(5).collect();
    assert!(missing.is_empty(), "{what}: events missing, e.g. {missing:?} ({} rows)", rows.len());
    assert_eq!(seen.len(), expected.len(), "{what}: rows that were never produced");
    for (at, e) in expected {
        let r = seen[at];
        for field in ["id", "device", "temp"] {
            assert!(
                same_json(&e.value[field], &r[field]),
                "{what}: {field} at {at:?}: produced {}, read {}",
                e.value,
                r
            );
        }
    }
}

/// The numbers in the coverage line of `table`: `-- t: snapshot 1 + 460 local rows (4 spool files, 2 hot buffers)`.
fn coverage(stderr: &str, table: &str) -> (bool, u64, u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with(&format!("-- {table}: ")))
        .unwrap_or_else(|| panic!("no coverage line for {table} in:\n{stderr}"));
    let numbers: Vec<u64> =
        line.split(|c: char| !c.is_ascii_digit()).filter(|w| !w.is_empty()).map(|w| w.parse().unwrap()).collect();
    let n = numbers.len();
    assert!(n >= 3, "{line}");
    (line.contains("snapshot "), numbers[n - 3], numbers[n - 2], numbers[n - 1])
}

/// Runs the view on stdin in DuckDB (no extension loaded); prints the rows and distinct offsets of argv[1].
const DUCKDB_COUNT: &str = "import duckdb, sys\ncon = duckdb.connect()\ncon.execute(sys.stdin.read())\n\
    print(*con.execute(f'SELECT count(*), count(DISTINCT (_kafka_partition, _kafka_offset)) FROM {sys.argv[1]}').fetchone())";

/// POSTs argv[2] to argv[1] and prints the first value of the Arrow IPC answer.
const HTTP_COUNT: &str = "import sys, urllib.request, pyarrow.ipc\n\
    body = urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=sys.argv[2].encode())).read()\n\
    print(pyarrow.ipc.open_stream(body).read_all().column(0)[0].as_py())";

/// Rewrites `config` with `from` replaced by `to` (e.g. a setting added after a known line).
fn edit_config(config: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    assert!(text.contains(from), "{from:?} is not in the config");
    write_config(config, &text.replace(from, to));
}

/// The harness's `file_max_age = "1s"` replaced by these `[spool]` settings.
fn with_spool(config: &Path, spool: &str) {
    edit_config(config, "file_max_age = \"1s\"", spool);
}

#[test]
fn the_answer_holds_the_table_the_spool_and_memory_each_event_once() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let config = servers.config(&["q"], "commit_interval = \"1h\"");
    // Files of 100 rows, and rows that stay in memory until the agent stops.
    with_spool(&config, "file_max_age = \"1h\"\nfile_max_rows = 100");
    block_on(create_topic(&kafka, "q", 2));
    let mut expected = block_on(produce(&kafka, "q", 2, 0..300));
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 0, "{log}");

    let log = servers.dir.path().join("run.log");
    let mut run = start_frazil("run", &config, &log, &[]);
    // 200 rows a partition become files; the next 30 stay in memory (fewer than a file's 100).
    expected.extend(block_on(produce(&kafka, "q", 2, 300..700)));
    let taken = |n| wait_until(Duration::from_secs(60), || count(&config, "q", &["-q"]).0 == n);
    assert!(taken(700), "the answer never reached 700 events:\n{}", std::fs::read_to_string(&log).unwrap());
    expected.extend(block_on(produce(&kafka, "q", 2, 700..760)));
    let bad = block_on(produce_raw(&kafka, "q", 0, vec![Some(b"{not json".to_vec())]));
    assert!(taken(760), "the answer never reached 760 events:\n{}", std::fs::read_to_string(&log).unwrap());
    let socket = servers.dir.path().join("spool/read.sock");
    let mode = std::fs::metadata(&socket).expect("the read-state socket").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "raw events are served: the socket is the agent user's alone");

    let sql = "SELECT _kafka_partition, _kafka_offset, id, device, temp FROM q";
    let (rows, stderr) = query_json(&config, sql, &[]);
    assert_answer_exactly("table + spool + memory", &rows, &expected);
    let (snapshot, local, files, hot) = coverage(&stderr, "q");
    assert!(snapshot && local == 460, "300 rows from the table, 460 local:\n{stderr}");
    assert!(files >= 2 && hot >= 1, "rows from spool files and from memory both:\n{stderr}");
    assert!(stderr.contains("q/0: up to offset") && stderr.contains("the running agent"), "{stderr}");
    let (dead, _) = query_json(&config, "SELECT \"offset\", reason FROM q__dlq", &[]);
    assert_eq!(dead.len(), 1, "the bad record, from memory: {dead:?}");
    assert_eq!(dead[0]["offset"].as_i64(), Some(bad[0]), "{dead:?}");

    // A view for a DuckDB without extensions: the local rows (the committed ones are in S3 here).
    let out = query(&config, &["--duckdb-view", "q"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("committed rows are in s3://"), "{stderr}");
    let mut duckdb = Command::new(venv_python())
        .args(["-c", DUCKDB_COUNT, "q"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut duckdb.stdin.take().unwrap(), &out.stdout).unwrap();
    let counted = duckdb.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&counted.stdout).trim(), "460 460", "rows, distinct offsets");

    // The same answer over loopback HTTP, as Arrow IPC (for dashboards).
    let mut server = std::process::Command::new(query_dir().join("frazil-query"))
        .args(["--serve", "127.0.0.1:0", "--config", path_str(&config)])
        .env("FRAZIL_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut served = std::io::BufReader::new(server.stderr.take().unwrap());
    while !line.contains("http://") {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut served, &mut line).unwrap() > 0, "frazil-query --serve exited");
    }
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_string();
    let fetched =
        Command::new(venv_python()).args(["-c", HTTP_COUNT, &url, "SELECT count(*) AS n FROM q"]).output().unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(String::from_utf8_lossy(&fetched.stdout).trim(), "760", "{}", String::from_utf8_lossy(&fetched.stderr));

    // Bad SQL and an unknown table: a clear error, and the agent goes on.
    for (sql, says) in [("SELEC 1", "SELEC"), ("SELECT * FROM nowhere", "nowhere")] {
        let out = query(&config, &[sql]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("frazil-query: query:") && stderr.contains(says),
            "{sql}: {stderr}"
        );
    }
    assert_eq!(count(&config, "q", &["-q"]).0, 760);

    // Local rows alone: asked for, then because the catalog is down.
    let (n, stderr) = count(&config, "q", &["--offline"]);
    assert!(n == 460 && stderr.contains("offline (--offline)"), "{n}\n{stderr}");
    servers.ctl("stop", "catalog", false);
    let (n, stderr) = count(&config, "q", &[]);
    assert!(n == 460 && stderr.contains("cannot be reached"), "{n}\n{stderr}");
    servers.ctl("start", "catalog", false);

    // Stopped: everything is committed, and the answer comes from the table alone.
    assert!(Command::new("kill").args(["-TERM", &run.child().id().to_string()]).status().unwrap().success());
    assert!(run.wait().success(), "{}", std::fs::read_to_string(&log).unwrap());
    assert!(!socket.exists(), "the socket goes with the agent");
    let (rows, stderr) = query_json(&config, sql, &[]);
    assert_answer_exactly("table after the stop", &rows, &expected);
    let (_, local, _, _) = coverage(&stderr, "q");
    assert!(local == 0 && stderr.contains("no agent running"), "{stderr}");
    let (rows, _) = servers.read_table("q", "pyiceberg");
    assert_exactly("pyiceberg", &rows, &expected);
}

#[test]
fn answers_taken_while_rows_move_count_each_event_once() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    // Rows roll into files every second and commit every second: they move while queries read.
    let config = servers.config(&["moving"], "commit_interval = \"1s\"");
    block_on(create_topic(&kafka, "moving", 3));
    let log = servers.dir.path().join("run.log");
    let run = start_frazil("run", &config, &log, &[]);
    let producer = {
        let kafka = kafka.clone();
        std::thread::spawn(move || {
            for round in 0..30u64 {
                block_on(produce_small(&kafka, "moving", 3, round * 200..(round + 1) * 200));
                std::thread::sleep(Duration::from_millis(150));
            }
        })
    };
    let (mut answers, mut mixed) = (0, 0);
    let mut run = Some(run);
    while !producer.is_finished() || answers < 8 {
        // Midway the agent is killed, queried while dead (its socket left behind, its spool not
        // closed cleanly), and started again.
        if answers == 3 {
            drop(run.take());
        }
        if answers == 5 {
            run = Some(start_frazil("run", &config, &servers.dir.path().join("run2.log"), &[]));
        }
        let (rows, stderr) = query_json(&config, "SELECT _kafka_partition, _kafka_offset FROM moving", &[]);
        let mut by_partition: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for r in &rows {
            by_partition
                .entry(r["_kafka_partition"].as_i64().unwrap())
                .or_default()
                .push(r["_kafka_offset"].as_i64().unwrap());
        }
        for (p, offsets) in &mut by_partition {
            offsets.sort_unstable();
            let n = offsets.len() as i64;
            assert!(
                offsets.iter().copied().eq(0..n),
                "partition {p}: the answer's offsets are not 0..{n} each once (a gap or a double):\n{stderr}"
            );
        }
        if !rows.is_empty() && stderr.lines().any(|l| l.contains("snapshot ") && !l.contains(" + 0 local rows")) {
            mixed += 1;
        }
        answers += 1;
    }
    producer.join().unwrap();
    assert!(mixed > 0, "no answer combined a snapshot with local rows in {answers} answers");
    let mut run = run.expect("restarted");
    assert!(run.child().try_wait().unwrap().is_none(), "the restarted agent runs on");
    let all = wait_until(Duration::from_secs(60), || count(&config, "moving", &["-q"]).0 == 6_000);
    assert!(all, "every produced event, once, after the restart");
}

#[test]
fn kept_committed_files_answer_offline_back_to_their_horizon_and_never_pause_fetching() {
    let servers = Servers::start();
    let kafka = servers.get("FRAZIL_KAFKA").to_string();
    let config = servers.config(&["kept"], "");
    // Committed files are kept for an hour, in a spool whose quota they soon exceed; small
    // fetches make the agent look for room often.
    with_spool(&config, "keep_committed = \"1h\"\nmax_bytes = \"40KiB\"\nfile_max_rows = 100");
    edit_config(&config, "topics = [\"kept\"]", "topics = [\"kept\"]\nfetch_max_bytes = \"4KiB\"");
    block_on(create_topic(&kafka, "kept", 2));
    let mut expected = block_on(produce(&kafka, "kept", 2, 0..300));
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 0, "{log}");

    // The catalog and the object store both gone: the kept files answer, back to offset 0.
    servers.ctl("stop", "catalog", false);
    servers.ctl("stop", "s3", false);
    let sql = "SELECT _kafka_partition, _kafka_offset, id, device, temp FROM kept";
    let (rows, stderr) = query_json(&config, sql, &[]);
    assert_answer_exactly("kept files, offline", &rows, &expected);
    assert!(stderr.contains("cannot be reached"), "{stderr}");
    assert!(stderr.contains("kept/0: up to offset 150 (exclusive), from offset 0"), "the horizon:\n{stderr}");
    servers.ctl("start", "catalog", false);
    servers.ctl("start", "s3", false);
    // Back online: the table holds them all, and the kept files add nothing.
    let (rows, stderr) = query_json(&config, sql, &[]);
    assert_answer_exactly("table, kept files below its offsets", &rows, &expected);
    assert_eq!(coverage(&stderr, "kept").1, 0, "{stderr}");

    // Far more than the quota: once a publish has committed what was written, the kept files make
    // room; if they held on to it, the flush would stop early (exit 75) with the rest in Kafka.
    expected.extend(block_on(produce(&kafka, "kept", 2, 300..900)));
    let (code, log) = servers.frazil(&["flush", "--config", path_str(&config)]);
    assert_eq!(code, 0, "kept files must never keep fetching from going on:\n{log}");
    assert!(log.contains("kept for queries, to make room"), "the quota was never reached:\n{log}");
    let (rows, _) = servers.read_table("kept", "pyiceberg");
    assert_exactly("pyiceberg", &rows, &expected);
}
