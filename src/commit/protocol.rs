//! The pure part of the commit protocol: the deterministic commit id, the snapshot-summary keys
//! that carry offsets, and the walk over a table's snapshot history that recovery relies on.
//! See `src/commit/DESIGN.md`.

use std::collections::{BTreeMap, HashMap};

use iceberg::TableUpdate;
use iceberg::spec::{Snapshot, SnapshotReference, SnapshotRetention, TableMetadata};

use crate::topic::TopicPartition;

/// Snapshot-summary key holding the deterministic id of the commit that made the snapshot.
pub const COMMIT_ID: &str = "frazil.commit-id";
/// Snapshot-summary key naming the agent that made the snapshot (offsets are per agent).
pub const AGENT: &str = "frazil.agent";
/// Prefix of the per-topic summary keys: `frazil.offsets.<topic>` = `{"<partition>": <next offset>, ...}`.
pub const OFFSETS_PREFIX: &str = "frazil.offsets.";

/// Prefix of the tag each agent keeps on its newest snapshot (`frazil-<agent>`). Snapshot expiry
/// never removes a tagged snapshot, so the agent's last commit id and offsets outlive any cleanup
/// of the table's history.
pub const TAG_PREFIX: &str = "frazil-";

/// The name of `agent`'s tag.
pub fn agent_tag(agent: &str) -> String {
    format!("{TAG_PREFIX}{agent}")
}

/// Adds to a commit's updates one that moves `agent`'s tag to the snapshot the commit adds, so
/// the tag moves in the same atomic commit as the data. Updates that add no snapshot are left as they are.
pub fn tag_new_snapshot(updates: &mut Vec<TableUpdate>, agent: &str) {
    move_tag_to_new_snapshot(updates, &agent_tag(agent));
}

/// Adds to `updates` one that points the tag `tag` at the snapshot they add, and returns that
/// snapshot's id; `None` (nothing added) when they add no snapshot.
pub(crate) fn move_tag_to_new_snapshot(updates: &mut Vec<TableUpdate>, tag: &str) -> Option<i64> {
    let snapshot_id = updates.iter().find_map(|u| match u {
        TableUpdate::AddSnapshot { snapshot } => Some(snapshot.snapshot_id()),
        _ => None,
    })?;
    let reference = SnapshotReference { snapshot_id, retention: SnapshotRetention::Tag { max_ref_age_ms: None } };
    updates.push(TableUpdate::SetSnapshotRef { ref_name: tag.to_string(), reference });
    Some(snapshot_id)
}

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
pub fn summary_properties(
    agent: &str,
    commit_id: &str,
    offsets: &BTreeMap<TopicPartition, i64>,
) -> HashMap<String, String> {
    let mut props = offset_properties(OFFSETS_PREFIX, offsets);
    props.insert(COMMIT_ID.to_string(), commit_id.to_string());
    props.insert(AGENT.to_string(), agent.to_string());
    props
}

/// Per-topic summary keys `<prefix><topic>` = `{"<partition>": <next offset>, ...}`.
pub(crate) fn offset_properties(prefix: &str, offsets: &BTreeMap<TopicPartition, i64>) -> HashMap<String, String> {
    let mut by_topic: BTreeMap<&str, BTreeMap<String, i64>> = BTreeMap::new();
    for ((topic, partition), next) in offsets {
        by_topic.entry(topic).or_default().insert(partition.to_string(), *next);
    }
    by_topic
        .into_iter()
        .map(|(topic, parts)| {
            (format!("{prefix}{topic}"), serde_json::to_string(&parts).expect("a map of numbers serializes"))
        })
        .collect()
}

/// Reads the offsets back out of one snapshot's summary properties (ignoring keys it cannot parse).
pub fn offsets_in(props: &HashMap<String, String>) -> BTreeMap<TopicPartition, i64> {
    offsets_under(OFFSETS_PREFIX, props)
}

/// The offsets of the summary keys that start with `prefix` (ignoring those it cannot parse).
pub(crate) fn offsets_under(prefix: &str, props: &HashMap<String, String>) -> BTreeMap<TopicPartition, i64> {
    let mut out = BTreeMap::new();
    for (k, v) in props {
        let Some(topic) = k.strip_prefix(prefix) else { continue };
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

/// The snapshots that can tell what `agent` committed: the one under the agent's tag (which may lie
/// beyond a gap that snapshot expiry cut into the history), then the main branch's history.
fn agent_snapshots<'a>(metadata: &'a TableMetadata, agent: &str) -> impl Iterator<Item = &'a Snapshot> {
    let tagged = metadata.snapshot_for_ref(&agent_tag(agent)).map(|s| s.as_ref());
    tagged.into_iter().chain(ancestors(metadata))
}

/// True when a snapshot made by commit `id` of `agent` is in the table's history or under the agent's tag.
pub fn commit_landed(metadata: &TableMetadata, agent: &str, id: &str) -> bool {
    agent_snapshots(metadata, agent).any(|s| s.summary().additional_properties.get(COMMIT_ID).is_some_and(|c| c == id))
}

/// The last snapshot `agent` committed, if the table still knows it.
pub fn last_commit<'a>(metadata: &'a TableMetadata, agent: &str) -> Option<&'a Snapshot> {
    agent_snapshots(metadata, agent)
        .find(|s| s.summary().additional_properties.get(AGENT).map(String::as_str) == Some(agent))
}

/// The next offset per partition that `agent` has committed to the table: the highest found in the
/// summaries of its snapshots in the history and under its tag.
pub fn committed_offsets(metadata: &TableMetadata, agent: &str) -> BTreeMap<TopicPartition, i64> {
    let mut out: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    for s in agent_snapshots(metadata, agent) {
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

/// The next offset per partition that `agent` had committed as of the table's current snapshot:
/// what a query that scans that snapshot may take from the table alone. Main's history is walked
/// back to the agent's newest snapshot on it. The agent's tag answers when that walk ends at a gap
/// (expired snapshots) first: the tag moves only with the agent's appends to main, so main's data
/// holds the tagged snapshot's. A tag on a snapshot main does not reach (main rolled back past
/// it) is not trusted: rows of it may be missing from the scan.
pub fn offsets_as_of_current(metadata: &TableMetadata, agent: &str) -> BTreeMap<TopicPartition, i64> {
    let ours = |props: &Props| props.get(AGENT).map(String::as_str) == Some(agent);
    newest_offsets(metadata, &agent_tag(agent), ours, offsets_in)
}

type Props = HashMap<String, String>;

/// The offsets `read` finds in the newest snapshot on main's history that is `ours`, or under
/// `tag` when the walk ends at a gap first (see [`offsets_as_of_current`]).
pub(crate) fn newest_offsets(
    metadata: &TableMetadata,
    tag: &str,
    ours: impl Fn(&Props) -> bool,
    read: impl Fn(&Props) -> BTreeMap<TopicPartition, i64>,
) -> BTreeMap<TopicPartition, i64> {
    let walk: Vec<&Snapshot> = ancestors(metadata).collect();
    let gap = walk.last().and_then(|s| s.parent_snapshot_id()).is_some();
    let tagged = metadata.snapshot_for_ref(tag).map(|s| &s.summary().additional_properties);
    offsets_of_newest(walk.iter().map(|s| &s.summary().additional_properties), gap, tagged, ours, read)
}

/// [`newest_offsets`] over main's history (newest first) as summary properties.
fn offsets_of_newest<'a>(
    mut walk: impl Iterator<Item = &'a Props>,
    gap: bool,
    tagged: Option<&'a Props>,
    ours: impl Fn(&Props) -> bool,
    read: impl Fn(&Props) -> BTreeMap<TopicPartition, i64>,
) -> BTreeMap<TopicPartition, i64> {
    match (walk.find(|props| ours(props)), gap) {
        (Some(props), _) => read(props),
        (None, true) => tagged.map(read).unwrap_or_default(),
        (None, false) => BTreeMap::new(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
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

    #[test]
    fn a_query_takes_the_offsets_of_the_agents_newest_snapshot_on_main() {
        let tp = |p| ("events".to_string(), p);
        let ours = |n| summary_properties("gw-1", "c", &BTreeMap::from([(tp(0), n)]));
        let theirs = summary_properties("gw-2", "d", &BTreeMap::from([(tp(0), 999)]));
        let tag = ours(50);
        // Newest first: another agent's commit, then ours at 40, then ours at 30.
        let main = [theirs.clone(), ours(40), ours(30)];
        let newest = |walk: &[HashMap<String, String>], gap, tagged| {
            let ours = |p: &Props| p.get(AGENT).map(String::as_str) == Some("gw-1");
            offsets_of_newest(walk.iter(), gap, tagged, ours, offsets_in)
        };
        assert_eq!(newest(&main, false, Some(&tag)), BTreeMap::from([(tp(0), 40)]));
        // Our snapshots expired from main's history: the tag answers only when the walk hit a gap.
        let cut = [theirs];
        assert_eq!(newest(&cut, true, Some(&tag)), BTreeMap::from([(tp(0), 50)]));
        assert_eq!(newest(&cut, false, Some(&tag)), BTreeMap::new());
        assert_eq!(newest(&cut, true, None), BTreeMap::new());
    }

    /// An append snapshot with this id and nothing in its summary.
    pub(crate) fn snapshot(id: i64) -> Snapshot {
        use iceberg::spec::{Operation, Summary};
        Snapshot::builder()
            .with_snapshot_id(id)
            .with_sequence_number(1)
            .with_timestamp_ms(1)
            .with_manifest_list("s3://b/m.avro".to_string())
            .with_summary(Summary { operation: Operation::Append, additional_properties: HashMap::new() })
            .build()
    }

    #[test]
    fn a_new_snapshot_moves_the_agents_tag_in_the_same_commit() {
        let mut updates = vec![TableUpdate::AddSnapshot { snapshot: snapshot(42) }];
        tag_new_snapshot(&mut updates, "gw-1");
        let Some(TableUpdate::SetSnapshotRef { ref_name, reference }) = updates.last() else {
            panic!("no ref update: {updates:?}")
        };
        assert_eq!(ref_name, "frazil-gw-1");
        assert_eq!(reference.snapshot_id, 42);
        assert!(!reference.is_branch(), "a tag, so expiry keeps it and nobody commits onto it");

        let mut no_snapshot = vec![TableUpdate::RemoveProperties { removals: vec!["x".into()] }];
        tag_new_snapshot(&mut no_snapshot, "gw-1");
        assert_eq!(no_snapshot.len(), 1);
    }
}
