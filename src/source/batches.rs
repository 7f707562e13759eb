//! Record batches read straight from the bytes of a fetch answer (a partition's `records`), for a
//! fetch path that hands records to the decoder without a heap allocation per key and value: each
//! key and value is a `Bytes` slice of the answer (or, for a compressed batch, of that batch
//! decompressed once). kafka-protocol's batch decoder does the reading; this module adds what a
//! consumer needs around it:
//! - a fetch answer may end in a batch the broker cut short at its size limit: it is left for the
//!   next fetch, never an error;
//! - control batches (transaction markers) carry no records for tables;
//! - a fetch may start inside a batch: records before the offset asked for are dropped;
//! - every batch's CRC-32C is checked (by the decoder), so a damaged answer is an error;
//! - headers come as kafka-protocol's map: a name repeated in one record keeps its last value, as
//!   rskafka's fetch keeps it.
//!
//! `source/batches_tests.rs` checks it against rskafka's own decoding of the same bytes.

use bytes::{Buf, Bytes};
use kafka_protocol::records::{Record, RecordBatchDecoder};

use crate::{Error, Result};

/// Base offset (8 bytes) and batch length (4): the length counts the bytes after these 12.
const BATCH_HEAD: usize = 12;

/// The data records in `records` (a fetch answer's bytes for one partition) at and after `from`,
/// in offset order. A batch cut short at the end is skipped; a batch that does not decode (a bad
/// CRC, an unknown compression, a message set older than v2) is an error naming its offset.
pub fn read(mut records: Bytes, from: i64) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    while records.len() >= BATCH_HEAD {
        let base_offset = (&records[..8]).get_i64();
        let length = (&records[8..BATCH_HEAD]).get_i32();
        let fail = |reason: String| Error::Source { context: format!("record batch at offset {base_offset}"), reason };
        let Ok(length) = usize::try_from(length) else {
            return Err(fail(format!("negative batch length {length}")));
        };
        if records.len() - BATCH_HEAD < length {
            break; // cut short by the broker's size limit: the next fetch starts at it
        }
        let mut batch = records.split_to(BATCH_HEAD + length);
        let set = RecordBatchDecoder::decode(&mut batch).map_err(|e| fail(format!("{e:#}")))?;
        out.extend(set.records.into_iter().filter(|r| !r.control && r.offset >= from));
    }
    Ok(out)
}

#[cfg(test)]
#[path = "batches_tests.rs"]
mod tests;
