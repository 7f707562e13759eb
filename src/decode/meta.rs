//! The four meta columns (where each row came from in Kafka), built the same way by every
//! decoder that keeps its records until a flush.

use std::sync::Arc;

use arrow_array::{ArrayRef, BinaryArray, Int32Array, Int64Array, LargeBinaryArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, TimeUnit};

use super::{DeadLetter, META_KEY, META_OFFSET, META_PARTITION, META_TIMESTAMP};

/// A buffered record's place in Kafka.
pub trait Origin {
    fn partition(&self) -> i32;
    fn offset(&self) -> i64;
    /// Milliseconds since the epoch; negative (Kafka's -1) means none.
    fn timestamp_ms(&self) -> i64;
    fn key(&self) -> Option<&[u8]>;
}

impl Origin for DeadLetter {
    fn partition(&self) -> i32 {
        self.partition
    }
    fn offset(&self) -> i64 {
        self.offset
    }
    fn timestamp_ms(&self) -> i64 {
        self.timestamp_ms
    }
    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }
}

/// The meta column `name` (of the table's type `dt`) for `rows`; `None` when `name` is not a
/// meta column or `dt` is not a type it can have.
pub fn meta_column<R: Origin>(name: &str, dt: &DataType, rows: &[R]) -> Option<ArrayRef> {
    Some(match (name, dt) {
        (META_PARTITION, DataType::Int32) => Arc::new(Int32Array::from_iter_values(rows.iter().map(Origin::partition))),
        (META_OFFSET, DataType::Int64) => Arc::new(Int64Array::from_iter_values(rows.iter().map(Origin::offset))),
        (META_TIMESTAMP, DataType::Timestamp(TimeUnit::Microsecond, tz)) => Arc::new(
            TimestampMicrosecondArray::from_iter(rows.iter().map(|r| {
                let ms = r.timestamp_ms();
                (ms >= 0).then(|| ms.saturating_mul(1000))
            }))
            .with_timezone_opt(tz.clone()),
        ),
        (META_KEY, DataType::LargeBinary) => Arc::new(LargeBinaryArray::from_iter(rows.iter().map(Origin::key))),
        (META_KEY, DataType::Binary) => Arc::new(BinaryArray::from_iter(rows.iter().map(Origin::key))),
        _ => return None,
    })
}
