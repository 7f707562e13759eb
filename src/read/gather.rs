//! The client side of the read state: the running agent's answer on its socket, or, with no agent
//! running, the spool's files from its index opened read-only (nothing is held in memory then).

use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use frazil_spool::Spool;

use super::wire::{self, FileEntry, HotPiece, Request};
use crate::config::SpoolConfig;
use crate::{Error, Result};

/// How long a running agent may take to answer: it answers between two fetch answers.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// What the agent holds locally, read in the order data flows: hot rows, then files.
#[derive(Debug, Default)]
pub struct ReadState {
    /// The answer came from a running agent (else from the spool index alone).
    pub agent_running: bool,
    pub hot: Vec<HotPiece>,
    pub files: Vec<FileEntry>,
}

/// Asks the agent running on `spool`'s directory for its read state; with none running, lists
/// the spool's files read-only. A spool that does not exist yet holds nothing.
pub fn gather(spool: &SpoolConfig) -> Result<ReadState> {
    let socket = spool.dir.join(wire::SOCKET);
    match UnixStream::connect(&socket) {
        Ok(s) => ask(s).map_err(|e| Error::io(format!("asking the agent on {}", socket.display()), e)),
        // No agent, or one that died without removing its socket.
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {
            from_index(spool)
        }
        Err(e) => Err(Error::io(format!("connecting to {}", socket.display()), e)),
    }
}

fn ask(mut s: UnixStream) -> std::io::Result<ReadState> {
    s.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    s.set_write_timeout(Some(ANSWER_TIMEOUT))?;
    let mut line = serde_json::to_vec(&Request { version: wire::VERSION })?;
    line.push(b'\n');
    s.write_all(&line)?;
    let (header, hot) = wire::read_answer(&mut BufReader::new(s)).map_err(std::io::Error::other)?;
    Ok(ReadState { agent_running: true, hot, files: header.files })
}

fn from_index(cfg: &SpoolConfig) -> Result<ReadState> {
    if !cfg.dir.join("index.redb").exists() {
        return Ok(ReadState::default());
    }
    let files = match Spool::open_read_only(&cfg.dir, crate::spill::options(cfg)) {
        Ok(s) => s.files()?,
        // The last writer crashed (an agent killed and not yet restarted): read a repaired copy,
        // so that the query never holds the spool's lock against an agent starting again.
        Err(_) => Spool::files_from_copy(&cfg.dir, crate::spill::options(cfg))?,
    };
    Ok(ReadState { agent_running: false, hot: Vec::new(), files: files.iter().map(FileEntry::new).collect() })
}
