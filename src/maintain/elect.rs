//! Which agent maintains a table, without a coordinator: each agent's tag (`frazil-<agent>`) moves
//! with its every commit, so the tags show who feeds the table now. Of the agents whose tag moved
//! within the window, the one with the smallest id maintains; when none did, whoever asks does.
//! Two agents that disagree for a moment (clocks, a tag that just aged out) only both try: every
//! maintenance commit asserts the snapshot it was planned on, so one of them plans again.

use std::time::Duration;

use iceberg::spec::TableMetadata;

use crate::commit::fence::GROUP_TAG_PREFIX;
use crate::commit::protocol::TAG_PREFIX;

/// Whether `agent` maintains the table described by `md` at `now_ms`.
pub fn is_maintainer(md: &TableMetadata, agent: &str, now_ms: i64, window: Duration) -> bool {
    let since = now_ms.saturating_sub(window.as_millis() as i64);
    let active = super::refs(md)
        .into_iter()
        .filter(|(name, r)| name.starts_with(TAG_PREFIX) && !r.is_branch())
        // A group's tag moves with its members' commits, whose own tags take part.
        .filter(|(name, _)| !name.starts_with(GROUP_TAG_PREFIX))
        // A re-anchored tag sits on a new snapshot, but its agent has stopped committing.
        .filter(|(_, r)| {
            md.snapshot_by_id(r.snapshot_id).is_some_and(|s| {
                s.timestamp_ms() >= since && !s.summary().additional_properties.contains_key(super::REANCHORED_FROM)
            })
        })
        .map(|(name, _)| name[TAG_PREFIX.len()..].to_string())
        .min();
    active.is_none_or(|first| first == agent)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Metadata whose tags `frazil-<agent>` sit on snapshots taken at the given times (ms).
    fn tagged(agents: &[(&str, i64)]) -> TableMetadata {
        let snapshots: Vec<serde_json::Value> = agents
            .iter()
            .enumerate()
            .map(|(i, (_, at))| {
                serde_json::json!({"snapshot-id": i + 1, "sequence-number": i + 1, "timestamp-ms": at,
                    "manifest-list": "s3://b/t/metadata/snap.avro", "summary": {"operation": "append"}})
            })
            .collect();
        let mut refs = serde_json::json!({});
        for (i, (agent, _)) in agents.iter().enumerate() {
            refs[format!("frazil-{agent}")] = serde_json::json!({"snapshot-id": i + 1, "type": "tag"});
        }
        serde_json::from_value(serde_json::json!({
            "format-version": 2, "table-uuid": "9c12d441-03fe-4693-9a96-a0705ddf69c1", "location": "s3://b/t",
            "last-sequence-number": agents.len(), "last-updated-ms": 0, "last-column-id": 1,
            "current-schema-id": 0, "schemas": [{"type": "struct", "schema-id": 0, "fields": [
                {"id": 1, "name": "x", "required": false, "type": "long"}]}],
            "default-spec-id": 0, "partition-specs": [{"spec-id": 0, "fields": []}], "last-partition-id": 999,
            "default-sort-order-id": 0, "sort-orders": [{"order-id": 0, "fields": []}],
            "snapshots": snapshots, "refs": refs,
        }))
        .unwrap()
    }

    #[test]
    fn the_smallest_active_agent_maintains() {
        let md = tagged(&[("gw-b", 9_000), ("gw-a", 8_000), ("gw-c", 9_500)]);
        let window = Duration::from_secs(5);
        assert!(is_maintainer(&md, "gw-a", 10_000, window));
        assert!(!is_maintainer(&md, "gw-b", 10_000, window));
        // gw-a stopped committing: its old tag no longer makes it the maintainer.
        assert!(!is_maintainer(&md, "gw-a", 13_500, window));
        assert!(is_maintainer(&md, "gw-b", 13_500, window));
    }

    #[test]
    fn a_groups_tag_is_no_agent() {
        // `frazil-group-line` moves with every commit of the group, and sorts before `member-1`.
        let md = tagged(&[("group-line", 9_000), ("member-1", 9_000), ("member-2", 9_000)]);
        assert!(is_maintainer(&md, "member-1", 10_000, Duration::from_secs(5)));
    }

    #[test]
    fn anyone_maintains_a_table_nobody_feeds() {
        let md = tagged(&[("gw-a", 1_000)]);
        assert!(is_maintainer(&md, "gw-z", 100_000, Duration::from_secs(5)));
        assert!(is_maintainer(&tagged(&[]), "gw-z", 0, Duration::from_secs(5)));
    }

    #[test]
    fn a_re_anchored_tag_is_not_an_active_agent() {
        let md = tagged(&[("gw-a", 9_000), ("gw-b", 9_500)]);
        let mut v = serde_json::to_value(&md).unwrap();
        let a = v["refs"]["frazil-gw-a"]["snapshot-id"].clone();
        let snapshots = v["snapshots"].as_array_mut().unwrap();
        let s = snapshots.iter_mut().find(|s| s["snapshot-id"] == a).unwrap();
        s["summary"][super::super::REANCHORED_FROM] = serde_json::json!("1234");
        let md: TableMetadata = serde_json::from_value(v).unwrap();
        // gw-a's tag sits on a fresh snapshot, but only because maintenance moved it there.
        assert!(!is_maintainer(&md, "gw-a", 10_000, Duration::from_secs(5)));
        assert!(is_maintainer(&md, "gw-b", 10_000, Duration::from_secs(5)));
    }
}
