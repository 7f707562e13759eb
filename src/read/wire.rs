//! The read-state protocol on the agent's socket. One request, one answer, then the agent closes:
//!
//! ```text
//! client → agent   {"version":1}\n
//! agent  → client  {"version":1,"agent":"gw-1","hot":[Span...],"files":[FileEntry...]}\n
//!                  one Arrow IPC stream (schema, batches, end-of-stream) per entry of "hot", in order
//! ```
//!
//! The hot rows are taken first (between two fetch answers, so no roll is half done) and the
//! files listed after them: the order data flows, which [`super::plan`] relies on.

use std::io::{BufRead, Write};

use arrow_array::RecordBatch;
use frazil_spool::{FileState, SpoolFile};
use serde::{Deserialize, Serialize};

use super::plan::Piece;
use crate::{Error, Result};

/// The socket's name in the spool directory.
pub const SOCKET: &str = "read.sock";

/// The protocol's version; an agent answers only requests of its own version.
pub const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub version: u32,
}

/// The answer's first line.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Header {
    pub version: u32,
    pub agent: String,
    pub hot: Vec<Span>,
    pub files: Vec<FileEntry>,
}

/// What a piece of local rows (a hot buffer's, or a spool file's) covers: `first_offset..=last_offset`
/// of one partition, bound for `table` (a table, or a dead-letter table). Any offset of the range
/// without a row here is a record that became a row of the other table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub table: String,
    pub topic: String,
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub rows: u64,
}

impl Span {
    /// The span as the planner sees it.
    pub fn piece(&self) -> Piece {
        Piece { tp: (self.topic.clone(), self.partition), first: self.first_offset, last: self.last_offset }
    }
}

/// Rows held in memory by the agent, with the offsets they cover.
#[derive(Clone, Debug)]
pub struct HotPiece {
    pub span: Span,
    pub batches: Vec<RecordBatch>,
}

/// A spool file as the query sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub id: u64,
    #[serde(flatten)]
    pub span: Span,
    pub bytes: u64,
    /// `written`, `uploaded`, `committed` or `quarantined`.
    pub state: String,
    pub path: std::path::PathBuf,
}

impl FileEntry {
    pub fn new(f: &SpoolFile) -> FileEntry {
        let state = match f.state {
            FileState::Written => "written",
            FileState::Uploaded { .. } => "uploaded",
            FileState::Committed => "committed",
            _ => "quarantined",
        };
        FileEntry {
            id: f.id,
            span: Span {
                table: f.meta.table.clone(),
                topic: f.meta.topic.clone(),
                partition: f.meta.partition,
                first_offset: f.meta.first_offset,
                last_offset: f.meta.last_offset,
                rows: f.meta.rows,
            },
            bytes: f.bytes,
            state: state.to_string(),
            path: f.path.clone(),
        }
    }

    /// A file whose rows a query may read: in `data/`, whatever its upload or commit state.
    pub fn readable(&self) -> bool {
        self.state != "quarantined"
    }
}

fn wire_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::io(format!("read state: {what}"), std::io::Error::other(e.to_string()))
}

/// Writes the answer: the header line, then each hot piece's rows as one IPC stream.
pub fn write_answer(out: &mut impl Write, agent: &str, hot: &[HotPiece], files: Vec<FileEntry>) -> Result<()> {
    let header =
        Header { version: VERSION, agent: agent.to_string(), hot: hot.iter().map(|h| h.span.clone()).collect(), files };
    let mut line = serde_json::to_vec(&header).map_err(|e| wire_err("header", e))?;
    line.push(b'\n');
    out.write_all(&line).map_err(|e| Error::io("read state: writing", e))?;
    for piece in hot {
        let schema = piece
            .batches
            .first()
            .map_or_else(|| std::sync::Arc::new(arrow_schema::Schema::empty()), RecordBatch::schema);
        let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut *out, &schema).map_err(|e| wire_err("IPC", e))?;
        for b in &piece.batches {
            w.write(b).map_err(|e| wire_err("IPC", e))?;
        }
        w.finish().map_err(|e| wire_err("IPC", e))?;
    }
    out.flush().map_err(|e| Error::io("read state: writing", e))
}

/// Reads an answer written by [`write_answer`].
pub fn read_answer(input: &mut impl BufRead) -> Result<(Header, Vec<HotPiece>)> {
    let mut line = String::new();
    input.read_line(&mut line).map_err(|e| Error::io("read state: reading the header", e))?;
    let header: Header = serde_json::from_str(&line).map_err(|e| wire_err("the header", e))?;
    if header.version != VERSION {
        return Err(wire_err("answer", format!("version {} (this reader speaks {VERSION})", header.version)));
    }
    let mut hot = Vec::with_capacity(header.hot.len());
    for span in &header.hot {
        let reader = arrow_ipc::reader::StreamReader::try_new(&mut *input, None).map_err(|e| wire_err("IPC", e))?;
        let batches = reader.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| wire_err("IPC", e))?;
        hot.push(HotPiece { span: span.clone(), batches: batches.into_iter().filter(|b| b.num_rows() > 0).collect() });
    }
    Ok((header, hot))
}
