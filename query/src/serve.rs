//! `--serve ADDR`: the same answers over HTTP on a loopback address, for dashboards. `POST /query`
//! with the SQL as the body (or `GET /query?sql=...`) answers an Arrow IPC stream; each request
//! reads the agent's state afresh, so every answer is exact as of its own moment. What the answer
//! covers goes in `X-Frazil-Coverage` headers, one per line of the report. One request at a time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::prelude::SessionContext;
use frazil::config::Config;
use futures::TryStreamExt;

use crate::error::{Error, Result};
use crate::{answer, output, sources};

/// A request body larger than this is refused: SQL, not data.
const MAX_BODY: usize = 1 << 20;

pub fn serve(cfg: &Config, addr: SocketAddr, offline: bool, runtime: &tokio::runtime::Runtime) -> Result<()> {
    if !addr.ip().is_loopback() {
        return Err(Error::data(
            format!("--serve {addr}"),
            "serve on a loopback address (127.0.0.1 or ::1): answers hold raw events",
        ));
    }
    let listener = TcpListener::bind(addr).map_err(|e| Error::data(format!("--serve {addr}"), e))?;
    let bound = listener.local_addr().map_err(|e| Error::data(format!("--serve {addr}"), e))?;
    log::info!("answering queries on http://{bound}/query (POST the SQL, or GET ?sql=...)");
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let answer = match read_sql(&mut conn) {
            Ok(sql) => runtime.block_on(answer_ipc(cfg, &sql, offline)),
            Err(e) => Err(e),
        };
        let written = match answer {
            Ok((body, coverage)) => {
                let headers: String = coverage
                    .lines()
                    .map(|l| format!("X-Frazil-Coverage: {}\r\n", l.trim_start_matches("-- ")))
                    .collect();
                respond(&mut conn, "200 OK", "application/vnd.apache.arrow.stream", &headers, &body)
            }
            Err(e) => {
                respond(&mut conn, "400 Bad Request", "text/plain; charset=utf-8", "", format!("{e}\n").as_bytes())
            }
        };
        if let Err(e) = written {
            log::warn!("--serve: answering: {e}");
        }
    }
    Ok(())
}

async fn answer_ipc(cfg: &Config, sql: &str, offline: bool) -> Result<(Vec<u8>, String)> {
    let sources = sources::gather(cfg, offline).await?;
    let (why, running) = (sources.offline.clone(), sources.agent_running);
    let ctx = SessionContext::new();
    let coverage = answer::register(&ctx, sources).await?;
    let mut answer = ctx.sql(sql).await?.execute_stream().await?;
    let mut body = Vec::new();
    let fail = |e: &dyn std::fmt::Display| Error::data("encoding the answer", e);
    let mut w = StreamWriter::try_new(&mut body, &answer.schema()).map_err(|e| fail(&e))?;
    while let Some(b) = answer.try_next().await? {
        w.write(&b).map_err(|e| fail(&e))?;
    }
    w.finish().map_err(|e| fail(&e))?;
    drop(w);
    Ok((body, output::coverage(&coverage, why.as_deref(), running)))
}

/// The SQL of one request: a POST body, or the `sql` parameter of a GET.
fn read_sql(conn: &mut TcpStream) -> Result<String> {
    let bad = |what: &str| Error::data("--serve", what.to_string());
    let mut reader = BufReader::new(conn.try_clone().map_err(|e| Error::data("--serve", e))?);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| Error::data("--serve: reading a request", e))?;
    let mut words = line.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).map_err(|e| Error::data("--serve: reading a request", e))?;
        if h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().map_err(|_| bad("a Content-Length that is not a number"))?;
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path != "/query" {
        return Err(bad("ask /query"));
    }
    match method {
        "POST" if length <= MAX_BODY => {
            let mut body = vec![0; length];
            reader.read_exact(&mut body).map_err(|e| Error::data("--serve: reading the SQL", e))?;
            String::from_utf8(body).map_err(|_| bad("SQL that is not UTF-8"))
        }
        "POST" => Err(bad("a body over 1 MiB")),
        "GET" => query
            .split('&')
            .find_map(|kv| kv.strip_prefix("sql="))
            .map(percent_decode)
            .ok_or_else(|| bad("GET /query?sql=...")),
        _ => Err(bad("POST /query or GET /query?sql=...")),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn respond(conn: &mut TcpStream, status: &str, kind: &str, headers: &str, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n{headers}Connection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    conn.write_all(body)?;
    conn.flush()
}

#[cfg(test)]
mod tests {
    #[test]
    fn sql_in_a_url_is_decoded() {
        assert_eq!(super::percent_decode("SELECT+count(*)%20FROM%20t%3B"), "SELECT count(*) FROM t;");
        assert_eq!(super::percent_decode("100%"), "100%");
    }
}
