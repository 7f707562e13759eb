//! `kafka.group`, `kafka.session_timeout` and `kafka.partitions`: how an agent shares a topic's
//! partitions with others.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{GroupConfig, duration};
use crate::{Error, Result};

/// The group named by `kafka.group`, if any. The name becomes part of a table tag
/// (`frazil-group-<name>`), so it keeps to the characters a tag and a Kafka group id share.
pub(super) fn group(name: Option<String>, session_timeout: Option<String>) -> Result<Option<GroupConfig>> {
    let Some(name) = name else {
        if session_timeout.is_some() {
            return Err(Error::config(
                "kafka.session_timeout",
                "is set without kafka.group",
                "set kafka.group too, or remove it",
            ));
        }
        return Ok(None);
    };
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 200 || !name.chars().all(fine) {
        return Err(Error::config(
            "kafka.group",
            format!("`{name}` is not a group name frazil accepts"),
            "use 1 to 200 letters, digits, `.`, `_` or `-`, e.g. group = \"plant-7\"",
        ));
    }
    let session_timeout = duration("kafka.session_timeout", session_timeout, "30s")?;
    if !(Duration::from_secs(6)..=Duration::from_secs(300)).contains(&session_timeout) {
        return Err(Error::config(
            "kafka.session_timeout",
            format!("{session_timeout:?} is out of range"),
            "use between 6s and 5min (brokers refuse others by default), e.g. \"30s\"",
        ));
    }
    // As Kafka's own clients: a heartbeat every 3 s (a third of a shorter session), so the
    // members hear of a rebalance soon whatever the session timeout.
    let heartbeat_interval = (session_timeout / 3).min(Duration::from_secs(3));
    Ok(Some(GroupConfig { name, session_timeout, heartbeat_interval }))
}

/// `kafka.partitions`: each topic must be one of `kafka.topics`, with partition numbers listed once.
pub(super) fn partitions(raw: BTreeMap<String, Vec<i32>>, topics: &[String]) -> Result<BTreeMap<String, Vec<i32>>> {
    let mut out = BTreeMap::new();
    for (topic, mut list) in raw {
        let key = format!("kafka.partitions.\"{topic}\"");
        if !topics.contains(&topic) {
            return Err(Error::config(key, "names a topic not in kafka.topics", "add the topic to kafka.topics"));
        }
        list.sort_unstable();
        list.dedup();
        if list.is_empty() || list[0] < 0 {
            return Err(Error::config(key, "must list partition numbers from 0 up", "write e.g. [0, 1]"));
        }
        out.insert(topic, list);
    }
    Ok(out)
}
