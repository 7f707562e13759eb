//! What becomes of a JSON key a table has no column for.
//!
//! By default the table grows a column for it (within the guard's rules, see [`super::guard`]).
//! A table whose schema is fixed never grows: a record with such a key is a dead letter naming
//! it, or keeps its unknown keys as JSON text in one string column, [`EXTRA`], as the table
//! chooses. Unknown keys are found at every depth: inside a struct column's object, and inside
//! the objects of a list of structs.

use std::collections::HashSet;

use arrow_schema::{DataType, Fields};
use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
use serde_json::{Map, Value};

use super::names;

/// The column that keeps a fixed table's unknown keys, as the JSON text of one object.
pub const EXTRA: &str = "_extra";

/// What a JSON table does with a key it has no column for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnknownKeys {
    /// The table grows a column for it.
    #[default]
    Grow,
    /// The schema is fixed; the record is a dead letter naming the key.
    DeadLetter,
    /// The schema is fixed; the record's unknown keys are kept as JSON text in [`EXTRA`].
    Extra,
    /// The columns are another schema's (a JSON Schema topic's registered schema): keys it does
    /// not have are left out of the row, as the schema allows them. Not a configuration choice.
    Drop,
}

impl UnknownKeys {
    /// True when the table's columns never grow.
    pub fn fixed(self) -> bool {
        self != UnknownKeys::Grow
    }
}

/// A record split by what the table holds.
#[derive(Debug, Default, PartialEq)]
pub struct Split {
    /// The keys the table has columns for.
    pub known: Map<String, Value>,
    /// The others, in the record's shape: a nested key sits under its struct's name, and a
    /// list's objects keep their positions (`{}` where an object had none). Top-level names are
    /// the record's own keys again (see [`names`]).
    pub unknown: Map<String, Value>,
    /// The dotted path of each unknown key, for reasons.
    pub paths: Vec<String>,
}

/// Splits `row` (top-level keys already column names) into what the table's `fields` hold and
/// what they do not.
pub fn split(row: Map<String, Value>, fields: &Fields) -> Split {
    let mut paths = Vec::new();
    let (known, unknown) = split_object(row, fields, "", &mut paths);
    Split { known, unknown, paths }
}

fn split_object(
    m: Map<String, Value>,
    fields: &Fields,
    path: &str,
    paths: &mut Vec<String>,
) -> (Map<String, Value>, Map<String, Value>) {
    let mut known = Map::new();
    let mut unknown = Map::new();
    for (key, value) in m {
        // Only top-level names are escaped; inside structs a key is its field's name.
        let original = if path.is_empty() { names::unescape(&key).unwrap_or(&key) } else { key.as_str() };
        let here = if path.is_empty() { original.to_string() } else { format!("{path}.{original}") };
        match fields.iter().find(|f| f.name() == &key) {
            None => {
                paths.push(here);
                unknown.insert(original.to_string(), value);
            }
            Some(f) => {
                let (k, u) = split_value(value, f.data_type(), &here, paths);
                if let Some(u) = u {
                    unknown.insert(original.to_string(), u);
                }
                known.insert(key, k);
            }
        }
    }
    (known, unknown)
}

/// A value's known part, and its unknown part when it has one.
fn split_value(value: Value, dt: &DataType, path: &str, paths: &mut Vec<String>) -> (Value, Option<Value>) {
    match (dt, value) {
        (DataType::Struct(children), Value::Object(m)) => {
            let (k, u) = split_object(m, children, path, paths);
            (Value::Object(k), (!u.is_empty()).then_some(Value::Object(u)))
        }
        (DataType::List(f) | DataType::LargeList(f), Value::Array(items)) => {
            let (known, unknown): (Vec<Value>, Vec<Option<Value>>) =
                items.into_iter().map(|i| split_value(i, f.data_type(), path, paths)).unzip();
            let unknown = unknown.iter().any(Option::is_some).then(|| {
                Value::Array(unknown.into_iter().map(|u| u.unwrap_or_else(|| Value::Object(Map::new()))).collect())
            });
            (Value::Array(known), unknown)
        }
        (_, v) => (v, None),
    }
}

/// `schema` grown by the optional string column [`EXTRA`] (id after `last_id`, the highest id the
/// table ever gave); `None` when it has it. `Err` when it has a column of that name of another type.
pub fn with_extra_column(schema: &Schema, last_id: i32) -> Result<Option<Schema>, String> {
    match schema.as_struct().field_by_name(EXTRA) {
        Some(f) if *f.field_type == Type::Primitive(PrimitiveType::String) => Ok(None),
        Some(f) => Err(format!(
            "its column `{EXTRA}` is of type {}, not the string column unknown keys are kept in",
            f.field_type
        )),
        None => {
            let mut fields = schema.as_struct().fields().to_vec();
            let id = schema.highest_field_id().max(last_id) + 1;
            fields.push(NestedField::optional(id, EXTRA, PrimitiveType::String.into()).into());
            Schema::builder()
                .with_schema_id(schema.schema_id() + 1)
                .with_fields(fields)
                .build()
                .map(Some)
                .map_err(|e| format!("adding the column `{EXTRA}`: {e}"))
        }
    }
}

/// Why a record with keys a fixed table lacks is a dead letter: the first few keys, by path.
pub fn reason(value: Map<String, Value>, fields: &Fields) -> String {
    let mut seen = HashSet::new();
    let paths: Vec<String> = split(value, fields).paths.into_iter().filter(|p| seen.insert(p.clone())).collect();
    let named: Vec<String> = paths
        .iter()
        .take(5)
        .map(|p| {
            let short: String = p.chars().take(60).collect();
            format!("`{}`", short.escape_debug())
        })
        .collect();
    let more = if paths.len() > 5 { format!(" and {} more", paths.len() - 5) } else { String::new() };
    let (noun, verb) = if paths.len() == 1 { ("key", "is not a column") } else { ("keys", "are not columns") };
    format!(
        "{noun} {}{more} {verb} of the table, whose schema is fixed (unknown_keys = \"dead_letter\")",
        named.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::Field;
    use serde_json::json;
    use std::sync::Arc;

    /// `num`, `site {zone}`, `tags [ {k} ]`.
    fn fields() -> Fields {
        let site = Fields::from(vec![Field::new("zone", DataType::Utf8, true)]);
        let tag = Fields::from(vec![Field::new("k", DataType::Utf8, true)]);
        Fields::from(vec![
            Field::new("num", DataType::Int64, true),
            Field::new("site", DataType::Struct(site), true),
            Field::new("tags", DataType::List(Arc::new(Field::new("element", DataType::Struct(tag), true))), true),
            Field::new("__kafka_x", DataType::Int64, true),
        ])
    }

    fn split_json(v: Value) -> Split {
        let Value::Object(m) = v else { panic!("an object") };
        split(m, &fields())
    }

    #[test]
    fn known_keys_stay_and_unknown_ones_keep_the_records_shape() {
        let s = split_json(json!({
            "num": 1, "color": "red",
            "site": {"zone": "n", "rack": 7},
            "tags": [{"k": "a"}, {"k": "b", "v": 1}, "odd"],
        }));
        assert_eq!(
            Value::Object(s.known),
            json!({"num": 1, "site": {"zone": "n"}, "tags": [{"k": "a"}, {"k": "b"}, "odd"]})
        );
        assert_eq!(Value::Object(s.unknown), json!({"color": "red", "site": {"rack": 7}, "tags": [{}, {"v": 1}, {}]}));
        assert_eq!(s.paths, ["color", "site.rack", "tags.v"]);
    }

    #[test]
    fn a_record_with_known_keys_alone_has_no_unknown_part() {
        let s = split_json(json!({"num": 1, "site": {"zone": "n"}, "tags": [{"k": "a"}], "__kafka_x": 2}));
        assert!(s.unknown.is_empty() && s.paths.is_empty());
        assert_eq!(s.known.len(), 4);
    }

    #[test]
    fn top_level_names_in_the_unknown_part_are_the_records_own_keys() {
        // `___kafka_y` is the column name of the key `__kafka_y` (see `names`).
        let s = split_json(json!({"___kafka_y": 1, "site": "not an object"}));
        assert_eq!(Value::Object(s.unknown), json!({"__kafka_y": 1}));
        assert_eq!(
            Value::Object(s.known),
            json!({"site": "not an object"}),
            "a type mismatch is the decoder's to find"
        );
    }

    #[test]
    fn the_extra_column_is_added_once_and_only_as_a_string() {
        let schema = crate::decode::infer_schema([br#"{"a": 1}"#.as_slice()]).unwrap();
        let grown = with_extra_column(&schema, 40).unwrap().expect("added");
        let f = grown.as_struct().field_by_name(EXTRA).unwrap();
        assert_eq!((f.id, f.required), (41, false), "after the highest id the table ever gave");
        assert_eq!(with_extra_column(&grown, 41).unwrap(), None);
        let taken = crate::decode::infer_schema([br#"{"_extra": 1}"#.as_slice()]).unwrap();
        assert!(with_extra_column(&taken, 0).unwrap_err().contains("of type long"));
    }
}
