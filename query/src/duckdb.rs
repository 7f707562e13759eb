//! `--duckdb-view TABLE`: SQL that a DuckDB with no extensions runs to see the same rows as a
//! query: one `read_parquet` over the table snapshot's data files (when they are local files, as
//! in a filesystem warehouse), the spool files (filtered by offset, as the plan says) and the hot
//! rows (written to a temporary Parquet file, 0600: raw events). The files are read where they
//! are, so the view holds as long as they do: make it again after the agent has committed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use datafusion::parquet::arrow::ArrowWriter;
use futures::TryStreamExt;

use crate::answer::{TablePlan, keep_offsets};
use crate::error::{Error, Result};
use crate::sources::{Committed, Sources};

/// The view's SQL for `name`, and warnings about rows it cannot hold.
pub async fn view(name: &str, sources: &Sources, tmp: &Path) -> Result<(String, Vec<String>)> {
    let committed = sources.tables.get(name).and_then(Option::as_ref);
    let tp = TablePlan::new(name, &sources.files, &sources.hot, committed);
    let mut warnings = Vec::new();
    // Files whose every row counts, then (file, from, to) for the spool files the plan filters.
    let mut whole: Vec<String> = Vec::new();
    let mut ranges: Vec<(String, i64, i64)> = Vec::new();
    match committed {
        Some(c) => match local_data_files(c).await? {
            Ok(paths) => whole.extend(paths),
            Err(remote) => warnings.push(format!(
                "{name}'s committed rows are in {remote}, not in this view (DuckDB's iceberg extension reads them: \
                 iceberg_scan('{}'))",
                c.table.metadata_location().unwrap_or("?")
            )),
        },
        None if sources.offline.is_some() => {
            warnings.push(format!("offline: {name}'s committed rows are not in this view"))
        }
        None => {}
    }
    for (n, &i) in tp.files.iter().enumerate() {
        if let Some((from, to)) = tp.plan.keep[n] {
            ranges.push((sources.files[i].entry.path.display().to_string(), from, to));
        }
    }
    for (n, &i) in tp.hot.iter().enumerate() {
        let Some((from, to)) = tp.hot_keep(n) else { continue };
        let batches = sources.hot[i].batches.iter().map(|b| keep_offsets(b, from, to)).collect::<Result<Vec<_>>>()?;
        if let Some(first) = batches.first() {
            let path = tmp.join(format!("frazil-hot-{name}-{}-{n}.parquet", std::process::id()));
            write_private_parquet(&path, first.schema(), &batches)?;
            whole.push(path.display().to_string());
        }
    }
    if whole.is_empty() && ranges.is_empty() {
        return Err(Error::data(format!("--duckdb-view {name}"), "no rows of it are local, or no such table"));
    }
    let offset = if sources.dead_letter_tables.contains(name) { "\"offset\"" } else { frazil::decode::META_OFFSET };
    Ok((sql(name, &whole, &ranges, offset), warnings))
}

fn sql(name: &str, whole: &[String], ranges: &[(String, i64, i64)], offset: &str) -> String {
    let lit = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let files: Vec<String> = whole.iter().chain(ranges.iter().map(|r| &r.0)).map(|f| lit(f)).collect();
    let mut out = String::new();
    let _ = writeln!(out, "-- {name}: the table's local data files, spool files and hot rows, each Kafka offset once");
    let _ = writeln!(out, "CREATE OR REPLACE VIEW \"{}\" AS", name.replace('"', "\"\""));
    let _ = writeln!(
        out,
        "SELECT * EXCLUDE (filename) FROM read_parquet([{}], filename = true, union_by_name = true)",
        files.join(", ")
    );
    let mut conds: Vec<String> = Vec::new();
    if !whole.is_empty() {
        conds.push(format!("filename IN ({})", whole.iter().map(|f| lit(f)).collect::<Vec<_>>().join(", ")));
    }
    for (f, from, to) in ranges {
        conds.push(format!("(filename = {} AND {offset} BETWEEN {from} AND {to})", lit(f)));
    }
    let _ = writeln!(out, "WHERE {};", conds.join("\n   OR "));
    out
}

/// The snapshot's data files as local paths, or the first remote location found.
async fn local_data_files(c: &Committed) -> Result<std::result::Result<Vec<String>, String>> {
    let Some(id) = c.snapshot_id else { return Ok(Ok(Vec::new())) };
    let fail = |e: iceberg::Error| Error::data("planning the table's files", e);
    let scan = c.table.scan().snapshot_id(id).build().map_err(fail)?;
    let tasks: Vec<_> = scan.plan_files().await.map_err(fail)?.try_collect().await.map_err(fail)?;
    let mut paths = Vec::with_capacity(tasks.len());
    for t in tasks {
        match t
            .data_file_path
            .strip_prefix("file://")
            .or_else(|| t.data_file_path.starts_with('/').then_some(&t.data_file_path[..]))
        {
            Some(p) => paths.push(p.to_string()),
            None => {
                return Ok(Err(t
                    .data_file_path
                    .rsplit_once('/')
                    .map_or(t.data_file_path.clone(), |(d, _)| d.to_string())));
            }
        }
    }
    Ok(Ok(paths))
}

fn write_private_parquet(
    path: &PathBuf,
    schema: datafusion::arrow::datatypes::SchemaRef,
    batches: &[datafusion::arrow::array::RecordBatch],
) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |e: &dyn std::fmt::Display| Error::data(format!("writing {}", path.display()), e);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| fail(&e))?;
    let mut w = ArrowWriter::try_new(file, schema, None).map_err(|e| fail(&e))?;
    for b in batches {
        w.write(b).map_err(|e| fail(&e))?;
    }
    w.close().map_err(|e| fail(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_view_reads_whole_files_and_spool_files_by_offset_with_quotes_escaped() {
        let sql = super::sql(
            "events",
            &["/w/data/a.parquet".into()],
            &[("/spool/it's.parquet".into(), 10, 19)],
            "_kafka_offset",
        );
        assert!(sql.contains("CREATE OR REPLACE VIEW \"events\" AS"), "{sql}");
        assert!(
            sql.contains(
                "read_parquet(['/w/data/a.parquet', '/spool/it''s.parquet'], filename = true, union_by_name = true)"
            ),
            "{sql}"
        );
        assert!(sql.contains("WHERE filename IN ('/w/data/a.parquet')\n   OR (filename = '/spool/it''s.parquet' AND _kafka_offset BETWEEN 10 AND 19);"), "{sql}");
    }
}
