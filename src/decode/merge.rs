//! Growing a table's schema by a writer's fields (an Avro or Protobuf writer schema turned into
//! Iceberg fields): new fields anywhere are appended as optional, `int` → `long`, `float` →
//! `double` and wider decimals promote the table's column, and anything else that differs is a
//! conflict the writer's records pay for (they are dead letters; the table is left alone).

use iceberg::spec::{ListType, MapType, NestedField, NestedFieldRef, PrimitiveType, Schema, StructType, Type};

/// `table` grown to hold every one of `fields` (a writer's, numbered from 1): new fields (at any
/// depth) are appended as optional with ids after `last_id`, and columns the writer has wider
/// are promoted. A top-level field `known` (the catalog's schema, which another writer may have
/// grown) already has keeps that field. `Ok(None)`: nothing to add. `Err`: a field of a type the
/// table's cannot become.
pub fn grow(
    table: &Schema,
    fields: Vec<NestedFieldRef>,
    last_id: i32,
    known: Option<&Schema>,
) -> Result<Option<Schema>, String> {
    let mut next = last_id.max(table.highest_field_id());
    let mut conflicts = Vec::new();
    let (merged, changed) =
        merge_fields(table.as_struct().fields(), &fields, &mut next, known.map(Schema::as_struct), "", &mut conflicts);
    if !conflicts.is_empty() {
        return Err(conflicts.join("; "));
    }
    if !changed {
        return Ok(None);
    }
    Schema::builder()
        .with_schema_id(table.schema_id() + 1)
        .with_fields(merged)
        .build()
        .map(Some)
        .map_err(|e| format!("building the grown schema: {e}"))
}

/// Whether values of `fields` can be stored in `table` as it is.
pub fn fits(table: &Schema, fields: Vec<NestedFieldRef>) -> Result<(), String> {
    match grow(table, fields, table.highest_field_id(), None)? {
        None => Ok(()),
        Some(_) => Err("the table's schema lacks fields of this writer schema".into()),
    }
}

fn merge_fields(
    table: &[NestedFieldRef],
    writer: &[NestedFieldRef],
    next: &mut i32,
    known: Option<&StructType>,
    path: &str,
    conflicts: &mut Vec<String>,
) -> (Vec<NestedFieldRef>, bool) {
    let mut out = table.to_vec();
    let mut changed = false;
    for w in writer {
        let name = if path.is_empty() { w.name.clone() } else { format!("{path}.{}", w.name) };
        match out.iter().position(|f| f.name == w.name) {
            Some(i) => {
                if let Some(t) = merge_type(&out[i].field_type, &w.field_type, next, &name, conflicts) {
                    let mut f = out[i].as_ref().clone();
                    f.field_type = Box::new(t);
                    out[i] = f.into();
                    changed = true;
                }
            }
            None => {
                out.push(match known.and_then(|k| k.field_by_name(&w.name)) {
                    Some(f) => f.clone(),
                    None => renumber(w, next),
                });
                changed = true;
            }
        }
    }
    (out, changed)
}

/// The type `table` must become to hold `writer`'s values; `None` when it holds them already.
fn merge_type(table: &Type, writer: &Type, next: &mut i32, name: &str, conflicts: &mut Vec<String>) -> Option<Type> {
    use PrimitiveType as P;
    match (table, writer) {
        (Type::Primitive(t), Type::Primitive(w)) => match (t, w) {
            _ if t == w => None,
            // The writer's narrower values widen when stored.
            (P::Long, P::Int) | (P::Double, P::Float) => None,
            (P::Decimal { precision: tp, scale: ts }, P::Decimal { precision: wp, scale: ws })
                if ts == ws && tp >= wp =>
            {
                None
            }
            // The table's column is promoted (Iceberg allows these without rewriting files).
            (P::Int, P::Long) | (P::Float, P::Double) => Some(Type::Primitive(w.clone())),
            (P::Decimal { scale: ts, .. }, P::Decimal { scale: ws, .. }) if ts == ws => {
                Some(Type::Primitive(w.clone()))
            }
            _ => {
                conflicts.push(format!("field `{name}` is {w} in this schema but {t} in the table"));
                None
            }
        },
        (Type::Struct(t), Type::Struct(w)) => {
            let (fields, changed) = merge_fields(t.fields(), w.fields(), next, None, name, conflicts);
            changed.then(|| Type::Struct(StructType::new(fields)))
        }
        (Type::List(t), Type::List(w)) => {
            let e = merge_type(
                &t.element_field.field_type,
                &w.element_field.field_type,
                next,
                &format!("{name}[]"),
                conflicts,
            )?;
            let mut f = t.element_field.as_ref().clone();
            f.field_type = Box::new(e);
            Some(Type::List(ListType::new(f.into())))
        }
        (Type::Map(t), Type::Map(w)) => {
            let v = merge_type(
                &t.value_field.field_type,
                &w.value_field.field_type,
                next,
                &format!("{name}{{}}"),
                conflicts,
            )?;
            let mut f = t.value_field.as_ref().clone();
            f.field_type = Box::new(v);
            Some(Type::Map(MapType::new(t.key_field.clone(), f.into())))
        }
        _ => {
            let kind = |t: &Type| match t {
                Type::Primitive(p) => p.to_string(),
                Type::Struct(_) => "a record".into(),
                Type::List(_) => "an array".into(),
                Type::Map(_) => "a map".into(),
            };
            conflicts.push(format!(
                "field `{name}` is {} in this schema but {} in the table",
                kind(writer),
                kind(table)
            ));
            None
        }
    }
}

/// `f` with fresh ids from `next`, parents before children.
fn renumber(f: &NestedField, next: &mut i32) -> NestedFieldRef {
    *next += 1;
    let mut out = f.clone();
    out.id = *next;
    out.field_type = Box::new(renumber_type(&f.field_type, next));
    out.into()
}

fn renumber_type(t: &Type, next: &mut i32) -> Type {
    match t {
        Type::Primitive(_) => t.clone(),
        Type::Struct(s) => Type::Struct(StructType::new(s.fields().iter().map(|f| renumber(f, next)).collect())),
        Type::List(l) => Type::List(ListType::new(renumber(&l.element_field, next))),
        Type::Map(m) => {
            let k = renumber(&m.key_field, next);
            Type::Map(MapType::new(k, renumber(&m.value_field, next)))
        }
    }
}
