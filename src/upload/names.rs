//! Object names. Each is deterministic, so a retried upload overwrites its first attempt instead
//! of leaving an orphan, and unique per agent, partition and offset range, so no two uploads share
//! a name. Objects go under the table's `data/<agent>/` (Hive-style partition directories below).

use frazil_spool::SpoolFile;
use iceberg::table::Table;

/// The object a spool file is uploaded to. Deterministic, so a retried upload overwrites itself,
/// and unique per agent, partition and offset range, so no two files ever share a name.
pub fn object_url(table_location: &str, agent: &str, dir: &str, f: &SpoolFile) -> String {
    format!(
        "{}/data/{}/{dir}{}-{}-{:020}-{:020}.parquet",
        table_location.trim_end_matches('/'),
        safe(agent),
        safe(&f.meta.topic),
        f.meta.partition,
        f.meta.first_offset,
        f.meta.last_offset
    )
}

/// The object that several spool files of a table are merged into: named after the parts, so a
/// retried merge of the same parts overwrites itself.
pub fn merged_url(table_location: &str, agent: &str, dir: &str, table: &str, parts: &[SpoolFile]) -> String {
    let mut key = String::new();
    for f in parts {
        key.push_str(&format!(
            "{}/{}/{}/{}\n",
            f.meta.topic, f.meta.partition, f.meta.first_offset, f.meta.last_offset
        ));
    }
    let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, key.as_bytes());
    format!("{}/data/{}/{dir}{}-{id}.parquet", table_location.trim_end_matches('/'), safe(agent), safe(table))
}

/// The directory of a partitioned table's objects, Hive style (`zone=north/ts_day=2024-05-06/`);
/// `""` when the table is unpartitioned. Files of one roll differ only here, so their names never
/// collide. Read from the partition tuple in the file's DataFile JSON.
pub fn partition_dir(table: &Table, f: &SpoolFile) -> String {
    use iceberg::spec::Transform;
    let spec = table.metadata().default_partition_spec();
    if spec.is_unpartitioned() {
        return String::new();
    }
    let json: serde_json::Value = serde_json::from_slice(&f.meta.extra).unwrap_or_default();
    let mut dir = String::new();
    for field in spec.fields() {
        let v = &json["partition"][&field.name];
        let n = v.as_i64();
        let text = match (field.transform, n) {
            (_, None) if v.is_null() => "null".to_string(),
            (Transform::Day, Some(days)) => chrono::DateTime::from_timestamp(days * 86_400, 0)
                .map_or(days.to_string(), |d| d.format("%Y-%m-%d").to_string()),
            (Transform::Hour, Some(h)) => chrono::DateTime::from_timestamp(h * 3_600, 0)
                .map_or(h.to_string(), |d| d.format("%Y-%m-%d-%H").to_string()),
            (Transform::Month, Some(m)) => format!("{}-{:02}", 1970 + m.div_euclid(12), m.rem_euclid(12) + 1),
            (Transform::Year, Some(y)) => (1970 + y).to_string(),
            _ => v.as_str().map_or_else(|| v.to_string(), str::to_string),
        };
        dir.push_str(&format!("{}={}/", safe(&field.name), safe(&text)));
    }
    dir
}

/// A name made safe for an object path: letters, digits, `-`, `_` and `.` stay, the rest become `_`.
fn safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect()
}

/// Where the spool index keeps a merged object's DataFile until it is committed.
pub fn merged_key(url: &str) -> String {
    format!("upload/{url}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upload::groups::tests::file;

    #[test]
    fn names_are_deterministic_and_distinct() {
        let a = vec![file(1, 1), file(2, 1)];
        let b = vec![file(1, 1), file(3, 1)];
        let u = merged_url("s3://b/wh/t/", "gw", "", "t", &a);
        assert_eq!(u, merged_url("s3://b/wh/t", "gw", "", "t", &a));
        assert_ne!(u, merged_url("s3://b/wh/t", "gw", "", "t", &b));
        assert_ne!(u, merged_url("s3://b/wh/t", "gw", "zone=north/", "t", &a));
        assert!(u.starts_with("s3://b/wh/t/data/gw/t-") && u.ends_with(".parquet"), "{u}");
        assert_eq!(
            object_url("s3://b/wh/t", "gw 1", "", &file(1, 1)),
            "s3://b/wh/t/data/gw_1/events-0-00000000000000000010-00000000000000000019.parquet"
        );
        assert_eq!(
            object_url("s3://b/wh/t", "gw", "zone=north/", &file(1, 1)),
            "s3://b/wh/t/data/gw/zone=north/events-0-00000000000000000010-00000000000000000019.parquet"
        );
    }
}
