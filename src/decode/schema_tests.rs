//! BatchDecoder tests about schemas: field-id metadata, where meta columns sit, no user columns.

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_schema::{DataType, Field};
use iceberg::spec::{NestedField, NestedFieldRef, PrimitiveType, Schema};

use super::tests::{leak, msg, record};
use super::*;

/// Every Arrow field (nested ones and list elements included) carries the id of the Iceberg
/// field of the same name, and every Iceberg field id appears.
#[test]
fn batch_schema_carries_field_ids() {
    let schema = infer_schema([leak(&record(1)), leak(&record(10))]).unwrap();
    let d = BatchDecoder::new(&schema).unwrap();
    fn walk(f: &Field, schema: &Schema, seen: &mut Vec<i32>) {
        let id: i32 = f.metadata()["PARQUET:field_id"].parse().unwrap();
        assert_eq!(schema.field_by_id(id).unwrap().name, *f.name());
        seen.push(id);
        match f.data_type() {
            DataType::Struct(fs) => fs.iter().for_each(|c| walk(c, schema, seen)),
            DataType::List(e) => walk(e, schema, seen),
            _ => {}
        }
    }
    let mut seen = Vec::new();
    d.arrow_schema().fields().iter().for_each(|f| walk(f, &schema, &mut seen));
    seen.sort();
    assert_eq!(seen, (1..=schema.highest_field_id()).collect::<Vec<_>>());
}

#[test]
fn meta_columns_may_sit_anywhere_and_must_exist() {
    let fields: Vec<NestedFieldRef> = vec![
        NestedField::optional(1, "a", PrimitiveType::Long.into()).into(),
        NestedField::required(2, META_PARTITION, PrimitiveType::Int.into()).into(),
        NestedField::required(3, META_OFFSET, PrimitiveType::Long.into()).into(),
        NestedField::optional(4, META_TIMESTAMP, PrimitiveType::Timestamptz.into()).into(),
        NestedField::optional(5, META_KEY, PrimitiveType::Binary.into()).into(),
        NestedField::optional(6, "later", PrimitiveType::String.into()).into(),
    ];
    let schema = Schema::builder().with_fields(fields.clone()).build().unwrap();
    let mut d = BatchDecoder::new(&schema).unwrap();
    d.push(&msg(4, 7, 1, Some(b"k"), br#"{"later": "x", "a": 5}"#)).unwrap();
    let b = d.flush().unwrap().batch.unwrap();
    assert_eq!(b.column(0).as_primitive::<Int64Type>().value(0), 5);
    assert_eq!(b.column(1).as_primitive::<Int32Type>().value(0), 4);
    assert_eq!(b.column(3).as_primitive::<TimestampMicrosecondType>().value(0), 1000);
    assert_eq!(b.column(5).as_string::<i32>().value(0), "x");

    let missing = Schema::builder().with_fields(fields[..4].to_vec()).build().unwrap();
    assert!(BatchDecoder::new(&missing).unwrap_err().to_string().contains("`_kafka_key` is missing"));
    let mut wrong = fields.clone();
    wrong[2] = NestedField::required(3, META_OFFSET, PrimitiveType::String.into()).into();
    assert!(BatchDecoder::new(&Schema::builder().with_fields(wrong).build().unwrap()).is_err());
    let mut reserved = fields;
    reserved[0] = NestedField::optional(1, "_kafka_other", PrimitiveType::Long.into()).into();
    assert!(BatchDecoder::new(&Schema::builder().with_fields(reserved).build().unwrap()).is_err());
}

#[test]
fn schema_without_user_columns() {
    let schema = infer_schema([b"{}".as_slice()]).unwrap();
    let mut d = BatchDecoder::new(&schema).unwrap();
    d.push(&msg(0, 1, 2, None, br#"{"a": 1}"#)).unwrap();
    let f = d.flush().unwrap();
    assert_eq!(f.unknown_fields.into_iter().collect::<Vec<_>>(), ["a"]);
    let b = f.batch.unwrap();
    assert_eq!((b.num_rows(), b.num_columns()), (1, 4));
}
