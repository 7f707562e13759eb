//! The group fence: how several agents that share a topic's partitions (a Kafka consumer group,
//! or static `kafka.partitions` that overlap) commit to one table exactly once. Pure: the
//! decisions here read table metadata and return values; `Committer::append` does the I/O.
//!
//! In group mode a table's offsets belong to the group, not to an agent. The snapshot under the
//! tag `frazil-group-<name>` carries `frazil.group-offsets.<topic>` = `{"<partition>": <next
//! offset>}` for every partition any member has committed (cumulative), and every group commit
//! moves that tag in the same atomic commit as its data, asserting where the tag was.
//!
//! An agent that starts reading a partition remembers the group's recorded next offset at that
//! moment (its *claim*, `None` when nothing is recorded yet): every row it then spools for that
//! partition follows on from there without a gap. A commit is allowed for a partition only while
//! the table still records exactly the claim: then nobody else has committed that partition since
//! the agent started its run, and the rows it adds are the next ones. After its commit the claim
//! becomes the offset it recorded. Comparing to the claim, not to the first row's offset, keeps
//! the fence right across offsets that hold no record (transaction markers, compacted keys).

use std::collections::{BTreeMap, HashMap};

use iceberg::TableRequirement;
use iceberg::TableUpdate;
use iceberg::spec::TableMetadata;

use super::protocol::{move_tag_to_new_snapshot, newest_offsets, offset_properties, offsets_under};
use crate::topic::TopicPartition;

/// Snapshot-summary key naming the group whose offsets a snapshot carries.
pub const GROUP: &str = "frazil.group";
/// Prefix of the per-topic group offsets: `frazil.group-offsets.<topic>` = `{"<partition>": <next offset>}`.
pub const GROUP_OFFSETS_PREFIX: &str = "frazil.group-offsets.";

/// The prefix of a group's tag. An agent's tag is `frazil-<agent>`, so no agent id may start
/// with `group-` (the configuration refuses one).
pub const GROUP_TAG_PREFIX: &str = "frazil-group-";

/// The name of `group`'s tag.
pub fn group_tag(group: &str) -> String {
    format!("{GROUP_TAG_PREFIX}{group}")
}

/// Per partition, the next offset a claim expects the table to record (`None`: nothing recorded).
pub type Claims = BTreeMap<TopicPartition, Option<i64>>;

/// What the table records for a group: the snapshot its tag is on, and the offsets there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    pub tag_snapshot: Option<i64>,
    pub offsets: BTreeMap<TopicPartition, i64>,
}

/// Reads `group`'s recorded offsets from the table's metadata.
pub fn recorded(metadata: &TableMetadata, group: &str) -> Recorded {
    let Some(snapshot) = metadata.snapshot_for_ref(&group_tag(group)) else { return Recorded::default() };
    let props = &snapshot.summary().additional_properties;
    Recorded { tag_snapshot: Some(snapshot.snapshot_id()), offsets: offsets_under(GROUP_OFFSETS_PREFIX, props) }
}

/// `group`'s offsets as of the table's current snapshot: what a query that scans it may take
/// from the table alone (the group's counterpart of `protocol::offsets_as_of_current`).
pub fn offsets_as_of_current(metadata: &TableMetadata, group: &str) -> BTreeMap<TopicPartition, i64> {
    let ours = |props: &HashMap<String, String>| props.get(GROUP).map(String::as_str) == Some(group);
    newest_offsets(metadata, &group_tag(group), ours, |props| offsets_under(GROUP_OFFSETS_PREFIX, props))
}

/// The partitions of `claims` whose claim the table no longer records: another agent committed
/// them since this one started reading them. A commit that names any of them must not land.
pub fn fenced(recorded: &Recorded, claims: &Claims) -> Vec<TopicPartition> {
    claims
        .iter()
        .filter(|(tp, claim)| recorded.offsets.get(*tp).copied() != **claim)
        .map(|(tp, _)| tp.clone())
        .collect()
}

/// The summary keys of a group commit: the group's name and its cumulative offsets, the
/// recorded ones overlaid with the next offsets this commit reaches.
pub fn group_properties(
    group: &str,
    recorded: &Recorded,
    next: &BTreeMap<TopicPartition, i64>,
) -> HashMap<String, String> {
    let mut all = recorded.offsets.clone();
    all.extend(next.iter().map(|(tp, n)| (tp.clone(), *n)));
    let mut props = offset_properties(GROUP_OFFSETS_PREFIX, &all);
    props.insert(GROUP.to_string(), group.to_string());
    props
}

/// Where a group commit expects the group's tag, and moves it: added to the commit's
/// requirements and updates in the same request as the data.
#[derive(Clone, Debug)]
pub struct TagMove {
    pub tag: String,
    /// The tag's snapshot the fence was checked against (`None`: the tag must not exist yet).
    pub expected: Option<i64>,
}

impl TagMove {
    /// Asserts the tag is still where the fence saw it, and moves it to the snapshot `updates`
    /// add. A commit that adds no snapshot is left as it is.
    pub fn apply(&self, requirements: &mut Vec<TableRequirement>, updates: &mut Vec<TableUpdate>) {
        if move_tag_to_new_snapshot(updates, &self.tag).is_some() {
            requirements
                .push(TableRequirement::RefSnapshotIdMatch { r#ref: self.tag.clone(), snapshot_id: self.expected });
        }
    }
}

#[cfg(test)]
#[path = "fence_tests.rs"]
mod tests;
