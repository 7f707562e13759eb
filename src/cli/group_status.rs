//! `frazil status` in group mode (`kafka.group`): the group as the running agent reports it
//! (`group.json` in the spool, see `agent::GroupState`). The partitions' committed offsets in
//! the report are then the group's, from the table.

use std::fmt;

use serde::Serialize;

use crate::agent::{GROUP_STATE, GroupState};
use crate::config::Config;

#[derive(Debug, Serialize)]
pub struct GroupStatus {
    pub group: String,
    /// What the running agent last reported; `None` when no agent runs on this spool.
    pub running: Option<GroupState>,
}

/// The group's status, when the config names one.
pub fn group_status(cfg: &Config, agent_running: bool) -> Option<GroupStatus> {
    let group = cfg.kafka.group.as_ref()?.name.clone();
    let path = cfg.spool.dir.join(GROUP_STATE);
    let running = agent_running
        .then(|| std::fs::read(&path).ok())
        .flatten()
        .and_then(|bytes| serde_json::from_slice::<GroupState>(&bytes).ok())
        .filter(|s| s.group == group);
    Some(GroupStatus { group, running })
}

impl fmt::Display for GroupStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(s) = &self.running else {
            return writeln!(
                f,
                "group {}: no agent running here (committed offsets below are the group's)",
                self.group
            );
        };
        match s.generation {
            None => writeln!(f, "group {}: joining", self.group)?,
            Some(-1) => writeln!(f, "group {}: dropped from the group, joining again", self.group)?,
            Some(g) => writeln!(f, "group {}: generation {g}, member {}", self.group, s.member_id)?,
        }
        writeln!(f, "  reading {} partition(s): {}", s.partitions.len(), s.partitions.join(", "))?;
        writeln!(f, "  commits fenced: {} (another member committed the partition first)", s.fenced_commits)
    }
}
