//! Kafka for the tests: the sample events, and producing them through rskafka (over TLS with a
//! SASL login for brokers that need one).

use std::collections::BTreeMap;

use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;
use serde_json::{Value, json};

/// An event with nested objects, nulls and arrays, deterministic in `i`.
pub fn event(i: u64) -> Value {
    json!({
        "id": i,
        "device": format!("dev-{}", i % 50),
        "site": if i.is_multiple_of(7) { Value::Null } else { json!(format!("site-{}", i % 3)) },
        "temp": (i % 1000) as f64 / 10.0 + 0.25,
        "ok": i.is_multiple_of(2),
        "readings": [i as f64 * 0.5, 1.5, -2.0],
        "tags": if i.is_multiple_of(5) { json!([]) } else { json!(["a", format!("t{}", i % 4)]) },
        "status": { "code": (i % 4) as i64, "msg": if i.is_multiple_of(3) { Value::Null } else { json!("fine") }, "link": { "rssi": -40 - (i % 30) as i64 } },
    })
}

/// A produced record, by where it landed.
#[derive(Clone, Debug)]
pub struct Produced {
    pub value: Value,
    pub key: String,
    pub timestamp_ms: i64,
}

type Secured =
    std::sync::Mutex<BTreeMap<String, (std::sync::Arc<rustls::ClientConfig>, Option<rskafka::client::SaslConfig>)>>;

/// Brokers the harness reaches over TLS with a SASL login (the Kafka security tests), by address.
static SECURED: Secured = std::sync::Mutex::new(BTreeMap::new());

/// From now on the harness talks to `kafka` over TLS, with this SASL login if any.
pub fn secure_broker(
    kafka: &str,
    tls: std::sync::Arc<rustls::ClientConfig>,
    sasl: Option<rskafka::client::SaslConfig>,
) {
    SECURED.lock().unwrap().insert(kafka.to_string(), (tls, sasl));
}

fn client_builder(kafka: &str) -> ClientBuilder {
    let builder = ClientBuilder::new(vec![kafka.to_string()]);
    match SECURED.lock().unwrap().get(kafka) {
        Some((tls, Some(sasl))) => builder.tls_config(tls.clone()).sasl_config(sasl.clone()),
        Some((tls, None)) => builder.tls_config(tls.clone()),
        None => builder,
    }
}

/// Creates `topic` with `partitions` partitions.
pub async fn create_topic(kafka: &str, topic: &str, partitions: i32) {
    let client = client_builder(kafka).build().await.expect("connect to the broker");
    client
        .controller_client()
        .expect("controller")
        .create_topic(topic, partitions, 1, 5_000)
        .await
        .expect("create topic");
}

/// Produces events `ids` round-robin over the partitions, in batches; returns them by (partition, offset).
pub async fn produce(
    kafka: &str,
    topic: &str,
    partitions: i32,
    ids: std::ops::Range<u64>,
) -> BTreeMap<(i32, i64), Produced> {
    produce_with(kafka, topic, partitions, ids, event).await
}

/// [`produce`] with values made by `make` instead of [`event`].
pub async fn produce_with(
    kafka: &str,
    topic: &str,
    partitions: i32,
    ids: std::ops::Range<u64>,
    make: impl Fn(u64) -> Value,
) -> BTreeMap<(i32, i64), Produced> {
    let produced =
        |i: u64| Produced { value: make(i), key: format!("key-{i}"), timestamp_ms: 1_700_000_000_000 + i as i64 };
    let placed = produce_ids(kafka, topic, partitions, ids, 2000, |i| {
        let e = produced(i);
        Record {
            key: Some(e.key.into_bytes()),
            value: Some(serde_json::to_vec(&e.value).expect("json")),
            headers: Default::default(),
            timestamp: rskafka::chrono::DateTime::from_timestamp_millis(e.timestamp_ms).expect("timestamp"),
        }
    })
    .await;
    placed.into_iter().map(|(at, i)| (at, produced(i))).collect()
}

/// Produces `ids` as small events `{"id", "device", "temp"}`, id `i` to partition `i % partitions`,
/// quickly and without keeping them (for volume tests; check the table by id).
pub async fn produce_small(kafka: &str, topic: &str, partitions: i32, ids: std::ops::Range<u64>) {
    produce_ids(kafka, topic, partitions, ids, 5000, |i| Record {
        key: Some(format!("key-{i}").into_bytes()),
        value: Some(format!(r#"{{"id":{i},"device":"dev-{}","temp":{}.5}}"#, i % 50, i % 100).into_bytes()),
        headers: Default::default(),
        timestamp: rskafka::chrono::DateTime::from_timestamp_millis(1_700_000_000_000 + i as i64).expect("timestamp"),
    })
    .await;
}

/// A client for one partition, on a client of its own.
async fn partition_client(kafka: &str, topic: &str, partition: i32) -> rskafka::client::partition::PartitionClient {
    let client = client_builder(kafka).build().await.expect("connect to the broker");
    client.partition_client(topic, partition, UnknownTopicHandling::Retry).await.expect("partition client")
}

/// Produces `record(i)` for each id, id `i` to partition `i % partitions`, `chunk` records per
/// request; returns where each id landed.
async fn produce_ids(
    kafka: &str,
    topic: &str,
    partitions: i32,
    ids: std::ops::Range<u64>,
    chunk: usize,
    record: impl Fn(u64) -> Record,
) -> Vec<((i32, i64), u64)> {
    let mut out = Vec::new();
    for p in 0..partitions {
        let pc = partition_client(kafka, topic, p).await;
        let mine: Vec<u64> = ids.clone().filter(|i| (i % partitions as u64) as i32 == p).collect();
        for ids in mine.chunks(chunk) {
            let offsets = pc
                .produce(ids.iter().map(|&i| record(i)).collect(), Compression::NoCompression)
                .await
                .expect("produce");
            out.extend(offsets.into_iter().map(|o| (p, o)).zip(ids.iter().copied()));
        }
    }
    out
}

/// A record to produce: key, value, headers.
pub type RawRecord = (Option<Vec<u8>>, Option<Vec<u8>>, BTreeMap<String, Vec<u8>>);

/// Produces records with headers to one partition; returns their offsets.
pub async fn produce_with_headers(kafka: &str, topic: &str, partition: i32, records: Vec<RawRecord>) -> Vec<i64> {
    let records = records
        .into_iter()
        .map(|(key, value, headers)| Record { key, value, headers, timestamp: rskafka::chrono::Utc::now() })
        .collect();
    partition_client(kafka, topic, partition).await.produce(records, Compression::NoCompression).await.expect("produce")
}

/// Produces raw values (for bad-input tests; `None` is a tombstone) to one partition; returns
/// their offsets.
pub async fn produce_raw(kafka: &str, topic: &str, partition: i32, values: Vec<Option<Vec<u8>>>) -> Vec<i64> {
    let records = values.into_iter().map(|v| (Some(b"bad".to_vec()), v, BTreeMap::new())).collect();
    produce_with_headers(kafka, topic, partition, records).await
}

/// Runs a tokio-needing future (rskafka) the way frazil does: smol + async-compat.
pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    smol::block_on(async_compat::Compat::new(f))
}
