//! The integration-test harness: real servers (tansu, rustberg on s3s-fs) started by the project's
//! own script for each test, events produced through rskafka, tables read back by independent
//! readers (pyiceberg and DuckDB) through `tests/check/read_table.py`.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod http;
pub mod kafka;
pub mod proxy;
pub mod registry;
pub mod tls;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub use kafka::*;
use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `Command` for the frazil binary under test: this build's, or `FRAZIL_BIN` with
/// `FRAZIL_RUNNER` before it (e.g. an aarch64 build through `qemu-aarch64-static -L ...`; see
/// cross/test.sh). The servers and the readers stay native either way.
pub fn frazil_command() -> Command {
    let bin = std::env::var("FRAZIL_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_frazil").to_string());
    let runner = std::env::var("FRAZIL_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(program) => {
            let mut cmd = Command::new(program);
            cmd.args(words).arg(bin);
            cmd
        }
        None => Command::new(bin),
    }
}

pub fn venv_python() -> PathBuf {
    let venv = std::env::var_os("FRAZIL_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").expect("HOME is set")).join(".cache/frazil/venv"));
    venv.join("bin/python")
}

/// One set of servers in a temporary directory, stopped (only these processes) on drop.
pub struct Servers {
    pub dir: tempfile::TempDir,
    pub env: BTreeMap<String, String>,
}

impl Servers {
    pub fn start() -> Servers {
        Servers::start_with(&[])
    }

    /// Like [`Servers::start`], with `env` for tests/servers/start.sh (e.g. `FRAZIL_KAFKA_CERT`).
    pub fn start_with(env: &[(&str, &str)]) -> Servers {
        let dir = tempfile::Builder::new().prefix("frazil-test-").tempdir().expect("temp dir");
        // start.sh picks free ports and then binds them; a parallel test's sockets can take one in
        // between. It stops what it started when a server fails, so try again with fresh ports.
        let mut failures = String::new();
        for attempt in 1..=3 {
            let state = dir.path().join("servers");
            let _ = std::fs::remove_dir_all(&state);
            let out = Command::new("bash")
                .arg(repo().join("tests/servers/start.sh"))
                .arg(&state)
                .envs(env.iter().copied())
                .output()
                .expect("run tests/servers/start.sh");
            if out.status.success() {
                let text = std::fs::read_to_string(state.join("env")).expect("start.sh wrote env");
                let env = text
                    .lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').trim_matches('\'').to_string()))
                    .collect();
                return Servers { dir, env };
            }
            let failure = format!(
                "attempt {attempt}:\n{}\n{}\n",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            eprintln!("tests/servers/start.sh failed, {failure}");
            failures.push_str(&failure);
        }
        panic!("tests/servers/start.sh failed three times (run tests/servers/install.sh first?):\n{failures}");
    }

    pub fn get(&self, key: &str) -> &str {
        self.env.get(key).map(String::as_str).unwrap_or_else(|| panic!("{key} missing from the servers' env"))
    }

    /// A frazil config for these servers; `extra` is appended to the `[catalog]` section.
    pub fn config(&self, topics: &[&str], catalog_extra: &str) -> PathBuf {
        let warehouse = self
            .env
            .get("FRAZIL_WAREHOUSE")
            .filter(|w| !w.is_empty())
            .map(|w| format!("warehouse = \"{w}\"\n"))
            .unwrap_or_default();
        let text = format!(
            r#"[agent]
id = "test-gateway"

[kafka]
brokers = ["{kafka}"]
topics = {topics:?}

[spool]
dir = "{spool}"
file_max_bytes = "2MiB"
file_max_age = "1s"

[catalog]
uri = "{catalog}"
{warehouse}namespace = "edge"
{catalog_extra}

[storage.s3]
endpoint = "{s3}"
region = "{region}"
access_key_id = "{ak}"
secret_access_key = "{sk}"
path_style = true
"#,
            kafka = self.get("FRAZIL_KAFKA"),
            spool = self.dir.path().join("spool").display(),
            catalog = self.get("FRAZIL_CATALOG"),
            s3 = self.get("FRAZIL_S3_ENDPOINT"),
            region = self.get("FRAZIL_S3_REGION"),
            ak = self.get("FRAZIL_S3_ACCESS_KEY"),
            sk = self.get("FRAZIL_S3_SECRET_KEY"),
        );
        let path = self.dir.path().join("frazil.toml");
        write_config(&path, &text);
        path
    }

    /// Stops (`"stop"`, SIGTERM or with `kill` SIGKILL) or starts again (`"start"`) one server:
    /// `"s3"`, `"catalog"` or `"kafka"`, on the same port with the same data (tests/servers/ctl.sh).
    pub fn ctl(&self, action: &str, server: &str, kill: bool) {
        self.ctl_with(action, server, kill, &[]);
    }

    /// [`Servers::ctl`] with `env` for tests/servers/ctl.sh (e.g. `FRAZIL_KAFKA_AUTH=1` on start).
    pub fn ctl_with(&self, action: &str, server: &str, kill: bool, env: &[(&str, &str)]) {
        let mut cmd = Command::new("bash");
        cmd.envs(env.iter().copied());
        cmd.arg(repo().join("tests/servers/ctl.sh")).arg(self.dir.path().join("servers")).args([action, server]);
        if kill {
            cmd.arg("--kill");
        }
        let out = cmd.output().expect("run tests/servers/ctl.sh");
        assert!(out.status.success(), "ctl.sh {action} {server} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }

    /// The arguments tests/check/*.py take to reach `edge.<table>` through these servers.
    pub fn catalog_args(&self, cmd: &mut Command, table: &str) {
        cmd.args(["--catalog", self.get("FRAZIL_CATALOG")])
            .args(["--namespace", "edge", "--table", table])
            .args(["--s3-endpoint", self.get("FRAZIL_S3_ENDPOINT")])
            .args(["--s3-access-key", self.get("FRAZIL_S3_ACCESS_KEY")])
            .args(["--s3-secret-key", self.get("FRAZIL_S3_SECRET_KEY")])
            .args(["--s3-region", self.get("FRAZIL_S3_REGION")]);
        if let Some(w) = self.env.get("FRAZIL_WAREHOUSE").filter(|w| !w.is_empty()) {
            cmd.args(["--warehouse", w]);
        }
    }

    /// Rows in a table right now, as pyiceberg sees them (0 while it cannot be read, e.g. before
    /// the table exists or while a server is down).
    pub fn rows_now(&self, table: &str) -> usize {
        let mut cmd = Command::new(venv_python());
        cmd.arg(repo().join("tests/check/read_table.py"));
        self.catalog_args(&mut cmd, table);
        let out = cmd
            .args(["--reader", "pyiceberg", "--out"])
            .arg(self.dir.path().join(format!("{table}-poll.jsonl")))
            .output()
            .expect("run read_table.py");
        let summary: Option<Value> =
            String::from_utf8_lossy(&out.stdout).lines().last().and_then(|l| serde_json::from_str(l).ok());
        summary.and_then(|v| v["rows"].as_u64()).unwrap_or(0) as usize
    }

    /// Reads a table with one independent reader; returns the rows and the summary line.
    pub fn read_table(&self, table: &str, reader: &str) -> (Vec<Value>, Value) {
        self.read_columns(table, reader, &[])
    }

    /// Like [`Servers::read_table`], reading only `columns` (all when empty).
    pub fn read_columns(&self, table: &str, reader: &str, columns: &[&str]) -> (Vec<Value>, Value) {
        let out_file = self.dir.path().join(format!("{table}-{reader}.jsonl"));
        let mut cmd = Command::new(venv_python());
        cmd.arg(repo().join("tests/check/read_table.py"));
        self.catalog_args(&mut cmd, table);
        cmd.args(["--reader", reader]).arg("--out").arg(&out_file);
        if !columns.is_empty() {
            cmd.args(["--select", &columns.join(",")]);
        }
        read_rows(cmd, reader, &out_file)
    }

    /// Reads a table with no catalog: `metadata` is a metadata.json URL or a table directory
    /// whose version hint names the version (pyiceberg's StaticTable, DuckDB's iceberg_scan).
    pub fn read_static(&self, metadata: &str, reader: &str) -> (Vec<Value>, Value) {
        let out_file = self.dir.path().join(format!("static-{reader}.jsonl"));
        let mut cmd = Command::new(venv_python());
        cmd.arg(repo().join("tests/check/read_table.py"))
            .args(["--metadata", metadata, "--namespace", "-", "--table", "-"])
            .args(["--s3-endpoint", self.get("FRAZIL_S3_ENDPOINT")])
            .args(["--s3-access-key", self.get("FRAZIL_S3_ACCESS_KEY")])
            .args(["--s3-secret-key", self.get("FRAZIL_S3_SECRET_KEY")])
            .args(["--s3-region", self.get("FRAZIL_S3_REGION")])
            .args(["--reader", reader])
            .arg("--out")
            .arg(&out_file);
        read_rows(cmd, reader, &out_file)
    }

    /// Runs `frazil <args>` against these servers and returns its exit code and stderr.
    pub fn frazil(&self, args: &[&str]) -> (i32, String) {
        let out = frazil_command().args(args).env("FRAZIL_LOG", "info").output().expect("run frazil");
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        (out.status.code().unwrap_or(-1), stderr)
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo().join("tests/servers/stop.sh"))
            .arg(self.dir.path().join("servers"))
            .status();
    }
}

/// JSON equality where a missing key equals null (a reader shows absent struct fields as null).
pub fn same_json(produced: &Value, read: &Value) -> bool {
    match (produced, read) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter().all(|k| same_json(a.get(k).unwrap_or(&Value::Null), b.get(k).unwrap_or(&Value::Null)))
        }
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_json(x, y)),
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

/// Checks that `rows` (from one reader) hold exactly the `expected` events: the same (partition,
/// offset) set, no duplicates, and the same values and Kafka metadata.
pub fn assert_exactly(reader: &str, rows: &[Value], expected: &BTreeMap<(i32, i64), Produced>) {
    use base64::Engine;
    let key_decode = |v: &Value| {
        let b = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_else(|| panic!("{reader}: key is not base64 text: {v}")));
        String::from_utf8(b.expect("key is base64")).expect("key is UTF-8")
    };
    let mut seen = BTreeMap::new();
    for row in rows {
        let p = row["_kafka_partition"].as_i64().unwrap_or_else(|| panic!("{reader}: no partition in {row}")) as i32;
        let o = row["_kafka_offset"].as_i64().unwrap_or_else(|| panic!("{reader}: no offset in {row}"));
        assert!(seen.insert((p, o), row).is_none(), "{reader}: ({p}, {o}) appears twice");
    }
    assert_eq!(seen.len(), expected.len(), "{reader}: row count");
    let missing: Vec<_> = expected.keys().filter(|k| !seen.contains_key(k)).take(5).collect();
    assert!(missing.is_empty(), "{reader}: events missing, e.g. {missing:?}");
    for (k, e) in expected {
        let row = seen[k];
        let mut user = row.as_object().expect("row is an object").clone();
        user.retain(|name, _| !name.starts_with("_kafka_"));
        assert!(
            same_json(&e.value, &Value::Object(user.clone())),
            "{reader}: values differ at {k:?}:\n produced {}\n read     {}",
            e.value,
            Value::Object(user)
        );
        assert_eq!(key_decode(&row["_kafka_key"]), e.key, "{reader}: key at {k:?}");
        let ts = chrono::DateTime::from_timestamp_millis(e.timestamp_ms)
            .expect("timestamp")
            .format("%Y-%m-%dT%H:%M:%S%.6f+00:00")
            .to_string();
        assert_eq!(row["_kafka_timestamp"], Value::String(ts), "{reader}: timestamp at {k:?}");
    }
}

/// A child process killed (SIGKILL) and reaped when dropped, so a failing test leaves none behind.
pub struct Guard(pub Option<std::process::Child>);

impl Guard {
    pub fn child(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("not yet waited for")
    }
    pub fn wait(mut self) -> std::process::ExitStatus {
        self.0.take().expect("not yet waited for").wait().expect("wait for frazil")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `frazil <cmd> --config <config>` in the background with `env`, its stderr (the log) in
/// `log`; killed when the guard drops.
pub fn start_frazil(cmd: &str, config: &Path, log: &Path, env: &[(&str, &str)]) -> Guard {
    let file = std::fs::File::create(log).expect("create log file");
    let child = frazil_command()
        .args([cmd, "--config", path_str(config)])
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("start frazil {cmd}: {e}"));
    Guard(Some(child))
}

/// Runs read_table.py as `cmd`; returns its rows (from `out_file`) and its summary line.
fn read_rows(mut cmd: Command, reader: &str, out_file: &Path) -> (Vec<Value>, Value) {
    let out = cmd.output().expect("run read_table.py");
    assert!(
        out.status.success(),
        "read_table.py --reader {reader} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().expect("a summary line"))
            .expect("summary is JSON");
    let rows = std::fs::read_to_string(out_file)
        .expect("rows file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("row is JSON"))
        .collect();
    (rows, summary)
}

/// Runs frazil; returns its exit code and its stdout then stderr.
pub fn frazil_out(args: &[&str]) -> (i32, String) {
    let out = frazil_command().args(args).output().expect("run frazil");
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

/// Writes a config file readable by its owner only: frazil refuses a world-readable one that
/// holds a secret (these hold the S3 test key).
pub fn write_config(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write config");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod config");
}

/// `frazil status --json` (plus `extra` arguments, e.g. `--offline`) with `config`.
pub fn status_json(config: &Path, extra: &[&str]) -> Value {
    let out = frazil_command()
        .args(["status", "--json", "--config", path_str(config)])
        .args(extra)
        .output()
        .expect("frazil status");
    assert!(out.status.success(), "frazil status failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("status --json is JSON")
}

/// Both readers see exactly `expected`; returns the pyiceberg summary line.
pub fn assert_table_exactly(servers: &Servers, table: &str, expected: &BTreeMap<(i32, i64), Produced>) -> Value {
    let mut first = Value::Null;
    for reader in ["pyiceberg", "duckdb"] {
        let (rows, summary) = servers.read_table(table, reader);
        assert_exactly(reader, &rows, expected);
        if reader == "pyiceberg" {
            first = summary;
        }
    }
    first
}

pub fn wait_until(limit: Duration, mut what: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if what() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    false
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}
