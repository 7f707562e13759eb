//! Guardrails on schema growth: which new keys of a JSON record may become columns.
//!
//! A table's columns cannot be taken back cheaply, and one stray producer can make a table that
//! most engines refuse to read. So before a record's new keys grow the table, the record is
//! checked against the table's names and limits, and a record that breaks a rule is a dead letter
//! naming the rule; the table is unchanged. The rules, at every level (top level and inside
//! structs, through lists):
//!
//! - **No name that differs from a sibling only in case.** DuckDB refuses a table with `num` and
//!   `Num` ("Column with name Num already exists!"); Spark, Trino and Athena resolve names without
//!   case. The meta columns (`_kafka_*`) count as siblings at the top level.
//! - **No empty name, no dot, no control character.** Engines read a dot as a path into a struct
//!   (`{"a.b": 1}` beside `{"a": {"b": 2}}` is two fields for one name), and cannot quote control
//!   characters. A top-level key spelled like a meta column is escaped instead (`names`), since
//!   that escape loses nothing and the name stays readable.
//! - **Names at most `max_name_length` characters.**
//! - **At most `max_new_fields` new fields from one record**, nested ones included, **at most
//!   `max_depth` levels deep**, and **at most `max_columns` columns in the table** (user columns,
//!   nested ones included; the meta columns are not counted).
//!
//! A key that the table already has, spelled exactly, always maps to its column: the rules only
//! stop new columns, so a table created before them keeps working.

use std::collections::BTreeMap;

use arrow_schema::{DataType, Fields};
use serde_json::{Map, Value};

/// The limits of one table's growth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// User columns in the table, nested fields included.
    pub max_columns: usize,
    /// New fields one record may add, nested ones included.
    pub max_new_fields: usize,
    /// Levels of nesting: a top-level column is at depth 1, a field inside it at 2.
    pub max_depth: usize,
    /// Characters in a column name.
    pub max_name_length: usize,
}

impl Default for Limits {
    /// 1,000 columns is far past what a telemetry record needs and well under what engines
    /// handle; 500 new fields lets a wide first record through while a runaway one (a map sent
    /// as an object) stops; 10 levels and 255 characters (the Glue catalog's limit) are what
    /// every common engine reads.
    fn default() -> Self {
        Limits { max_columns: 1000, max_new_fields: 500, max_depth: 10, max_name_length: 255 }
    }
}

/// The names at one level: a struct's fields (a list passes through to its element's fields).
#[derive(Clone, Debug, Default)]
struct Level {
    /// By exact name; `None` for a field with no fields inside (a scalar, a map).
    fields: BTreeMap<String, Option<Level>>,
    /// Lower-cased name → the exact name, to find names that differ only in case.
    folded: BTreeMap<String, String>,
}

impl Level {
    fn from_fields(fields: &Fields) -> (Level, usize) {
        let mut level = Level::default();
        let mut count = 0;
        for f in fields {
            let (inner, n) = match nested_fields(f.data_type()) {
                Some(children) => {
                    let (l, n) = Level::from_fields(children);
                    (Some(l), n)
                }
                None => (None, 0),
            };
            count += 1 + n;
            level.insert(f.name(), inner);
        }
        (level, count)
    }

    fn insert(&mut self, name: &str, inner: Option<Level>) {
        self.folded.entry(name.to_lowercase()).or_insert_with(|| name.to_string());
        self.fields.insert(name.to_string(), inner);
    }
}

/// The fields inside a type: a struct's, or those of a list's elements.
fn nested_fields(dt: &DataType) -> Option<&Fields> {
    match dt {
        DataType::Struct(children) => Some(children),
        DataType::List(f) | DataType::LargeList(f) => nested_fields(f.data_type()),
        _ => None,
    }
}

/// A table's names and column count, with the limits its growth is held to.
#[derive(Clone, Debug)]
pub struct Guard {
    limits: Limits,
    root: Level,
    columns: usize,
}

impl Guard {
    /// The guard of a table whose user columns are `fields` and whose reserved (meta) column
    /// names are `reserved`.
    pub fn new(limits: Limits, fields: &Fields, reserved: &[&str]) -> Guard {
        let (mut root, columns) = Level::from_fields(fields);
        for name in reserved {
            root.insert(name, None);
        }
        Guard { limits, root, columns }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// User columns, nested fields included, with the new fields admitted since the guard was made.
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// Admits the new keys of a record whose top-level keys are already column names: from now
    /// on they count as the table's, so a later record's `Num` collides with this one's `num`.
    /// `Err` says which rule the record breaks; then nothing is admitted.
    pub fn admit(&mut self, row: &Map<String, Value>) -> Result<(), String> {
        // Most fresh rows bring keys admitted already (by an earlier record of the same fetch):
        // they need no copy of the names.
        if !brings_new(&self.root, row) {
            return Ok(());
        }
        let mut root = self.root.clone();
        let mut walk = Walk { limits: &self.limits, added: 0, path: String::new() };
        walk.object(&mut root, row, 1)?;
        if walk.added > self.limits.max_new_fields {
            return Err(format!(
                "the record adds {} fields, past the limit of {} new fields per record (max_new_fields)",
                walk.added, self.limits.max_new_fields
            ));
        }
        if self.columns + walk.added > self.limits.max_columns {
            return Err(format!(
                "the table would have {} columns, past its limit of {} (max_columns)",
                self.columns + walk.added,
                self.limits.max_columns
            ));
        }
        self.root = root;
        self.columns += walk.added;
        Ok(())
    }
}

/// The samples a new table may be inferred from: those whose keys pass the rules one after the
/// other, as they would grow the table; the others become dead letters when they are decoded.
/// Values that are not JSON objects pass through (inference and decoding deal with them).
pub fn admitted<'a>(limits: Limits, samples: impl IntoIterator<Item = &'a [u8]>) -> Vec<&'a [u8]> {
    let meta = [super::META_PARTITION, super::META_OFFSET, super::META_TIMESTAMP, super::META_KEY];
    let mut guard = Guard::new(limits, &Fields::empty(), &meta);
    let mut out = Vec::new();
    for sample in samples {
        let keep = match serde_json::from_slice::<Value>(sample) {
            Ok(Value::Object(map)) => {
                let columns: Map<String, Value> =
                    map.into_iter().map(|(k, v)| (super::names::escape(&k).into_owned(), v)).collect();
                guard.admit(&columns).is_ok()
            }
            _ => true,
        };
        if keep {
            out.push(sample);
        }
    }
    out
}

/// The user columns of a table's `schema`, nested fields included, as the guard counts them
/// against `max_columns` (the meta columns are not counted; a list counts as its elements' fields).
pub fn column_count(schema: &iceberg::spec::Schema) -> usize {
    use iceberg::spec::Type;
    fn inside(t: &Type) -> usize {
        match t {
            Type::Struct(s) => s.fields().iter().map(|f| 1 + inside(&f.field_type)).sum(),
            Type::List(l) => inside(&l.element_field.field_type),
            Type::Map(_) | Type::Primitive(_) => 0,
        }
    }
    let fields = schema.as_struct().fields().iter();
    fields.filter(|f| !super::names::is_reserved(&f.name)).map(|f| 1 + inside(&f.field_type)).sum()
}

/// Checks the fields a table would have at once (a schema an operator gave, or a table grown by
/// an Avro writer schema) against the rules, as if one record brought the `grown` fields the
/// table's `existing` ones lack. `Err` names the rule.
pub fn admit_fields(limits: Limits, existing: &Fields, grown: &Fields) -> Result<(), String> {
    let meta = [super::META_PARTITION, super::META_OFFSET, super::META_TIMESTAMP, super::META_KEY];
    Guard::new(limits, existing, &meta).admit(&shape(grown))
}

/// A record with every field of `fields`: an object per struct, a list of one such object per
/// list of structs, `null` for the rest.
fn shape(fields: &Fields) -> Map<String, Value> {
    fields
        .iter()
        .map(|f| {
            let v = match f.data_type() {
                DataType::Struct(children) => Value::Object(shape(children)),
                DataType::List(item) | DataType::LargeList(item) => match nested_fields(item.data_type()) {
                    Some(children) => Value::Array(vec![Value::Object(shape(children))]),
                    None => Value::Null,
                },
                _ => Value::Null,
            };
            (f.name().clone(), v)
        })
        .collect()
}

/// One record's walk through a copy of the table's names, adding its new ones.
struct Walk<'a> {
    limits: &'a Limits,
    added: usize,
    /// The dotted path of the level being walked, for reasons.
    path: String,
}

impl Walk<'_> {
    fn object(&mut self, level: &mut Level, map: &Map<String, Value>, depth: usize) -> Result<(), String> {
        for (key, value) in map {
            let len = self.path.len();
            if len > 0 {
                self.path.push('.');
            }
            self.path.push_str(key);
            if !level.fields.contains_key(key) {
                self.check_new(level, key, depth)?;
                let inner = holds_fields(value).then(Level::default);
                level.insert(key, inner);
                self.added += 1;
            }
            if let Some(Some(inner)) = level.fields.get_mut(key) {
                self.value(inner, value, depth + 1)?;
            }
            self.path.truncate(len);
        }
        Ok(())
    }

    /// Walks into the fields of a value (an object, or the objects in an array).
    fn value(&mut self, level: &mut Level, value: &Value, depth: usize) -> Result<(), String> {
        match value {
            Value::Object(m) => self.object(level, m, depth),
            Value::Array(items) => items.iter().try_for_each(|i| self.value(level, i, depth)),
            _ => Ok(()),
        }
    }

    /// The rules for a name new at `level`.
    fn check_new(&self, level: &Level, key: &str, depth: usize) -> Result<(), String> {
        let path = &self.path;
        if key.is_empty() {
            return Err(format!("key `{path}` is empty, which no engine can name as a column"));
        }
        if let Some(c) = key.chars().find(|c| *c == '.' || c.is_control()) {
            let what =
                if c == '.' { "a dot, which engines read as a path into a struct" } else { "a control character" };
            return Err(format!("key `{}` has {what}", path.escape_debug()));
        }
        let chars = key.chars().count();
        if chars > self.limits.max_name_length {
            let start: String = key.chars().take(40).collect();
            return Err(format!(
                "key `{start}…` is {chars} characters long, past the limit of {} (max_name_length)",
                self.limits.max_name_length
            ));
        }
        if let Some(other) = level.folded.get(&key.to_lowercase()) {
            return Err(format!(
                "key `{path}` differs only in case from the column `{other}`, which engines that ignore case \
                 (DuckDB, Spark, Trino, Athena) could not tell apart"
            ));
        }
        if depth > self.limits.max_depth {
            return Err(format!(
                "key `{path}` is nested {depth} levels deep, past the limit of {} (max_depth)",
                self.limits.max_depth
            ));
        }
        Ok(())
    }
}

/// True when `map` has a key that `level` lacks, at any depth.
fn brings_new(level: &Level, map: &Map<String, Value>) -> bool {
    map.iter().any(|(key, value)| match level.fields.get(key) {
        None => true,
        Some(Some(inner)) => value_brings_new(inner, value),
        Some(None) => false,
    })
}

fn value_brings_new(level: &Level, value: &Value) -> bool {
    match value {
        Value::Object(m) => brings_new(level, m),
        Value::Array(items) => items.iter().any(|i| value_brings_new(level, i)),
        _ => false,
    }
}

/// True when a value has fields of its own: an object, or an array with objects in it.
fn holds_fields(value: &Value) -> bool {
    match value {
        Value::Object(_) => true,
        Value::Array(items) => items.iter().any(holds_fields),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::Field;
    use serde_json::json;
    use std::sync::Arc;

    const META: [&str; 4] = ["_kafka_partition", "_kafka_offset", "_kafka_timestamp", "_kafka_key"];

    /// A table with `num`, `site {zone}` and `tags [ {k} ]`.
    fn guard(limits: Limits) -> Guard {
        let site = Fields::from(vec![Field::new("zone", DataType::Utf8, true)]);
        let tag = Fields::from(vec![Field::new("k", DataType::Utf8, true)]);
        let fields = Fields::from(vec![
            Field::new("num", DataType::Int64, true),
            Field::new("site", DataType::Struct(site), true),
            Field::new("tags", DataType::List(Arc::new(Field::new("element", DataType::Struct(tag), true))), true),
        ]);
        Guard::new(limits, &fields, &META)
    }

    fn admit(g: &mut Guard, v: Value) -> Result<(), String> {
        let Value::Object(m) = v else { panic!("an object") };
        g.admit(&m)
    }

    #[test]
    fn known_keys_and_new_ones_that_break_no_rule_are_admitted_and_counted() {
        let mut g = guard(Limits::default());
        assert_eq!(g.columns(), 5);
        assert_eq!(admit(&mut g, json!({"num": 1, "site": {"zone": "n"}})), Ok(()));
        assert_eq!(g.columns(), 5);
        assert_eq!(
            admit(&mut g, json!({"extra": 1, "site": {"rack": 2}, "tags": [{"v": 1}, {"w": 2, "v": 3}]})),
            Ok(())
        );
        assert_eq!(g.columns(), 9, "extra, site.rack, tags.v, tags.w");
    }

    #[test]
    fn a_name_that_differs_only_in_case_is_refused_at_every_level() {
        let mut g = guard(Limits::default());
        let e = admit(&mut g, json!({"Num": 1})).unwrap_err();
        assert!(e.contains("`Num` differs only in case from the column `num`"), "{e}");
        let e = admit(&mut g, json!({"site": {"ZONE": "x"}})).unwrap_err();
        assert!(e.contains("`site.ZONE`"), "{e}");
        let e = admit(&mut g, json!({"tags": [{"K": 1}]})).unwrap_err();
        assert!(e.contains("`tags.K`"), "{e}");
        assert!(admit(&mut g, json!({"_KAFKA_offset": 1})).is_err(), "a meta column counts too");
        // Two new names in one record, and a new name against one admitted earlier.
        assert!(admit(&mut g, json!({"abc": 1, "ABC": 2})).is_err());
        assert_eq!(admit(&mut g, json!({"dev": 1})), Ok(()));
        assert!(admit(&mut g, json!({"Dev": 1})).is_err());
        assert_eq!(g.columns(), 6, "only `dev` was admitted");
    }

    #[test]
    fn empty_dotted_control_and_long_names_are_refused() {
        let limits = Limits { max_name_length: 10, ..Limits::default() };
        let mut g = guard(limits);
        assert!(admit(&mut g, json!({"": 1})).unwrap_err().contains("is empty"));
        assert!(admit(&mut g, json!({"a.b": 1})).unwrap_err().contains("a dot"));
        assert!(admit(&mut g, json!({"site": {"x.y": 1}})).unwrap_err().contains("`site.x.y` has a dot"));
        assert!(admit(&mut g, json!({"a\u{1}": 1})).unwrap_err().contains("control character"));
        let e = admit(&mut g, json!({"abcdefghijk": 1})).unwrap_err();
        assert!(e.contains("11 characters long, past the limit of 10 (max_name_length)"), "{e}");
        assert_eq!(admit(&mut g, json!({"abcdefghij": 1})), Ok(()), "10 is within the limit");
    }

    #[test]
    fn a_record_past_a_limit_is_refused_whole() {
        let limits = Limits { max_columns: 8, max_new_fields: 2, max_depth: 3, max_name_length: 255 };
        let mut g = guard(limits);
        let e = admit(&mut g, json!({"a": 1, "b": 2, "c": 3})).unwrap_err();
        assert!(e.contains("adds 3 fields, past the limit of 2 new fields per record (max_new_fields)"), "{e}");
        let e = admit(&mut g, json!({"d": {"e": {"f": 1}}})).unwrap_err();
        assert!(e.contains("`d.e.f` is nested 3 levels deep") || e.contains("max_new_fields"), "{e}");
        let e = admit(&mut g, json!({"site": {"g": {"h": {"i": 1}}}})).unwrap_err();
        assert!(e.contains("is nested 4 levels deep, past the limit of 3 (max_depth)"), "{e}");
        assert_eq!(g.columns(), 5, "nothing of the refused records was admitted");
        assert_eq!(admit(&mut g, json!({"a": 1, "b": 2})), Ok(()));
        assert_eq!(admit(&mut g, json!({"c": 1})), Ok(()));
        let e = admit(&mut g, json!({"d": 1})).unwrap_err();
        assert!(e.contains("would have 9 columns, past its limit of 8 (max_columns)"), "{e}");
    }

    #[test]
    fn a_new_table_is_inferred_only_from_records_that_pass() {
        let limits = Limits { max_new_fields: 3, ..Limits::default() };
        let samples: Vec<&[u8]> =
            vec![br#"{"a": 1}"#, br#"{"A": 2}"#, br#"{"b": 1, "c": 2, "d": 3, "e": 4}"#, b"not json", br#"{"b": 5}"#];
        let kept = admitted(limits, samples.iter().copied());
        assert_eq!(kept, vec![samples[0], samples[3], samples[4]]);
    }

    #[test]
    fn fields_given_at_once_pass_the_same_rules() {
        let site = Fields::from(vec![Field::new("zone", DataType::Utf8, true)]);
        let nested = |name: &str| {
            Fields::from(vec![Field::new(
                "site",
                DataType::Struct(Fields::from(vec![Field::new(name, DataType::Utf8, true)])),
                true,
            )])
        };
        let old = Fields::from(vec![Field::new("site", DataType::Struct(site), true)]);
        assert_eq!(admit_fields(Limits::default(), &Fields::empty(), &old), Ok(()));
        let e = admit_fields(Limits::default(), &old, &nested("Zone")).unwrap_err();
        assert!(e.contains("`site.Zone` differs only in case"), "{e}");
        assert!(admit_fields(Limits::default(), &old, &nested("a.b")).unwrap_err().contains("a dot"));
        let limits = Limits { max_depth: 1, ..Limits::default() };
        assert!(admit_fields(limits, &Fields::empty(), &old).unwrap_err().contains("max_depth"));
        let wide = Fields::from((0..4).map(|i| Field::new(format!("c{i}"), DataType::Int64, true)).collect::<Vec<_>>());
        let limits = Limits { max_columns: 3, ..Limits::default() };
        assert!(admit_fields(limits, &Fields::empty(), &wide).unwrap_err().contains("max_columns"));
    }

    #[test]
    fn an_existing_column_spelled_exactly_always_maps() {
        // A table made before the rules, with names they would refuse now.
        let fields =
            Fields::from(vec![Field::new("num", DataType::Int64, true), Field::new("Num", DataType::Int64, true)]);
        let mut g = Guard::new(Limits::default(), &fields, &META);
        assert_eq!(admit(&mut g, json!({"num": 1, "Num": 2})), Ok(()));
        assert!(admit(&mut g, json!({"NUM": 3})).is_err());
    }
}
