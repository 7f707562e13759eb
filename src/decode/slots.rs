//! Where each column of a JSON table's batches comes from: the user columns arrow_json and the
//! fast path decode, the four meta columns, and a fixed table's `_extra` column.

use std::sync::Arc;

use arrow_schema::{DataType, Schema as ArrowSchema, SchemaRef, TimeUnit};

use super::unknown::EXTRA;
use super::{META_KEY, META_OFFSET, META_PARTITION, META_TIMESTAMP, names};
use crate::{Error, Result};

/// Where each column of the output comes from.
#[derive(Debug)]
pub(super) enum Slot {
    User(usize),
    Partition,
    Offset,
    Timestamp(Option<Arc<str>>),
    Key {
        large: bool,
    },
    /// The unknown keys of a fixed table's record, as JSON text (see [`super::unknown`]).
    Extra,
}

/// The four meta columns, which count as the table's names at the top level.
pub(super) const META: [&str; 4] = [META_PARTITION, META_OFFSET, META_TIMESTAMP, META_KEY];

/// The user columns of a table's Arrow schema and where each column of a batch comes from.
/// With `extra`, the `_extra` column (which must be a string) is the decoder's own.
pub(super) fn slots(arrow: &ArrowSchema, extra: bool) -> Result<(SchemaRef, Vec<Slot>)> {
    let mut user = Vec::new();
    let mut slots = Vec::new();
    for f in arrow.fields() {
        let slot = match (f.name().as_str(), f.data_type()) {
            (META_PARTITION, DataType::Int32) => Slot::Partition,
            (META_OFFSET, DataType::Int64) => Slot::Offset,
            (META_TIMESTAMP, DataType::Timestamp(TimeUnit::Microsecond, tz)) if f.is_nullable() => {
                Slot::Timestamp(tz.clone())
            }
            (META_KEY, DataType::LargeBinary) if f.is_nullable() => Slot::Key { large: true },
            (META_KEY, DataType::Binary) if f.is_nullable() => Slot::Key { large: false },
            (EXTRA, DataType::Utf8) if extra && f.is_nullable() => Slot::Extra,
            (name, dt) if names::is_reserved(name) => {
                return Err(Error::decode(
                    "checking the table schema",
                    format!(
                        "column `{name}` ({dt}, nullable: {}) is not a frazil meta column of the expected type",
                        f.is_nullable()
                    ),
                ));
            }
            _ => {
                user.push(f.clone());
                Slot::User(user.len() - 1)
            }
        };
        slots.push(slot);
    }
    for meta in META {
        if arrow.field_with_name(meta).is_err() {
            return Err(Error::decode("checking the table schema", format!("meta column `{meta}` is missing")));
        }
    }
    if extra && !slots.iter().any(|s| matches!(s, Slot::Extra)) {
        return Err(Error::decode(
            "checking the table schema",
            format!("a table that keeps unknown keys needs the optional string column `{EXTRA}`"),
        ));
    }
    Ok((Arc::new(ArrowSchema::new(user)), slots))
}
