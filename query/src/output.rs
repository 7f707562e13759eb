//! The answer's rows on stdout in the chosen format, and what it covers on stderr.

use std::io::Write;
use std::str::FromStr;

use datafusion::arrow::array::RecordBatch;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::TryStreamExt;

use crate::answer::Coverage;
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    /// One JSON object per row, one per line.
    Json,
    Parquet,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "table" => Format::Table,
            "csv" => Format::Csv,
            "json" => Format::Json,
            "parquet" => Format::Parquet,
            _ => return Err(format!("--format {s}: choose table, csv, json or parquet")),
        })
    }
}

/// Writes the answer as it streams: csv, json and parquet a batch at a time; the table format
/// needs every row first, to size its columns.
pub async fn write(out: impl Write + Send, format: Format, mut answer: SendableRecordBatchStream) -> Result<()> {
    let fail = |e: &dyn std::fmt::Display| Error::data("writing the answer", e);
    let mut out = std::io::BufWriter::new(out);
    match format {
        Format::Table => {
            let batches: Vec<RecordBatch> = answer.try_collect().await?;
            let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches).map_err(|e| fail(&e))?;
            writeln!(out, "{text}").map_err(|e| fail(&e))?;
        }
        Format::Csv => {
            let mut w = datafusion::arrow::csv::Writer::new(&mut out);
            while let Some(b) = answer.try_next().await? {
                w.write(&b).map_err(|e| fail(&e))?;
            }
        }
        Format::Json => {
            let mut w = datafusion::arrow::json::LineDelimitedWriter::new(&mut out);
            while let Some(b) = answer.try_next().await? {
                w.write(&b).map_err(|e| fail(&e))?;
            }
            w.finish().map_err(|e| fail(&e))?;
        }
        Format::Parquet => {
            let schema = answer.schema();
            let mut w =
                datafusion::parquet::arrow::ArrowWriter::try_new(&mut out, schema, None).map_err(|e| fail(&e))?;
            while let Some(b) = answer.try_next().await? {
                w.write(&b).map_err(|e| fail(&e))?;
            }
            w.close().map_err(|e| fail(&e))?;
        }
    }
    out.flush().map_err(|e| fail(&e))
}

/// One line per table, then one per partition: the snapshot read and how far the answer reaches.
pub fn coverage(coverage: &[Coverage], offline: Option<&str>, agent_running: bool) -> String {
    let mut s = String::new();
    let from = if agent_running { "the running agent's read state" } else { "the spool index (no agent running)" };
    match offline {
        Some(why) => s.push_str(&format!("-- offline ({why}): local rows only, from {from}\n")),
        None => s.push_str(&format!("-- tables and local rows, from {from}\n")),
    }
    for c in coverage {
        let snapshot = c.snapshot_id.map_or("no snapshot".to_string(), |id| format!("snapshot {id}"));
        s.push_str(&format!(
            "-- {}: {snapshot} + {} local rows read ({} spool files, {} hot buffers)\n",
            c.table,
            c.local_rows.load(std::sync::atomic::Ordering::Relaxed),
            c.files,
            c.hot
        ));
        for ((topic, partition), next) in &c.watermark {
            let horizon = match (offline, c.horizon.get(&(topic.clone(), *partition))) {
                (Some(_), Some(h)) => format!(", from offset {h}"),
                _ => String::new(),
            };
            s.push_str(&format!("--   {topic}/{partition}: up to offset {next} (exclusive){horizon}\n"));
        }
        for ((topic, partition), first, last) in &c.gaps {
            s.push_str(&format!(
                "--   {topic}/{partition}: offsets {first}..={last} are missing, in a quarantined spool file (see frazil status)\n"
            ));
        }
    }
    s
}
