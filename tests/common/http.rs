//! HTTP/1.1 on the wire, just enough for the test proxy and the test schema registry: one request
//! or answer per connection, bodies by Content-Length or chunked, `Connection: close` answers.

use std::io::{BufRead, Write};
use std::net::TcpStream;

/// One HTTP request as read off a connection.
pub struct Request {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

pub fn read_line(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

pub fn read_headers(r: &mut impl BufRead) -> std::io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            return Ok(headers);
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// A message body per its headers: Content-Length, chunked, or none (requests) / to EOF (`to_eof`).
pub fn read_body(r: &mut impl BufRead, headers: &[(String, String)], to_eof: bool) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if header(headers, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        loop {
            let size_line = read_line(r)?;
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("chunk size {size_line:?}: {e}"))
            })?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !read_line(r)?.is_empty() {}
                return Ok(body);
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            read_line(r)?; // the CRLF after the chunk
        }
    } else if let Some(n) = header(headers, "content-length") {
        let n: usize = n
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("content-length {n:?}: {e}")))?;
        body.resize(n, 0);
        r.read_exact(&mut body)?;
        Ok(body)
    } else if to_eof {
        r.read_to_end(&mut body)?;
        Ok(body)
    } else {
        Ok(body)
    }
}

pub fn read_request(r: &mut impl BufRead) -> std::io::Result<Request> {
    let line = read_line(r)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("request line {line:?}")));
    };
    let (method, target) = (method.to_string(), target.to_string());
    let headers = read_headers(r)?;
    let body = read_body(r, &headers, false)?;
    Ok(Request { method, target, headers, body })
}

/// Appends `headers` as header lines, leaving out `skip` and the ones that describe the
/// connection or the body's framing (the message is re-framed with `Connection: close`).
pub fn push_headers(head: &mut String, headers: &[(String, String)], skip: &[&str]) {
    let framing = ["connection", "keep-alive", "content-length", "transfer-encoding"];
    for (k, v) in headers {
        if !framing.iter().chain(skip).any(|s| k.eq_ignore_ascii_case(s)) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
}

/// Writes an answer with `Connection: close` and its body's Content-Length.
pub fn answer(
    client: &mut TcpStream,
    status_line: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!("{status_line}\r\n");
    push_headers(&mut head, headers, &[]);
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
    client.write_all(head.as_bytes())?;
    client.write_all(body)?;
    client.flush()
}
