//! `[tables."<table>"]`: settings of one table (or of every table, `"*"`), each falling back on
//! its own to the `"*"` entry and then to the global default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use iceberg::spec::Schema;

use serde::Deserialize;

use super::columns;
use super::partition::{self, PartitionField};
use super::{duration_opt, size_opt};
use crate::decode::UnknownKeys;
use crate::{Error, Result};

/// One sort key: a top-level column, its direction and where its nulls go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortKey {
    pub column: String,
    pub descending: bool,
    pub nulls_first: bool,
}

/// What `[tables."<table>"]` sets; `None`: not set here.
#[derive(Clone, Debug, Default)]
pub struct TableSettings {
    pub partition_by: Option<Vec<PartitionField>>,
    pub sort_by: Option<Vec<SortKey>>,
    pub upload_target_bytes: Option<u64>,
    pub commit_interval: Option<Duration>,
    pub max_columns: Option<usize>,
    pub max_new_fields: Option<usize>,
    pub max_depth: Option<usize>,
    pub max_name_length: Option<usize>,
    /// `schema = "fixed"` and `unknown_keys`: what a key without a column does.
    pub unknown_keys: Option<UnknownKeys>,
    /// The user columns a new table is created with (`columns` or `schema_file`), and that key.
    pub given: Option<(Arc<Schema>, &'static str)>,
    /// Maintenance (`maintain::Policy`); `maintain_interval = "0s"` is `Some(None)`: never in `run`.
    pub maintain_interval: Option<Option<Duration>>,
    pub max_manifests: Option<usize>,
    pub manifest_target_bytes: Option<u64>,
    pub expire_after: Option<Duration>,
    pub keep_snapshots: Option<usize>,
    pub compact_bytes_per_pass: Option<u64>,
    /// `orphan_after = "0s"` is `Some(None)`: orphans are never deleted.
    pub orphan_after: Option<Option<Duration>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTable {
    partition_by: Option<Vec<String>>,
    sort_by: Option<Vec<String>>,
    upload_target_size: Option<String>,
    commit_interval: Option<String>,
    max_columns: Option<usize>,
    max_new_fields: Option<usize>,
    max_depth: Option<usize>,
    max_name_length: Option<usize>,
    schema: Option<String>,
    unknown_keys: Option<String>,
    columns: Option<Vec<String>>,
    schema_file: Option<PathBuf>,
    maintain_interval: Option<String>,
    max_manifests: Option<usize>,
    manifest_target_size: Option<String>,
    expire_after: Option<String>,
    keep_snapshots: Option<usize>,
    compact_per_pass: Option<String>,
    orphan_after: Option<String>,
}

pub(super) fn settings(raw: BTreeMap<String, RawTable>) -> Result<BTreeMap<String, TableSettings>> {
    let mut out = BTreeMap::new();
    for (table, r) in raw {
        let key = |k: &str| format!("tables.\"{table}\".{k}");
        let partition_by = match r.partition_by {
            None => None,
            Some(fields) => Some(
                fields.iter().map(|f| partition::parse(f)).collect::<std::result::Result<Vec<_>, String>>().map_err(
                    |p| {
                        Error::config(
                            key("partition_by"),
                            p,
                            "write e.g. [\"day(_kafka_timestamp)\", \"identity(site)\"]",
                        )
                    },
                )?,
            ),
        };
        let sort_by = match r.sort_by {
            None => None,
            Some(keys) => {
                Some(keys.iter().map(|k| parse_sort_key(k)).collect::<std::result::Result<Vec<_>, String>>().map_err(
                    |p| Error::config(key("sort_by"), p, "write e.g. [\"device\", \"_kafka_timestamp desc\"]"),
                )?)
            }
        };
        let upload_target_bytes = size_opt(&key("upload_target_size"), r.upload_target_size, "128MiB")?;
        let commit_interval = duration_opt(&key("commit_interval"), r.commit_interval, "60s")?;
        if commit_interval.is_some_and(|d| d.is_zero()) {
            return Err(Error::config(
                key("commit_interval"),
                "must be longer than zero",
                "write a duration such as \"60s\"",
            ));
        }
        let maintain_interval =
            duration_opt(&key("maintain_interval"), r.maintain_interval, "1h")?.map(|d| (!d.is_zero()).then_some(d));
        let manifest_target_bytes = size_opt(&key("manifest_target_size"), r.manifest_target_size, "8MiB")?;
        let expire_after = duration_opt(&key("expire_after"), r.expire_after, "1h")?;
        let compact_bytes_per_pass = size_opt(&key("compact_per_pass"), r.compact_per_pass, "512MiB")?;
        let orphan_after =
            duration_opt(&key("orphan_after"), r.orphan_after, "7d")?.map(|d| (!d.is_zero()).then_some(d));
        if orphan_after.flatten().is_some_and(|d| d < Duration::from_secs(3600)) {
            return Err(Error::config(
                key("orphan_after"),
                "must be at least an hour: an object younger than that may be an upload a commit is about to name",
                "write a duration longer than the longest outage, such as \"7d\" (or \"0s\" to never delete orphans)",
            ));
        }
        for (name, value) in [
            ("max_columns", r.max_columns),
            ("max_new_fields", r.max_new_fields),
            ("max_depth", r.max_depth),
            ("max_name_length", r.max_name_length),
            ("max_manifests", r.max_manifests),
            ("keep_snapshots", r.keep_snapshots),
        ] {
            if value == Some(0) {
                return Err(Error::config(key(name), "must be at least 1", "write a whole number such as 100"));
            }
        }
        let unknown_keys = unknown_keys(&key, r.schema.as_deref(), r.unknown_keys.as_deref())?;
        let given = given(&key, r.columns.as_deref(), r.schema_file.as_deref())?;
        out.insert(
            table,
            TableSettings {
                partition_by,
                sort_by,
                upload_target_bytes,
                commit_interval,
                max_columns: r.max_columns,
                max_new_fields: r.max_new_fields,
                max_depth: r.max_depth,
                max_name_length: r.max_name_length,
                unknown_keys,
                given,
                maintain_interval,
                max_manifests: r.max_manifests,
                manifest_target_bytes,
                expire_after,
                keep_snapshots: r.keep_snapshots,
                compact_bytes_per_pass,
                orphan_after,
            },
        );
    }
    Ok(out)
}

/// `schema = "grow" | "fixed"` with `unknown_keys = "dead_letter" | "extra"` (fixed only).
fn unknown_keys(
    key: &dyn Fn(&str) -> String,
    schema: Option<&str>,
    unknown: Option<&str>,
) -> Result<Option<UnknownKeys>> {
    let fixed = match schema {
        None => None,
        Some("grow") => Some(false),
        Some("fixed") => Some(true),
        Some(other) => {
            return Err(Error::config(
                key("schema"),
                format!("`{other}` is not a schema mode"),
                "write \"grow\" (new keys become columns) or \"fixed\" (the columns never change)",
            ));
        }
    };
    let chosen = match unknown {
        None => None,
        Some("dead_letter") => Some(UnknownKeys::DeadLetter),
        Some("extra") => Some(UnknownKeys::Extra),
        Some(other) => {
            return Err(Error::config(
                key("unknown_keys"),
                format!("`{other}` is not a choice"),
                "write \"dead_letter\" (the record goes to the dead-letter table) or \"extra\" (its unknown keys \
                 are kept as JSON in the column `_extra`)",
            ));
        }
    };
    match (fixed, chosen) {
        (Some(true), c) => Ok(Some(c.unwrap_or(UnknownKeys::DeadLetter))),
        (_, Some(_)) => Err(Error::config(
            key("unknown_keys"),
            "applies only to a table whose schema is fixed",
            "add schema = \"fixed\" to this table, or remove unknown_keys",
        )),
        (Some(false), None) => Ok(Some(UnknownKeys::Grow)),
        (None, None) => Ok(None),
    }
}

/// The schema given by `columns` or `schema_file` (not both).
fn given(
    key: &dyn Fn(&str) -> String,
    columns: Option<&[String]>,
    file: Option<&Path>,
) -> Result<Option<(Arc<Schema>, &'static str)>> {
    let from = if columns.is_some() { "columns" } else { "schema_file" };
    let schema = match (columns, file) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(Error::config(
                key("columns"),
                "is set together with schema_file",
                "give the table's columns one way: remove one of the two",
            ));
        }
        (Some(list), None) => columns::parse_columns(list).map_err(|e| {
            Error::config(key("columns"), e, "write e.g. [\"device string\", \"temp double\", \"at timestamptz\"]")
        })?,
        (None, Some(path)) => columns::read_schema_file(path).map_err(|e| {
            Error::config(
                key("schema_file"),
                e,
                "point it at an Iceberg schema in JSON ({\"type\": \"struct\", \"fields\": [...]})",
            )
        })?,
    };
    if schema.as_struct().fields().is_empty() {
        return Err(Error::config(key(from), "gives no column", "give at least one column"));
    }
    Ok(Some((Arc::new(schema), from)))
}

/// Parses `column`, `column desc`, `column asc nulls last`... (ascending with nulls first by
/// default, as Iceberg's own default sort field).
pub fn parse_sort_key(text: &str) -> std::result::Result<SortKey, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let (column, rest) = words.split_first().ok_or_else(|| "an empty sort key names no column".to_string())?;
    let mut key = SortKey { column: column.to_string(), descending: false, nulls_first: true };
    let mut rest = rest;
    if let Some((dir, tail)) = rest.split_first()
        && matches!(dir.to_ascii_lowercase().as_str(), "asc" | "desc")
    {
        key.descending = dir.eq_ignore_ascii_case("desc");
        // Iceberg's default: nulls first when ascending, last when descending.
        key.nulls_first = !key.descending;
        rest = tail;
    }
    match rest.iter().map(|w| w.to_ascii_lowercase()).collect::<Vec<_>>().as_slice() {
        [] => {}
        [n, f] if n == "nulls" && f == "first" => key.nulls_first = true,
        [n, l] if n == "nulls" && l == "last" => key.nulls_first = false,
        _ => return Err(format!("`{text}` is not `column [asc|desc] [nulls first|nulls last]`")),
    }
    if key.column.contains('(') {
        return Err(format!("`{text}`: sort keys are plain top-level columns (no transforms)"));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_parse_with_iceberg_defaults() {
        let k = |c: &str, descending, nulls_first| SortKey { column: c.into(), descending, nulls_first };
        assert_eq!(parse_sort_key("site"), Ok(k("site", false, true)));
        assert_eq!(parse_sort_key(" ts  DESC "), Ok(k("ts", true, false)));
        assert_eq!(parse_sort_key("ts desc nulls first"), Ok(k("ts", true, true)));
        assert_eq!(parse_sort_key("ts nulls last"), Ok(k("ts", false, false)));
        assert!(parse_sort_key("").is_err());
        assert!(parse_sort_key("ts sideways").unwrap_err().contains("asc|desc"));
        assert!(parse_sort_key("day(ts)").unwrap_err().contains("no transforms"));
    }
}
