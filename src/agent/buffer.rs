//! The hot buffer of one partition: decoded rows waiting to become a spool file. It also knows
//! the range of offsets it holds, so the file can be registered with it.

use std::time::{Duration, Instant};

use arrow_array::RecordBatch;

use crate::decode::{BatchDecoder, Message, Rejected};
use crate::Result;

/// Rows are moved out of the JSON decoder into columnar batches this often: Arrow holds them far
/// more compactly than parsed JSON, and arrow-json slows down on very large batches.
const DECODE_CHUNK_ROWS: usize = 4096;

/// Records that parsed but did not fit the schema: (partition, offset, reason).
pub type Skipped = Vec<(i32, i64, String)>;

pub struct PartitionBuffer {
    decoder: BatchDecoder,
    batches: Vec<RecordBatch>,
    rows: usize,
    bytes: usize,
    /// First and last offset taken into the buffer since the last roll (accepted or not).
    range: Option<(i64, i64)>,
    since: Option<Instant>,
}

/// What a roll hands to the spool.
pub struct Rolled {
    pub batches: Vec<RecordBatch>,
    pub rows: u64,
    pub first_offset: i64,
    pub last_offset: i64,
}

impl PartitionBuffer {
    pub fn new(decoder: BatchDecoder) -> Self {
        PartitionBuffer { decoder, batches: Vec::new(), rows: 0, bytes: 0, range: None, since: None }
    }

    /// Takes one record. A rejected record still counts as taken (its offset is in the range),
    /// the caller reports it. Errors come back with the partition and offset of each rejected row.
    pub fn push(&mut self, msg: &Message<'_>) -> std::result::Result<(), Rejected> {
        self.range = Some(match self.range {
            None => (msg.offset, msg.offset),
            Some((first, _)) => (first, msg.offset),
        });
        self.since.get_or_insert_with(Instant::now);
        self.bytes += msg.value.map_or(0, <[u8]>::len) + msg.key.map_or(0, <[u8]>::len);
        self.decoder.push(msg)?;
        Ok(())
    }

    /// Moves rows from the decoder into a batch once enough have gathered (or when `force`).
    /// Returns rows that parsed but did not fit the schema.
    pub fn settle(&mut self, force: bool) -> Result<Skipped> {
        if self.decoder.is_empty() || (!force && self.decoder.len() < DECODE_CHUNK_ROWS) {
            return Ok(Vec::new());
        }
        let flushed = self.decoder.flush()?;
        if !flushed.unknown_fields.is_empty() {
            log::warn!("fields not in the table's schema were ignored: {:?}", flushed.unknown_fields);
        }
        if let Some(batch) = flushed.batch {
            self.rows += batch.num_rows();
            self.batches.push(batch);
        }
        Ok(flushed.rejected)
    }

    /// True when the buffer should become a spool file.
    pub fn due(&self, max_bytes: u64, max_rows: usize, max_age: Duration) -> bool {
        self.range.is_some()
            && (self.bytes as u64 >= max_bytes
                || self.rows + self.decoder.len() >= max_rows
                || self.since.is_some_and(|t| t.elapsed() >= max_age))
    }

    pub fn is_empty(&self) -> bool {
        self.range.is_none()
    }

    /// Puts back what [`roll`](Self::roll) took, when the spool could not take it (disk full):
    /// the rows stay in memory and fetching pauses until there is room.
    pub fn restore(&mut self, r: Rolled) {
        self.range = Some(match self.range {
            None => (r.first_offset, r.last_offset),
            Some((_, last)) => (r.first_offset, last.max(r.last_offset)),
        });
        self.since.get_or_insert_with(Instant::now);
        self.rows += r.rows as usize;
        let mut batches = r.batches;
        batches.append(&mut self.batches);
        self.batches = batches;
    }

    /// Empties the buffer. `None` when nothing was taken since the last roll.
    pub fn roll(&mut self) -> Result<(Option<Rolled>, Skipped)> {
        let rejected = self.settle(true)?;
        let Some((first_offset, last_offset)) = self.range.take() else { return Ok((None, rejected)) };
        self.since = None;
        self.bytes = 0;
        let rows = std::mem::take(&mut self.rows) as u64;
        let batches = std::mem::take(&mut self.batches);
        // rows == 0 when every record in the range was rejected: nothing to spool, but the range was taken.
        Ok((Some(Rolled { batches, rows, first_offset, last_offset }), rejected))
    }
}
