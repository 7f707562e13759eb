//! Adjusts a parsed row to the Arrow schema before arrow_json sees it, in the two places where
//! arrow_json alone would lose data or reject rows the schema was meant to hold.
//!
//! - Objects and arrays in string columns become their JSON text. Inference types a field whose
//!   samples disagree (object here, number there) as string, so the very rows that caused the
//!   conflict must still decode. (Keys come out sorted: serde_json's map is a BTreeMap.)
//! - Numbers in integer columns must be whole and in range. arrow_json casts through f64 and
//!   would silently store 1.5 as 1; here such a value rejects its row instead, as does an integer
//!   beyond i64 (serde_json hands those over as u64 or f64).
//!
//! Everything else (strings where numbers are expected, objects where scalars are, ...) is left
//! to arrow_json, which rejects what it cannot convert.

use std::fmt::Write;

use arrow_schema::{DataType, Fields};
use serde_json::{Map, Number, Value};

/// Fits a top-level object to `fields`; `Err` carries the reason the row cannot be stored.
/// Numbers in timestamp columns count `epoch_unit`s since the epoch.
pub(super) fn fit_row(
    row: &mut Map<String, Value>,
    fields: &Fields,
    epoch_unit: super::EpochUnit,
) -> Result<(), String> {
    fit_object(row, fields, &mut String::new(), epoch_unit)
}

fn fit_object(
    map: &mut Map<String, Value>,
    fields: &Fields,
    path: &mut String,
    unit: super::EpochUnit,
) -> Result<(), String> {
    for f in fields {
        if let Some(v) = map.get_mut(f.name()) {
            let len = path.len();
            if len > 0 {
                path.push('.');
            }
            path.push_str(f.name());
            fit(v, f.data_type(), path, unit)?;
            path.truncate(len);
        }
    }
    Ok(())
}

fn fit(v: &mut Value, dt: &DataType, path: &mut String, unit: super::EpochUnit) -> Result<(), String> {
    match (dt, v) {
        // A time as a number since the epoch: arrow_json reads a number as the column's own unit
        // (µs), so scale it; a string (RFC 3339) arrow_json parses itself.
        (DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, _), Value::Number(n)) => {
            match whole(n).and_then(|i| i.checked_mul(unit.micros())) {
                Some(us) => *n = Number::from(us),
                None => {
                    return Err(format!(
                        "field `{path}`: {n} is not a whole number of {unit:?} since the epoch in range"
                    ));
                }
            }
        }
        (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View, v @ (Value::Object(_) | Value::Array(_))) => {
            *v = Value::String(v.to_string());
        }
        (DataType::Int32 | DataType::Int64, Value::Number(n)) => {
            let (lo, hi) = match dt {
                DataType::Int32 => (i64::from(i32::MIN), i64::from(i32::MAX)),
                _ => (i64::MIN, i64::MAX),
            };
            match whole(n).filter(|i| (lo..=hi).contains(i)) {
                Some(i) => *n = Number::from(i),
                None => {
                    return Err(format!("field `{path}`: {n} is not a whole number in the range of {dt}"));
                }
            }
        }
        (DataType::Struct(fields), Value::Object(map)) => fit_object(map, fields, path, unit)?,
        (DataType::List(f) | DataType::LargeList(f), Value::Array(items)) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                let _ = write!(path, "[{i}]");
                fit(item, f.data_type(), path, unit)?;
                path.truncate(len);
            }
        }
        (DataType::Map(entries, _), Value::Object(map)) => {
            // Entries are a struct of (key, value); only the values can need fitting.
            if let DataType::Struct(kv) = entries.data_type()
                && let Some(value_field) = kv.get(1)
            {
                for (key, item) in map.iter_mut() {
                    let len = path.len();
                    let _ = write!(path, "[{key:?}]");
                    fit(item, value_field.data_type(), path, unit)?;
                    path.truncate(len);
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Whether some object inside `map` (a row, or a struct value in it, through lists too) has a key
/// its struct type lacks: arrow_json would skip that value, so the schema must grow first.
/// Top-level keys are the caller's to check.
pub(super) fn nested_keys_missing(map: &Map<String, Value>, fields: &Fields) -> bool {
    fields.iter().any(|f| map.get(f.name()).is_some_and(|v| value_lacks(v, f.data_type())))
}

fn value_lacks(v: &Value, dt: &DataType) -> bool {
    match (dt, v) {
        (DataType::Struct(children), Value::Object(m)) => {
            m.keys().any(|k| !children.iter().any(|c| c.name() == k)) || nested_keys_missing(m, children)
        }
        (DataType::List(f) | DataType::LargeList(f), Value::Array(items)) => {
            items.iter().any(|i| value_lacks(i, f.data_type()))
        }
        _ => false,
    }
}

/// The exact integer a JSON number stands for, if it is one that fits an i64.
fn whole(n: &Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    if n.is_u64() {
        return None; // above i64::MAX
    }
    let f = n.as_f64()?;
    // 2^63 is exact in f64; i64 covers [-2^63, 2^63).
    const TWO_63: f64 = -(i64::MIN as f64);
    (f.fract() == 0.0 && (-TWO_63..TWO_63).contains(&f)).then_some(f as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::Field;
    use serde_json::json;
    use std::sync::Arc;

    fn fields() -> Fields {
        let inner = Fields::from(vec![Field::new("n", DataType::Int32, true), Field::new("s", DataType::Utf8, true)]);
        let item = Arc::new(Field::new("element", DataType::Struct(inner), true));
        Fields::from(vec![
            Field::new("l", DataType::Int64, true),
            Field::new("t", DataType::Utf8, true),
            Field::new("xs", DataType::List(item), true),
        ])
    }

    fn run(v: Value) -> Result<Value, String> {
        let Value::Object(mut m) = v else { unreachable!() };
        fit_row(&mut m, &fields(), crate::decode::EpochUnit::Millis).map(|()| Value::Object(m))
    }

    #[test]
    fn stringifies_and_normalizes() {
        let out = run(json!({"l": 3.0, "t": {"b": [1, 2], "a": null}, "xs": [{"n": 7, "s": [1]}], "z": 1.5}));
        assert_eq!(
            out.unwrap(),
            json!({"l": 3, "t": "{\"a\":null,\"b\":[1,2]}", "xs": [{"n": 7, "s": "[1]"}], "z": 1.5})
        );
        // Things arrow_json handles itself are left alone.
        assert_eq!(run(json!({"l": "12", "t": 5})).unwrap(), json!({"l": "12", "t": 5}));
    }

    #[test]
    fn rejects_lossy_integers() {
        for bad in [json!(1.5), json!(9_223_372_036_854_775_808_u64), json!(1e20), json!(-1e19)] {
            let err = run(json!({"l": bad})).unwrap_err();
            assert!(err.starts_with("field `l`: "), "{err}");
        }
        assert_eq!(run(json!({"l": i64::MIN as f64})).unwrap(), json!({"l": i64::MIN}));
        assert_eq!(run(json!({"l": i64::MAX})).unwrap(), json!({"l": i64::MAX}));
        let err = run(json!({"xs": [{"n": 1}, {"n": 2_147_483_648_i64}]})).unwrap_err();
        assert!(err.starts_with("field `xs[1].n`: 2147483648 is not a whole number in the range of Int32"), "{err}");
    }
}
