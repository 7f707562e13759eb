//! Arrow arrays of one shape made into another by field name: what a batch decoded before a
//! schema grew, or decoded with an Avro writer's own types, needs to become a batch of the
//! table's schema (its field names, ids in the field metadata, and types).
//!
//! Struct fields match by name, at any depth; a field the source lacks is all nulls. Lists and
//! maps are rebuilt around their converted values with the target's own child fields (a large
//! list, as pyarrow writes, becomes a list when its offsets fit). Leaves are
//! cast (`int` → `long`, `float` → `double`, milliseconds → microseconds, an enum's dictionary →
//! text, ...); a cast that would lose or invent data is an error, never a silent change.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, LargeListArray, ListArray, MapArray, RecordBatch, StructArray};
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, SchemaRef};

use crate::{Error, Result};

/// `batch` as a batch of `target`: columns it lacks are nulls, the rest converted by
/// [`conform`]. Columns of `batch` that `target` lacks are an error (data would be dropped).
pub fn conform_batch(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch> {
    let n = batch.num_rows();
    if let Some(extra) = batch.schema().fields().iter().find(|f| target.field_with_name(f.name()).is_err()) {
        return Err(Error::decode(
            "converting a batch to the table's schema",
            format!("the table has no column `{}`", extra.name()),
        ));
    }
    let columns = target
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => conform(c, f.data_type()).map_err(|e| Error::decode(format!("column `{}`", f.name()), e)),
            None => Ok(arrow_array::new_null_array(f.data_type(), n)),
        })
        .collect::<Result<Vec<_>>>()?;
    // The row count given, for a table with no user columns yet.
    let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(n));
    RecordBatch::try_new_with_options(target.clone(), columns, &options)
        .map_err(|e| Error::decode(format!("converting a batch of {n} rows to the table's schema"), e))
}

/// One array as `target`; the error says which nested field could not be converted.
pub fn conform(array: &ArrayRef, target: &DataType) -> std::result::Result<ArrayRef, String> {
    if array.data_type() == target {
        return Ok(array.clone());
    }
    let mismatch = || format!("{} cannot become {target}", array.data_type());
    match target {
        DataType::Struct(children) => {
            let s = array.as_any().downcast_ref::<StructArray>().ok_or_else(mismatch)?;
            if let DataType::Struct(have) = s.data_type()
                && let Some(extra) = have.iter().find(|f| !children.iter().any(|c| c.name() == f.name()))
            {
                return Err(format!("field `{}` has no place in {target}", extra.name()));
            }
            let arrays = children
                .iter()
                .map(|c| match s.column_by_name(c.name()) {
                    Some(col) => conform(col, c.data_type()).map_err(|e| format!("{}: {e}", c.name())),
                    None => Ok(arrow_array::new_null_array(c.data_type(), s.len())),
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(Arc::new(StructArray::try_new(children.clone(), arrays, s.nulls().cloned()).map_err(|e| e.to_string())?))
        }
        DataType::List(element) => {
            let (offsets, values, nulls) = match array.as_any().downcast_ref::<ListArray>() {
                Some(l) => (l.offsets().clone(), l.values(), l.nulls()),
                // pyarrow writes large lists by default; their offsets fit in i32 unless the
                // column holds more than 2^31 values in one batch.
                None => {
                    let l = array.as_any().downcast_ref::<LargeListArray>().ok_or_else(mismatch)?;
                    let narrow: Vec<i32> = l
                        .offsets()
                        .iter()
                        .map(|&o| i32::try_from(o))
                        .collect::<std::result::Result<_, _>>()
                        .map_err(|_| format!("{}: more values than a list holds", mismatch()))?;
                    (OffsetBuffer::new(ScalarBuffer::from(narrow)), l.values(), l.nulls())
                }
            };
            let values = conform(values, element.data_type())?;
            Ok(Arc::new(
                ListArray::try_new(element.clone(), offsets, values, nulls.cloned()).map_err(|e| e.to_string())?,
            ))
        }
        DataType::LargeList(element) => {
            let l = array.as_any().downcast_ref::<LargeListArray>().ok_or_else(mismatch)?;
            let values = conform(l.values(), element.data_type())?;
            Ok(Arc::new(
                LargeListArray::try_new(element.clone(), l.offsets().clone(), values, l.nulls().cloned())
                    .map_err(|e| e.to_string())?,
            ))
        }
        DataType::Map(entries, sorted) => {
            let m = array.as_any().downcast_ref::<MapArray>().ok_or_else(mismatch)?;
            let DataType::Struct(fields) = entries.data_type() else { return Err(mismatch()) };
            let keys = conform(m.keys(), fields[0].data_type())?;
            let values = conform(m.values(), fields[1].data_type())?;
            let entries_array =
                StructArray::try_new(fields.clone(), vec![keys, values], None).map_err(|e| e.to_string())?;
            Ok(Arc::new(
                MapArray::try_new(entries.clone(), m.offsets().clone(), entries_array, m.nulls().cloned(), *sorted)
                    .map_err(|e| e.to_string())?,
            ))
        }
        _ if array.data_type().is_nested() => Err(mismatch()),
        _ => {
            // `safe: false`: a value the target type cannot hold is an error, not a null.
            let options = arrow_cast::CastOptions { safe: false, ..Default::default() };
            arrow_cast::cast_with_options(array, target, &options).map_err(|e| format!("{}: {e}", mismatch()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float32Array, Int32Array, StringArray};
    use arrow_schema::{Field, Fields, Schema};

    #[test]
    fn structs_match_by_name_and_leaves_widen() {
        let inner =
            Fields::from(vec![Field::new("b", DataType::Int32, true), Field::new("a", DataType::Float32, true)]);
        let s = StructArray::new(
            inner,
            vec![Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef, Arc::new(Float32Array::from(vec![0.5, 1.5]))],
            None,
        );
        let want = Fields::from(vec![
            Field::new("a", DataType::Float64, true),
            Field::new("b", DataType::Int64, true),
            Field::new("c", DataType::Utf8, true),
        ]);
        let out = conform(&(Arc::new(s) as ArrayRef), &DataType::Struct(want.clone())).unwrap();
        let out = out.as_any().downcast_ref::<StructArray>().unwrap();
        assert_eq!(out.data_type(), &DataType::Struct(want));
        assert_eq!(out.column(0).as_any().downcast_ref::<arrow_array::Float64Array>().unwrap().values(), &[0.5, 1.5]);
        assert_eq!(out.column(1).as_any().downcast_ref::<arrow_array::Int64Array>().unwrap().values(), &[1, 2]);
        assert_eq!(out.column(2).null_count(), 2);
    }

    #[test]
    fn refuses_to_drop_or_invent_data() {
        let batch =
            RecordBatch::try_from_iter([("x", Arc::new(StringArray::from(vec!["1", "one"])) as ArrayRef)]).unwrap();
        let long = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
        let err = conform_batch(&batch, &long).unwrap_err().to_string();
        assert!(err.contains("column `x`") && err.contains("one"), "{err}");
        let other = Arc::new(Schema::new(vec![Field::new("y", DataType::Utf8, true)]));
        assert!(conform_batch(&batch, &other).unwrap_err().to_string().contains("no column `x`"));
    }

    #[test]
    fn large_lists_and_strings_from_pyarrow_become_the_tables_own() {
        let values = Arc::new(arrow_array::LargeStringArray::from(vec!["a", "b", "c"])) as ArrayRef;
        let item = Arc::new(arrow_schema::Field::new("element", DataType::LargeUtf8, true));
        let large = LargeListArray::new(item, OffsetBuffer::new(ScalarBuffer::from(vec![0i64, 2, 3])), values, None);
        let target = DataType::List(Arc::new(arrow_schema::Field::new("element", DataType::Utf8, true)));
        let out = conform(&(Arc::new(large) as ArrayRef), &target).unwrap();
        let list = out.as_any().downcast_ref::<ListArray>().unwrap();
        assert_eq!(list.data_type(), &target);
        assert_eq!(list.value_offsets(), &[0, 2, 3]);
        assert_eq!(list.values().as_any().downcast_ref::<StringArray>().unwrap().value(2), "c");
    }
}
