//! The hot buffer of one partition: decoded rows waiting to become a spool file, and the records
//! that could not be decoded (dead letters) of the same offsets. It also knows the range of
//! offsets it holds, so the files can be registered with it.

use std::time::{Duration, Instant};

use arrow_array::RecordBatch;

use crate::Result;
use crate::decode::{DeadLetter, Decoder, Message};
use crate::source::registry::Registered;

/// Rows are moved out of the decoder into batches this often. Rows on the fast path are columns
/// already and become a batch without copying; rows on the general path are parsed JSON, which
/// Arrow holds far more compactly, and arrow-json slows down on very large batches.
const DECODE_CHUNK_ROWS: usize = 4096;

pub struct PartitionBuffer {
    decoder: Decoder,
    /// A record with more key and value bytes than this is a dead letter.
    max_record_bytes: u64,
    batches: Vec<RecordBatch>,
    rows: usize,
    dead: Vec<DeadLetter>,
    bytes: usize,
    /// Memory of `batches` and `dead`: with `unsettled`, what the agent's buffer budget counts.
    settled: usize,
    /// Key and value bytes of the records still in the decoder.
    unsettled: usize,
    /// First and last offset taken into the buffer since the last roll (accepted or not).
    range: Option<(i64, i64)>,
    since: Option<Instant>,
}

/// What a roll hands to the spool.
pub struct Rolled {
    pub batches: Vec<RecordBatch>,
    pub rows: u64,
    /// Records of the range that did not become rows, in offset order.
    pub dead: Vec<DeadLetter>,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// A copy of what a buffer holds (the batches share their memory with it).
pub struct Hot {
    pub first_offset: i64,
    pub last_offset: i64,
    pub batches: Vec<RecordBatch>,
    pub dead: Vec<DeadLetter>,
}

impl PartitionBuffer {
    pub fn new(decoder: Decoder, max_record_bytes: u64) -> Self {
        PartitionBuffer {
            decoder,
            max_record_bytes,
            batches: Vec::new(),
            rows: 0,
            dead: Vec::new(),
            bytes: 0,
            settled: 0,
            unsettled: 0,
            range: None,
            since: None,
        }
    }

    /// Takes one record. A record the decoder refuses still counts as taken (its offset is in the
    /// range): it is kept as a dead letter.
    pub fn push(&mut self, msg: &Message<'_>, headers: &std::collections::BTreeMap<String, Vec<u8>>) {
        self.range = Some(match self.range {
            None => (msg.offset, msg.offset),
            Some((first, _)) => (first, msg.offset),
        });
        self.since.get_or_insert_with(Instant::now);
        let size = msg.value.map_or(0, <[u8]>::len) + msg.key.map_or(0, <[u8]>::len);
        self.bytes += size;
        if size as u64 > self.max_record_bytes {
            let reason = format!(
                "record of {size} bytes is larger than kafka.max_record_bytes ({} bytes)",
                self.max_record_bytes
            );
            self.dead.push(DeadLetter::new(msg, reason));
            self.settled += dead_size(self.dead.last().expect("pushed"));
        } else if let Err(rejected) = self.decoder.push(msg, headers) {
            self.dead.push(DeadLetter::new(msg, rejected.reason));
            self.settled += dead_size(self.dead.last().expect("pushed"));
        } else {
            self.unsettled += size;
        }
    }

    /// Whether the decoder has been told about schema id `id` (always, for a format without
    /// registered schemas).
    pub fn knows_schema(&self, id: u32) -> bool {
        match &self.decoder {
            Decoder::Avro(d) => d.knows(id),
            Decoder::Protobuf(d) => d.knows(id),
            Decoder::JsonSchema(d) => d.knows(id),
            Decoder::Json(_) | Decoder::Raw(_) => true,
        }
    }

    /// Tells the decoder schema id `id`'s schema, or why its records cannot be read.
    pub fn know_schema(&mut self, id: u32, schema: std::result::Result<&Registered, &str>) {
        let texts = schema.map(|r| (&*r.text, &r.references));
        match &mut self.decoder {
            Decoder::Avro(d) => d.know(id, schema.map(|r| &r.text)),
            Decoder::Protobuf(d) => d.know(id, texts),
            Decoder::JsonSchema(d) => d.know(id, texts),
            Decoder::Json(_) | Decoder::Raw(_) => {}
        }
    }

    /// The decoder, when the partition's topic is Protobuf (it is told message types as they
    /// come).
    pub fn protobuf(&mut self) -> Option<&mut crate::decode::protobuf::ProtobufDecoder> {
        match &mut self.decoder {
            Decoder::Protobuf(d) => Some(d),
            _ => None,
        }
    }

    /// Moves rows from the decoder into a batch once enough have gathered (or when `force`); rows
    /// that parsed but did not fit the schema become dead letters.
    pub fn settle(&mut self, force: bool) -> Result<()> {
        if self.decoder.is_empty() || (!force && self.decoder.len() < DECODE_CHUNK_ROWS) {
            return Ok(());
        }
        let flushed = self.decoder.flush()?;
        if !flushed.unknown_fields.is_empty() {
            log::warn!("fields not in the table's schema were ignored: {:?}", flushed.unknown_fields);
        }
        if let Some(batch) = flushed.batch {
            self.rows += batch.num_rows();
            self.settled += batch.get_array_memory_size();
            self.batches.push(batch);
        }
        self.settled += flushed.rejected.iter().map(dead_size).sum::<usize>();
        self.dead.extend(flushed.rejected);
        self.unsettled = 0;
        Ok(())
    }

    /// True when buffered records have top-level keys the schema has no column for.
    pub fn has_fresh_keys(&self) -> bool {
        self.decoder.has_fresh_keys()
    }

    /// Raw values of the records whose keys the schema lacks.
    pub fn fresh_samples(&self) -> Vec<&[u8]> {
        self.decoder.fresh_samples()
    }

    /// Moves to `schema`, the current one grown by new fields (at the top level or inside
    /// structs): batches already decoded get them as nulls (their records had none of the new
    /// keys), and buffered records are decoded with them from now on.
    pub fn grow(&mut self, schema: &iceberg::spec::Schema) -> Result<()> {
        self.decoder.grow(schema)?;
        let target = self.decoder.arrow_schema();
        for batch in &mut self.batches {
            *batch = crate::decode::conform_batch(batch, &target)?;
        }
        self.recount();
        Ok(())
    }

    /// Counts again the memory of what has been moved out of the decoder.
    fn recount(&mut self) {
        let batches: usize = self.batches.iter().map(RecordBatch::get_array_memory_size).sum();
        self.settled = batches + self.dead.iter().map(dead_size).sum::<usize>();
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

    /// The memory the buffer holds, as the agent's buffer budget counts it: its rows in Arrow
    /// columns (their buffers' capacity), its dead letters, and the key and value bytes of the
    /// records still in the decoder. Counting input bytes instead let Avro buffers hold 1.7x the
    /// budget: Avro's decoded columns are larger than its compact encoding.
    pub fn held(&self) -> usize {
        self.settled + self.unsettled
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
        let mut dead = r.dead;
        dead.append(&mut self.dead);
        self.dead = dead;
        self.recount();
    }

    /// What the buffer holds for a query, without taking it: the offsets it covers, its rows (all
    /// decoded now, so every offset of the range is a row or a dead letter) and its dead letters.
    pub fn hot(&mut self) -> Result<Option<Hot>> {
        self.settle(true)?;
        let Some((first_offset, last_offset)) = self.range else { return Ok(None) };
        Ok(Some(Hot { first_offset, last_offset, batches: self.batches.clone(), dead: self.dead.clone() }))
    }

    /// Empties the buffer. `None` when nothing was taken since the last roll.
    pub fn roll(&mut self) -> Result<Option<Rolled>> {
        self.settle(true)?;
        let Some((first_offset, last_offset)) = self.range.take() else { return Ok(None) };
        self.since = None;
        self.bytes = 0;
        self.settled = 0;
        let rows = std::mem::take(&mut self.rows) as u64;
        let batches = std::mem::take(&mut self.batches);
        let mut dead = std::mem::take(&mut self.dead);
        dead.sort_by_key(|d| d.offset);
        // Every taken record is a row or a dead letter, so at least one of them is non-empty.
        Ok(Some(Rolled { batches, rows, dead, first_offset, last_offset }))
    }
}

/// What a dead letter holds in memory, near enough.
fn dead_size(d: &DeadLetter) -> usize {
    std::mem::size_of::<DeadLetter>()
        + d.key.as_ref().map_or(0, |k| k.len())
        + d.value.as_ref().map_or(0, |v| v.len())
        + d.reason.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{EpochUnit, Format, infer_schema};

    fn msg(offset: i64, value: &[u8]) -> Message<'_> {
        Message { partition: 0, offset, timestamp_ms: 0, key: None, value: Some(value) }
    }

    #[test]
    fn the_budget_counts_rows_by_their_arrow_memory_and_undecoded_records_by_their_bytes() {
        let values: Vec<Vec<u8>> =
            (0..5000).map(|i| format!(r#"{{"id":{i},"site":"s{}","v":{i}.5}}"#, i % 7).into_bytes()).collect();
        let schema = infer_schema(values.iter().take(10).map(Vec::as_slice)).unwrap();
        let decoder = Decoder::new(Format::Json, &schema, EpochUnit::Millis).unwrap();
        let mut b = PartitionBuffer::new(decoder, 100);
        let headers = Default::default();
        for (i, v) in values.iter().take(10).enumerate() {
            b.push(&msg(i as i64, v), &headers);
        }
        let taken: usize = values.iter().take(10).map(Vec::len).sum();
        assert_eq!(b.held(), taken, "records still in the decoder count their bytes");
        b.push(&msg(10, &[b'x'; 200]), &headers);
        assert!(b.held() >= taken + 200, "a dead letter counts what it holds");
        for (i, v) in values.iter().enumerate().skip(10) {
            b.push(&msg(i as i64 + 1, v), &headers);
        }
        b.settle(true).unwrap();
        let columns: usize = b.batches.iter().map(RecordBatch::get_array_memory_size).sum();
        assert!(columns > 0);
        assert_eq!(b.held(), columns + b.dead.iter().map(dead_size).sum::<usize>());
        let rolled = b.roll().unwrap().unwrap();
        assert_eq!((rolled.rows, rolled.dead.len(), b.held()), (5000, 1, 0));
        b.restore(rolled);
        assert_eq!(b.held(), columns + b.dead.iter().map(dead_size).sum::<usize>(), "put back, counted again");
    }
}
