//! Schemas compiled from `.proto` text with an import served by name, as a registry serves
//! references, and the Iceberg fields of their messages.

use std::collections::BTreeMap;

use iceberg::spec::{NestedFieldRef, Type};

use super::super::fixtures::{READING, imports};
use super::{compile, iceberg_fields, message_at};

/// A field list as one line: `name: type` at every depth, with ids.
fn show(fields: &[NestedFieldRef]) -> Vec<String> {
    fn ty(t: &Type) -> String {
        match t {
            Type::Primitive(p) => p.to_string(),
            Type::Struct(s) => format!("struct<{}>", show(s.fields()).join(", ")),
            Type::List(l) => format!("list<{}:{}>", l.element_field.id, ty(&l.element_field.field_type)),
            Type::Map(m) => format!(
                "map<{}:{}, {}:{}>",
                m.key_field.id,
                ty(&m.key_field.field_type),
                m.value_field.id,
                ty(&m.value_field.field_type)
            ),
        }
    }
    fields
        .iter()
        .map(|f| format!("{}:{} {}{}", f.id, f.name, ty(&f.field_type), if f.required { "!" } else { "" }))
        .collect()
}

fn numbered() -> impl FnMut() -> i32 {
    let mut n = 0;
    move || {
        n += 1;
        n
    }
}

#[test]
fn every_kind_of_field_has_an_iceberg_type() {
    let file = compile(READING, &imports()).unwrap();
    let reading = message_at(&file, &[0]).unwrap();
    assert_eq!(reading.full_name(), "plant.v1.Reading");
    let fields = iceberg_fields(&reading, &mut numbered(), &|n| format!("_{n}")).unwrap();
    let want = [
        "1:_device string",
        "2:_at timestamptz",
        "3:_temp_c double",
        "4:_counter decimal(20, 0)",
        "5:_delta int",
        "6:_seq long",
        "7:_alarms list<8:string>",
        "9:_gauges map<10:string, 11:double>",
        "12:_status string",
        "13:_site struct<14:name string, 15:position list<16:double>>",
        "17:_battery long",
        "18:_extra string",
        "19:_payload struct<20:type_url string, 21:value binary>",
        "22:_gateway string",
        "23:_line int",
        "24:_inner struct<25:children list<26:string>, 27:label string>",
        "28:_raw binary",
        "29:_code long",
    ];
    assert_eq!(show(&fields), want, "every field optional; only top-level names renamed");
}

#[test]
fn indexes_name_top_level_then_nested_messages_not_counting_map_entries() {
    let file = compile(READING, &imports()).unwrap();
    let name = |ix: &[i32]| message_at(&file, ix).map(|m| m.full_name().to_string());
    assert_eq!(name(&[1]).unwrap(), "plant.v1.Other", "enums are not counted among top-level messages");
    // Reading's nested types are [GaugesEntry (map entry), Inner]: Inner is index 0 as
    // Confluent's Java serializer counts.
    assert_eq!(name(&[0, 0]).unwrap(), "plant.v1.Reading.Inner");
    assert!(name(&[2]).unwrap_err().contains("no message at indexes [2]"));
    assert!(name(&[0, 1]).is_err());
    assert!(name(&[]).is_err());
}

#[test]
fn a_schema_that_does_not_compile_says_why() {
    let missing = compile(READING, &BTreeMap::new()).unwrap_err();
    assert!(missing.contains("does not compile") && missing.contains("plant/v1/site.proto"), "{missing}");
    let broken = compile("syntax = \"proto3\";\nmessage M { string a = 1 }\n", &BTreeMap::new()).unwrap_err();
    assert!(broken.contains("does not compile"), "{broken}");
}

#[test]
fn message_types_used_over_and_over_cannot_expand_without_bound() {
    // M0 holds two M1s, M1 two M2s, ...: 2^40 fields if expanded.
    let mut text = String::from("syntax = \"proto3\";\n");
    for i in 0..40 {
        text += &format!("message M{i} {{ M{n} a = 1; M{n} b = 2; }}\n", n = i + 1);
    }
    text += "message M40 { string s = 1; }\n";
    let file = compile(&text, &BTreeMap::new()).unwrap();
    let mut n = 0;
    let err = iceberg_fields(
        &message_at(&file, &[0]).unwrap(),
        &mut || {
            n += 1;
            n
        },
        &|name| name.to_string(),
    )
    .unwrap_err();
    assert!(err.contains("more than 10000 fields"), "{err}");
}
