//! Avro schemas (the JSON a Schema Registry serves) as a small tree, and that tree as Iceberg
//! types.
//!
//! Named types are inlined where they are referenced, so the tree is self-contained; a type that
//! contains itself (a linked list) has no Iceberg type and is refused. Logical types the Avro
//! specification allows on a base type become their own nodes; one on the wrong base type (or a
//! decimal whose precision is out of range) is ignored, as the specification says.

use std::collections::HashMap;

use iceberg::spec::{ListType, MapType, NestedField, NestedFieldRef, PrimitiveType, StructType, Type};
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeUnit {
    Millis,
    Micros,
    Nanos,
}

/// One Avro type, with named types resolved.
#[derive(Clone, Debug, PartialEq)]
pub enum Avro {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Record(Vec<Field>),
    /// An enum of this many symbols.
    Enum(usize),
    Array(Box<Avro>),
    Map(Box<Avro>),
    Union(Vec<Avro>),
    Fixed(usize),
    /// `int` days since the epoch.
    Date,
    /// `int` milliseconds or `long` microseconds since midnight.
    Time(TimeUnit),
    /// `long` since the epoch; `utc: false` for the `local-timestamp-*` types.
    Timestamp {
        unit: TimeUnit,
        utc: bool,
    },
    /// On `bytes` (two's complement, big-endian), or on a `fixed` of this size.
    Decimal {
        precision: u32,
        scale: u32,
        fixed: Option<usize>,
    },
    /// On `string` (the text form), or on a `fixed(16)`.
    Uuid {
        fixed: bool,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub name: String,
    pub ty: Avro,
}

/// Parses a schema's JSON text.
pub fn parse(text: &str) -> Result<Avro, String> {
    let json: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    Parser::default().parse(&json, "")
}

#[derive(Default)]
struct Parser {
    named: HashMap<String, Avro>,
    /// Named types being defined: a reference to one of them is a recursive type.
    open: Vec<String>,
}

impl Parser {
    fn parse(&mut self, v: &Value, ns: &str) -> Result<Avro, String> {
        match v {
            Value::String(name) => self.by_name(name, ns),
            Value::Array(branches) => {
                Ok(Avro::Union(branches.iter().map(|b| self.parse(b, ns)).collect::<Result<_, _>>()?))
            }
            Value::Object(o) => {
                let base = match o.get("type") {
                    Some(Value::String(t)) => self.complex(t, o, ns)?,
                    Some(other) => self.parse(other, ns)?,
                    None => return Err(format!("type missing in {v}")),
                };
                Ok(match o.get("logicalType").and_then(Value::as_str) {
                    Some(logical) => logical_type(logical, base, o),
                    None => base,
                })
            }
            other => Err(format!("`{other}` is not a type")),
        }
    }

    fn complex(&mut self, t: &str, o: &serde_json::Map<String, Value>, ns: &str) -> Result<Avro, String> {
        let named = |o: &serde_json::Map<String, Value>| -> Result<(String, String), String> {
            let name = o.get("name").and_then(Value::as_str).ok_or_else(|| format!("a {t} without a name"))?;
            let space = o.get("namespace").and_then(Value::as_str).unwrap_or(ns);
            Ok(match name.rsplit_once('.') {
                Some((space, _)) => (name.to_string(), space.to_string()),
                None if space.is_empty() => (name.to_string(), String::new()),
                None => (format!("{space}.{name}"), space.to_string()),
            })
        };
        match t {
            "record" | "error" => {
                let (full, space) = named(o)?;
                self.open.push(full.clone());
                let fields = o
                    .get("fields")
                    .and_then(Value::as_array)
                    .ok_or_else(|| format!("record {full} has no fields list"))?;
                let fields = fields
                    .iter()
                    .map(|f| {
                        let name = f
                            .get("name")
                            .and_then(Value::as_str)
                            .ok_or_else(|| format!("a field of {full} has no name"))?;
                        let ty = f.get("type").ok_or_else(|| format!("field {name} of {full} has no type"))?;
                        Ok(Field {
                            name: name.to_string(),
                            ty: self.parse(ty, &space).map_err(|e| format!("{name}: {e}"))?,
                        })
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                self.open.pop();
                let record = Avro::Record(fields);
                self.named.insert(full, record.clone());
                Ok(record)
            }
            "enum" => {
                let (full, _) = named(o)?;
                let n = o
                    .get("symbols")
                    .and_then(Value::as_array)
                    .map(Vec::len)
                    .ok_or_else(|| format!("enum {full} has no symbols"))?;
                self.named.insert(full, Avro::Enum(n));
                Ok(Avro::Enum(n))
            }
            "fixed" => {
                let (full, _) = named(o)?;
                let size =
                    o.get("size").and_then(Value::as_u64).ok_or_else(|| format!("fixed {full} has no size"))? as usize;
                self.named.insert(full, Avro::Fixed(size));
                Ok(Avro::Fixed(size))
            }
            "array" => Ok(Avro::Array(Box::new(self.parse(o.get("items").ok_or("an array without items")?, ns)?))),
            "map" => Ok(Avro::Map(Box::new(self.parse(o.get("values").ok_or("a map without values")?, ns)?))),
            primitive => self.by_name(primitive, ns),
        }
    }

    fn by_name(&self, name: &str, ns: &str) -> Result<Avro, String> {
        Ok(match name {
            "null" => Avro::Null,
            "boolean" => Avro::Boolean,
            "int" => Avro::Int,
            "long" => Avro::Long,
            "float" => Avro::Float,
            "double" => Avro::Double,
            "bytes" => Avro::Bytes,
            "string" => Avro::String,
            _ => {
                let qualified =
                    if name.contains('.') || ns.is_empty() { name.to_string() } else { format!("{ns}.{name}") };
                if self.open.iter().any(|o| *o == qualified || *o == name) {
                    return Err(format!("type {name} contains itself, which no Iceberg type can"));
                }
                self.named
                    .get(&qualified)
                    .or_else(|| self.named.get(name))
                    .cloned()
                    .ok_or_else(|| format!("unknown type `{name}`"))?
            }
        })
    }
}

fn logical_type(logical: &str, base: Avro, o: &serde_json::Map<String, Value>) -> Avro {
    let ts = |unit, utc| Avro::Timestamp { unit, utc };
    match (logical, &base) {
        ("date", Avro::Int) => Avro::Date,
        ("time-millis", Avro::Int) => Avro::Time(TimeUnit::Millis),
        ("time-micros", Avro::Long) => Avro::Time(TimeUnit::Micros),
        ("timestamp-millis", Avro::Long) => ts(TimeUnit::Millis, true),
        ("timestamp-micros", Avro::Long) => ts(TimeUnit::Micros, true),
        ("timestamp-nanos", Avro::Long) => ts(TimeUnit::Nanos, true),
        ("local-timestamp-millis", Avro::Long) => ts(TimeUnit::Millis, false),
        ("local-timestamp-micros", Avro::Long) => ts(TimeUnit::Micros, false),
        ("local-timestamp-nanos", Avro::Long) => ts(TimeUnit::Nanos, false),
        ("uuid", Avro::String) => Avro::Uuid { fixed: false },
        ("uuid", Avro::Fixed(16)) => Avro::Uuid { fixed: true },
        ("decimal", Avro::Bytes | Avro::Fixed(_)) => {
            let precision = o.get("precision").and_then(Value::as_u64).unwrap_or(0) as u32;
            let scale = o.get("scale").and_then(Value::as_u64).unwrap_or(0) as u32;
            let fixed = match base {
                Avro::Fixed(n) => Some(n),
                _ => None,
            };
            // Iceberg decimals hold up to 38 digits (16 bytes).
            if (1..=38).contains(&precision) && scale <= precision && fixed.is_none_or(|n| n <= 16) {
                Avro::Decimal { precision, scale, fixed }
            } else {
                base
            }
        }
        _ => base,
    }
}

/// The Iceberg fields of a record schema, every one optional (a later schema version may drop
/// it), numbered by `next_id` parents before children. Top-level names go through `rename`.
pub fn iceberg_fields(
    record: &Avro,
    next_id: &mut dyn FnMut() -> i32,
    rename: &dyn Fn(&str) -> String,
) -> Result<Vec<NestedFieldRef>, String> {
    let Avro::Record(fields) = record else { return Err("the schema is not a record".into()) };
    fields
        .iter()
        .map(|f| {
            let id = next_id();
            let ty = iceberg_type(&f.ty, next_id).map_err(|e| format!("field `{}`: {e}", f.name))?;
            Ok(NestedField::optional(id, rename(&f.name), ty).into())
        })
        .collect()
}

fn iceberg_type(t: &Avro, next_id: &mut dyn FnMut() -> i32) -> Result<Type, String> {
    let p = |p: PrimitiveType| Ok(Type::Primitive(p));
    match t {
        // A field that is always null has no type to offer; text holds whatever comes later.
        Avro::Null | Avro::String | Avro::Enum(_) => p(PrimitiveType::String),
        Avro::Boolean => p(PrimitiveType::Boolean),
        Avro::Int => p(PrimitiveType::Int),
        Avro::Long => p(PrimitiveType::Long),
        Avro::Float => p(PrimitiveType::Float),
        Avro::Double => p(PrimitiveType::Double),
        Avro::Bytes => p(PrimitiveType::Binary),
        Avro::Fixed(n) => p(PrimitiveType::Fixed(*n as u64)),
        Avro::Date => p(PrimitiveType::Date),
        Avro::Time(_) => p(PrimitiveType::Time),
        // Format v2 has no nanosecond timestamps: nanoseconds are kept to the microsecond.
        Avro::Timestamp { utc: true, .. } => p(PrimitiveType::Timestamptz),
        Avro::Timestamp { utc: false, .. } => p(PrimitiveType::Timestamp),
        Avro::Decimal { precision, scale, .. } => p(PrimitiveType::Decimal { precision: *precision, scale: *scale }),
        Avro::Uuid { .. } => p(PrimitiveType::Uuid),
        Avro::Record(_) => Ok(Type::Struct(StructType::new(iceberg_fields(t, next_id, &|n| n.to_string())?))),
        Avro::Array(items) => {
            let id = next_id();
            Ok(Type::List(ListType::new(NestedField::list_element(id, iceberg_type(items, next_id)?, false).into())))
        }
        Avro::Map(values) => {
            let (k, v) = (next_id(), next_id());
            Ok(Type::Map(MapType::new(
                NestedField::map_key_element(k, Type::Primitive(PrimitiveType::String)).into(),
                NestedField::map_value_element(v, iceberg_type(values, next_id)?, false).into(),
            )))
        }
        Avro::Union(branches) => {
            let mut real = branches.iter().filter(|b| **b != Avro::Null);
            match (real.next(), real.next()) {
                (None, _) => p(PrimitiveType::String),
                (Some(one), None) => iceberg_type(one, next_id),
                (Some(_), Some(_)) => Err("a union of several non-null types has no Iceberg type".into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(schema: &str) -> Result<String, String> {
        let mut n = 0;
        let fs = iceberg_fields(
            &parse(schema)?,
            &mut || {
                n += 1;
                n
            },
            &|s| s.to_string(),
        )?;
        Ok(serde_json::to_string(&StructType::new(fs)).unwrap())
    }

    #[test]
    fn maps_every_kind_with_ids_parents_first() {
        let s = r#"{"type":"record","name":"E","namespace":"x","fields":[
            {"name":"id","type":"long"},
            {"name":"site","type":["null","string"]},
            {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
            {"name":"day","type":{"type":"int","logicalType":"date"}},
            {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}},
            {"name":"uid","type":{"type":"string","logicalType":"uuid"}},
            {"name":"state","type":{"type":"enum","name":"S","symbols":["A","B"]}},
            {"name":"pos","type":{"type":"record","name":"P","fields":[{"name":"lat","type":"double"}]}},
            {"name":"tags","type":{"type":"array","items":"string"}},
            {"name":"attrs","type":{"type":"map","values":"int"}},
            {"name":"again","type":"P"},
            {"name":"bad_decimal","type":{"type":"bytes","logicalType":"decimal","precision":60}}
        ]}"#;
        let json: Value = serde_json::from_str(&fields(s).unwrap()).unwrap();
        let got: Vec<String> = json["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| format!("{} {} {}", f["id"], f["name"].as_str().unwrap(), f["type"]))
            .collect();
        assert_eq!(
            got[..7],
            [
                "1 id \"long\"",
                "2 site \"string\"",
                "3 at \"timestamptz\"",
                "4 day \"date\"",
                "5 price \"decimal(9, 2)\"",
                "6 uid \"uuid\"",
                "7 state \"string\""
            ]
        );
        assert!(got[7].starts_with("8 pos {") && got[7].contains("\"id\":9"), "{}", got[7]);
        assert!(got[8].starts_with("10 tags {") && got[8].contains("\"element-id\":11"), "{}", got[8]);
        assert!(
            got[9].starts_with("12 attrs {") && got[9].contains("\"key-id\":13") && got[9].contains("\"value-id\":14"),
            "{}",
            got[9]
        );
        assert!(got[10].starts_with("15 again {") && got[10].contains("lat"), "a named type used twice: {}", got[10]);
        assert_eq!(got[11], "17 bad_decimal \"binary\"", "an out-of-range decimal is its base type");
        assert!(json["fields"].as_array().unwrap().iter().all(|f| f["required"] == false));
    }

    #[test]
    fn refuses_what_iceberg_cannot_hold() {
        let recursive = r#"{"type":"record","name":"L","fields":[{"name":"next","type":["null","L"]}]}"#;
        assert!(fields(recursive).unwrap_err().contains("contains itself"));
        let union = r#"{"type":"record","name":"U","fields":[{"name":"v","type":["int","string"]}]}"#;
        assert!(fields(union).unwrap_err().contains("field `v`: a union of several"));
        assert!(fields(r#""string""#).unwrap_err().contains("not a record"));
        assert!(
            parse(r#"{"type":"record","name":"R","fields":[{"name":"a","type":"Nope"}]}"#)
                .unwrap_err()
                .contains("unknown type `Nope`")
        );
        assert!(parse("{").unwrap_err().starts_with("not JSON"));
    }
}
