//! The fast path decodes exactly what the general path decodes: same rows, same dead letters,
//! same reasons, for any mix of messages. Each case is run through a decoder with the fast path
//! and one without it, and every output is compared.

use arrow_array::RecordBatch;
use proptest::prelude::*;

use super::tests::msg;
use super::*;

/// The table's schema: every column kind the fast path knows, inferred as the agent would.
fn schema() -> iceberg::spec::Schema {
    let sample = br#"{"id": 1, "temp": 1.5, "name": "a", "ok": true, "ts": "2024-01-01T00:00:00Z",
        "st": {"code": 1, "msg": "m"}, "xs": [1, 2], "rows": [{"v": 1.5}]}"#;
    let inferred = infer_schema([sample.as_slice()]).unwrap();
    let time = TimeFields { names: vec!["ts".into()], epoch_unit: EpochUnit::Millis };
    with_time_fields(inferred, &time, 0).unwrap()
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        (-1000i64..1000).prop_map(|i| i.to_string()),
        Just(i64::MAX.to_string()),
        Just(i64::MIN.to_string()),
        Just("9223372036854775808".to_string()),
        Just("1e400".to_string()),
        Just("3.0".to_string()),
        Just("1e3".to_string()),
        (-1000i32..1000, 1u32..1000).prop_map(|(a, b)| format!("{a}.{b}")),
        "[a-z]{0,6}".prop_map(|s| format!("\"{s}\"")),
        Just(r#""esc\"aped\u00e9""#.to_string()),
        Just(r#""2024-05-06T07:08:09.123Z""#.to_string()),
        Just(r#""not a time""#.to_string()),
        Just("true".to_string()),
        Just("null".to_string()),
        // Edges of JSON's grammar, which the fast path's reader must read as serde_json does.
        prop::sample::select(vec![
            "-0",
            "-0.0",
            "1E+2",
            "2.5e-3",
            "01",
            "-",
            "1.",
            "nul",
            "tru",
            "18446744073709551616",
            "-9223372036854775809"
        ])
        .prop_map(str::to_string),
        prop::sample::select(vec![
            r#""\ud83d\ude00""#,
            r#""\ud83d""#,
            r#""\/\t""#,
            "\"tab\tinside\"",
            r#""caf\u00e9""#
        ])
        .prop_map(str::to_string),
    ]
}

fn value() -> impl Strategy<Value = String> {
    scalar().prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((prop::sample::select(vec!["code", "msg", "v", "extra"]), inner), 0..3).prop_map(
                |kv| {
                    let fields: Vec<String> = kv.into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                    format!("{{{}}}", fields.join(","))
                }
            ),
        ]
    })
}

const KEYS: &[&str] = &[
    "id",
    "temp",
    "name",
    "ok",
    "ts",
    "st",
    "xs",
    "rows",
    "fresh",
    "_kafka_offset",
    "__kafka_x",
    "\\u0069d",
    "n\\u0061me",
];

/// One message: usually an object of known keys, sometimes with unknown or repeated keys, or
/// not an object, or not JSON at all.
fn message() -> impl Strategy<Value = String> {
    let object = prop::collection::vec((prop::sample::select(KEYS), value()), 0..6).prop_map(|kv| {
        let fields: Vec<String> = kv.into_iter().map(|(k, v)| format!("\"{k}\" : {v}")).collect();
        format!(" {{{}}}\n", fields.join(",\r\n\t"))
    });
    prop_oneof![
        8 => object,
        1 => value(),
        1 => "[{}\"a-z:,]{0,12}",
    ]
}

/// A message of known keys with values of their columns' types: all of a case's messages are
/// often of this kind, so the whole batch takes the fast path (and a malformed time in it sends
/// the batch back to the general path).
fn clean() -> impl Strategy<Value = String> {
    let int = || prop_oneof![(-1000i64..1000).prop_map(|i| i.to_string()), Just("null".to_string())];
    let time = prop_oneof![
        8 => Just(r#""2024-05-06T07:08:09.123Z""#.to_string()),
        8 => Just(r#""2024-05-06T07:08:09+02:00""#.to_string()),
        1 => Just(r#""yesterday""#.to_string()),
    ];
    (
        prop::option::of(int()),
        prop::option::of((-1000i32..1000, 0u32..100).prop_map(|(a, b)| format!("{a}.{b}"))),
        prop::option::of("[a-z]{0,4}".prop_map(|s| format!("\"{s}\""))),
        prop::option::of(time),
        prop::option::of((int(), "[a-z]{0,3}").prop_map(|(c, m)| format!(r#"{{"code":{c},"msg":"{m}"}}"#))),
        prop::option::of(prop::collection::vec(int(), 0..3).prop_map(|v| format!("[{}]", v.join(",")))),
    )
        .prop_map(|(id, temp, name, ts, st, xs)| {
            let fields: Vec<String> = [("id", id), ("temp", temp), ("name", name), ("ts", ts), ("st", st), ("xs", xs)]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| format!("\"{k}\":{v}")))
                .collect();
            format!("{{{}}}", fields.join(","))
        })
}

/// What a decoder made of some messages: each push's result, the batch, the dead letters
/// (offset, reason), and the unknown fields it met.
type Outcome = (Vec<Result<(), String>>, Option<RecordBatch>, Vec<(i64, String)>, Vec<String>);

fn run(decoder: BatchDecoder, messages: &[String]) -> Outcome {
    let mut d = decoder;
    let pushed = messages
        .iter()
        .enumerate()
        .map(|(i, m)| d.push(&msg(0, i as i64, 1_700_000_000_000, None, m.as_bytes())).map_err(|r| r.reason))
        .collect();
    let flushed = d.flush().unwrap();
    let rejected = flushed.rejected.iter().map(|r| (r.offset, r.reason.clone())).collect();
    (pushed, flushed.batch, rejected, flushed.unknown_fields.into_iter().collect())
}

proptest! {
    // Failures are not written beside the sources; a case worth keeping goes into the tests below.
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn fast_and_general_paths_agree(messages in prop_oneof![
        prop::collection::vec(message(), 1..12),
        prop::collection::vec(prop_oneof![20 => clean(), 1 => message()], 1..12),
    ]) {
        let schema = schema();
        let fast = run(BatchDecoder::new(&schema).unwrap(), &messages);
        let general = run(BatchDecoder::new(&schema).unwrap().without_fast_path(), &messages);
        prop_assert_eq!(fast, general);
    }
}

/// The cases the property must reach, so that it cannot pass by never taking the fast path. A
/// refused message leaves the columns as they were, even when it fails deep inside.
#[test]
fn columns_take_what_they_should() {
    let schema = schema();
    let d = BatchDecoder::new(&schema).unwrap();
    let mut columns = fast::Columns::new(d.user_fields());
    let yes = [
        r#"{"id": 1, "temp": 2, "name": "x", "ok": false, "ts": "2024-01-01T00:00:00Z"}"#,
        r#"{"st": {"code": 1, "msg": null}, "xs": [1, null], "rows": [{"v": 1e3}], "temp": 1.5}"#,
        r#"{}"#,
        r#" {"id": null} "#,
    ];
    let no = [
        r#"{"temp": 1e400}"#,
        r#"{"name": "\xff"}"#,
        r#"{"id": 1.5}"#,
        r#"{"id": 3.0}"#,
        r#"{"id": 9223372036854775808}"#,
        r#"{"name": 5}"#,
        r#"{"name": {"a": 1}}"#,
        r#"{"ts": 1700000000000}"#,
        r#"{"fresh": 1}"#,
        r#"{"st": {"extra": 1}}"#,
        r#"{"id": 1, "id": 2}"#,
        r#"{"_kafka_offset": 1}"#,
        r#"{"id": 1"#,
        r#"{"id": 1} x"#,
        r#"[1]"#,
        r#"null"#,
        r#"{"id": 1, "st": {"code": 2, "msg": "m"}, "xs": [1, 2, 3], "rows": [{"v": 1}, {"v": "x"}]}"#,
        r#"{"ts": "2024-01-01T00:00:00Z", "xs": [4, 5], "name": "n", "st": {"code": 1.5}}"#,
    ];
    for (yes, no) in yes.iter().zip(no.iter().cycle()) {
        assert!(columns.push(yes.as_bytes()), "{yes}");
        assert!(!columns.push(no.as_bytes()), "{no}");
    }
    for no in no {
        assert!(!columns.push(no.as_bytes()), "{no}");
    }
    // Bytes that are not UTF-8 inside a string.
    assert!(!columns.push(b"{\"name\": \"\xff\"}"));
    assert_eq!(columns.len(), yes.len());
    let taken = columns.finish(d.user_fields()).unwrap();
    let batch =
        RecordBatch::try_new(std::sync::Arc::new(arrow_schema::Schema::new(d.user_fields().clone())), taken).unwrap();
    let mut general = BatchDecoder::new(&schema).unwrap().without_fast_path();
    for (i, m) in yes.iter().enumerate() {
        general.push(&msg(0, i as i64, 0, None, m.as_bytes())).unwrap();
    }
    let general = general.flush().unwrap().batch.unwrap();
    let user: Vec<_> = d.user_fields().iter().map(|f| general.column_by_name(f.name()).unwrap().clone()).collect();
    assert_eq!(batch.columns(), user.as_slice());
}

/// Clean messages all go straight into columns (none is parsed into a `Value`), and the batch
/// equals the general path's.
#[test]
fn clean_messages_take_the_fast_path() {
    let schema = schema();
    let messages: Vec<String> = (0..50)
        .map(|i| format!(r#"{{"id":{i},"temp":{i}.5,"name":"n{i}","ts":"2024-05-06T07:08:{:02}Z","st":{{"code":{i}}},"xs":[{i}],"rows":[{{"v":1}}]}}"#, i % 60))
        .collect();
    let mut d = BatchDecoder::new(&schema).unwrap();
    for (i, m) in messages.iter().enumerate() {
        d.push(&msg(0, i as i64, 1_700_000_000_000, None, m.as_bytes())).unwrap();
    }
    assert_eq!(d.fast_rows(), 50);
    let fast = d.flush().unwrap();
    let general = run(BatchDecoder::new(&schema).unwrap().without_fast_path(), &messages);
    assert_eq!(fast.batch.as_ref().map(RecordBatch::num_rows), Some(50));
    assert_eq!(fast.batch, general.1);
}

/// A schema declared by hand rather than inferred: required fields, 32-bit numbers, a map, a
/// timestamp with a zone, a required struct field, and a decimal (which only takes nulls).
fn declared() -> iceberg::spec::Schema {
    use iceberg::spec::{ListType, MapType, NestedField, PrimitiveType, StructType, Type};
    let field = |id, name: &str, required: bool, ty: Type| {
        if required { NestedField::required(id, name, ty) } else { NestedField::optional(id, name, ty) }.into()
    };
    let fields = vec![
        field(1, "id", true, PrimitiveType::Int.into()),
        field(2, "f", false, PrimitiveType::Float.into()),
        field(
            3,
            "m",
            false,
            Type::Map(MapType::new(
                field(4, "key", true, PrimitiveType::String.into()),
                field(5, "value", false, PrimitiveType::Long.into()),
            )),
        ),
        field(6, "at", false, PrimitiveType::Timestamptz.into()),
        field(
            7,
            "s",
            false,
            Type::Struct(StructType::new(vec![
                field(8, "a", true, PrimitiveType::Int.into()),
                field(9, "b", false, PrimitiveType::String.into()),
            ])),
        ),
        field(10, "l", false, Type::List(ListType::new(field(11, "element", true, PrimitiveType::Long.into())))),
        field(12, "d", false, PrimitiveType::Decimal { precision: 10, scale: 2 }.into()),
        field(13, META_PARTITION, true, PrimitiveType::Int.into()),
        field(14, META_OFFSET, true, PrimitiveType::Long.into()),
        field(15, META_TIMESTAMP, false, PrimitiveType::Timestamptz.into()),
        field(16, META_KEY, false, PrimitiveType::Binary.into()),
    ];
    iceberg::spec::Schema::builder().with_fields(fields).build().unwrap()
}

fn declared_message() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        Just("0".to_string()),
        Just("-7".to_string()),
        Just("2147483648".to_string()),
        Just("1.25".to_string()),
        Just("3.5e38".to_string()),
        Just("-3.4028235e38".to_string()),
        Just("16777217".to_string()),
        Just("0.30000000000000004".to_string()),
        Just("null".to_string()),
    ];
    let any = prop_oneof![
        number.clone(),
        Just(r#""2024-05-06T07:08:09+02:00""#.to_string()),
        Just(r#""x""#.to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        prop::collection::vec(number.clone(), 0..3).prop_map(|v| format!("[{}]", v.join(","))),
        prop::collection::vec((prop::sample::select(vec!["a", "b", "k", "k"]), number.clone()), 0..3).prop_map(
            |kv| format!("{{{}}}", kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect::<Vec<_>>().join(","))
        ),
        Just(r#"{"a": 1, "b": "t"}"#.to_string()),
    ];
    prop::collection::vec((prop::sample::select(vec!["id", "f", "m", "at", "s", "l", "d"]), any), 0..6)
        .prop_map(|kv| format!("{{{}}}", kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect::<Vec<_>>().join(",")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn declared_schemas_agree_too(messages in prop::collection::vec(declared_message(), 1..10)) {
        let schema = declared();
        let fast = run(BatchDecoder::new(&schema).unwrap(), &messages);
        let general = run(BatchDecoder::new(&schema).unwrap().without_fast_path(), &messages);
        prop_assert_eq!(fast, general);
    }
}

/// The declared schema's columns are reached by the fast path, so the property above compares
/// something.
#[test]
fn declared_columns_take_what_they_should() {
    let d = BatchDecoder::new(&declared()).unwrap();
    let mut columns = fast::Columns::new(d.user_fields());
    for yes in [
        r#"{"id": 1}"#,
        r#"{"id": 1, "f": 1.25, "m": {"a": 1, "b": null}, "at": "2024-05-06T07:08:09+02:00", "s": {"a": 1}, "l": [1, 2], "d": null}"#,
        r#"{"id": -7, "s": null, "m": null, "l": null, "f": -3.4e38}"#,
    ] {
        assert!(columns.push(yes.as_bytes()), "{yes}");
    }
    for no in [
        r#"{}"#,
        r#"{"id": null}"#,
        r#"{"id": 2147483648}"#,
        r#"{"id": 1, "f": 3.5e38}"#,
        r#"{"id": 1, "f": -3.4028235e38}"#,
        r#"{"id": 1, "m": {"k": 1, "k": 2}}"#,
        r#"{"id": 1, "s": {"b": "x"}}"#,
        r#"{"id": 1, "l": [1, null]}"#,
        r#"{"id": 1, "d": 1.5}"#,
        r#"{"id": 1, "at": "x"}"#,
    ] {
        assert!(!columns.push(no.as_bytes()), "{no}");
    }
    assert_eq!(columns.len(), 3);
}

/// Doubles written with every digit arrive as written, on both paths.
#[test]
fn doubles_keep_every_digit() {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Float64Type;
    let values = [985.6906946328695, 212.91890726713459, 0.30000000000000004, 1e-300, 123456789.12345679];
    let messages: Vec<String> = values.iter().map(|v| format!(r#"{{"temp": {v}}}"#)).collect();
    for decoder in [BatchDecoder::new(&schema()).unwrap(), BatchDecoder::new(&schema()).unwrap().without_fast_path()] {
        let batch = run(decoder, &messages).1.unwrap();
        let got: Vec<f64> = batch.column_by_name("temp").unwrap().as_primitive::<Float64Type>().values().to_vec();
        assert_eq!(got, values);
    }
}
