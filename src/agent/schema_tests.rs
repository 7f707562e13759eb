//! In-process tests of the rules a table's schema is held to (no server): records that would
//! poison a table, fixed schemas with both choices for unknown keys, and a schema the operator
//! gives. Tables go to a filesystem catalog and are read back with iceberg's own scan.

use std::collections::BTreeSet;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use async_compat::Compat;

use super::Agent;
use super::tests::{config, load, scan, table_rows};
use crate::config::Config;
use crate::source::memory::Topics;

/// Runs one flush of `records` (one partition of topic `events`) with `tables` as the
/// `[tables."events"]` settings; every record must be accounted for.
fn flush(dir: &std::path::Path, tables: &str, records: &[String]) -> Config {
    let cfg = config(dir, "", &format!("[tables.\"events\"]\n{tables}"));
    let topics = Topics::default();
    topics.create("events", 1);
    for value in records {
        topics.produce("events", 0, value.as_bytes());
    }
    let agent = Agent::with_source(cfg.clone(), topics.connect()).unwrap();
    let r = agent.flush().unwrap();
    assert_eq!((r.events, r.pending_files), (records.len() as u64, 0), "{r:?}");
    cfg
}

/// The dead letters of `events`, by offset, with their reasons.
fn dead_letters(cfg: &Config) -> Vec<(i64, String)> {
    let dlq = crate::config::dead_letter_table_name(&cfg.catalog.dead_letter_table, "events");
    let mut letters = Vec::new();
    for b in scan(cfg, &dlq, &["offset", "reason"]) {
        let o = b.column_by_name("offset").unwrap().as_primitive::<Int64Type>();
        let why = b.column_by_name("reason").unwrap().as_string::<i32>();
        letters.extend((0..b.num_rows()).map(|i| (o.value(i), why.value(i).to_string())));
    }
    letters.sort();
    letters
}

/// The table's current schema, as the catalog has it.
fn schema(cfg: &Config) -> iceberg::spec::SchemaRef {
    let table = smol::block_on(Compat::new(load(cfg, "events"))).expect("the table was created");
    table.metadata().current_schema().clone()
}

/// The top-level column names of the table, meta columns left out.
fn user_columns(cfg: &Config) -> Vec<String> {
    let s = schema(cfg);
    s.as_struct().fields().iter().map(|f| f.name.clone()).filter(|n| !n.starts_with("_kafka_")).collect()
}

fn offsets(cfg: &Config) -> Vec<i64> {
    table_rows(cfg, "events").into_iter().map(|(_, o)| o).collect()
}

/// Every record is in exactly one of the table and the dead-letter table: record `o` is a dead
/// letter whose reason says `reasons[o]`, or a row when that is `None`.
fn assert_split(cfg: &Config, reasons: &[Option<&str>]) {
    let kept: Vec<i64> = (0..reasons.len() as i64).filter(|o| reasons[*o as usize].is_none()).collect();
    assert_eq!(offsets(cfg), kept);
    let letters = dead_letters(cfg);
    let dead: Vec<i64> = (0..reasons.len() as i64).filter(|o| reasons[*o as usize].is_some()).collect();
    assert_eq!(letters.iter().map(|(o, _)| *o).collect::<Vec<_>>(), dead, "{letters:?}");
    for (o, why) in &letters {
        let expected = reasons[*o as usize].unwrap();
        assert!(why.contains(expected), "offset {o}: {why:?} should say {expected:?}");
    }
}
/// Names at every level of a schema, lower-cased, with the total count of fields.
fn folded_names(fields: &[iceberg::spec::NestedFieldRef], out: &mut Vec<Vec<String>>) -> usize {
    use iceberg::spec::Type;
    out.push(fields.iter().map(|f| f.name.to_lowercase()).collect());
    let mut count = fields.len();
    for f in fields {
        match f.field_type.as_ref() {
            Type::Struct(s) => count += folded_names(s.fields(), out),
            Type::List(l) => {
                if let Type::Struct(s) = l.element_field.field_type.as_ref() {
                    count += folded_names(s.fields(), out);
                }
            }
            _ => {}
        }
    }
    count
}

#[test]
fn records_that_would_poison_the_table_are_dead_letters_and_the_table_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let wide = (0..3000).map(|i| format!("\"k{i}\":{i}")).collect::<Vec<_>>().join(",");
    let deep = (0..20).fold("1".to_string(), |inner, i| format!("{{\"d{i}\":{inner}}}"));
    let long = "x".repeat(5000);
    let records: Vec<(String, Option<&str>)> = vec![
        (r#"{"num":1,"site":{"zone":"n"}}"#.into(), None),
        (r#"{"num":2,"Num":2}"#.into(), Some("differs only in case")),
        (r#"{"NUM":3}"#.into(), Some("differs only in case")),
        (r#"{"site":{"ZONE":"x"}}"#.into(), Some("`site.ZONE` differs only in case")),
        (r#"{"_KAFKA_offset":1}"#.into(), Some("differs only in case from the column `_kafka_offset`")),
        (r#"{"":1}"#.into(), Some("is empty")),
        (r#"{"a.b":1}"#.into(), Some("a dot")),
        (r#"{"a":{"b":2}}"#.into(), None),
        (r#"{"a.b":3}"#.into(), Some("a dot")),
        (format!(r#"{{"{long}":1}}"#), Some("5000 characters long")),
        (format!("{{{wide}}}"), Some("max_new_fields")),
        (format!(r#"{{"deep":{deep}}}"#), Some("max_depth")),
        (r#"{"num":4,"extra":"e","more":{"x":1,"y":2}}"#.into(), None),
        (r#"{"c1":1,"c2":2,"c3":3,"c4":4}"#.into(), Some("max_columns")),
        (r#"{"num":5,"Extra":"e"}"#.into(), Some("differs only in case from the column `extra`")),
        (r#"{"num":6,"extra":"f"}"#.into(), None),
    ];
    let values: Vec<String> = records.iter().map(|(v, _)| v.clone()).collect();
    let cfg = flush(dir.path(), "max_columns = 12\nmax_new_fields = 5\nmax_depth = 4", &values);
    let reasons: Vec<Option<&str>> = records.iter().map(|(_, why)| *why).collect();
    assert_split(&cfg, &reasons);
    // The table: within its limit, and no two names at one level differ only in case.
    let schema = schema(&cfg);
    let mut levels = Vec::new();
    let count = folded_names(schema.as_struct().fields(), &mut levels) - 4;
    assert!(count <= 12, "{count} user columns: {schema:?}");
    for level in levels {
        let unique: BTreeSet<&String> = level.iter().collect();
        assert_eq!(unique.len(), level.len(), "names that differ only in case: {level:?}");
    }
}

#[test]
fn a_fixed_schema_sends_records_with_unknown_keys_to_dead_letters_and_never_grows() {
    let dir = tempfile::tempdir().unwrap();
    let records = [
        (r#"{"num":1,"site":{"zone":"n"}}"#, None),
        (r#"{"num":2,"color":"red"}"#, Some("key `color` is not a column of the table, whose schema is fixed")),
        (r#"{"num":3,"site":{"zone":"s","rack":7}}"#, Some("key `site.rack` is not a column")),
        (r#"{"num":4}"#, None),
        (r#"{"Num":5,"a.b":1}"#, Some("keys `Num`, `a.b` are not columns")),
        (r#"{"num":6,"site":{"zone":"e"}}"#, None),
    ];
    let values: Vec<String> = records.iter().map(|(v, _)| v.to_string()).collect();
    // The table is inferred from the first fetch's records, whose keys pass the rules.
    let cfg = flush(dir.path(), "schema = \"fixed\"", &values[..1]);
    assert_eq!(user_columns(&cfg), ["num", "site"]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = flush(dir.path(), "schema = \"fixed\"\ncolumns = [\"num long\", \"site struct<zone: string>\"]", &values);
    assert_split(&cfg, &records.iter().map(|(_, why)| *why).collect::<Vec<_>>());
    assert_eq!(user_columns(&cfg), ["num", "site"]);
    assert_eq!(schema(&cfg).field_by_name("site.rack").map(|f| f.id), None);
}

#[test]
fn a_fixed_schema_keeps_unknown_keys_as_json_in_the_extra_column() {
    let dir = tempfile::tempdir().unwrap();
    let records = [
        r#"{"num":1,"site":{"zone":"n"},"tags":[{"k":"a"}]}"#,
        r#"{"num":2,"color":"red"}"#,
        r#"{"num":3,"site":{"zone":"s","rack":7},"tags":[{"k":"b"},{"k":"c","v":1}]}"#,
        r#"{"_kafka_offset":"mine","Num":5}"#,
        r#"{"_extra":"own","more":1}"#,
        r#"{"_extra":"own"}"#,
    ];
    let values: Vec<String> = records.iter().map(|v| v.to_string()).collect();
    let columns = r#"columns = ["num long", "site struct<zone: string>", "tags list<struct<k: string>>"]"#;
    let cfg = flush(dir.path(), &format!("schema = \"fixed\"\nunknown_keys = \"extra\"\n{columns}"), &values);
    assert_split(&cfg, &[None; 6]);
    assert_eq!(user_columns(&cfg), ["num", "site", "tags", "_extra"]);
    let mut extra = std::collections::BTreeMap::new();
    for b in scan(&cfg, "events", &["_kafka_offset", "_extra", "num"]) {
        let o = b.column_by_name("_kafka_offset").unwrap().as_primitive::<Int64Type>();
        let e = b.column_by_name("_extra").unwrap().as_string::<i32>();
        for i in 0..b.num_rows() {
            extra.insert(
                o.value(i),
                e.is_valid(i).then(|| serde_json::from_str::<serde_json::Value>(e.value(i)).unwrap()),
            );
        }
    }
    use serde_json::json;
    assert_eq!(extra[&0], None);
    assert_eq!(extra[&1], Some(json!({"color": "red"})));
    assert_eq!(extra[&2], Some(json!({"site": {"rack": 7}, "tags": [{}, {"v": 1}]})));
    assert_eq!(extra[&3], Some(json!({"_kafka_offset": "mine", "Num": 5})), "the record's own keys, as sent");
    assert_eq!(extra[&4], Some(json!({"_extra": "own", "more": 1})), "a record's own `_extra` is one more unknown key");
    assert_eq!(extra[&5], Some(json!({"_extra": "own"})));
}

#[test]
fn a_given_schema_types_the_table_and_it_still_grows_by_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let records = [
        r#"{"at":"2024-05-06T07:08:09Z","temp":21,"pos":{"lat":1.5}}"#,
        r#"{"at":1715000000000,"temp":"warm"}"#,
        r#"{"at":1715000000000,"temp":22.5,"new":true}"#,
        r#"{"AT":1}"#,
    ];
    let values: Vec<String> = records.iter().map(|v| v.to_string()).collect();
    let given = "columns = [\"at timestamptz\", \"temp double\", \"pos struct<lat: double, lon: double>\"]";
    let cfg = flush(dir.path(), given, &values);
    assert_split(&cfg, &[None, Some("column `temp`"), None, Some("differs only in case from the column `at`")]);
    assert_eq!(user_columns(&cfg), ["at", "temp", "pos", "new"]);
    let s = schema(&cfg);
    let ty = |n: &str| s.field_by_name(n).map(|f| f.field_type.to_string());
    assert_eq!(
        (ty("at"), ty("temp"), ty("pos.lon")),
        (Some("timestamptz".into()), Some("double".into()), Some("double".into()))
    );
    let mut at = Vec::new();
    for b in scan(&cfg, "events", &["at"]) {
        let c = b.column(0).as_primitive::<arrow_array::types::TimestampMicrosecondType>();
        at.extend(c.iter().flatten());
    }
    at.sort();
    assert_eq!(at, [1_714_979_289_000_000, 1_715_000_000_000_000], "an RFC 3339 string and epoch milliseconds");
}

#[test]
fn keys_first_seen_late_in_a_fetch_grow_the_table_and_every_record_lands() {
    // Records are taken in runs of 256 and the schema grows between runs: `b` first comes in the
    // third run and `c` in the last record, after the schema has grown once already.
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<String> = (0..1000)
        .map(|i| match i {
            999 => format!(r#"{{"a":{i},"b":"x{i}","c":true}}"#),
            600.. => format!(r#"{{"a":{i},"b":"x{i}"}}"#),
            _ => format!(r#"{{"a":{i}}}"#),
        })
        .collect();
    let cfg = flush(dir.path(), "", &values);
    assert_eq!(user_columns(&cfg), ["a", "b", "c"]);
    assert_eq!(offsets(&cfg), (0..1000).collect::<Vec<i64>>());
    let (mut b, mut c) = (0, 0);
    for batch in scan(&cfg, "events", &["b", "c"]) {
        b += batch.num_rows() - batch.column_by_name("b").unwrap().null_count();
        c += batch.num_rows() - batch.column_by_name("c").unwrap().null_count();
    }
    assert_eq!((b, c), (400, 1), "every `b` and the one `c` were kept");
}
