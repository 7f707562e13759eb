//! A stand-in for a Confluent Schema Registry on 127.0.0.1 (none can be installed here): it
//! serves the registry's documented answers to `GET /schemas/ids/{id}` (`{"schema": "<text>"}`,
//! with `schemaType` and `references` for Protobuf) and `GET /subjects/{subject}/versions/{v}`
//! (how a client fetches what a schema references), checks HTTP basic auth (401 otherwise),
//! answers an unknown id with 404 and the registry's error code 40403 (an unknown subject:
//! 40401), and `GET /subjects` with an empty list. Every request is recorded with the status it
//! got.

use std::collections::BTreeMap;
use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine as _;

use super::http::{answer, read_request};

struct State {
    /// Answers by request path.
    answers: BTreeMap<String, serde_json::Value>,
    /// The `Authorization` header a request must carry.
    auth: String,
    requests: Mutex<Vec<(String, u16)>>,
    stop: AtomicBool,
}

pub struct Registry {
    pub url: String,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl Registry {
    /// A registry of Avro schemas by id.
    pub fn start(user: &str, password: &str, schemas: BTreeMap<u32, String>) -> Registry {
        let answers =
            schemas.into_iter().map(|(id, text)| (format!("/schemas/ids/{id}"), serde_json::json!({"schema": text})));
        Registry::serving(user, password, answers.collect())
    }

    /// A registry that answers GETs of these paths with these bodies.
    pub fn serving(user: &str, password: &str, answers: BTreeMap<String, serde_json::Value>) -> Registry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the registry stub");
        let url = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")));
        let state = Arc::new(State { answers, auth, requests: Mutex::new(Vec::new()), stop: AtomicBool::new(false) });
        let s = state.clone();
        let thread = std::thread::spawn(move || {
            while !s.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        handle(conn, &s);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Registry { url, state, thread: Some(thread) }
    }

    /// Every request so far: its target and the status it was answered with.
    pub fn requests(&self) -> Vec<(String, u16)> {
        self.state.requests.lock().unwrap().clone()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn handle(mut conn: TcpStream, state: &State) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(req) = read_request(&mut BufReader::new(conn.try_clone().expect("clone"))) else { return };
    let path = req.target.split('?').next().unwrap_or_default();
    let (status, body) = if req.header("authorization") != Some(state.auth.as_str()) {
        (401, serde_json::json!({"error_code": 401, "message": "Unauthorized"}))
    } else {
        let not_found =
            |code: u32, what: &str| serde_json::json!({"error_code": code, "message": format!("{what} not found")});
        match (req.method.as_str(), state.answers.get(path)) {
            // The registry's subject list; this stand-in lists none.
            ("GET", _) if path == "/subjects" => (200, serde_json::json!([])),
            ("GET", Some(answer)) => (200, answer.clone()),
            ("GET", None) if path.starts_with("/schemas/ids/") => (404, not_found(40403, "Schema")),
            ("GET", None) if path.starts_with("/subjects/") => (404, not_found(40401, "Subject")),
            _ => (404, serde_json::json!({"error_code": 404, "message": "HTTP 404 Not Found"})),
        }
    };
    state.requests.lock().unwrap().push((req.target.clone(), status));
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        _ => "Not Found",
    };
    let headers = [("Content-Type".to_string(), "application/vnd.schemaregistry.v1+json".to_string())];
    let _ = answer(&mut conn, &format!("HTTP/1.1 {status} {reason}"), &headers, body.to_string().as_bytes());
}

/// Confluent frames made by an independent encoder: `script` (under tests/check/, run with the
/// test venv) reads `spec` and writes one base64 frame per line.
pub fn python_frames(dir: &std::path::Path, script: &str, spec: &serde_json::Value) -> Vec<Vec<u8>> {
    let (spec_path, out_path) = (dir.join(format!("{script}.spec.json")), dir.join(format!("{script}.frames")));
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let out = std::process::Command::new(super::venv_python())
        .arg(super::repo().join("tests/check").join(script))
        .arg(&spec_path)
        .arg(&out_path)
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(out.status.success(), "{script} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    std::fs::read_to_string(&out_path)
        .unwrap()
        .lines()
        .map(|l| base64::engine::general_purpose::STANDARD.decode(l).unwrap())
        .collect()
}

/// `frame` naming schema id `id` instead.
pub fn with_id(frame: &[u8], id: u32) -> Vec<u8> {
    let mut v = frame.to_vec();
    v[1..5].copy_from_slice(&id.to_be_bytes());
    v
}

/// Checks `table`'s dead-letter table as `reader` sees it: one row per record of `values` that
/// has a reason (in `offsets` order), at its offset, whose reason says it, with the record's
/// value byte for byte.
pub fn assert_dead_letters(
    servers: &super::Servers,
    table: &str,
    reader: &str,
    offsets: &[i64],
    values: &[(Vec<u8>, Option<&str>)],
) {
    let (mut dead, _) = servers.read_columns(&format!("{table}__dlq"), reader, &["offset", "reason", "value"]);
    dead.sort_by_key(|r| r["offset"].as_i64());
    let bad: Vec<_> = offsets.iter().zip(values).filter_map(|(o, (v, why))| why.map(|w| (o, v, w))).collect();
    assert_eq!(dead.len(), bad.len(), "{reader}: {dead:?}");
    for (d, (offset, value, why)) in dead.iter().zip(bad) {
        assert_eq!(d["offset"].as_i64(), Some(*offset), "{reader}");
        let reason = d["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(why), "{reader}: offset {offset}: `{reason}` should say `{why}`");
        let raw = d["value"].as_str().map(|v| base64::engine::general_purpose::STANDARD.decode(v).unwrap());
        assert_eq!(raw.as_ref(), Some(value), "{reader}: offset {offset}: the raw value, byte for byte");
    }
}

/// A config reading `topic` as `format` (a registered-schema format), with the registry at `url`
/// and the stand-in's credentials.
pub fn registry_config(servers: &super::Servers, topic: &str, format: &str, url: &str) -> std::path::PathBuf {
    let config = servers.config(&[topic], "");
    let text =
        std::fs::read_to_string(&config).unwrap().replace("[kafka]\n", &format!("[kafka]\nformat = \"{format}\"\n"))
            + &format!("\n[schema_registry]\nurl = \"{url}\"\nusername = \"frazil\"\npassword = \"s3cret\"\n");
    super::write_config(&config, &text);
    config
}
