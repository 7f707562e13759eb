//! The batch reader against rskafka's own decoding of the same bytes: batches written by
//! rskafka's protocol code (every compression, control batches among them, a last batch cut
//! short), read by both, must give the same records.

use std::collections::BTreeMap;
use std::io::Cursor;

use bytes::Bytes;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use proptest::prelude::*;
use rskafka::protocol::record::{
    ControlBatchOrRecords, Record as RsRecord, RecordBatch, RecordBatchCompression, RecordBatchTimestampType,
    RecordHeader,
};
use rskafka::protocol::traits::{ReadType, WriteType};

use super::{Aborted, read};

type Headers = Vec<(String, Vec<u8>)>;
/// One record as written: key, value, headers.
type Written = (Option<Vec<u8>>, Option<Vec<u8>>, Headers);
/// One record as both readers must see it: offset, timestamp, key, value, headers.
type Seen = (i64, i64, Option<Vec<u8>>, Option<Vec<u8>>, Headers);

#[derive(Debug, Clone)]
enum Body {
    Records(Vec<Written>),
    Control,
}

#[derive(Debug, Clone)]
struct Batch {
    compression: RecordBatchCompression,
    first_timestamp: i64,
    body: Body,
}

fn compression() -> impl Strategy<Value = RecordBatchCompression> {
    prop_oneof![
        Just(RecordBatchCompression::NoCompression),
        Just(RecordBatchCompression::Gzip),
        Just(RecordBatchCompression::Snappy),
        Just(RecordBatchCompression::Lz4),
        Just(RecordBatchCompression::Zstd),
    ]
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn batch() -> impl Strategy<Value = Batch> {
    let record = (
        prop::option::of(bytes(24)),
        prop::option::of(bytes(200)),
        prop::collection::vec(("[a-z]{1,8}", bytes(8)), 0..3),
    );
    let body = prop_oneof![
        5 => prop::collection::vec(record, 1..6).prop_map(Body::Records),
        1 => Just(Body::Control),
    ];
    (compression(), 0i64..2_000_000_000_000, body).prop_map(|(compression, first_timestamp, body)| Batch {
        compression,
        first_timestamp,
        body,
    })
}

/// A transaction's commit marker as a broker writes it: a control batch of one record whose key
/// is the control record (version 0, type 1 = commit) and whose value is the end marker.
/// (rskafka writes a control batch's four key bytes without the record around them, so its own
/// writer cannot make one.)
fn control_batch(out: &mut Vec<u8>, offset: i64, timestamp: i64) {
    let marker = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: 7,
        producer_epoch: 0,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence: -1,
        timestamp,
        key: Some(Bytes::from_static(&[0, 0, 0, 1])),
        value: Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0])),
        headers: Default::default(),
    };
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, [&marker], &options).unwrap();
    out.extend_from_slice(&buf);
}

/// Writes `batches` one after another from offset `base`, as a broker's log holds them; returns
/// the bytes and where each batch ends.
fn write(batches: &[Batch], base: i64) -> (Vec<u8>, Vec<usize>) {
    let (mut out, mut ends, mut offset) = (Vec::new(), Vec::new(), base);
    for b in batches {
        let (records, count) = match &b.body {
            Body::Control => {
                control_batch(&mut out, offset, b.first_timestamp);
                ends.push(out.len());
                offset += 1;
                continue;
            }
            Body::Records(rs) => {
                let records = rs
                    .iter()
                    .enumerate()
                    .map(|(i, (key, value, headers))| RsRecord {
                        timestamp_delta: i as i64 * 7,
                        offset_delta: i as i32,
                        key: key.clone(),
                        value: value.clone(),
                        headers: headers
                            .iter()
                            .map(|(k, v)| RecordHeader { key: k.clone(), value: v.clone() })
                            .collect(),
                    })
                    .collect();
                (ControlBatchOrRecords::Records(records), rs.len())
            }
        };
        let batch = RecordBatch {
            base_offset: offset,
            partition_leader_epoch: 0,
            last_offset_delta: count as i32 - 1,
            first_timestamp: b.first_timestamp,
            max_timestamp: b.first_timestamp + 7 * (count as i64 - 1),
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records,
            compression: b.compression,
            is_transactional: false,
            timestamp_type: RecordBatchTimestampType::CreateTime,
        };
        batch.write(&mut out).unwrap();
        ends.push(out.len());
        offset += count as i64;
    }
    (out, ends)
}

/// What rskafka makes of the first `n` batches of `bytes` (which end at `ends`), as its fetch
/// does: control batches skipped, records before `from` dropped, each timestamp the batch's
/// first plus the delta.
fn rskafka_reads(bytes: &[u8], batches: &[Batch], ends: &[usize], n: usize, from: i64) -> Vec<Seen> {
    let mut out = Vec::new();
    for i in (0..n).filter(|i| !matches!(batches[*i].body, Body::Control)) {
        let start = if i == 0 { 0 } else { ends[i - 1] };
        let batch = RecordBatch::read(&mut Cursor::new(&bytes[start..ends[i]])).expect("rskafka reads what it wrote");
        let ControlBatchOrRecords::Records(records) = batch.records else { unreachable!("written as records") };
        for r in records {
            let offset = batch.base_offset + i64::from(r.offset_delta);
            if offset >= from {
                // rskafka's fetch keeps one value per header name, the last: so does a map.
                let headers: BTreeMap<String, Vec<u8>> = r.headers.into_iter().map(|h| (h.key, h.value)).collect();
                let headers = headers.into_iter().collect();
                out.push((offset, batch.first_timestamp + r.timestamp_delta, r.key, r.value, headers));
            }
        }
    }
    out
}

fn ours(bytes: Bytes, from: i64) -> Vec<Seen> {
    read(bytes, from, &[])
        .unwrap()
        .into_iter()
        .map(|r| {
            let headers: BTreeMap<String, Vec<u8>> = r
                .headers
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.map(|v| v.to_vec()).unwrap_or_default()))
                .collect();
            let headers = headers.into_iter().collect();
            (r.offset, r.timestamp, r.key.map(|b| b.to_vec()), r.value.map(|b| b.to_vec()), headers)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whole batches read as rskafka reads them; a last batch cut anywhere is left out, as if
    /// the broker's size limit fell inside it; a fetch from inside a batch starts at its offset.
    #[test]
    fn reads_what_rskafka_reads(
        batches in prop::collection::vec(batch(), 1..6),
        base in 0i64..1_000_000,
        cut in any::<prop::sample::Index>(),
        skip in 0i64..12,
    ) {
        let (bytes, ends) = write(&batches, base);
        let from = base + skip;
        let n = batches.len();
        let whole = ours(Bytes::from(bytes.clone()), from);
        prop_assert_eq!(&whole, &rskafka_reads(&bytes, &batches, &ends, n, from));
        // Cut inside the last batch: the batches before it, and nothing of it.
        let last_start = if n > 1 { ends[n - 2] } else { 0 };
        let at = last_start + cut.index(bytes.len() - last_start);
        let before = rskafka_reads(&bytes, &batches, &ends, n - 1, from);
        prop_assert_eq!(ours(Bytes::copy_from_slice(&bytes[..at]), from), before);
    }
}

#[test]
fn a_damaged_batch_is_an_error_that_names_its_offset() {
    let b = Batch {
        compression: RecordBatchCompression::NoCompression,
        first_timestamp: 1_700_000_000_000,
        body: Body::Records(vec![(None, Some(b"{\"n\":1}".to_vec()), vec![])]),
    };
    let (mut bytes, _) = write(&[b], 42);
    let n = bytes.len();
    bytes[n - 3] ^= 0x40; // inside the record, covered by the CRC
    let e = read(Bytes::from(bytes), 0, &[]).unwrap_err().to_string();
    assert!(e.contains("record batch at offset 42") && e.contains("Cyclic redundancy check failed"), "{e}");
}

#[test]
fn records_are_slices_of_the_answer_not_copies() {
    let b = Batch {
        compression: RecordBatchCompression::NoCompression,
        first_timestamp: 0,
        body: Body::Records(vec![(Some(b"k".to_vec()), Some(b"value".to_vec()), vec![])]),
    };
    let (bytes, _) = write(&[b], 0);
    let answer = Bytes::from(bytes);
    let range = answer.as_ptr() as usize..answer.as_ptr() as usize + answer.len();
    let records = read(answer.clone(), 0, &[]).unwrap();
    let value = records[0].value.as_ref().unwrap();
    assert_eq!(value.as_ref(), b"value");
    assert!(range.contains(&(value.as_ptr() as usize)), "the value points into the answer's buffer");
}

/// One batch of `values` from `base`, written by kafka-protocol's encoder with `compression`
/// (its snappy is Java's framed form, which rskafka does not write).
fn encoded(base: i64, values: &[Vec<u8>], compression: Compression) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: base + i as i64,
            sequence: -1,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::copy_from_slice(v)),
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression }).unwrap();
    buf.freeze()
}

const COMPRESSIONS: [Compression; 5] =
    [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

#[test]
fn every_compression_kafka_protocol_writes_reads_as_its_own_decoder_reads_it() {
    let values: Vec<Vec<u8>> =
        (0..50).map(|i| format!("{{\"reading\":{i},\"pad\":\"{}\"}}", "x".repeat(i)).into()).collect();
    for c in COMPRESSIONS {
        let bytes = encoded(100, &values, c);
        let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes.clone()).unwrap();
        let theirs: Vec<Record> = sets.into_iter().flat_map(|s| s.records).collect();
        let ours = read(bytes, 110, &[]).unwrap();
        let seen = |rs: &[Record]| rs.iter().map(|r| (r.offset, r.value.clone())).collect::<Vec<_>>();
        assert_eq!(seen(&ours), seen(&theirs[10..]), "{c:?}");
        assert_eq!(ours.len(), 40, "{c:?}");
    }
}

#[test]
fn a_batch_that_inflates_past_the_bound_is_an_error_naming_its_offset() {
    let values = vec![vec![0u8; 64 << 10]; 4]; // 256 KiB of zeros: a few hundred bytes compressed
    for c in COMPRESSIONS {
        let bytes = encoded(7, &values, c);
        assert_eq!(super::read_within(bytes.clone(), 0, &[], 1 << 20).unwrap().len(), 4, "{c:?} within the bound");
        let small = super::read_within(bytes.clone(), 0, &[], 16 << 10);
        if c == Compression::None {
            assert_eq!(small.unwrap().len(), 4, "uncompressed records are read in place, never copied");
            continue;
        }
        assert!(bytes.len() < 16 << 10, "{c:?}: {} bytes compressed", bytes.len());
        let e = small.unwrap_err().to_string();
        assert!(
            e.contains("record batch at offset 7") && e.contains("decompress to more than 16384 bytes"),
            "{c:?}: {e}"
        );
    }
}

/// A batch of `n` records from `offset` by `producer` (`None`: not in a transaction), or its
/// transaction's marker (`marker`: 0 aborts, 1 commits), as a broker stores them.
fn txn_batch(out: &mut Vec<u8>, offset: i64, producer: Option<i64>, n: usize, marker: Option<u8>) {
    let records: Vec<Record> = (0..n as i64)
        .map(|i| Record {
            transactional: producer.is_some(),
            control: marker.is_some(),
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: producer.unwrap_or(-1),
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: offset + i,
            sequence: i as i32, // consecutive: one batch
            timestamp: 1_700_000_000_000,
            key: marker.map(|m| Bytes::copy_from_slice(&[0, 0, 0, m])),
            value: Some(Bytes::from(format!("{offset}+{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
    out.extend_from_slice(&buf);
}

fn offsets(bytes: &[u8], aborted: &[Aborted]) -> Vec<i64> {
    read(Bytes::copy_from_slice(bytes), 0, aborted).unwrap().iter().map(|r| r.offset).collect()
}

#[test]
fn the_records_of_an_aborted_transaction_are_dropped_and_a_committed_one_kept() {
    let mut log = Vec::new();
    txn_batch(&mut log, 0, Some(7), 3, None); // 0..3: producer 7's first transaction...
    txn_batch(&mut log, 3, None, 2, None); // 3..5: no transaction
    txn_batch(&mut log, 5, Some(8), 2, None); // 5..7: producer 8, committed below
    txn_batch(&mut log, 7, Some(7), 1, Some(0)); // 7: ...aborted
    txn_batch(&mut log, 8, Some(7), 2, None); // 8..10: producer 7's second transaction...
    txn_batch(&mut log, 10, Some(8), 1, Some(1)); // 10: producer 8 commits
    txn_batch(&mut log, 11, Some(7), 1, Some(1)); // 11: ...committed
    let aborted = [Aborted { producer_id: 7, first_offset: 0 }];
    assert_eq!(offsets(&log, &aborted), [3, 4, 5, 6, 8, 9], "the abort marker ends the aborted transaction");
    assert_eq!(offsets(&log, &[]), [0, 1, 2, 3, 4, 5, 6, 8, 9], "nothing reported aborted: only markers are dropped");
}

#[test]
fn an_aborted_transaction_counts_only_from_its_first_offset() {
    let mut log = Vec::new();
    txn_batch(&mut log, 0, Some(7), 2, None); // 0..2: committed
    txn_batch(&mut log, 2, Some(7), 1, Some(1));
    txn_batch(&mut log, 3, Some(7), 2, None); // 3..5: aborted
    txn_batch(&mut log, 5, Some(7), 1, Some(0));
    let aborted = [Aborted { producer_id: 7, first_offset: 3 }, Aborted { producer_id: 9, first_offset: 0 }];
    assert_eq!(offsets(&log, &aborted), [0, 1]);
    // A fetch from inside the aborted transaction: the answer still lists it.
    let from_inside = &log[batch_start(&log, 4)..];
    assert_eq!(offsets(from_inside, &aborted), Vec::<i64>::new());
}

/// Where the batch holding `offset` starts in `log` (the batch after it, for a marker).
fn batch_start(log: &[u8], offset: i64) -> usize {
    let mut at = 0;
    loop {
        let base = i64::from_be_bytes(log[at..at + 8].try_into().unwrap());
        let len = i32::from_be_bytes(log[at + 8..at + 12].try_into().unwrap()) as usize;
        let last = base + i64::from(i32::from_be_bytes(log[at + 23..at + 27].try_into().unwrap()));
        if (base..=last).contains(&offset) {
            return at;
        }
        at += 12 + len;
    }
}
