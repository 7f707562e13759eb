//! Serves the read state (see `crate::read::wire`) on `read.sock` in the spool directory, one
//! connection at a time, on the agent's executor. The fetcher only copies its hot buffers (between
//! two fetch answers); listing the files, encoding Arrow IPC and writing happen here, off the
//! fetch loop.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use smol::channel::Sender;
use smol::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use smol::net::unix::{UnixListener, UnixStream};

use super::shared::Shared;
use crate::read::wire::{self, FileEntry, Request};
use crate::read::{HotPiece, SOCKET};
use crate::{Error, Result};

/// Where the fetcher sends a copy of its hot rows.
pub type HotReply = Sender<Vec<HotPiece>>;

/// A client has this long to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Removes the socket when the agent stops, so a query knows no agent is there.
struct Bound(PathBuf);

impl Drop for Bound {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Shared {
    /// Serves the read state until the agent stops; never completes. Without a socket (a path
    /// too long for one, a filesystem without them) the agent runs on and says why.
    pub async fn serve_reads(&self, fetcher: Sender<HotReply>) {
        let path = self.spool.dir().join(SOCKET);
        match bind(&path) {
            Ok((listener, _bound)) => loop {
                let conn = match listener.accept().await {
                    Ok((c, _)) => c,
                    Err(e) => {
                        log::warn!("read state: accepting on {}: {e}", path.display());
                        smol::Timer::after(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if let Err(e) = self.answer(conn, &fetcher).await {
                    log::warn!("read state: {e}");
                }
            },
            Err(e) => {
                log::warn!("read state: cannot listen on {}: {e}; queries see the spool and table only", path.display())
            }
        }
        std::future::pending::<()>().await;
    }

    async fn answer(&self, conn: UnixStream, fetcher: &Sender<HotReply>) -> Result<()> {
        let mut reader = BufReader::new(conn.clone());
        let mut line = String::new();
        let read = smol::future::or(async { reader.read_line(&mut line).await.map(Some) }, async {
            smol::Timer::after(REQUEST_TIMEOUT).await;
            Ok(None)
        });
        if read.await.map_err(|e| Error::io("reading a request", e))?.is_none() {
            return Err(Error::io("reading a request", std::io::ErrorKind::TimedOut.into()));
        }
        let request: Request = serde_json::from_str(&line)
            .map_err(|e| Error::io("a request", std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        if request.version != wire::VERSION {
            // An empty answer in this agent's version: the client names both versions.
            let mut header = Vec::new();
            wire::write_answer(&mut header, &self.cfg.agent_id, &[], Vec::new())?;
            let mut conn = conn;
            let _ = conn.write_all(&header).await;
            let e = format!("a request of version {} (this agent speaks {})", request.version, wire::VERSION);
            return Err(Error::io("a request", std::io::Error::other(e)));
        }
        // First the hot rows, then the files: a roll in between shows its rows twice (the plan
        // takes them once), never not at all. A fetcher that has ended holds nothing.
        let (tx, rx) = smol::channel::bounded(1);
        let hot = match fetcher.send(tx).await {
            Ok(()) => rx.recv().await.unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let files = crate::spill::on_pool(&self.spool, |s| s.files()).await?;
        let agent = self.cfg.agent_id.clone();
        let bytes = blocking::unblock(move || {
            let mut out = Vec::new();
            wire::write_answer(&mut out, &agent, &hot, files.iter().map(FileEntry::new).collect())?;
            Ok::<_, Error>(out)
        })
        .await?;
        let mut conn = conn;
        conn.write_all(&bytes).await.map_err(|e| Error::io("writing the read state", e))?;
        conn.flush().await.map_err(|e| Error::io("writing the read state", e))
    }
}

/// Binds the socket, readable and writable by the agent's user alone. A socket left by an agent
/// that died is removed first: this agent holds the spool's lock, so no other one uses it.
fn bind(path: &Path) -> std::io::Result<(UnixListener, Bound)> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    let bound = Bound(path.to_path_buf());
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok((listener, bound))
}
