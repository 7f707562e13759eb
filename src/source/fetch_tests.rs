//! Requests and answers of several partitions at once, without a broker: what goes into one
//! request, and how each ask finds its own part of the answer.

use bytes::BytesMut;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

use super::{Ask, answered, failed, request};
use crate::Error;
use crate::source::is_offset_out_of_range;

fn ask(topic: &str, partition: i32, offset: i64) -> Ask {
    Ask { tp: (topic.to_string(), partition), offset, max_bytes: 1 << (20 + partition) }
}

/// One batch of `values` from `base`, as a broker stores it.
fn batch(base: i64, values: &[&str]) -> bytes::Bytes {
    batch_of(base, values, None)
}

/// One batch of `values` from `base`, in a transaction of `producer` if there is one.
fn batch_of(base: i64, values: &[&str], producer: Option<i64>) -> bytes::Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: producer.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: producer.unwrap_or(-1),
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: base + i as i64,
            sequence: i as i32,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(bytes::Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut out = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut out, &records, &options).unwrap();
    out.freeze()
}

fn part(partition: i32, error_code: i16, high: i64, records: Option<bytes::Bytes>) -> PartitionData {
    PartitionData::default()
        .with_partition_index(partition)
        .with_error_code(error_code)
        .with_high_watermark(high)
        .with_records(records)
}

fn topic(name: &str, parts: Vec<PartitionData>) -> FetchableTopicResponse {
    FetchableTopicResponse::default().with_topic(TopicName(StrBytes::from_string(name.into()))).with_partitions(parts)
}

#[test]
fn one_request_asks_every_partition_in_order_grouped_by_topic() {
    let asks = [ask("b", 3, 30), ask("b", 0, 0), ask("a", 1, 10), ask("b", 2, 20)];
    let r = request(&asks, std::time::Duration::from_millis(1500));
    assert_eq!(r.max_wait_ms, 1500);
    assert_eq!(r.max_bytes, 1 << 23, "the largest ask's share bounds the whole answer");
    /// Partition, offset and size asked.
    type Asked = (i32, i64, i32);
    let seen: Vec<(String, Vec<Asked>)> = r
        .topics
        .iter()
        .map(|t| {
            let parts = t.partitions.iter().map(|p| (p.partition, p.fetch_offset, p.partition_max_bytes)).collect();
            (t.topic.0.to_string(), parts)
        })
        .collect();
    let want = vec![
        ("b".to_string(), vec![(3, 30, 1 << 23), (0, 0, 1 << 20)]),
        ("a".to_string(), vec![(1, 10, 1 << 21)]),
        ("b".to_string(), vec![(2, 20, 1 << 22)]),
    ];
    assert_eq!(seen, want, "the order asked is kept: a broker fills its answer in that order");
}

#[test]
fn each_ask_gets_its_own_partition_of_the_answer_and_its_own_error() {
    let asks = [ask("a", 0, 5), ask("a", 1, 0), ask("b", 0, 7), ask("b", 1, 3), ask("c", 0, 0)];
    let answer = FetchResponse::default().with_responses(vec![
        // Out of the order asked, as a broker may answer.
        topic("b", vec![part(1, 0, 9, Some(batch(2, &["x", "y", "z"]))), part(0, 1, 4, None)]),
        topic("a", vec![part(0, 0, 7, Some(batch(5, &["p", "q"]))), part(1, 0, 0, None)]),
    ]);
    let got = answered(&asks, answer);
    let values = |i: usize| -> (Vec<(i64, String)>, i64) {
        let f = got[i].as_ref().unwrap();
        let v = f.records.iter().map(|r| (r.offset, String::from_utf8_lossy(r.value.as_ref().unwrap()).into()));
        (v.collect(), f.high_watermark)
    };
    assert_eq!(values(0), (vec![(5, "p".into()), (6, "q".into())], 7));
    assert_eq!(values(1), (vec![], 0), "an empty partition is an empty answer, not an error");
    assert!(is_offset_out_of_range(got[2].as_ref().err().unwrap()), "{:?}", got[2].as_ref().err());
    assert_eq!(values(3), (vec![(3, "y".into()), (4, "z".into())], 9), "records before the offset asked are dropped");
    let missing = got[4].as_ref().err().unwrap().to_string();
    assert!(missing.contains("fetch c/0") && missing.contains("left the partition out"), "{missing}");
}

#[test]
fn an_answer_refused_as_a_whole_fails_every_ask() {
    let asks = [ask("a", 0, 0), ask("a", 1, 0)];
    let got = answered(&asks, FetchResponse::default().with_error_code(7));
    for (r, p) in got.iter().zip(["a/0", "a/1"]) {
        let e = r.as_ref().err().unwrap().to_string();
        assert!(e.contains(&format!("fetch {p}")) && e.contains("error code 7"), "{e}");
    }
}

#[test]
fn a_failed_request_keeps_its_error_on_the_first_ask_and_names_it_on_the_rest() {
    let asks = [ask("a", 0, 0), ask("a", 1, 0), ask("b", 0, 0)];
    let got = failed(&asks, Error::config("kafka.sasl", "refused", "check the password"));
    assert!(matches!(got[0], Err(Error::Config { ref key, .. }) if key == "kafka.sasl"), "the fetcher gives up on it");
    for (r, p) in got[1..].iter().zip(["a/1", "b/0"]) {
        let e = r.as_ref().err().unwrap();
        assert!(e.is_transient(), "{e}");
        let e = e.to_string();
        assert!(
            e.contains(&format!("fetch {p}")) && e.contains("its request failed") && e.contains("kafka.sasl"),
            "{e}"
        );
    }
}

#[test]
fn the_aborted_transactions_an_answer_lists_are_left_out_of_its_partition() {
    use kafka_protocol::messages::ProducerId;
    use kafka_protocol::messages::fetch_response::AbortedTransaction;
    let mut log = batch_of(0, &["aborted", "too"], Some(7)).to_vec();
    log.extend_from_slice(&batch(2, &["kept"]));
    let aborted = vec![AbortedTransaction::default().with_producer_id(ProducerId(7)).with_first_offset(0)];
    let p = part(0, 0, 3, Some(log.into())).with_aborted_transactions(Some(aborted));
    let got = answered(&[ask("a", 0, 0)], FetchResponse::default().with_responses(vec![topic("a", vec![p])]));
    let offsets: Vec<i64> = got[0].as_ref().unwrap().records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [2]);
}
