//! Schema inference from sample JSON values.
//!
//! Each sample is deserialized straight into a [`Kind`] tree (no `serde_json::Value`, whose maps
//! are sorted unless serde_json's `preserve_order` is on), so keys keep their order of first
//! appearance. Kinds of all samples are merged, then turned into Iceberg types with ids assigned
//! depth-first.

use std::collections::HashMap;
use std::fmt;

use iceberg::spec::{ListType, NestedField, NestedFieldRef, PrimitiveType, Schema, StructType, Type};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::names;
use crate::{Error, Result};

/// What the samples showed for one value position.
#[derive(Debug, Default)]
enum Kind {
    /// Only nulls (or nothing) seen so far.
    #[default]
    Null,
    Bool,
    Long,
    Double,
    /// Strings, or kinds that conflict: both are stored as text.
    Str,
    Object(Fields),
    /// Element kind merged over every element of every array seen.
    Array(Box<Kind>),
}

/// Object fields in order of first appearance, with an index so wide objects merge in linear time.
#[derive(Debug, Default)]
struct Fields {
    order: Vec<(String, Kind)>,
    index: HashMap<String, usize>,
}

impl Fields {
    fn merge_field(&mut self, key: String, kind: Kind) {
        match self.index.get(&key) {
            Some(&i) => {
                let slot = &mut self.order[i].1;
                *slot = std::mem::take(slot).merge(kind);
            }
            None => {
                self.index.insert(key.clone(), self.order.len());
                self.order.push((key, kind));
            }
        }
    }
}

impl Kind {
    fn merge(self, other: Kind) -> Kind {
        use Kind::*;
        match (self, other) {
            (Null, k) | (k, Null) => k,
            (Bool, Bool) => Bool,
            (Long, Long) => Long,
            (Long | Double, Long | Double) => Double,
            (Object(mut a), Object(b)) => {
                for (key, kind) in b.order {
                    a.merge_field(key, kind);
                }
                Object(a)
            }
            (Array(a), Array(b)) => Array(Box::new(a.merge(*b))),
            _ => Str,
        }
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor)
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Kind, E> {
        Ok(Kind::Bool)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Kind, E> {
        Ok(Kind::Long)
    }
    fn visit_u64<E>(self, v: u64) -> Result<Kind, E> {
        // Above i64::MAX a long cannot hold it; a double keeps its magnitude.
        Ok(if i64::try_from(v).is_ok() { Kind::Long } else { Kind::Double })
    }
    fn visit_f64<E>(self, _: f64) -> Result<Kind, E> {
        // serde_json also lands here for integers beyond u64.
        Ok(Kind::Double)
    }
    fn visit_str<E>(self, _: &str) -> Result<Kind, E> {
        Ok(Kind::Str)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut element = Kind::Null;
        while let Some(kind) = seq.next_element::<Kind>()? {
            element = element.merge(kind);
        }
        Ok(Kind::Array(Box::new(element)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut fields = Fields::default();
        while let Some((key, kind)) = map.next_entry::<String, Kind>()? {
            fields.merge_field(key, kind);
        }
        Ok(Kind::Object(fields))
    }
}

/// Hands out field ids 1, 2, 3, ... in the order fields are built.
struct Ids(i32);

impl Ids {
    fn next(&mut self) -> i32 {
        self.0 += 1;
        self.0
    }
}

fn field(name: String, kind: Kind, ids: &mut Ids) -> NestedFieldRef {
    // The id is taken before the type is built, so parents number before their children.
    let id = ids.next();
    NestedField::optional(id, name, iceberg_type(kind, ids)).into()
}

fn iceberg_type(kind: Kind, ids: &mut Ids) -> Type {
    match kind {
        Kind::Bool => Type::Primitive(PrimitiveType::Boolean),
        Kind::Long => Type::Primitive(PrimitiveType::Long),
        Kind::Double => Type::Primitive(PrimitiveType::Double),
        // A value never seen other than null has no type to offer; text holds whatever comes.
        // An object that was always empty neither: Parquet cannot store a struct with no fields.
        Kind::Null | Kind::Str => Type::Primitive(PrimitiveType::String),
        Kind::Object(f) if f.order.is_empty() => Type::Primitive(PrimitiveType::String),
        Kind::Object(f) => {
            Type::Struct(StructType::new(f.order.into_iter().map(|(name, kind)| field(name, kind, ids)).collect()))
        }
        Kind::Array(element) => {
            let id = ids.next();
            // JSON arrays may hold nulls, so elements are optional.
            let element = NestedField::list_element(id, iceberg_type(*element, ids), false);
            Type::List(ListType::new(element.into()))
        }
    }
}

/// Infers an Iceberg schema from sample message values (raw bytes).
///
/// Samples that are not JSON objects (including invalid JSON) are skipped; it is an error if
/// none is an object. Every user field is optional; top-level keys are renamed with
/// [`names::escape`]; the four meta columns follow the user fields. Schema id 0.
pub fn infer_schema<'a>(samples: impl IntoIterator<Item = &'a [u8]>) -> Result<Schema> {
    let mut root: Option<Fields> = None;
    for sample in samples {
        if let Ok(Kind::Object(fields)) = serde_json::from_slice::<Kind>(sample) {
            root = Some(match root {
                None => fields,
                Some(mut acc) => {
                    for (key, kind) in fields.order {
                        acc.merge_field(key, kind);
                    }
                    acc
                }
            });
        }
    }
    let root =
        root.ok_or_else(|| Error::decode("inferring a schema", "none of the sample messages is a JSON object"))?;

    let mut ids = Ids(0);
    let fields: Vec<NestedFieldRef> =
        root.order.into_iter().map(|(key, kind)| field(names::escape(&key).into_owned(), kind, &mut ids)).collect();
    super::with_meta_columns(fields, "building the inferred schema")
}

/// The schema `old` grows into when values carry keys it has no field for: at the top level, and
/// inside struct columns (also structs in lists), at any depth. Existing fields keep their ids,
/// names and types; each new key becomes an optional field appended to its struct, typed from
/// the samples, with ids after `last_id` (the highest id ever assigned), parents before children.
/// A top-level key `known` (the table's schema in the catalog, which another writer may have
/// grown) already has keeps that field, id and type. Schema id: `old`'s plus one. `None` when the
/// samples bring no new key.
pub fn evolve_schema<'a>(
    old: &Schema,
    samples: impl IntoIterator<Item = &'a [u8]>,
    last_id: i32,
    known: Option<&Schema>,
) -> Result<Option<Schema>> {
    let mut root = Fields::default();
    for sample in samples {
        if let Ok(Kind::Object(fields)) = serde_json::from_slice::<Kind>(sample) {
            for (key, kind) in fields.order {
                root.merge_field(names::escape(&key).into_owned(), kind);
            }
        }
    }
    let mut ids = Ids(last_id.max(old.highest_field_id()));
    let (fields, grown) = grow_fields(old.as_struct().fields(), root, &mut ids, known);
    if !grown {
        return Ok(None);
    }
    Schema::builder()
        .with_schema_id(old.schema_id() + 1)
        .with_fields(fields)
        .build()
        .map(Some)
        .map_err(|e| Error::iceberg("building the evolved schema", e))
}

/// `fields` with the keys of `seen` they lack appended (and their struct fields grown the same
/// way); true when anything was added.
fn grow_fields(
    fields: &[NestedFieldRef],
    seen: Fields,
    ids: &mut Ids,
    known: Option<&Schema>,
) -> (Vec<NestedFieldRef>, bool) {
    let mut out: Vec<NestedFieldRef> = fields.to_vec();
    let mut grown = false;
    for (key, kind) in seen.order {
        match out.iter().position(|f| f.name == key) {
            Some(i) => {
                if let Some(t) = grow_type(&out[i].field_type, kind, ids) {
                    let mut f = out[i].as_ref().clone();
                    f.field_type = Box::new(t);
                    out[i] = f.into();
                    grown = true;
                }
            }
            None => {
                match known.and_then(|k| k.as_struct().field_by_name(&key)) {
                    Some(f) => out.push(f.clone()),
                    None => out.push(field(key, kind, ids)),
                }
                grown = true;
            }
        }
    }
    (out, grown)
}

/// The type `t` grows into for values of `kind`: a struct gains the keys it lacks, a list of
/// structs the same in its element. `None` when nothing is new (or the kinds differ: such a
/// value does not fit and is a dead letter, not a schema change).
fn grow_type(t: &Type, kind: Kind, ids: &mut Ids) -> Option<Type> {
    match (t, kind) {
        (Type::Struct(s), Kind::Object(seen)) => {
            let (fields, grown) = grow_fields(s.fields(), seen, ids, None);
            grown.then(|| Type::Struct(StructType::new(fields)))
        }
        (Type::List(l), Kind::Array(element)) => {
            let t = grow_type(&l.element_field.field_type, *element, ids)?;
            let mut e = l.element_field.as_ref().clone();
            e.field_type = Box::new(t);
            Some(Type::List(ListType::new(e.into())))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `id name: type` per field; `!` marks required; lists show `[element-id type]`.
    fn render(schema: &Schema) -> String {
        fn fields(fs: &[NestedFieldRef]) -> String {
            let one = |f: &NestedFieldRef| {
                let req = if f.required { "!" } else { "" };
                format!("{} {}{req}: {}", f.id, f.name, ty(&f.field_type))
            };
            fs.iter().map(one).collect::<Vec<_>>().join(", ")
        }
        fn ty(t: &Type) -> String {
            match t {
                Type::Primitive(p) => p.to_string(),
                Type::Struct(s) => format!("{{{}}}", fields(s.fields())),
                Type::List(l) => format!("[{} {}]", l.element_field.id, ty(&l.element_field.field_type)),
                Type::Map(_) => unreachable!(),
            }
        }
        fields(schema.as_struct().fields())
    }

    fn infer(samples: &[&str]) -> Schema {
        infer_schema(samples.iter().map(|s| s.as_bytes())).unwrap()
    }

    const META: &str =
        "_kafka_partition!: int, {} _kafka_offset!: long, {} _kafka_timestamp: timestamptz, {} _kafka_key: binary";

    fn meta(first: i32) -> String {
        let mut s = format!("{first} {META}");
        for id in first + 1..first + 4 {
            s = s.replacen("{}", &id.to_string(), 1);
        }
        s
    }

    #[test]
    fn scalars() {
        let s = infer(&[
            r#"{"b": true, "i": 1, "d": 1.5, "s": "x", "t": "2024-01-01T00:00:00Z", "big": 18446744073709551615, "huge": 123456789012345678901234567890}"#,
        ]);
        let want = "1 b: boolean, 2 i: long, 3 d: double, 4 s: string, 5 t: string, 6 big: double, 7 huge: double";
        assert_eq!(render(&s), format!("{want}, {}", meta(8)));
        assert_eq!(s.schema_id(), 0);
    }

    #[test]
    fn merging_and_conflicts() {
        let s = infer(&[
            r#"{"mix": 1, "n": null, "sn": "a", "os": {"a": 1}, "ao": [1], "ok": 1, "late_null": 2}"#,
            r#"{"mix": 2.5, "n": null, "sn": 3, "os": "x", "ao": {"a": 1}, "ok": 2, "late_null": null}"#,
            r#"{"bs": true, "ok": -3}"#,
            r#"{"bs": "true", "new": [null, 1]}"#,
        ]);
        let want = "1 mix: double, 2 n: string, 3 sn: string, 4 os: string, 5 ao: string, 6 ok: long, \
                    7 late_null: long, 8 bs: string, 9 new: [10 long]";
        assert_eq!(render(&s), format!("{want}, {}", meta(11)));
    }

    #[test]
    fn nested_ids_depth_first() {
        let s = infer(&[
            r#"{"a": {"x": 1, "y": [{"z": "q"}]}, "b": [1, 2.5], "c": [], "e": {}}"#,
            // A key first seen later in a nested object joins that object, after its siblings.
            r#"{"d": [[true]], "a": {"y": [{"w": 1}, {"z": null}], "v": null}}"#,
        ]);
        let want = "1 a: {2 x: long, 3 y: [4 {5 z: string, 6 w: long}], 7 v: string}, 8 b: [9 double], \
                    10 c: [11 string], 12 e: string, 13 d: [14 [15 boolean]]";
        assert_eq!(render(&s), format!("{want}, {}", meta(16)));
        for f in s.as_struct().fields().iter().take(5) {
            assert!(!f.required, "{} should be optional", f.name);
        }
    }

    #[test]
    fn deterministic() {
        let samples = [r#"{"z": 1, "a": {"q": [1], "b": "x"}}"#, r#"{"m": 1.0, "a": {"c": true}}"#];
        let first = infer(&samples);
        assert_eq!(first, infer(&samples));
        // Order of first appearance, not alphabetical.
        assert_eq!(
            render(&first),
            format!("1 z: long, 2 a: {{3 q: [4 long], 5 b: string, 6 c: boolean}}, 7 m: double, {}", meta(8))
        );
    }

    #[test]
    fn skips_non_objects_and_fails_without_any() {
        let s = infer(&["[1]", "null", "not json", r#""s""#, r#"{"a": 1}"#, "7"]);
        assert_eq!(render(&s), format!("1 a: long, {}", meta(2)));
        assert_eq!(render(&infer(&["{}"])), meta(1));
        let err = infer_schema(["[1]", "{", ""].iter().map(|s| s.as_bytes())).unwrap_err();
        assert!(err.to_string().contains("none of the sample messages is a JSON object"), "{err}");
        assert!(infer_schema(std::iter::empty()).is_err());
    }

    #[test]
    fn escapes_top_level_kafka_names_only() {
        let s = infer(&[r#"{"_kafka_offset": 1, "__kafka_x": "a", "o": {"_kafka_key": 1}, "kafka_y": 2}"#]);
        let want = "1 __kafka_offset: long, 2 ___kafka_x: string, 3 o: {4 _kafka_key: long}, 5 kafka_y: long";
        assert_eq!(render(&s), format!("{want}, {}", meta(6)));
    }

    #[test]
    fn duplicate_keys_merge() {
        let s = infer(&[r#"{"a": 1, "a": "x"}"#]);
        assert_eq!(render(&s), format!("1 a: string, {}", meta(2)));
    }

    #[test]
    fn evolution_appends_new_keys_with_fresh_ids_and_keeps_the_rest() {
        let old = infer(&[r#"{"a": 1, "b": "x"}"#]);
        assert_eq!(render(&old), format!("1 a: long, 2 b: string, {}", meta(3)));
        let samples = [r#"{"a": 2, "c": {"d": [1.5]}}"#, r#"{"b": "y", "e": true, "c": null}"#];
        let new = evolve_schema(&old, samples.iter().map(|s| s.as_bytes()), 6, None).unwrap().unwrap();
        // Ids continue after the highest ever assigned (6 here, above the schema's own 6 too).
        assert_eq!(
            render(&new),
            format!("1 a: long, 2 b: string, {}, 7 c: {{8 d: [9 double]}}, 10 e: boolean", meta(3))
        );
        assert_eq!(new.schema_id(), old.schema_id() + 1);
        assert!(evolve_schema(&new, samples.iter().map(|s| s.as_bytes()), 10, None).unwrap().is_none(), "nothing new");

        // A key the table already has (another writer added it) keeps the table's field.
        let table = evolve_schema(&old, [br#"{"e": "text"}"#.as_slice()], 20, None).unwrap().unwrap();
        let adopted = evolve_schema(&old, [br#"{"e": true}"#.as_slice()], 21, Some(&table)).unwrap().unwrap();
        assert_eq!(render(&adopted), format!("1 a: long, 2 b: string, {}, 21 e: string", meta(3)));
    }

    #[test]
    fn evolution_grows_structs_at_any_depth() {
        let old = infer(&[r#"{"a": {"b": 1}, "l": [{"x": 1}]}"#]);
        assert_eq!(render(&old), format!("1 a: {{2 b: long}}, 3 l: [4 {{5 x: long}}], {}", meta(6)));
        let samples = [r#"{"a": {"b": 2, "c": {"d": "deep"}}, "l": [{"x": 2, "y": true}]}"#];
        let new = evolve_schema(&old, samples.iter().map(|s| s.as_bytes()), 9, None).unwrap().unwrap();
        assert_eq!(
            render(&new),
            format!("1 a: {{2 b: long, 10 c: {{11 d: string}}}}, 3 l: [4 {{5 x: long, 12 y: boolean}}], {}", meta(6))
        );
        assert!(evolve_schema(&new, samples.iter().map(|s| s.as_bytes()), 12, None).unwrap().is_none());
        // A value of another kind is not a new field: it is a dead letter when decoded.
        assert!(evolve_schema(&old, [br#"{"a": 5}"#.as_slice()], 9, None).unwrap().is_none());
    }
}
