//! Faults against real servers (tansu, rustberg on s3s-fs), each table checked by pyiceberg and by
//! DuckDB: the events in it are exactly the events produced, none missing and none twice, and no
//! `frazil.commit-id` appears in two snapshots (read from the catalog's whole snapshot list).
//!
//! - `kill_dash_nine_during_flush_and_run_never_loses_or_doubles`: `frazil flush` and `frazil run`
//!   alternately, SIGKILLed on a timer or just after a chosen step shows in their debug log (a
//!   spool write, an S3 PUT, a catalog POST, the catalog's answer to it), with new events between
//!   cycles; then one clean flush. `FRAZIL_KILL_CYCLES` (default 50), `FRAZIL_KILL_SEED`.
//! - `a_commit_applied_but_unanswered_is_not_doubled`: a fault-injecting proxy (`common::proxy`)
//!   in front of the catalog: commits applied then answered 500 or dropped, commits refused 503,
//!   the catalog gone right after an applied commit, and an applied commit whose answer is held
//!   while another agent commits on top of it.
//! - `two_agents_on_different_topics_commit_to_one_table_concurrently`: two agents (ids, topics,
//!   spools of their own) flushing, then running, at the same time into one table.
//! - `agents_in_one_group_share_a_topic_exactly_once_through_kill_join_and_pause`: three agents
//!   in one consumer group on a 12-partition topic; one SIGKILLed, a fourth added, one SIGSTOPped
//!   past its session timeout (its stale commit must be fenced).
//! - `power_cuts_during_flush_and_run_never_lose_or_double`: the spool and a filesystem catalog's
//!   warehouse on a FUSE mount that forgets every unsynced change (`tests/powerfs`); `flush` and
//!   `run` killed on a timer or just after a commit or a spool write, and the power cut with
//!   each kill (half the cuts tear the last write); after each cut every file the index lists is
//!   in the spool whole; then a clean flush and one more cut.
//!   `FRAZIL_AGENT_POWER_CUTS` (default 40).
//! - `a_crash_between_an_effect_and_its_record_is_recovered`: frazil aborts (src/fault.rs, feature
//!   `fault-injection`) right after an upload, right before a commit, right after a commit, each
//!   before the index records it (once with the spool lost, once with the uploads deleted, as an
//!   orphan sweep would); the next flush must neither lose nor double anything.
//! - `offsets_survive_snapshot_expiry_and_a_lost_spool`: pyiceberg expires every snapshot it may,
//!   the agent loses its spool, and it still resumes where its last commit ended (its tag).
//! - `maintenance_beside_two_agents_keeps_every_event_once` (REST catalog, and with no catalog):
//!   `frazil maintain` on a loop (compaction, merging, expiry) and `run`'s own maintenance while two
//!   agents commit, and beside the REST catalog a foreign pyiceberg writer (merge append); and
//!   `a_maintenance_crash_leaves_the_table_whole`: `frazil maintain` aborted at each of its crash
//!   points, the orphan sweep over objects aged by hand, then pyiceberg's own expiry on top.
//! - `the_catalog_restarted_mid_run`, `the_object_store_restarted_mid_run`,
//!   `the_broker_restarted_mid_run`: rustberg, s3s-fs or tansu stopped (SIGTERM, or SIGKILL during
//!   a request to it) four times under `frazil run` and started again (tests/servers/ctl.sh).
//!
//! frazil logs at `FRAZIL_FAULTS_LOG` (default `debug`: the kill triggers read it) into files kept
//! after each test in `target/tmp/faults/<test>/`.

#[path = "../common/mod.rs"]
mod common;

mod agents;
mod expiry;
mod group;
mod kill;
mod maintain;
mod points;
mod power;
mod restart;
mod unanswered;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use common::proxy::{Exchange, Fault, Proxy};
use common::*;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn log_level() -> String {
    std::env::var("FRAZIL_FAULTS_LOG").unwrap_or_else(|_| "debug".into())
}

/// A fresh directory for one test's frazil logs, kept after the test (also when it fails) under
/// Cargo's scratch dir for integration tests: `target/tmp/faults/<test>/`.
fn logs_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("faults").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the logs dir");
    println!("{test}: frazil logs in {}", dir.display());
    dir
}

/// The harness config for `topics`, edited (each `(from, to)` must match) and written to `<dir>/<name>.toml`.
fn config_as(servers: &Servers, name: &str, topics: &[&str], catalog_extra: &str, edits: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(servers.config(topics, catalog_extra)).expect("read config");
    for (from, to) in edits {
        assert!(text.contains(from), "config edit: `{from}` not in\n{text}");
        text = text.replace(from, to);
    }
    let path = servers.dir.path().join(format!("{name}.toml"));
    write_config(&path, &text);
    path
}

/// Small files, quick rolls and commits, small fetches: a run goes through many spool writes,
/// uploads (several of them merges) and commits, so a kill lands in each of them.
/// The harness config made busy (see [`busy_edits`]) with its own spool dir `spool-<name>`.
fn busy_config(servers: &Servers, name: &str, topic: &str, catalog_extra: &str) -> PathBuf {
    let edits = busy_edits(&servers.dir.path().join(format!("spool-{name}")));
    let edits: Vec<(&str, &str)> = edits.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    config_as(servers, name, &[topic], catalog_extra, &edits)
}

fn busy_edits(spool_dir: &Path) -> Vec<(String, String)> {
    vec![
        ("file_max_bytes = \"2MiB\"".into(), "file_max_bytes = \"256KiB\"".into()),
        (
            "file_max_age = \"1s\"".into(),
            "file_max_age = \"200ms\"\nfile_max_rows = 150\nupload_target_size = \"64KiB\"".into(),
        ),
        ("[spool]".into(), "fetch_max_bytes = \"16KiB\"\n\n[spool]".into()),
        ("/spool\"".into(), format!("/{}\"", spool_dir.file_name().unwrap().to_str().unwrap())),
    ]
}

fn spawn_frazil(cmd: &str, config: &Path, log: &Path) -> Guard {
    spawn_frazil_with(cmd, config, log, &[])
}

/// `frazil <cmd>` with extra environment variables, logging to `log`.
fn spawn_frazil_with(cmd: &str, config: &Path, log: &Path, env: &[(&str, &str)]) -> Guard {
    let level = log_level();
    let mut all = vec![("FRAZIL_LOG", level.as_str())];
    all.extend_from_slice(env);
    start_frazil(cmd, config, log, &all)
}

type LineMatcher = Box<dyn FnMut(&str) -> bool>;

/// Counts the complete lines `matcher` accepts in a log that is still being written, reading only
/// what was appended since the last look (the matcher sees every line once, in order).
struct LogWatch {
    file: Option<std::fs::File>,
    path: PathBuf,
    partial: String,
    hits: usize,
    matcher: LineMatcher,
}

impl LogWatch {
    fn new(path: &Path, matcher: LineMatcher) -> LogWatch {
        LogWatch { file: None, path: path.to_path_buf(), partial: String::new(), hits: 0, matcher }
    }

    fn hits(&mut self) -> usize {
        use std::io::Read;
        if self.file.is_none() {
            self.file = std::fs::File::open(&self.path).ok();
        }
        if let Some(f) = self.file.as_mut() {
            let mut bytes = Vec::new();
            let _ = f.read_to_end(&mut bytes);
            self.partial.push_str(&String::from_utf8_lossy(&bytes));
            if let Some(end) = self.partial.rfind('\n') {
                let complete: String = self.partial.drain(..=end).collect();
                self.hits += complete.lines().filter(|l| (self.matcher)(l)).count();
            }
        }
        self.hits
    }
}

fn read_log(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// `frazil flush`, logging to `log`; its exit code and log.
fn flush(config: &Path, log: &Path) -> (i32, String) {
    let status = spawn_frazil("flush", config, log).wait();
    (status.code().unwrap_or(-1), read_log(log))
}

/// The last `n` lines of a log, for assertion messages.
fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The table as the real catalog has it (the loadTable answer), over plain HTTP.
fn load_table(servers: &Servers, table: &str) -> Value {
    let base = servers.get("FRAZIL_CATALOG").trim_end_matches('/').to_string();
    let mut cfg_url = format!("{base}/v1/config");
    if let Some(w) = servers.env.get("FRAZIL_WAREHOUSE").filter(|w| !w.is_empty()) {
        cfg_url.push_str(&format!("?warehouse={}", pct(w)));
    }
    let get = |url: &str| -> Value {
        let mut resp = ureq::get(url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
        resp.body_mut().read_json::<Value>().unwrap_or_else(|e| panic!("GET {url}: {e}"))
    };
    let cfg = get(&cfg_url);
    let prefix = cfg["overrides"]["prefix"].as_str().or(cfg["defaults"]["prefix"].as_str()).unwrap_or("");
    let mut url = format!("{base}/v1/");
    if !prefix.is_empty() {
        url.push_str(&format!("{}/", pct(prefix)));
    }
    url.push_str(&format!("namespaces/edge/tables/{}", pct(table)));
    get(&url)
}

/// Every snapshot of the table (the whole history, not only the current branch): none may carry a
/// commit id another one carries, and every one must be on the main branch's ancestry. Returns the
/// snapshots' summaries, oldest first.
fn assert_no_commit_twice(servers: &Servers, table: &str) -> Vec<Value> {
    let loaded = load_table(servers, table);
    let md = &loaded["metadata"];
    let snapshots = md["snapshots"].as_array().cloned().unwrap_or_default();
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    for s in &snapshots {
        let id = s["summary"]["frazil.commit-id"]
            .as_str()
            .unwrap_or_else(|| panic!("{table}: a snapshot without frazil.commit-id: {s}"));
        *ids.entry(id.to_string()).or_default() += 1;
    }
    let twice: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{table}: commit ids in more than one snapshot: {twice:?}");
    // The main branch holds every snapshot (frazil only appends).
    let by_id: BTreeMap<i64, &Value> =
        snapshots.iter().map(|s| (s["snapshot-id"].as_i64().expect("snapshot-id"), s)).collect();
    let mut chain = 0;
    let mut next = md["current-snapshot-id"].as_i64().filter(|id| *id != -1);
    while let Some(id) = next {
        chain += 1;
        next = by_id.get(&id).and_then(|s| s["parent-snapshot-id"].as_i64());
    }
    assert_eq!(chain, snapshots.len(), "{table}: {} snapshots, {chain} of them on the main branch", snapshots.len());
    let mut summaries: Vec<(i64, Value)> =
        snapshots.iter().map(|s| (s["sequence-number"].as_i64().unwrap_or(0), s["summary"].clone())).collect();
    summaries.sort_by_key(|(seq, _)| *seq);
    summaries.into_iter().map(|(_, s)| s).collect()
}

/// For a table fed from two topics whose events have ids below and from `split`: both readers see
/// exactly `low` and `high` (each keyed by its own topic's partitions and offsets).
fn assert_split_exactly(
    servers: &Servers,
    table: &str,
    split: u64,
    low: &BTreeMap<(i32, i64), Produced>,
    high: &BTreeMap<(i32, i64), Produced>,
) {
    assert_split_rows(|reader| servers.read_table(table, reader).0, split, low, high);
}

/// [`assert_split_exactly`] over rows read by `read(reader)`, for both readers.
fn assert_split_rows(
    read: impl Fn(&str) -> Vec<Value>,
    split: u64,
    low: &BTreeMap<(i32, i64), Produced>,
    high: &BTreeMap<(i32, i64), Produced>,
) {
    for reader in ["pyiceberg", "duckdb"] {
        let rows = read(reader);
        let (below, above): (Vec<Value>, Vec<Value>) = rows
            .into_iter()
            .partition(|r| r["id"].as_u64().unwrap_or_else(|| panic!("{reader}: a row without id: {r}")) < split);
        assert_exactly(&format!("{reader} (ids below {split})"), &below, low);
        assert_exactly(&format!("{reader} (ids from {split})"), &above, high);
    }
}

/// The next offsets the newest snapshot of `agent` records for `topic`.
fn offsets_of(summaries: &[Value], agent: &str, topic: &str) -> BTreeMap<i32, i64> {
    let Some(s) = summaries.iter().rev().find(|s| s["frazil.agent"] == agent) else {
        return BTreeMap::new();
    };
    let Some(text) = s[format!("frazil.offsets.{topic}")].as_str() else {
        return BTreeMap::new();
    };
    let m: BTreeMap<String, i64> = serde_json::from_str(text).expect("offsets JSON");
    m.into_iter().map(|(p, o)| (p.parse().expect("partition"), o)).collect()
}

/// Waves of events produced to a topic, each followed by bad records on the partitions in turn,
/// and what the tables must then hold: every event once, and every bad record once as a dead
/// letter (`<topic>__dlq`).
struct Waves<'a> {
    kafka: &'a str,
    topic: &'a str,
    partitions: i32,
    bad: Vec<Option<Vec<u8>>>,
    next_id: u64,
    expected: BTreeMap<(i32, i64), Produced>,
    dead: BTreeSet<(i32, i64)>,
}

impl<'a> Waves<'a> {
    fn new(kafka: &'a str, topic: &'a str, partitions: i32, bad: &[&[u8]]) -> Waves<'a> {
        let bad = bad.iter().map(|b| Some(b.to_vec())).collect();
        Waves { kafka, topic, partitions, bad, next_id: 0, expected: BTreeMap::new(), dead: BTreeSet::new() }
    }

    fn wave(&mut self, n: u64) {
        let ids = self.next_id..self.next_id + n;
        self.expected.extend(block_on(produce(self.kafka, self.topic, self.partitions, ids)));
        let p = (self.next_id % self.partitions as u64) as i32;
        for o in block_on(produce_raw(self.kafka, self.topic, p, self.bad.clone())) {
            self.dead.insert((p, o));
        }
        self.next_id += n;
    }

    /// Every dead letter once in `rows` (the dead-letter table as `reader` read it).
    fn assert_dead_letters(&self, reader: &str, rows: &[Value]) {
        let mut seen = BTreeSet::new();
        for r in rows {
            let at = (r["partition"].as_i64().unwrap() as i32, r["offset"].as_i64().unwrap());
            assert!(seen.insert(at), "{reader}: dead letter {at:?} twice");
        }
        assert_eq!(seen, self.dead, "{reader}: the dead letters");
    }
}

/// The next offset of every partition in `produced`.
fn ends(produced: &BTreeMap<(i32, i64), Produced>) -> BTreeMap<i32, i64> {
    let mut out = BTreeMap::new();
    for (p, o) in produced.keys() {
        let e = out.entry(*p).or_insert(0);
        *e = (*e).max(o + 1);
    }
    out
}

fn assert_spool_drained(config: &Path) {
    let st = status_json(config, &["--offline"]);
    assert_eq!(st["written"], 0, "files left unuploaded: {st}");
    assert_eq!(st["uploaded"], 0, "files left uncommitted: {st}");
    assert!(st["pending_commits"].as_array().is_some_and(Vec::is_empty), "pending commits left: {st}");
    assert!(st["quarantined"].as_array().is_some_and(Vec::is_empty), "quarantined files: {st}");
}

fn exit_text(s: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (_, Some(sig)) => format!("signal {sig}"),
        _ => format!("{s:?}"),
    }
}
