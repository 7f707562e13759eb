//! A tiny fault-injecting HTTP/1.1 proxy for the REST catalog, on 127.0.0.1, std threads only.
//!
//! One request per connection: the request is read (Content-Length or chunked body), forwarded
//! to the real catalog with `Connection: close`, and the answer is passed back with
//! `Connection: close`, so a client never reuses a connection the proxy is about to drop.
//!
//! What happens to a request depends on the fault armed at the time (switchable while frazil runs):
//! - [`Fault::Pass`]: forwarded, answered with the catalog's answer;
//! - [`Fault::ForwardThen500`]: a table commit (`POST …/namespaces/{ns}/tables/{table}`, not the
//!   `…/tables` create) is forwarded, the catalog's answer is thrown away and the client gets a 500;
//! - [`Fault::ForwardThenDrop`]: a table commit is forwarded, then the client's connection is
//!   closed without an answer;
//! - [`Fault::Refuse503`]: a table commit is answered 503 and never forwarded;
//! - [`Fault::Down`]: every request (not only commits) is answered 503 and never forwarded.
//!
//! [`Proxy::hold`] makes the forward-then-fail faults wait before failing the client, so another
//! writer can commit on top of the applied commit first. Requests the armed fault does not apply
//! to pass through. [`Proxy::arm`] limits a fault to its next `n` applications, after which
//! another fault (usually `Pass`) takes over. Every exchange is recorded, with the
//! `frazil.commit-id` a commit carried and the status the catalog returned. The HTTP reading and
//! writing is in `http.rs`.

use std::io::{BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::http::{Request, answer, push_headers, read_body, read_headers, read_line, read_request};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Pass,
    ForwardThen500,
    ForwardThenDrop,
    Refuse503,
    Down,
}

impl Fault {
    /// Whether this fault applies to a request (commit faults only to table commits).
    fn applies(self, commit: bool) -> bool {
        match self {
            Fault::Pass => false,
            Fault::Down => true,
            Fault::ForwardThen500 | Fault::ForwardThenDrop | Fault::Refuse503 => commit,
        }
    }
}

/// One request the proxy handled.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    /// A table commit (`POST …/namespaces/{ns}/tables/{table}`).
    pub commit: bool,
    /// The `frazil.commit-id` in the commit's snapshot summary, if any.
    pub commit_id: Option<String>,
    /// The fault applied to this request (`Pass` when none).
    pub fault: Fault,
    /// The status the real catalog answered (None: not forwarded, or no answer).
    pub upstream: Option<u16>,
    /// The status the client got (None: connection dropped).
    pub answered: Option<u16>,
}

struct Plan {
    fault: Fault,
    /// How many more times `fault` applies before `then` takes over.
    remaining: u32,
    then: Fault,
}

struct State {
    upstream: SocketAddr,
    plan: Mutex<Plan>,
    /// How long a forward-then-fail fault holds the client after the catalog answered.
    hold: Mutex<Duration>,
    /// Faulted requests the catalog has answered so far (counted before any hold).
    faulted_forwarded: AtomicU32,
    log: Mutex<Vec<Exchange>>,
    stop: AtomicBool,
    /// When set, the proxy stands for the catalog's OAuth2 server and checks bearer tokens.
    auth: Mutex<Option<Tokens>>,
    /// Pass the client's Host header on instead of the upstream's (S3 signatures cover it).
    keep_host: AtomicBool,
    /// Held while a conditional create (`If-None-Match`) is forwarded and answered: s3s-fs checks
    /// that the object is absent and then writes it, so two creates at once could both succeed,
    /// where S3 itself decides atomically. One at a time, the proxy gives its clients S3's
    /// semantics.
    creates: Mutex<()>,
}

/// OAuth2 client credentials in front of the catalog (which runs without auth here): the proxy
/// answers `POST …/v1/oauth/tokens` itself, and every other request needs a bearer token it
/// issued that has not expired, or the fixed token, else it gets 401 and is not forwarded.
struct Tokens {
    client_id: String,
    secret: String,
    lifetime: Duration,
    fixed: Option<String>,
    issued: Vec<(String, std::time::Instant)>,
}

pub struct Proxy {
    pub url: String,
    addr: SocketAddr,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy in front of `upstream_url` (`http://127.0.0.1:PORT`), passing everything through.
    pub fn start(upstream_url: &str) -> Proxy {
        let hostport = upstream_url.trim_start_matches("http://").trim_end_matches('/');
        let upstream: SocketAddr = hostport.parse().unwrap_or_else(|e| panic!("proxy upstream {upstream_url}: {e}"));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(State {
            upstream,
            plan: Mutex::new(Plan { fault: Fault::Pass, remaining: u32::MAX, then: Fault::Pass }),
            hold: Mutex::new(Duration::ZERO),
            faulted_forwarded: AtomicU32::new(0),
            log: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            auth: Mutex::new(None),
            keep_host: AtomicBool::new(false),
            creates: Mutex::new(()),
        });
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name("catalog-proxy".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if st.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let st = st.clone();
                    std::thread::spawn(move || handle(conn, &st));
                }
            })
            .expect("spawn the proxy thread");
        Proxy { url: format!("http://{addr}"), addr, state, thread: Some(thread) }
    }

    /// Passes the client's Host header on, for an upstream that checks request signatures (S3).
    pub fn keep_host(&self) {
        self.state.keep_host.store(true, Ordering::SeqCst);
    }

    /// From now on, requests need a token: one issued for `client_id`/`secret` at
    /// `…/v1/oauth/tokens`, valid for `lifetime`, or `fixed`.
    pub fn require_tokens(&self, client_id: &str, secret: &str, lifetime: Duration, fixed: Option<&str>) {
        *self.state.auth.lock().unwrap() = Some(Tokens {
            client_id: client_id.into(),
            secret: secret.into(),
            lifetime,
            fixed: fixed.map(Into::into),
            issued: Vec::new(),
        });
    }

    /// From now on, `fault` applies every time.
    pub fn set(&self, fault: Fault) {
        *self.state.plan.lock().unwrap() = Plan { fault, remaining: u32::MAX, then: fault };
    }

    /// `fault` applies to the next `times` requests it concerns, then `then` takes over.
    pub fn arm(&self, fault: Fault, times: u32, then: Fault) {
        *self.state.plan.lock().unwrap() = Plan { fault, remaining: times, then };
    }

    /// The fault currently armed.
    pub fn fault(&self) -> Fault {
        self.state.plan.lock().unwrap().fault
    }

    /// Forward-then-fail faults wait this long after the catalog answered before failing the
    /// client (so another writer can commit meanwhile).
    pub fn hold(&self, d: Duration) {
        *self.state.hold.lock().unwrap() = d;
    }

    /// How many faulted requests have reached the catalog and been answered by it (also while held).
    pub fn faulted_forwarded(&self) -> u32 {
        self.state.faulted_forwarded.load(Ordering::SeqCst)
    }

    /// Every exchange so far, and forgets them.
    pub fn take(&self) -> Vec<Exchange> {
        std::mem::take(&mut *self.state.log.lock().unwrap())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The fault for this request, using up one application of an armed fault.
fn decide(state: &State, commit: bool) -> Fault {
    let mut plan = state.plan.lock().unwrap();
    if !plan.fault.applies(commit) {
        return Fault::Pass;
    }
    let fault = plan.fault;
    if plan.remaining != u32::MAX {
        plan.remaining -= 1;
        if plan.remaining == 0 {
            plan.fault = plan.then;
            plan.remaining = u32::MAX;
        }
    }
    fault
}

/// `POST …/namespaces/{ns}/tables/{table}`: a table commit (the create is `POST …/namespaces/{ns}/tables`).
pub fn is_commit(method: &str, target: &str) -> bool {
    if method != "POST" {
        return false;
    }
    let path = target.split('?').next().unwrap_or("");
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    segs.iter().position(|s| *s == "namespaces").is_some_and(|i| segs.len() == i + 4 && segs[i + 2] == "tables")
}

/// The first value of a `frazil.commit-id` key anywhere in the JSON body.
fn find_commit_id(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(serde_json::Value::String(s)) = m.get("frazil.commit-id") {
                return Some(s.clone());
            }
            m.values().find_map(find_commit_id)
        }
        serde_json::Value::Array(a) => a.iter().find_map(find_commit_id),
        _ => None,
    }
}

/// The catalog's answer to a forwarded request.
struct Answer {
    status: u16,
    status_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Sends the request to the catalog with `Connection: close`; returns its answer.
fn forward(state: &State, req: &Request) -> std::io::Result<Answer> {
    let _one_create_at_a_time = req.header("if-none-match").map(|_| state.creates.lock().unwrap());
    let mut up = TcpStream::connect_timeout(&state.upstream, Duration::from_secs(10))?;
    up.set_read_timeout(Some(Duration::from_secs(120)))?;
    let upstream = state.upstream.to_string();
    let host = match req.header("host") {
        Some(h) if state.keep_host.load(Ordering::SeqCst) => h,
        _ => &upstream,
    };
    let mut head = format!("{} {} HTTP/1.1\r\nHost: {host}\r\n", req.method, req.target);
    push_headers(&mut head, &req.headers, &["host", "proxy-connection"]);
    if !req.body.is_empty() || req.method == "POST" || req.method == "PUT" {
        head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    up.write_all(head.as_bytes())?;
    up.write_all(&req.body)?;
    up.flush()?;
    let mut r = BufReader::new(up);
    let status_line = read_line(&mut r)?;
    let status: u16 =
        status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("status line {status_line:?}"))
        })?;
    let headers = read_headers(&mut r)?;
    let body = if req.method == "HEAD" || status == 204 || status == 304 {
        Vec::new()
    } else {
        read_body(&mut r, &headers, true)?
    };
    Ok(Answer { status, status_line, headers, body })
}

fn injected(client: &mut TcpStream, status: u16, reason: &str, what: &str) -> std::io::Result<()> {
    let body = format!(
        r#"{{"error":{{"message":"{what} (injected by the test proxy)","type":"{}","code":{status}}}}}"#,
        reason.replace(' ', "")
    );
    answer(
        client,
        &format!("HTTP/1.1 {status} {reason}"),
        &[("Content-Type".into(), "application/json".into())],
        body.as_bytes(),
    )
}

/// With tokens required: answers the token endpoint, or a request without a valid token (401).
/// `None`: the request may go on to the catalog.
fn authorize(state: &State, req: &Request, client: &mut TcpStream) -> Option<u16> {
    let mut auth = state.auth.lock().unwrap();
    let tokens = auth.as_mut()?;
    let json = [("Content-Type".to_string(), "application/json".to_string())];
    if req.method == "POST" && req.target.ends_with("/v1/oauth/tokens") {
        let form: std::collections::HashMap<String, String> = String::from_utf8_lossy(&req.body)
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.replace("%3A", ":").replace('+', " ")))
            .collect();
        let ok = form.get("grant_type").map(String::as_str) == Some("client_credentials")
            && form.get("client_id") == Some(&tokens.client_id)
            && form.get("client_secret") == Some(&tokens.secret);
        if !ok {
            let _ = answer(client, "HTTP/1.1 401 Unauthorized", &json, br#"{"error":"invalid_client"}"#);
            return Some(401);
        }
        let token = format!("tok-{}", tokens.issued.len() + 1);
        tokens.issued.push((token.clone(), std::time::Instant::now()));
        let body =
            format!(r#"{{"access_token":"{token}","token_type":"bearer","expires_in":{}}}"#, tokens.lifetime.as_secs());
        let _ = answer(client, "HTTP/1.1 200 OK", &json, body.as_bytes());
        return Some(200);
    }
    let bearer = req.header("Authorization").and_then(|a| a.strip_prefix("Bearer "));
    let valid = bearer.is_some_and(|b| {
        tokens.fixed.as_deref() == Some(b)
            || tokens.issued.iter().any(|(t, at)| t == b && at.elapsed() < tokens.lifetime)
    });
    if valid {
        return None;
    }
    let _ = answer(
        client,
        "HTTP/1.1 401 Unauthorized",
        &json,
        br#"{"error":{"message":"not authorized","type":"NotAuthorizedException","code":401}}"#,
    );
    Some(401)
}

fn handle(mut client: TcpStream, state: &State) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(60)));
    let req = {
        let mut r = BufReader::new(match client.try_clone() {
            Ok(c) => c,
            Err(_) => return,
        });
        match read_request(&mut r) {
            Ok(req) => req,
            Err(_) => return, // the wake-up connection of Drop, or a client that went away
        }
    };
    if let Some(status) = authorize(state, &req, &mut client) {
        let _ = client.shutdown(Shutdown::Both);
        state.log.lock().unwrap().push(Exchange {
            method: req.method.clone(),
            path: req.target.clone(),
            commit: false,
            commit_id: None,
            fault: Fault::Pass,
            upstream: None,
            answered: Some(status),
        });
        return;
    }
    let commit = is_commit(&req.method, &req.target);
    let commit_id =
        if commit { serde_json::from_slice(&req.body).ok().as_ref().and_then(find_commit_id) } else { None };
    let fault = decide(state, commit);
    let mut ex = Exchange {
        method: req.method.clone(),
        path: req.target.clone(),
        commit,
        commit_id,
        fault,
        upstream: None,
        answered: None,
    };
    match fault {
        Fault::Refuse503 | Fault::Down => {
            if injected(&mut client, 503, "Service Unavailable", "the catalog is unavailable").is_ok() {
                ex.answered = Some(503);
            }
        }
        Fault::Pass | Fault::ForwardThen500 | Fault::ForwardThenDrop => {
            match forward(state, &req) {
                Ok(Answer { status, status_line, headers, body }) => {
                    ex.upstream = Some(status);
                    if fault != Fault::Pass {
                        state.faulted_forwarded.fetch_add(1, Ordering::SeqCst);
                        let hold = *state.hold.lock().unwrap();
                        std::thread::sleep(hold);
                    }
                    match fault {
                        Fault::ForwardThen500 => {
                            if injected(&mut client, 500, "Internal Server Error", "the commit failed").is_ok() {
                                ex.answered = Some(500);
                            }
                        }
                        Fault::ForwardThenDrop => {}
                        _ => {
                            if answer(&mut client, &status_line, &headers, &body).is_ok() {
                                ex.answered = Some(status);
                            }
                        }
                    }
                }
                Err(_) => {
                    // The catalog itself is unreachable: say so as a gateway would.
                    if injected(&mut client, 502, "Bad Gateway", "the proxy could not reach the catalog").is_ok() {
                        ex.answered = Some(502);
                    }
                }
            }
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    state.log.lock().unwrap().push(ex);
}
