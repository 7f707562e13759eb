//! Topics held in memory: a [`Source`] with no broker, for in-process tests of the agent's loops.
//! A test produces into [`Topics`] (also while the agent runs), can make the next calls fail as a
//! dead broker would, and can drop old records as retention does.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::LocalBoxFuture;

use super::{Ask, Connect, Fetched, Record, Source};
use crate::topic::TopicPartition;
use crate::{Error, Result};

/// The partitions' logs, shared by the test and every source made from them.
#[derive(Clone, Default)]
pub struct Topics {
    inner: Rc<RefCell<Inner>>,
}

#[derive(Default)]
struct Inner {
    logs: BTreeMap<TopicPartition, Log>,
    /// This many calls from now fail as an unreachable broker does.
    failures: u32,
    fetches: u64,
    /// The latest fetch requests (the last 64), oldest first: the wait each asked for and how
    /// many partitions it asked.
    requests: std::collections::VecDeque<(Duration, usize)>,
}

#[derive(Default)]
struct Log {
    /// The offset of `records[0]`: older records were removed by retention.
    low: i64,
    records: Vec<Record>,
}

impl Log {
    fn high(&self) -> i64 {
        self.low + self.records.len() as i64
    }
}

impl Topics {
    /// Adds a topic with `partitions` empty partitions.
    pub fn create(&self, topic: &str, partitions: i32) {
        let mut inner = self.inner.borrow_mut();
        for p in 0..partitions {
            inner.logs.entry((topic.to_string(), p)).or_default();
        }
    }

    /// Appends a record with this value and returns its offset.
    pub fn produce(&self, topic: &str, partition: i32, value: &[u8]) -> i64 {
        let mut inner = self.inner.borrow_mut();
        let log = inner.logs.entry((topic.to_string(), partition)).or_default();
        let offset = log.high();
        log.records.push(Record {
            offset,
            timestamp_ms: 1_700_000_000_000 + offset,
            key: None,
            value: Some(Bytes::copy_from_slice(value)),
            headers: BTreeMap::new(),
        });
        offset
    }

    /// Removes records below `low`, as retention does.
    pub fn truncate(&self, tp: &TopicPartition, low: i64) {
        let mut inner = self.inner.borrow_mut();
        let log = inner.logs.get_mut(tp).expect("a partition that exists");
        let drop = (low - log.low).clamp(0, log.records.len() as i64);
        log.records.drain(..drop as usize);
        log.low += drop;
    }

    /// The next `n` calls (connect, discover, watermarks or fetch) fail.
    pub fn fail_next(&self, n: u32) {
        self.inner.borrow_mut().failures = n;
    }

    /// Partitions fetched so far (a request for several counts each).
    pub fn fetches(&self) -> u64 {
        self.inner.borrow().fetches
    }

    /// The latest fetch requests (up to 64), oldest first: the wait each asked the broker for,
    /// and how many partitions it asked.
    pub fn requests(&self) -> Vec<(Duration, usize)> {
        self.inner.borrow().requests.iter().copied().collect()
    }

    /// The waits the latest fetch requests (up to 64) asked the broker for, oldest first.
    pub fn waits(&self) -> Vec<Duration> {
        self.requests().into_iter().map(|(wait, _)| wait).collect()
    }

    /// Connects to these topics, as [`super::kafka`] connects to brokers.
    pub fn connect(&self) -> Connect {
        let topics = self.clone();
        Box::new(move || {
            let topics = topics.clone();
            Box::pin(async move {
                topics.failure("connect")?;
                Ok(Box::new(MemorySource { topics }) as Box<dyn Source>)
            })
        })
    }

    /// Fails the call when failures were asked for.
    fn failure(&self, what: &str) -> Result<()> {
        let mut inner = self.inner.borrow_mut();
        if inner.failures == 0 {
            return Ok(());
        }
        inner.failures -= 1;
        Err(Topics::down(what))
    }

    /// The error of a call to a broker that is down.
    fn down(what: &str) -> Error {
        Error::kafka(what, rskafka::client::error::Error::InvalidResponse("the in-memory broker is down".into()))
    }

    fn fetch(&self, tp: &TopicPartition, offset: i64, max_bytes: i32) -> Result<Fetched> {
        let mut inner = self.inner.borrow_mut();
        inner.fetches += 1;
        let log = inner.logs.get(tp).ok_or_else(|| Error::Source {
            context: format!("partition {}/{}", tp.0, tp.1),
            reason: "not discovered".into(),
        })?;
        if offset < log.low || offset > log.high() {
            return Err(super::kafka::offset_out_of_range(&format!("fetch {}/{} at offset {offset}", tp.0, tp.1), tp));
        }
        // At least one record, as Kafka hands out an oversized first batch.
        let (mut bytes, mut records) = (0usize, Vec::new());
        for record in log.records.iter().skip((offset - log.low) as usize) {
            bytes += record.approximate_size();
            if !records.is_empty() && bytes > max_bytes as usize {
                break;
            }
            records.push(record.clone());
        }
        Ok(Fetched { records, high_watermark: log.high() })
    }
}

/// One connection to [`Topics`].
pub struct MemorySource {
    topics: Topics,
}

impl Source for MemorySource {
    fn discover(&mut self) -> LocalBoxFuture<'_, Result<Vec<TopicPartition>>> {
        Box::pin(async move {
            self.topics.failure("list topics")?;
            Ok(self.topics.inner.borrow().logs.keys().cloned().collect())
        })
    }

    fn watermarks<'a>(&'a self, tp: &'a TopicPartition) -> LocalBoxFuture<'a, Result<(i64, i64)>> {
        Box::pin(async move {
            self.topics.failure("list offsets")?;
            let inner = self.topics.inner.borrow();
            let log = inner.logs.get(tp).map_or((0, 0), |l| (l.low, l.high()));
            Ok(log)
        })
    }

    fn fetch(&self, asks: Vec<Ask>, max_wait: Duration) -> LocalBoxFuture<'static, Vec<Result<Fetched>>> {
        let topics = self.topics.clone();
        Box::pin(async move {
            {
                let requests = &mut topics.inner.borrow_mut().requests;
                if requests.len() == 64 {
                    requests.pop_front();
                }
                requests.push_back((max_wait, asks.len()));
            }
            // A failure is of the whole request, as a broken connection fails every partition
            // it asked.
            let down = topics.failure("fetch").is_err();
            let answers: Vec<Result<Fetched>> = asks
                .iter()
                .map(|a| match down {
                    true => Err(Topics::down("fetch")),
                    false => topics.fetch(&a.tp, a.offset, a.max_bytes),
                })
                .collect();
            if answers.iter().all(|a| a.as_ref().is_ok_and(|f| f.records.is_empty())) {
                // A broker holds an empty fetch for its wait; so does this, briefly.
                smol::Timer::after(max_wait.min(Duration::from_millis(20))).await;
            }
            answers
        })
    }
}
