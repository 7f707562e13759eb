//! JSON Schemas, with `$ref`s inside the document and into a referenced one, and the Iceberg
//! fields they become.

use std::collections::BTreeMap;

use iceberg::spec::{NestedFieldRef, Type};
use serde_json::{Value, json};

use super::iceberg_fields;

/// A field list as lines: `id:name type` at every depth.
fn show(fields: &[NestedFieldRef]) -> Vec<String> {
    fn ty(t: &Type) -> String {
        match t {
            Type::Primitive(p) => p.to_string(),
            Type::Struct(s) => format!("struct<{}>", show(s.fields()).join(", ")),
            Type::List(l) => format!("list<{}>", ty(&l.element_field.field_type)),
            Type::Map(m) => format!("map<{}, {}>", ty(&m.key_field.field_type), ty(&m.value_field.field_type)),
        }
    }
    fields.iter().map(|f| format!("{}:{} {}", f.id, f.name, ty(&f.field_type))).collect()
}

fn fields_of(root: &Value, references: &BTreeMap<String, Value>) -> Result<Vec<String>, String> {
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    iceberg_fields(root, references, &mut next, &|name| name.to_string()).map(|f| show(&f))
}

#[test]
fn every_kind_of_property_has_an_iceberg_type() {
    let schema = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "definitions": {
            "pos": {"type": "object", "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}}},
            "node": {"type": "object", "properties": {"label": {"type": "string"}, "next": {"$ref": "#/definitions/node"}}}
        },
        "properties": {
            "a_text": {"type": "string"},
            "b_at": {"type": "string", "format": "date-time"},
            "c_day": {"type": "string", "format": "date"},
            "d_count": {"type": "integer"},
            "e_ratio": {"type": "number"},
            "f_ok": {"type": "boolean"},
            "g_small": {"type": "integer", "connect.type": "int32"},
            "h_tags": {"type": "array", "items": {"type": "string"}},
            "i_pos": {"$ref": "#/definitions/pos"},
            "j_attrs": {"type": "object", "additionalProperties": {"type": "integer"}},
            "k_maybe": {"oneOf": [{"type": "null"}, {"type": "integer"}]},
            "l_nullable": {"type": ["string", "null"]},
            "m_level": {"enum": ["LOW", "HIGH"]},
            "n_code": {"enum": [1, 2, 3]},
            "o_either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "p_free": {"type": "object"},
            "q_node": {"$ref": "#/definitions/node"},
            "r_site": {"$ref": "site.json"},
            "s_tuple": {"type": "array", "items": [{"type": "string"}, {"type": "integer"}]}
        }
    });
    let site = json!({"type": "object", "properties": {"name": {"type": "string"}}});
    let refs = BTreeMap::from([("site.json".to_string(), site)]);
    assert_eq!(
        fields_of(&schema, &refs).unwrap(),
        [
            "1:a_text string",
            "2:b_at timestamptz",
            "3:c_day date",
            "4:d_count long",
            "5:e_ratio double",
            "6:f_ok boolean",
            "7:g_small int",
            "8:h_tags list<string>",
            "10:i_pos struct<11:lat double, 12:lon double>",
            "13:j_attrs map<string, long>",
            "16:k_maybe long",
            "17:l_nullable string",
            "18:m_level string",
            "19:n_code long",
            "20:o_either string",
            "21:p_free string",
            // The node's `next` is a node again: JSON text from there on.
            "22:q_node struct<23:label string, 24:next string>",
            "25:r_site struct<26:name string>",
            "27:s_tuple string",
        ]
    );
}

#[test]
fn a_schema_that_cannot_be_a_table_says_why() {
    let none = BTreeMap::new();
    let err = |s: Value| fields_of(&s, &none).unwrap_err();
    assert!(err(json!({"type": "string"})).contains("not an object with properties"));
    assert!(err(json!({"type": "object", "properties": {"a": {"$ref": "gone.json"}}})).contains("property `a`"));
    assert!(err(json!({"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}})).contains("leads nowhere"));
    // A top level that is a `$ref` is followed.
    let by_ref = json!({"$ref": "#/definitions/r", "definitions": {"r": {"type": "object", "properties": {"x": {"type": "integer"}}}}});
    assert_eq!(fields_of(&by_ref, &none).unwrap(), ["1:x long"]);
}

#[test]
fn definitions_used_over_and_over_cannot_expand_without_bound() {
    // d0 uses d1 twice, d1 uses d2 twice, ...: 2^40 fields if expanded.
    let mut defs = serde_json::Map::new();
    for i in 0..40 {
        let next = json!({"$ref": format!("#/definitions/d{}", i + 1)});
        defs.insert(format!("d{i}"), json!({"type": "object", "properties": {"a": next, "b": next}}));
    }
    defs.insert("d40".into(), json!({"type": "string"}));
    let schema = json!({"type": "object", "definitions": defs, "properties": {"root": {"$ref": "#/definitions/d0"}}});
    let err = fields_of(&schema, &BTreeMap::new()).unwrap_err();
    assert!(err.contains("more than 10000 fields"), "{err}");
}
