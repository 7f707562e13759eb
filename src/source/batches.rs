//! Record batches read straight from the bytes of a fetch answer (a partition's `records`), for a
//! fetch path that hands records to the decoder without a heap allocation per key and value: each
//! key and value is a `Bytes` slice of the answer (or, for a compressed batch, of that batch
//! decompressed once). kafka-protocol's batch decoder does the reading; this module adds what a
//! consumer needs around it:
//! - a fetch answer may end in a batch the broker cut short at its size limit: it is left for the
//!   next fetch, never an error;
//! - control batches (transaction markers) carry no records for tables, and the records of a
//!   transaction that was aborted are dropped: a read_committed answer lists each aborted
//!   transaction by producer and first offset, and its abort marker ends it (as Kafka's own
//!   consumer filters them);
//! - a fetch may start inside a batch: records before the offset asked for are dropped;
//! - every batch's CRC-32C is checked (by the decoder), so a damaged answer is an error;
//! - a compressed batch is decompressed here, not by the decoder, so that its size is bounded
//!   ([`MAX_BATCH_BYTES`]): a small batch that inflates to gigabytes is an error naming its
//!   offset, not the gateway's memory;
//! - headers come as kafka-protocol's map: a name repeated in one record keeps its last value, as
//!   rskafka's fetch keeps it.
//!
//! `source/batches_tests.rs` checks it against rskafka's own decoding of the same bytes.

use std::io::Read;

use anyhow::Context as _;
use bytes::{Buf, Bytes};
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder};

use crate::{Error, Result};

/// Base offset (8 bytes) and batch length (4): the length counts the bytes after these 12.
const BATCH_HEAD: usize = 12;

/// The most one batch's records may take once decompressed: the largest fetch the fetcher grows
/// to. Producers' batches are far smaller (Kafka's `max.message.bytes` defaults to 1 MiB).
pub const MAX_BATCH_BYTES: usize = 64 << 20;

/// A transaction the broker reports aborted: its producer and its first offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Aborted {
    pub producer_id: i64,
    pub first_offset: i64,
}

/// The data records in `records` (a fetch answer's bytes for one partition) at and after `from`,
/// in offset order, without those of the `aborted` transactions. A batch cut short at the end is
/// skipped; a batch that does not decode (a bad CRC, an unknown compression, a message set older
/// than v2, records past [`MAX_BATCH_BYTES`]) is an error naming its offset.
pub fn read(records: Bytes, from: i64, aborted: &[Aborted]) -> Result<Vec<Record>> {
    read_within(records, from, aborted, MAX_BATCH_BYTES)
}

/// [`read`], with batches bounded to `limit` bytes once decompressed.
fn read_within(mut records: Bytes, from: i64, aborted: &[Aborted], limit: usize) -> Result<Vec<Record>> {
    let mut pending = aborted.to_vec();
    pending.sort_by_key(|a| std::cmp::Reverse(a.first_offset)); // the earliest last, to pop
    // Producers inside an aborted transaction at this point of the log.
    let mut aborting = std::collections::HashSet::new();
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
        let head = batch.clone();
        let set = RecordBatchDecoder::decode_with_custom_compression(&mut batch, Some(decompress(limit)))
            .map_err(|e| fail(format!("{e:#}")))?;
        // The header decoded, so its fixed fields are there.
        let attributes = (&head[ATTRIBUTES..]).get_i16();
        let last_offset = base_offset + i64::from((&head[LAST_OFFSET_DELTA..]).get_i32());
        let producer_id = (&head[PRODUCER_ID..]).get_i64();
        while pending.last().is_some_and(|a| a.first_offset <= last_offset) {
            aborting.insert(pending.pop().expect("just seen").producer_id);
        }
        if attributes & CONTROL != 0 {
            let abort = set.records.first().and_then(|r| r.key.as_ref()).is_some_and(|k| k.get(2..4) == Some(&[0, 0]));
            if abort {
                aborting.remove(&producer_id);
            }
            continue;
        }
        if attributes & TRANSACTIONAL != 0 && aborting.contains(&producer_id) {
            continue;
        }
        out.extend(set.records.into_iter().filter(|r| r.offset >= from));
    }
    Ok(out)
}

// Where a v2 batch header keeps what the transaction filter reads, and the attribute bits.
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const PRODUCER_ID: usize = 43;
const TRANSACTIONAL: i16 = 1 << 4;
const CONTROL: i16 = 1 << 5;

/// Decompresses one batch's records, to at most `limit` bytes. Uncompressed records stay a slice
/// of the answer.
fn decompress(limit: usize) -> impl Fn(&mut Bytes, Compression) -> anyhow::Result<Bytes> {
    move |records, compression| {
        let input = std::mem::take(records);
        match compression {
            Compression::None => Ok(input),
            // Several gzip members in a row read as one stream, as Java's GZIPInputStream reads them.
            Compression::Gzip => read_at_most(flate2::bufread::MultiGzDecoder::new(&input[..]), limit, "gzip"),
            Compression::Zstd => read_at_most(zstd::stream::read::Decoder::with_buffer(&input[..])?, limit, "zstd"),
            Compression::Lz4 => read_at_most(lz4::Decoder::new(&input[..])?, limit, "lz4"),
            Compression::Snappy => snappy(&input, limit),
        }
    }
}

fn read_at_most(reader: impl Read, limit: usize, codec: &str) -> anyhow::Result<Bytes> {
    let mut out = Vec::new();
    reader.take(limit as u64 + 1).read_to_end(&mut out).with_context(|| format!("{codec} records"))?;
    if out.len() > limit {
        anyhow::bail!("{codec} records decompress to more than {limit} bytes");
    }
    Ok(out.into())
}

/// Java clients' snappy ("xerial" framing: a magic header, then blocks each led by its length), or
/// raw snappy without the header, as Java's reader accepts. Each block states its decompressed
/// length, so the bound is checked before anything is allocated.
fn snappy(input: &[u8], limit: usize) -> anyhow::Result<Bytes> {
    const MAGIC: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
    let blocks: Vec<&[u8]> = match input.strip_prefix(MAGIC) {
        None => vec![input],
        Some(mut rest) => {
            let mut blocks = Vec::new();
            while !rest.is_empty() {
                let (len, after) = rest.split_first_chunk::<4>().context("snappy block length cut short")?;
                let len = u32::from_be_bytes(*len) as usize;
                anyhow::ensure!(after.len() >= len, "snappy block cut short");
                blocks.push(&after[..len]);
                rest = &after[len..];
            }
            blocks
        }
    };
    let mut total = 0usize;
    for block in &blocks {
        total = total.saturating_add(snap::raw::decompress_len(block).context("snappy block header")?);
    }
    if total > limit {
        anyhow::bail!("snappy records decompress to more than {limit} bytes");
    }
    let mut out = vec![0u8; total];
    let mut at = 0;
    for block in blocks {
        at += snap::raw::Decoder::new().decompress(block, &mut out[at..]).context("snappy block")?;
    }
    out.truncate(at);
    Ok(out.into())
}

#[cfg(test)]
#[path = "batches_tests.rs"]
mod tests;
