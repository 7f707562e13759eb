//! Fetches over connections of our own (`wire.rs`, the same TCP, TLS and SASL as the group
//! protocol), so that records reach the decoder as slices of the fetch answer (`batches.rs`)
//! instead of one allocation per key, value and header name as rskafka parses them.
//!
//! Each partition is fetched from its leader, as the last Metadata answer named it. A connection
//! does one request at a time and runs on the blocking pool (`wire.rs` is blocking); idle ones are
//! kept per broker for the next fetch, so `kafka.fetches_in_flight` fetches hold at most that many
//! connections to a broker. A broken connection is dropped. An answer that says the leader moved
//! is an error like a broken connection: the fetcher connects again, which asks for Metadata anew.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{FetchRequest, FetchResponse, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::wire::Conn;
use super::{Fetched, Record, batches};
use crate::config::KafkaConfig;
use crate::topic::TopicPartition;
use crate::{Error, Result};

/// Fetch v11: the last version that names topics (v13 asks for topic ids) without the flexible
/// encoding of v12; it has the top-level error code (v7) and the log start offset (v5).
const FETCH_VERSION: i16 = 11;
/// Metadata v4 (as the group protocol uses): brokers with host and port, leaders per partition.
const METADATA_VERSION: i16 = 4;
/// read_committed, as rskafka fetches: records of open transactions are not returned.
const READ_COMMITTED: i8 = 1;
const OFFSET_OUT_OF_RANGE: i16 = 1;

/// Connections to the brokers, shared by the fetches in flight.
#[derive(Clone)]
pub struct Brokers {
    cfg: Arc<KafkaConfig>,
    /// Each partition's leader, "host:port".
    leaders: Arc<Mutex<BTreeMap<TopicPartition, String>>>,
    idle: Arc<Mutex<HashMap<String, Vec<Conn>>>>,
}

impl Brokers {
    pub fn new(cfg: &KafkaConfig) -> Brokers {
        Brokers { cfg: Arc::new(cfg.clone()), leaders: Arc::default(), idle: Arc::default() }
    }

    /// Asks a bootstrap broker for the leader of every partition of `topics`.
    pub async fn find_leaders(&self, topics: Vec<String>) -> Result<()> {
        let cfg = self.cfg.clone();
        let leaders = blocking::unblock(move || leaders_of(&cfg, &topics)).await?;
        *self.leaders.lock().expect("not poisoned") = leaders;
        Ok(())
    }

    /// Fetches `tp` from `offset`: the records at and after it (a batch cut short at the end of
    /// the answer is left for the next fetch) and the high watermark.
    pub fn fetch(
        &self,
        tp: &TopicPartition,
        offset: i64,
        max_bytes: i32,
        max_wait: Duration,
    ) -> impl Future<Output = Result<Fetched>> + 'static {
        let this = self.clone();
        let tp = tp.clone();
        async move {
            let leader = this.leaders.lock().expect("not poisoned").get(&tp).cloned();
            let addr = leader.ok_or_else(|| Error::Source {
                context: format!("fetch {}/{}", tp.0, tp.1),
                reason: "no leader known for this partition".into(),
            })?;
            let conn = this.idle.lock().expect("not poisoned").get_mut(&addr).and_then(Vec::pop);
            let request = request(&tp, offset, max_bytes, max_wait);
            let (cfg, to) = (this.cfg.clone(), addr.clone());
            let (conn, answer) = blocking::unblock(move || -> Result<(Conn, FetchResponse)> {
                let mut conn = match conn {
                    Some(c) => c,
                    None => {
                        let mut c = Conn::open(&cfg, &to)?;
                        c.allow_answers_of(2 * cfg.fetch_max_bytes as usize);
                        c
                    }
                };
                let answer = conn.call(&request, FETCH_VERSION, max_wait)?;
                Ok((conn, answer))
            })
            .await?;
            this.idle.lock().expect("not poisoned").entry(addr).or_default().push(conn);
            answered(&tp, offset, answer)
        }
    }
}

/// Every partition's leader among `topics`, from one bootstrap broker that answers.
fn leaders_of(cfg: &KafkaConfig, topics: &[String]) -> Result<BTreeMap<TopicPartition, String>> {
    let mut last = None;
    for addr in &cfg.brokers {
        let ask = || -> Result<BTreeMap<TopicPartition, String>> {
            let mut conn = Conn::open(cfg, addr)?;
            let names = topics
                .iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(t.clone())))));
            let req = MetadataRequest::default().with_topics(Some(names.collect()));
            let answer = conn.call(&req, METADATA_VERSION, Duration::ZERO)?;
            let brokers: HashMap<i32, String> =
                answer.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port))).collect();
            let mut leaders = BTreeMap::new();
            for t in answer.topics {
                let Some(name) = t.name else { continue };
                for p in t.partitions {
                    if let Some(addr) = brokers.get(&p.leader_id.0) {
                        leaders.insert((name.0.to_string(), p.partition_index), addr.clone());
                    }
                }
            }
            Ok(leaders)
        };
        match ask() {
            Ok(leaders) => return Ok(leaders),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::Source { context: "find partition leaders".into(), reason: "no brokers".into() }))
}

/// One partition's Fetch request.
fn request(tp: &TopicPartition, offset: i64, max_bytes: i32, max_wait: Duration) -> FetchRequest {
    let partition =
        FetchPartition::default().with_partition(tp.1).with_fetch_offset(offset).with_partition_max_bytes(max_bytes);
    let topic = FetchTopic::default()
        .with_topic(TopicName(StrBytes::from_string(tp.0.clone())))
        .with_partitions(vec![partition]);
    FetchRequest::default()
        .with_max_wait_ms(max_wait.as_millis().min(i32::MAX as u128) as i32)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_isolation_level(READ_COMMITTED)
        .with_topics(vec![topic])
}

/// The records of `tp` in a Fetch answer, at and after `offset`, with its high watermark.
fn answered(tp: &TopicPartition, offset: i64, answer: FetchResponse) -> Result<Fetched> {
    let what = format!("fetch {}/{} at offset {offset}", tp.0, tp.1);
    let refused = |code: i16| -> Error {
        if code == OFFSET_OUT_OF_RANGE {
            return super::kafka::offset_out_of_range(&what, tp);
        }
        Error::Source { context: what.clone(), reason: format!("the broker answered with error code {code}") }
    };
    if answer.error_code != 0 {
        return Err(refused(answer.error_code));
    }
    let part = answer
        .responses
        .into_iter()
        .filter(|t| t.topic.0.as_str() == tp.0)
        .flat_map(|t| t.partitions)
        .find(|p| p.partition_index == tp.1)
        .ok_or_else(|| Error::Source { context: what.clone(), reason: "the answer left the partition out".into() })?;
    if part.error_code != 0 {
        return Err(refused(part.error_code));
    }
    let raw = part.records.unwrap_or_default();
    let records = batches::read(raw, offset)?.into_iter().map(Record::from).collect();
    Ok(Fetched { records, high_watermark: part.high_watermark })
}

impl From<kafka_protocol::records::Record> for Record {
    /// Key and value stay slices of the answer; header names and values are copied (into the
    /// map the decode stage keeps them in), which only records with headers pay for.
    fn from(r: kafka_protocol::records::Record) -> Record {
        Record {
            offset: r.offset,
            timestamp_ms: r.timestamp,
            key: r.key,
            value: r.value,
            headers: r
                .headers
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.map(|v| v.to_vec()).unwrap_or_default()))
                .collect(),
        }
    }
}
