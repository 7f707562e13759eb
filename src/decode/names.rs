//! Column names for top-level JSON keys.
//!
//! The meta columns are named `_kafka_*`, and nothing stops a producer from sending a key
//! spelled the same way. Rather than dropping or overwriting such a key, every top-level key
//! that matches `^_+kafka_` gets one more leading underscore. The mapping is a bijection between
//! JSON keys and the column names it produces, and it never produces a name with exactly one
//! leading underscore before `kafka_`: that namespace belongs to frazil alone.

use std::borrow::Cow;

/// True for names matching `^_+kafka_`.
fn kafka_prefixed(name: &str) -> bool {
    let rest = name.trim_start_matches('_');
    rest.len() < name.len() && rest.starts_with("kafka_")
}

/// The column name for a top-level JSON key.
pub fn escape(key: &str) -> Cow<'_, str> {
    if kafka_prefixed(key) { Cow::Owned(format!("_{key}")) } else { Cow::Borrowed(key) }
}

/// The JSON key a column name stands for, or `None` for names reserved for meta columns
/// (`_kafka_*`), which no key maps to.
pub fn unescape(column: &str) -> Option<&str> {
    if !kafka_prefixed(column) {
        Some(column)
    } else if column.starts_with("__") {
        Some(&column[1..])
    } else {
        None
    }
}

/// True for names only frazil's meta columns may carry.
pub fn is_reserved(column: &str) -> bool {
    unescape(column).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn examples() {
        assert_eq!(escape("_kafka_offset"), "__kafka_offset");
        assert_eq!(escape("__kafka_x"), "___kafka_x");
        assert_eq!(escape("kafka_x"), "kafka_x");
        assert_eq!(escape("_kafka"), "_kafka");
        assert_eq!(escape("_kafkax"), "_kafkax");
        assert_eq!(escape("x_kafka_"), "x_kafka_");
        assert_eq!(escape("___"), "___");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(unescape("_kafka_offset"), None);
        assert!(is_reserved("_kafka_key"));
        assert!(!is_reserved("__kafka_key"));
    }

    #[test]
    fn bijection() {
        let keys = [
            "",
            "_",
            "__",
            "kafka_",
            "_kafka_",
            "__kafka_",
            "___kafka_",
            "_kafka_offset",
            "__kafka_offset",
            "___kafka_offset",
            "_kafka",
            "__kafka",
            "_Kafka_x",
            "a_kafka_x",
            "_kafka_partition",
            "_kafka_timestamp",
            "_kafka_key",
            "x",
            "_x",
            "kafka",
        ];
        let mut seen = HashSet::new();
        for key in keys {
            let col = escape(key);
            // Never lands in the reserved namespace, always maps back, never collides.
            assert!(!is_reserved(&col), "{key} -> {col}");
            assert_eq!(unescape(&col), Some(key), "{key} -> {col}");
            assert!(seen.insert(col.into_owned()), "collision for {key}");
        }
        // The inverse direction: every non-reserved column name comes from exactly one key.
        for col in keys.iter().filter(|c| !is_reserved(c)) {
            assert_eq!(escape(unescape(col).unwrap()), *col);
        }
    }
}
