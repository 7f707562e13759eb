//! The source stage: where records come from. The fetcher sees a [`Source`]: the partitions to
//! read, their watermarks, and fetches at offsets it chooses (offsets are ours: no consumer
//! group). [`KafkaSource`] is the real one: rskafka lists topics and offsets, and fetches go over
//! connections of our own (`fetch.rs`, `wire.rs`) whose answers are read in place
//! ([`batches`]); [`memory`] holds topics in memory, so the agent's loops can be tested
//! in-process with no broker.

pub mod batches;
mod fetch;
pub mod group;
mod kafka;
pub mod memory;
pub mod registry;
mod security;
mod wire;

use std::time::Duration;

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::future::LocalBoxFuture;

use crate::Result;
use crate::config::KafkaConfig;
use crate::topic::TopicPartition;
pub use kafka::{KafkaSource, is_offset_out_of_range};

/// One record as the source hands it to the decode stage. Key and value are shared bytes: a
/// source that reads them out of a larger buffer (a fetch answer) hands out slices of it, with no
/// copy per record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    /// Milliseconds since the Unix epoch, as the producer or the broker stamped it.
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// One value per header name (a repeated name keeps its last value).
    pub headers: BTreeMap<String, Vec<u8>>,
}

impl Record {
    /// The bytes of its key, value and headers (as rskafka counts a record), for fetch size limits.
    pub fn approximate_size(&self) -> usize {
        let len = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
        let headers: usize = self.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        len(&self.key) + len(&self.value) + headers
    }
}

/// What one fetch returned.
pub struct Fetched {
    /// Records at and after the offset asked for, in offset order.
    pub records: Vec<Record>,
    /// The offset the next record produced will get.
    pub high_watermark: i64,
}

/// One partition to fetch: records at and after `offset`, up to about `max_bytes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ask {
    pub tp: TopicPartition,
    pub offset: i64,
    pub max_bytes: i32,
}

/// A source of records, read by one fetch loop.
pub trait Source {
    /// Every topic-partition to read, sorted, new ones included. A topic named in the
    /// configuration that does not exist is an error; a pattern that matches nothing is not.
    fn discover(&mut self) -> LocalBoxFuture<'_, Result<Vec<TopicPartition>>>;

    /// The earliest offset still kept and the high watermark.
    fn watermarks<'a>(&'a self, tp: &'a TopicPartition) -> LocalBoxFuture<'a, Result<(i64, i64)>>;

    /// Each of `asks`, in as few requests as the source can send (one per broker), waiting up to
    /// `max_wait` for records to arrive; one answer per ask, in order. The future owns what it
    /// needs, so several can be in flight at once. An offset no longer in the log fails so that
    /// [`is_offset_out_of_range`] is true.
    fn fetch(&self, asks: Vec<Ask>, max_wait: Duration) -> LocalBoxFuture<'static, Vec<Result<Fetched>>>;
}

/// Makes a connected source; called again after the source failed.
pub type Connect = Box<dyn Fn() -> LocalBoxFuture<'static, Result<Box<dyn Source>>>>;

/// Connects to the configured Kafka brokers.
pub fn kafka(cfg: &KafkaConfig) -> Connect {
    let cfg = cfg.clone();
    Box::new(move || {
        let cfg = cfg.clone();
        Box::pin(async move { Ok(Box::new(KafkaSource::connect(&cfg).await?) as Box<dyn Source>) })
    })
}

impl Source for KafkaSource {
    fn discover(&mut self) -> LocalBoxFuture<'_, Result<Vec<TopicPartition>>> {
        Box::pin(KafkaSource::discover(self))
    }

    fn watermarks<'a>(&'a self, tp: &'a TopicPartition) -> LocalBoxFuture<'a, Result<(i64, i64)>> {
        Box::pin(KafkaSource::watermarks(self, tp))
    }

    fn fetch(&self, asks: Vec<Ask>, max_wait: Duration) -> LocalBoxFuture<'static, Vec<Result<Fetched>>> {
        // Records at and after each offset (a fetch may start mid-batch: the records before it
        // are dropped, so the caller sees each offset once).
        Box::pin(self.brokers.fetch(asks, max_wait))
    }
}
