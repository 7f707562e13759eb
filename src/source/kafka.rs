//! The Kafka source, through rskafka. Offsets are ours (no consumer group): the fetcher says
//! where each partition starts and this fetches from there.
//!
//! rskafka needs a tokio reactor, so each call is polled inside `async_compat::Compat`; rskafka
//! has no per-request timeout (a silent broker hangs a call), so each call also gets ours.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_compat::Compat;
use rskafka::BackoffConfig;
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};

use bytes::Bytes;
use rskafka::record::RecordAndOffset;

use super::{Fetched, Record, security};
use crate::config::KafkaConfig;
use crate::topic::TopicPartition;
use crate::{Error, Result};

/// Brokers reached through rskafka, with a client per partition read.
pub struct KafkaSource {
    cfg: KafkaConfig,
    client: Client,
    partitions: BTreeMap<TopicPartition, Arc<PartitionClient>>,
}

impl KafkaSource {
    /// Connects to the bootstrap brokers. Fails (for the caller to retry with backoff) when none answers.
    pub async fn connect(cfg: &KafkaConfig) -> Result<KafkaSource> {
        // rskafka would retry a dead broker for ever; give it a deadline so the failure reaches
        // our own retry loop, which logs it.
        let backoff = BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
            deadline: Some(cfg.request_timeout),
        };
        let mut builder =
            ClientBuilder::new(cfg.brokers.clone()).client_id(cfg.client_id.clone()).backoff_config(backoff);
        if let Some(tls) = &cfg.tls {
            builder = builder.tls_config(security::tls_config(tls)?);
        }
        if let Some(sasl) = &cfg.sasl {
            builder = builder.sasl_config(security::sasl_config(sasl));
        }
        let client = timed(cfg.request_timeout, "connect to the brokers", builder.build())
            .await
            .map_err(|e| security::refused(&e).unwrap_or(e))?;
        Ok(KafkaSource { cfg: cfg.clone(), client, partitions: BTreeMap::new() })
    }

    /// Looks up the partitions of the topics read (by name or pattern) and opens a client for
    /// each new one. Returns every known topic-partition, sorted. A topic listed by name that
    /// the broker lacks is an error; a pattern that matches nothing yet is not.
    pub async fn discover(&mut self) -> Result<Vec<TopicPartition>> {
        let topics = timed(self.cfg.request_timeout, "list topics", self.client.list_topics()).await?;
        if let Some(name) = self.cfg.topics.iter().find(|n| !topics.iter().any(|t| &t.name == *n)) {
            return Err(Error::Source {
                context: format!("topic {name}"),
                reason: "the broker does not have this topic (create it, or fix kafka.topics)".into(),
            });
        }
        for topic in topics.iter().filter(|t| self.cfg.reads(&t.name)) {
            let name = &topic.name;
            for &p in &topic.partitions {
                let tp = (name.clone(), p);
                if self.partitions.contains_key(&tp) {
                    continue;
                }
                let what = format!("open partition {name}/{p}");
                let pc = timed(
                    self.cfg.request_timeout,
                    &what,
                    self.client.partition_client(name.clone(), p, UnknownTopicHandling::Retry),
                )
                .await?;
                self.partitions.insert(tp, Arc::new(pc));
            }
        }
        Ok(self.partitions.keys().cloned().collect())
    }

    fn partition(&self, tp: &TopicPartition) -> Result<Arc<PartitionClient>> {
        self.partitions.get(tp).cloned().ok_or_else(|| Error::Source {
            context: format!("partition {}/{}", tp.0, tp.1),
            reason: "not discovered".into(),
        })
    }

    /// The earliest offset still kept and the high watermark (the offset the next record will get).
    pub async fn watermarks(&self, tp: &TopicPartition) -> Result<(i64, i64)> {
        let pc = self.partition(tp)?;
        let what = format!("list offsets of {}/{}", tp.0, tp.1);
        let low = timed(self.cfg.request_timeout, &what, pc.get_offset(OffsetAt::Earliest)).await?;
        let high = timed(self.cfg.request_timeout, &what, pc.get_offset(OffsetAt::Latest)).await?;
        Ok((low, high))
    }

    /// Fetches records at and after `offset`. Records before `offset` (a fetch may start
    /// mid-batch) are dropped here so the caller sees each offset once. The future owns what it
    /// needs, so several fetches can be in flight while the caller goes on with `self`.
    pub fn fetch(
        &self,
        tp: &TopicPartition,
        offset: i64,
        max_bytes: i32,
        max_wait: Duration,
    ) -> impl Future<Output = Result<Fetched>> + 'static {
        let pc = self.partition(tp);
        let what = format!("fetch {}/{} at offset {offset}", tp.0, tp.1);
        let wait_ms = max_wait.as_millis().min(i32::MAX as u128) as i32;
        let limit = self.cfg.request_timeout + max_wait;
        async move {
            let pc = pc?;
            let (records, high_watermark) =
                timed(limit, &what, pc.fetch_records(offset, 1..max_bytes, wait_ms)).await?;
            let records = records.into_iter().filter(|r| r.offset >= offset).map(from_rskafka).collect();
            Ok(Fetched { records, high_watermark })
        }
    }
}

/// rskafka's record as ours: its key and value vectors become `Bytes` without a copy.
fn from_rskafka(r: RecordAndOffset) -> Record {
    Record {
        offset: r.offset,
        timestamp_ms: r.record.timestamp.timestamp_millis(),
        key: r.record.key.map(Bytes::from),
        value: r.record.value.map(Bytes::from),
        headers: r.record.headers,
    }
}

/// True when Kafka says the offset is no longer (or not yet) in the log.
pub fn is_offset_out_of_range(e: &Error) -> bool {
    use rskafka::client::error::{Error as KErr, ProtocolError};
    matches!(e, Error::Kafka { source: KErr::ServerError { protocol_error: ProtocolError::OffsetOutOfRange, .. }, .. })
}

/// Polls an rskafka future inside the tokio compatibility layer, bounded by `limit`.
async fn timed<T, F>(limit: Duration, what: &str, fut: F) -> Result<T>
where
    F: Future<Output = std::result::Result<T, rskafka::client::error::Error>>,
{
    let call = async { Some(Compat::new(fut).await) };
    let timer = async {
        smol::Timer::after(limit).await;
        None
    };
    match smol::future::or(call, timer).await {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(Error::kafka(what, e)),
        None => Err(Error::Kafka {
            context: what.to_string(),
            source: rskafka::client::error::Error::InvalidResponse(format!("no answer within {limit:?}")),
        }),
    }
}
