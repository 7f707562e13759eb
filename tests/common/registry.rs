//! A stand-in for a Confluent Schema Registry on 127.0.0.1 (none can be installed here): it
//! serves the registry's documented answers to `GET /schemas/ids/{id}`, `{"schema": "<text>"}`,
//! checks HTTP basic auth (401 otherwise), and answers an unknown id with 404 and the registry's
//! error code 40403, and `GET /subjects` with an empty list. Every request is recorded with the
//! status it got.

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
    schemas: BTreeMap<u32, String>,
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
    pub fn start(user: &str, password: &str, schemas: BTreeMap<u32, String>) -> Registry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the registry stub");
        let url = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")));
        let state = Arc::new(State { schemas, auth, requests: Mutex::new(Vec::new()), stop: AtomicBool::new(false) });
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
    let id = req
        .target
        .strip_prefix("/schemas/ids/")
        .and_then(|rest| rest.split('?').next())
        .and_then(|id| id.parse::<u32>().ok());
    let (status, body) = if req.header("authorization") != Some(state.auth.as_str()) {
        (401, serde_json::json!({"error_code": 401, "message": "Unauthorized"}))
    } else {
        match (req.method.as_str(), id) {
            // The registry's subject list; this stand-in has no subjects, only schemas by id.
            ("GET", None) if req.target == "/subjects" => (200, serde_json::json!([])),
            ("GET", Some(id)) => match state.schemas.get(&id) {
                Some(text) => (200, serde_json::json!({"schema": text})),
                None => (404, serde_json::json!({"error_code": 40403, "message": format!("Schema {id} not found")})),
            },
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
