//! A Protobuf schema as a registry holds it: the schema's own `.proto` text and the texts of the
//! files it imports (its references, by import name), compiled with protox (a Protobuf compiler
//! in Rust: no `protoc`) into descriptors. Then the message type a value names, and the Iceberg
//! fields of a message type.
//!
//! Registries list the well-known types (`google/protobuf/*.proto`) as built in, never as
//! references: protox brings its own copies.
//!
//! Every field is optional in the table: proto3 has no required fields, and a later schema may
//! drop any field. Types, where Protobuf and Iceberg differ:
//! - enums are their value names (`string`);
//! - `uint64` and `fixed64` are `decimal(20, 0)`, which holds every one of them (`long` would
//!   wrap past 2^63); `uint32` and `fixed32` are `long`;
//! - `google.protobuf.Timestamp` is `timestamptz` (to the microsecond, as format v2 keeps time);
//!   `Duration` is `long` microseconds (Iceberg has no interval type);
//! - the wrappers (`Int64Value`, `StringValue`, ...) are the value they wrap, null when absent;
//! - `Struct`, `Value`, `ListValue`, `Empty`, and a message that contains itself (at the point
//!   where it recurs), are their canonical JSON text (`string`); `Any` is its type URL and bytes.

use std::collections::BTreeMap;

use iceberg::spec::{ListType, MapType, NestedField, NestedFieldRef, PrimitiveType, StructType, Type};
use prost_reflect::{FieldDescriptor, FileDescriptor, Kind, MessageDescriptor};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

/// The most fields (at every depth) a message type may have as columns: a type that uses other
/// types over and over, nested, could otherwise expand to billions.
const MAX_FIELDS: i32 = 10_000;

/// The name the schema's own file is compiled under (registries give it none; imports name the
/// others).
pub const ROOT: &str = "frazil-schema.proto";

/// The texts a compile may read: the schema's own, and its imports by import name.
struct Imports {
    root: String,
    imports: BTreeMap<String, String>,
}

impl FileResolver for Imports {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match (name, self.imports.get(name)) {
            (ROOT, _) => File::from_source(name, &self.root),
            (_, Some(text)) => File::from_source(name, text),
            _ => Err(protox::Error::file_not_found(name)),
        }
    }
}

/// Compiles a schema's text with the texts it imports (by import name); the well-known types
/// need not be among them.
pub fn compile(root: &str, imports: &BTreeMap<String, String>) -> Result<FileDescriptor, String> {
    let mut chain = ChainFileResolver::new();
    chain.add(Imports { root: root.to_string(), imports: imports.clone() });
    chain.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(chain);
    compiler.open_file(ROOT).map_err(|e| format!("the Protobuf schema does not compile: {e}"))?;
    compiler.descriptor_pool().get_file_by_name(ROOT).ok_or_else(|| "the Protobuf schema compiled to nothing".into())
}

/// The message type that `indexes` (from a value's frame) name in `file`: a top-level message,
/// then messages nested in it. Map fields' entry types are not counted, as Confluent's Java
/// serializer and the registry's own rendering of a schema do not count them.
pub fn message_at(file: &FileDescriptor, indexes: &[i32]) -> Result<MessageDescriptor, String> {
    let missing = || format!("no message at indexes {indexes:?} in the schema");
    let (first, rest) = indexes.split_first().ok_or_else(missing)?;
    let mut message = file.messages().nth(*first as usize).ok_or_else(missing)?;
    for i in rest {
        let nested = message.child_messages().filter(|m| !m.is_map_entry()).nth(*i as usize);
        message = nested.ok_or_else(missing)?;
    }
    Ok(message)
}

/// The Iceberg fields of `message`, numbered by `next_id` (parents first); top-level names go
/// through `rename` (to keep them off the meta columns' names).
pub fn iceberg_fields(
    message: &MessageDescriptor,
    next_id: &mut dyn FnMut() -> i32,
    rename: &dyn Fn(&str) -> String,
) -> Result<Vec<NestedFieldRef>, String> {
    fields(message, next_id, rename, &mut vec![message.full_name().to_string()])
}

fn fields(
    message: &MessageDescriptor,
    next_id: &mut dyn FnMut() -> i32,
    rename: &dyn Fn(&str) -> String,
    inside: &mut Vec<String>,
) -> Result<Vec<NestedFieldRef>, String> {
    message
        .fields()
        .map(|f| {
            let id = next_id();
            if id > MAX_FIELDS {
                return Err(format!("more than {MAX_FIELDS} fields (message types used over and over, nested)"));
            }
            let ty = field_type(&f, next_id, inside).map_err(|e| format!("field `{}`: {e}", f.name()))?;
            Ok(NestedField::optional(id, rename(f.name()), ty).into())
        })
        .collect()
}

fn field_type(f: &FieldDescriptor, next_id: &mut dyn FnMut() -> i32, inside: &mut Vec<String>) -> Result<Type, String> {
    if f.is_map() {
        let Kind::Message(entry) = f.kind() else { return Err("a map without an entry type".into()) };
        let (k, v) = (next_id(), next_id());
        let key = kind_type(&entry.map_entry_key_field().kind(), next_id, inside)?;
        let value = kind_type(&entry.map_entry_value_field().kind(), next_id, inside)?;
        return Ok(Type::Map(MapType::new(
            NestedField::map_key_element(k, key).into(),
            NestedField::map_value_element(v, value, false).into(),
        )));
    }
    if f.is_list() {
        let id = next_id();
        let element = kind_type(&f.kind(), next_id, inside)?;
        return Ok(Type::List(ListType::new(NestedField::list_element(id, element, false).into())));
    }
    kind_type(&f.kind(), next_id, inside)
}

fn kind_type(kind: &Kind, next_id: &mut dyn FnMut() -> i32, inside: &mut Vec<String>) -> Result<Type, String> {
    let p = |p: PrimitiveType| Ok(Type::Primitive(p));
    match kind {
        Kind::Double => p(PrimitiveType::Double),
        Kind::Float => p(PrimitiveType::Float),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => p(PrimitiveType::Int),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint32 | Kind::Fixed32 => p(PrimitiveType::Long),
        Kind::Uint64 | Kind::Fixed64 => p(PrimitiveType::Decimal { precision: 20, scale: 0 }),
        Kind::Bool => p(PrimitiveType::Boolean),
        Kind::String | Kind::Enum(_) => p(PrimitiveType::String),
        Kind::Bytes => p(PrimitiveType::Binary),
        Kind::Message(m) => message_type(m, next_id, inside),
    }
}

fn message_type(
    m: &MessageDescriptor,
    next_id: &mut dyn FnMut() -> i32,
    inside: &mut Vec<String>,
) -> Result<Type, String> {
    let p = |p: PrimitiveType| Ok(Type::Primitive(p));
    match m.full_name() {
        "google.protobuf.Timestamp" => return p(PrimitiveType::Timestamptz),
        "google.protobuf.Duration" => return p(PrimitiveType::Long),
        "google.protobuf.Struct" | "google.protobuf.Value" | "google.protobuf.ListValue" | "google.protobuf.Empty" => {
            return p(PrimitiveType::String);
        }
        "google.protobuf.DoubleValue" => return p(PrimitiveType::Double),
        "google.protobuf.FloatValue" => return p(PrimitiveType::Float),
        "google.protobuf.Int64Value" | "google.protobuf.UInt32Value" => return p(PrimitiveType::Long),
        "google.protobuf.UInt64Value" => return p(PrimitiveType::Decimal { precision: 20, scale: 0 }),
        "google.protobuf.Int32Value" => return p(PrimitiveType::Int),
        "google.protobuf.BoolValue" => return p(PrimitiveType::Boolean),
        "google.protobuf.StringValue" => return p(PrimitiveType::String),
        "google.protobuf.BytesValue" => return p(PrimitiveType::Binary),
        // `Any` has the shape of its own message: a type URL and the bytes.
        _ => {}
    }
    if inside.iter().any(|name| name == m.full_name()) {
        return p(PrimitiveType::String); // it contains itself: JSON text from here down
    }
    inside.push(m.full_name().to_string());
    let fields = fields(m, next_id, &|n| n.to_string(), inside);
    inside.pop();
    Ok(Type::Struct(StructType::new(fields?)))
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
