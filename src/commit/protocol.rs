//! The pure part of the commit protocol: the deterministic commit id, the snapshot-summary keys
//! that carry offsets, and the walk over a table's snapshot history that recovery relies on.
//! See `src/commit/DESIGN.md`.

use std::collections::{BTreeMap, HashMap};

use iceberg::spec::{Snapshot, TableMetadata};

use crate::source::TopicPartition;

/// Snapshot-summary key holding the deterministic id of the commit that made the snapshot.
pub const COMMIT_ID: &str = "frazil.commit-id";
/// Snapshot-summary key naming the agent that made the snapshot (offsets are per agent).
pub const AGENT: &str = "frazil.agent";
/// Prefix of the per-topic summary keys: `frazil.offsets.<topic>` = `{"<partition>": <next offset>, ...}`.
pub const OFFSETS_PREFIX: &str = "frazil.offsets.";

/// The commit id: a UUIDv5 over the table and the sorted names of the data files the commit adds.
/// The same files always give the same id, so after a crash or an unanswered request the agent
/// can recognise its own commit in the table's history.
pub fn commit_id(table: &str, data_files: &[String]) -> String {
    let mut names: Vec<&str> = data_files.iter().map(String::as_str).collect();
    names.sort_unstable();
    let mut key = format!("frazil-commit\n{table}\n");
    for n in names {
        key.push_str(n);
        key.push('\n');
    }
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, key.as_bytes()).to_string()
}

/// The snapshot properties of a commit: its id, the agent, and the next offset of every partition
/// the agent has taken into this table (cumulative, so the newest snapshot alone suffices).
pub fn summary_properties(agent: &str, commit_id: &str, offsets: &BTreeMap<TopicPartition, i64>) -> HashMap<String, String> {
    let mut props = HashMap::new();
    props.insert(COMMIT_ID.to_string(), commit_id.to_string());
    props.insert(AGENT.to_string(), agent.to_string());
    let mut by_topic: BTreeMap<&str, BTreeMap<String, i64>> = BTreeMap::new();
    for ((topic, partition), next) in offsets {
        by_topic.entry(topic).or_default().insert(partition.to_string(), *next);
    }
    for (topic, parts) in by_topic {
        props.insert(format!("{OFFSETS_PREFIX}{topic}"), serde_json::to_string(&parts).expect("a map of numbers serializes"));
    }
    props
}

/// Reads the offsets back out of one snapshot's summary properties (ignoring keys it cannot parse).
pub fn offsets_in(props: &HashMap<String, String>) -> BTreeMap<TopicPartition, i64> {
    let mut out = BTreeMap::new();
    for (k, v) in props {
        let Some(topic) = k.strip_prefix(OFFSETS_PREFIX) else { continue };
        let Ok(parts) = serde_json::from_str::<BTreeMap<String, i64>>(v) else { continue };
        for (p, next) in parts {
            if let Ok(p) = p.parse::<i32>() {
                out.insert((topic.to_string(), p), next);
            }
        }
    }
    out
}

/// The current snapshot of the main branch and its ancestors, newest first.
pub fn ancestors(metadata: &TableMetadata) -> impl Iterator<Item = &Snapshot> {
    let mut next = metadata.current_snapshot().map(|s| s.as_ref());
    std::iter::from_fn(move || {
        let s = next?;
        next = s.parent_snapshot_id().and_then(|id| metadata.snapshot_by_id(id)).map(|s| s.as_ref());
        Some(s)
    })
}

/// True when a snapshot made by commit `id` is in the table's history.
pub fn commit_landed(metadata: &TableMetadata, id: &str) -> bool {
    ancestors(metadata).any(|s| s.summary().additional_properties.get(COMMIT_ID).is_some_and(|c| c == id))
}

/// The next offset per partition that `agent` has committed to the table: the highest found in the
/// summaries of its snapshots in the history.
pub fn committed_offsets(metadata: &TableMetadata, agent: &str) -> BTreeMap<TopicPartition, i64> {
    let mut out: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    for s in ancestors(metadata) {
        let props = &s.summary().additional_properties;
        if props.get(AGENT).map(String::as_str) != Some(agent) {
            continue;
        }
        for (tp, next) in offsets_in(props) {
            let e = out.entry(tp).or_insert(next);
            *e = (*e).max(next);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_id_is_deterministic_and_order_free() {
        let a = commit_id("ns.t", &["x".into(), "y".into()]);
        assert_eq!(a, commit_id("ns.t", &["y".into(), "x".into()]));
        assert_ne!(a, commit_id("ns.t", &["x".into()]));
        assert_ne!(a, commit_id("ns.u", &["x".into(), "y".into()]));
    }

    #[test]
    fn offsets_round_trip_through_summary() {
        let mut offsets = BTreeMap::new();
        offsets.insert(("events".to_string(), 0), 100);
        offsets.insert(("events".to_string(), 3), 7);
        offsets.insert(("other.topic".to_string(), 1), 5);
        let props = summary_properties("gw-1", "abc", &offsets);
        assert_eq!(props[COMMIT_ID], "abc");
        assert_eq!(props[AGENT], "gw-1");
        assert_eq!(props["frazil.offsets.events"], r#"{"0":100,"3":7}"#);
        assert_eq!(offsets_in(&props), offsets);
    }
}
