//! The Iceberg fields of a registered JSON Schema: its top level must be an object with
//! `properties`, each of which becomes an optional column.
//!
//! - `string` is `string`, or `timestamptz` with `"format": "date-time"` and `date` with
//!   `"format": "date"`; `integer` is `long`, `number` `double`, `boolean` `boolean`;
//! - Kafka Connect's `connect.type` annotation, where a schema has it, picks the width (`int8` to
//!   `int32` are `int`, `float32` is `float`); its `bytes` stay the base64 text they are written as
//!   (`string`);
//! - an object with `properties` is a struct, one with only `additionalProperties` a map from
//!   string keys, any other object JSON text (`string`); an array with one `items` schema a list;
//! - `["T", "null"]`, and `oneOf`/`anyOf` of one schema and `{"type": "null"}`, are `T`; an
//!   `enum` of strings is `string`;
//! - a value of several types (a union, an array without one `items` schema, a schema with no
//!   type) and a schema that contains itself (at the point where it recurs) are JSON text.
//!
//! `$ref`s are followed within the document (`#/definitions/...`, `#/$defs/...`) and into the
//! schemas it references in the registry (by the name the reference was registered under). The
//! properties come in name order (serde_json keeps an object's keys sorted).

use std::collections::BTreeMap;

use iceberg::spec::{ListType, MapType, NestedField, NestedFieldRef, PrimitiveType, StructType, Type};
use serde_json::Value;

/// The most fields (at every depth) a schema may have as columns: `$ref`s to shared definitions,
/// nested, could otherwise expand to billions.
const MAX_FIELDS: i32 = 10_000;

/// The next field id, unless there are too many fields.
fn id(next_id: &mut dyn FnMut() -> i32) -> Result<i32, String> {
    match next_id() {
        id if id > MAX_FIELDS => Err(format!("more than {MAX_FIELDS} fields (definitions used over and over, nested)")),
        id => Ok(id),
    }
}

/// The Iceberg fields of `root` (a schema document, with `references` by name), numbered by
/// `next_id` (parents first); top-level names go through `rename`.
pub fn iceberg_fields(
    root: &Value,
    references: &BTreeMap<String, Value>,
    next_id: &mut dyn FnMut() -> i32,
    rename: &dyn Fn(&str) -> String,
) -> Result<Vec<NestedFieldRef>, String> {
    let mut walk = Walk { references, inside: Vec::new() };
    let (doc, node) = walk.follow(root, root)?;
    let Some(Value::Object(properties)) = node.get("properties") else {
        return Err("the schema's top level is not an object with properties".into());
    };
    properties
        .iter()
        .map(|(name, schema)| {
            let id = id(next_id)?;
            let ty = walk.ty(doc, schema, next_id).map_err(|e| format!("property `{name}`: {e}"))?;
            Ok(NestedField::optional(id, rename(name), ty).into())
        })
        .collect()
}

/// The referenced documents, and the `$ref`s being followed.
struct Walk<'a> {
    references: &'a BTreeMap<String, Value>,
    inside: Vec<String>,
}

impl<'a> Walk<'a> {
    /// `node` with its `$ref`s followed (in `doc`), and the document it ends in.
    fn follow(&self, doc: &'a Value, node: &'a Value) -> Result<(&'a Value, &'a Value), String> {
        let (mut doc, mut node) = (doc, node);
        for _ in 0..32 {
            let Some(r) = node.get("$ref").and_then(Value::as_str) else { return Ok((doc, node)) };
            (doc, node) = self.resolve(doc, r)?;
        }
        Err("`$ref`s more than 32 deep".into())
    }

    /// The document and node a `$ref` names: a JSON pointer into `doc` (`#/definitions/x`), or
    /// into a referenced schema (`address.json#/...`, by the name it was registered under).
    fn resolve(&self, doc: &'a Value, r: &str) -> Result<(&'a Value, &'a Value), String> {
        let (name, pointer) = r.split_once('#').unwrap_or((r, ""));
        let target = match name {
            "" => doc,
            _ => self.references.get(name).ok_or_else(|| format!("`$ref` {r}: no schema is referenced as {name}"))?,
        };
        let node = target.pointer(pointer).ok_or_else(|| format!("`$ref` {r} leads nowhere"))?;
        Ok((target, node))
    }

    fn ty(&mut self, doc: &'a Value, node: &'a Value, next_id: &mut dyn FnMut() -> i32) -> Result<Type, String> {
        let text = Ok(Type::Primitive(PrimitiveType::String));
        // A `$ref` already being followed: the schema contains itself.
        if let Some(r) = node.get("$ref").and_then(Value::as_str) {
            let key = format!("{:p}{r}", doc);
            if self.inside.contains(&key) {
                return text;
            }
            let (doc, target) = self.resolve(doc, r)?;
            self.inside.push(key);
            let t = self.ty(doc, target, next_id);
            self.inside.pop();
            return t;
        }
        let p = |p: PrimitiveType| Ok(Type::Primitive(p));
        match node.get("connect.type").and_then(Value::as_str) {
            Some("int8" | "int16" | "int32") => return p(PrimitiveType::Int),
            Some("int64") => return p(PrimitiveType::Long),
            Some("float32") => return p(PrimitiveType::Float),
            Some("float64") => return p(PrimitiveType::Double),
            _ => {}
        }
        // A union with null is its other branch; any other union is JSON text.
        for key in ["oneOf", "anyOf"] {
            if let Some(Value::Array(branches)) = node.get(key) {
                let others: Vec<&Value> = branches.iter().filter(|b| b.get("type") != Some(&"null".into())).collect();
                return match others.as_slice() {
                    [one] => self.ty(doc, one, next_id),
                    _ => text,
                };
            }
        }
        let kind = match node.get("type") {
            Some(Value::String(t)) => Some(t.as_str()),
            Some(Value::Array(types)) => match types.iter().filter(|t| *t != "null").collect::<Vec<_>>().as_slice() {
                [Value::String(t)] => Some(t.as_str()),
                _ => return text,
            },
            _ if node.get("properties").is_some() => Some("object"),
            _ if node.get("items").is_some() => Some("array"),
            _ => None,
        };
        match kind {
            Some("string") => match node.get("format").and_then(Value::as_str) {
                Some("date-time") => p(PrimitiveType::Timestamptz),
                Some("date") => p(PrimitiveType::Date),
                _ => text,
            },
            Some("integer") => p(PrimitiveType::Long),
            Some("number") => p(PrimitiveType::Double),
            Some("boolean") => p(PrimitiveType::Boolean),
            Some("array") => match node.get("items") {
                Some(items @ Value::Object(_)) => {
                    let id = id(next_id)?;
                    let element = self.ty(doc, items, next_id)?;
                    Ok(Type::List(ListType::new(NestedField::list_element(id, element, false).into())))
                }
                _ => text,
            },
            Some("object") => match (node.get("properties"), node.get("additionalProperties")) {
                (Some(Value::Object(props)), _) if !props.is_empty() => {
                    let fields = props
                        .iter()
                        .map(|(name, schema)| {
                            let id = id(next_id)?;
                            let ty = self.ty(doc, schema, next_id).map_err(|e| format!("`{name}`: {e}"))?;
                            Ok(NestedField::optional(id, name.clone(), ty).into())
                        })
                        .collect::<Result<Vec<NestedFieldRef>, String>>()?;
                    Ok(Type::Struct(StructType::new(fields)))
                }
                (_, Some(values @ Value::Object(_))) => {
                    let (k, v) = (id(next_id)?, id(next_id)?);
                    let value = self.ty(doc, values, next_id)?;
                    Ok(Type::Map(MapType::new(
                        NestedField::map_key_element(k, Type::Primitive(PrimitiveType::String)).into(),
                        NestedField::map_value_element(v, value, false).into(),
                    )))
                }
                _ => text,
            },
            None => match node.get("enum") {
                Some(Value::Array(values)) if !values.is_empty() && values.iter().all(|v| v.is_i64()) => {
                    p(PrimitiveType::Long)
                }
                // An enum of strings, or a schema that says nothing of its type: text.
                _ => text,
            },
            Some(_) => text,
        }
    }
}

#[cfg(test)]
#[path = "types_tests.rs"]
mod tests;
