//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz, nightly) and for the stable test that
//! replays their corpus. Each splits the input into up to 16 record values at newlines, runs them
//! through a decoder, and panics only when an invariant breaks: every record is accounted for as
//! a row or a dead letter, and batches have the decoder's schema.

use std::collections::BTreeMap;

use super::{BatchDecoder, Message, evolve_schema, infer_schema, raw};

fn records(data: &[u8]) -> Vec<&[u8]> {
    data.split(|b| *b == b'\n').take(16).collect()
}

fn message(offset: usize, value: &[u8]) -> Message<'_> {
    Message { partition: 0, offset: offset as i64, timestamp_ms: offset as i64 - 1, key: Some(b"k"), value: Some(value) }
}

/// Schema inference, decoding, schema growth from the refused keys, and flushing.
pub fn json(data: &[u8]) {
    let values = records(data);
    let schema = infer_schema(values.iter().copied())
        .or_else(|_| infer_schema([br#"{"a": 1, "b": "x", "c": [1.5], "d": {"e": true}}"#.as_slice()]))
        .expect("the fallback sample is an object");
    let mut decoder = BatchDecoder::new(&schema).expect("an inferred schema is decodable");
    let mut refused = 0;
    for (i, v) in values.iter().enumerate() {
        if decoder.push(&message(i, v)).is_err() {
            refused += 1;
        }
    }
    if decoder.has_fresh_keys() {
        let samples: Vec<&[u8]> = decoder.fresh_samples().collect();
        let grown = evolve_schema(&schema, samples, schema.highest_field_id(), None)
            .expect("growing from samples that parsed")
            .expect("fresh keys give new fields");
        decoder.grow(&grown).expect("a grown schema is decodable");
        assert!(!decoder.has_fresh_keys(), "the grown schema has every key");
    }
    let accepted = decoder.len();
    let flushed = decoder.flush().expect("rows that parsed either decode or are refused");
    let rows = flushed.batch.as_ref().map_or(0, |b| b.num_rows());
    if let Some(b) = &flushed.batch {
        assert_eq!(b.schema(), decoder.arrow_schema(), "a batch has the decoder's schema");
    }
    assert_eq!(rows + flushed.rejected.len(), accepted, "every accepted record is a row or a dead letter");
    assert_eq!(accepted + refused, values.len(), "every record is accepted or refused");
}

/// Raw (never refuses) and text (refuses exactly what is not UTF-8).
pub fn raw(data: &[u8]) {
    let values = records(data);
    let headers: BTreeMap<String, Vec<u8>> = [("h".to_string(), data.iter().take(8).copied().collect())].into_iter().collect();
    for text in [false, true] {
        let mut d = raw::RawDecoder::new(&raw::raw_schema(text)).expect("the fixed schema");
        let mut refused = 0;
        for (i, v) in values.iter().enumerate() {
            let r = d.push(&message(i, v), &headers);
            assert_eq!(r.is_err(), text && std::str::from_utf8(v).is_err(), "refused exactly what is not UTF-8 text");
            refused += usize::from(r.is_err());
        }
        let rows = d.flush().expect("raw rows always build").map_or(0, |b| b.num_rows());
        assert_eq!(rows + refused, values.len());
    }
}
