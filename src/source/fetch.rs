//! Fetches over connections of our own (`wire.rs`, the same TCP, TLS and SASL as the group
//! protocol), so that records reach the decoder as slices of the fetch answer (`batches.rs`)
//! instead of one allocation per key, value and header name as rskafka parses them.
//!
//! Each partition is fetched from its leader, as the last Metadata answer named it; partitions
//! asked together go in one request per leader (an idle agent asks all of them at once, so one
//! answer wakes it per wait instead of one per partition). A connection does one request at a time
//! and runs on the blocking pool (`wire.rs` is blocking); idle ones are kept per broker for the next
//! fetch, so `kafka.fetches_in_flight` fetches hold at most that many connections to a broker. A
//! broken connection is dropped. An answer that says the leader moved is an error like a broken
//! connection: the fetcher connects again, which asks for Metadata anew.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{FetchRequest, FetchResponse, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::wire::Conn;
use super::{Ask, Fetched, Record, batches};
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

    /// Asks for the leader of every partition of `topics`: over an idle fetch connection when
    /// there is one (`run` asks again every `kafka.refresh_interval`, and a new connection would
    /// cost a TLS handshake and a login each time), else a bootstrap broker.
    pub async fn find_leaders(&self, topics: Vec<String>) -> Result<()> {
        let (cfg, idle) = (self.cfg.clone(), self.idle.clone());
        let pooled = {
            let mut idle = idle.lock().expect("not poisoned");
            idle.values_mut().find_map(Vec::pop)
        };
        let leaders = blocking::unblock(move || {
            if let Some(mut conn) = pooled {
                match metadata(&mut conn, &topics) {
                    Ok(leaders) => {
                        idle.lock().expect("not poisoned").entry(conn.addr().to_string()).or_default().push(conn);
                        return Ok(leaders);
                    }
                    Err(e) => log::debug!("{e}; asking a bootstrap broker"),
                }
            }
            leaders_of(&cfg, &topics)
        })
        .await?;
        *self.leaders.lock().expect("not poisoned") = leaders;
        Ok(())
    }

    /// Fetches each of `asks` (records at and after its offset; a batch cut short at the end of
    /// the answer is left for the next fetch), with one request per leader, all sent at once.
    /// One answer per ask, in order. A request that fails fails the asks it carried, not the
    /// others: one broker down leaves the partitions led by the rest readable.
    pub fn fetch(&self, asks: Vec<Ask>, max_wait: Duration) -> impl Future<Output = Vec<Result<Fetched>>> + 'static {
        let this = self.clone();
        async move {
            let mut answers: Vec<Option<Result<Fetched>>> = asks.iter().map(|_| None).collect();
            let mut by_leader: BTreeMap<String, Vec<usize>> = BTreeMap::new();
            {
                let leaders = this.leaders.lock().expect("not poisoned");
                for (i, ask) in asks.iter().enumerate() {
                    match leaders.get(&ask.tp) {
                        Some(addr) => by_leader.entry(addr.clone()).or_default().push(i),
                        None => {
                            answers[i] = Some(Err(Error::Source {
                                context: format!("fetch {}/{}", ask.tp.0, ask.tp.1),
                                reason: "no leader known for this partition".into(),
                            }))
                        }
                    }
                }
            }
            let requests = by_leader.into_iter().map(|(addr, which)| {
                let part = which.iter().map(|&i| asks[i].clone()).collect();
                let request = this.request(addr, part, max_wait);
                async move { (which, request.await) }
            });
            for (which, results) in futures::future::join_all(requests).await {
                for (i, result) in which.into_iter().zip(results) {
                    answers[i] = Some(result);
                }
            }
            answers.into_iter().map(|a| a.expect("every ask is answered")).collect()
        }
    }

    /// One Fetch request for `asks` to the broker at `addr`, over an idle connection to it or a
    /// new one.
    fn request(&self, addr: String, asks: Vec<Ask>, max_wait: Duration) -> impl Future<Output = Vec<Result<Fetched>>> {
        let conn = self.idle.lock().expect("not poisoned").get_mut(&addr).and_then(Vec::pop);
        let request = request(&asks, max_wait);
        let (cfg, idle) = (self.cfg.clone(), self.idle.clone());
        async move {
            let to = addr.clone();
            let called = blocking::unblock(move || -> Result<(Conn, FetchResponse)> {
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
            .await;
            match called {
                Ok((conn, answer)) => {
                    idle.lock().expect("not poisoned").entry(addr).or_default().push(conn);
                    answered(&asks, answer)
                }
                Err(e) => failed(&asks, e),
            }
        }
    }
}

/// Every ask of a request that failed: the first carries the error (a configuration error stays
/// one, so the fetcher gives up on it), the others name it.
fn failed(asks: &[Ask], e: Error) -> Vec<Result<Fetched>> {
    let reason = e.to_string();
    let mut first = Some(e);
    asks.iter()
        .map(|ask| {
            Err(first.take().unwrap_or_else(|| Error::Source {
                context: format!("fetch {}/{}", ask.tp.0, ask.tp.1),
                reason: format!("its request failed: {reason}"),
            }))
        })
        .collect()
}

/// Every partition's leader among `topics`, from one bootstrap broker that answers.
fn leaders_of(cfg: &KafkaConfig, topics: &[String]) -> Result<BTreeMap<TopicPartition, String>> {
    let mut last = None;
    for addr in &cfg.brokers {
        match Conn::open(cfg, addr).and_then(|mut conn| metadata(&mut conn, topics)) {
            Ok(leaders) => return Ok(leaders),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::Source { context: "find partition leaders".into(), reason: "no brokers".into() }))
}

/// Every partition's leader among `topics`, as the broker at the other end of `conn` knows them.
fn metadata(conn: &mut Conn, topics: &[String]) -> Result<BTreeMap<TopicPartition, String>> {
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
}

/// One Fetch request for `asks`, in their order (a broker fills its answer in the order asked,
/// up to the request's size, which is the largest ask's: the fetcher rotates which comes first).
fn request(asks: &[Ask], max_wait: Duration) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for ask in asks {
        let partition = FetchPartition::default()
            .with_partition(ask.tp.1)
            .with_fetch_offset(ask.offset)
            .with_partition_max_bytes(ask.max_bytes);
        match topics.last_mut() {
            Some(t) if t.topic.0.as_str() == ask.tp.0 => t.partitions.push(partition),
            _ => topics.push(
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(ask.tp.0.clone())))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    FetchRequest::default()
        .with_max_wait_ms(max_wait.as_millis().min(i32::MAX as u128) as i32)
        .with_min_bytes(1)
        .with_max_bytes(asks.iter().map(|a| a.max_bytes).max().unwrap_or(0))
        .with_isolation_level(READ_COMMITTED)
        .with_topics(topics)
}

/// Each ask's records in a Fetch answer, at and after its offset, with its high watermark.
fn answered(asks: &[Ask], answer: FetchResponse) -> Vec<Result<Fetched>> {
    let top = answer.error_code;
    let mut parts: HashMap<TopicPartition, PartitionData> = HashMap::new();
    for t in answer.responses {
        for p in t.partitions {
            parts.insert((t.topic.0.to_string(), p.partition_index), p);
        }
    }
    asks.iter()
        .map(|ask| {
            let what = format!("fetch {}/{} at offset {}", ask.tp.0, ask.tp.1, ask.offset);
            let refused = |code: i16| -> Error {
                if code == OFFSET_OUT_OF_RANGE {
                    return super::kafka::offset_out_of_range(&what, &ask.tp);
                }
                Error::Source { context: what.clone(), reason: format!("the broker answered with error code {code}") }
            };
            if top != 0 {
                return Err(refused(top));
            }
            let part = parts.remove(&ask.tp).ok_or_else(|| Error::Source {
                context: what.clone(),
                reason: "the answer left the partition out".into(),
            })?;
            if part.error_code != 0 {
                return Err(refused(part.error_code));
            }
            let aborted: Vec<batches::Aborted> = (part.aborted_transactions.iter().flatten())
                .map(|a| batches::Aborted { producer_id: a.producer_id.0, first_offset: a.first_offset })
                .collect();
            let raw = part.records.unwrap_or_default();
            let records = batches::read(raw, ask.offset, &aborted)?.into_iter().map(Record::from).collect();
            Ok(Fetched { records, high_watermark: part.high_watermark })
        })
        .collect()
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

#[cfg(test)]
#[path = "fetch_tests.rs"]
mod tests;
