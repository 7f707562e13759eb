//! The Kafka source. Offsets are ours (no consumer group): the fetcher says where each partition
//! starts and this fetches from there. rskafka lists the topics, their partitions and their
//! offsets; fetches go over connections of our own (`fetch.rs`), so records are read in place
//! from the answer instead of one allocation per key and value.
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

use super::fetch::Brokers;
use super::security;
use crate::config::KafkaConfig;
use crate::topic::TopicPartition;
use crate::{Error, Result};

/// Brokers reached through rskafka, with a client per partition read.
pub struct KafkaSource {
    cfg: KafkaConfig,
    client: Client,
    partitions: BTreeMap<TopicPartition, Arc<PartitionClient>>,
    /// Fetches go over connections of our own (`fetch.rs`); rskafka lists topics and offsets.
    pub(super) brokers: Brokers,
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
        Ok(KafkaSource { cfg: cfg.clone(), client, partitions: BTreeMap::new(), brokers: Brokers::new(cfg) })
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
        let read: Vec<String> = topics.iter().filter(|t| self.cfg.reads(&t.name)).map(|t| t.name.clone()).collect();
        self.brokers.find_leaders(read).await?;
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
}

/// The error a fetch at an offset no longer (or not yet) in the log fails with, as rskafka
/// reports it, so that [`is_offset_out_of_range`] holds whichever client fetched.
pub(super) fn offset_out_of_range(what: &str, tp: &TopicPartition) -> Error {
    use rskafka::client::error::{Error as KErr, ProtocolError, RequestContext};
    let error = KErr::ServerError {
        protocol_error: ProtocolError::OffsetOutOfRange,
        error_message: None,
        request: RequestContext::Partition(tp.0.clone(), tp.1),
        response: None,
        is_virtual: false,
    };
    Error::kafka(what, error)
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
