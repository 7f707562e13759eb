//! What a running agent in a consumer group tells `frazil status`: a small JSON file in the
//! spool directory (`group.json`), rewritten (temp file, rename) when the assignment changes or
//! a commit is fenced. It is a report, not state: nothing reads it back to decide anything.

use serde::{Deserialize, Serialize};

use super::shared::Shared;

/// The file's name in the spool directory.
pub const GROUP_STATE: &str = "group.json";

/// The group as the running agent sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    pub group: String,
    /// The generation of the latest assignment (`-1`: dropped from the group; `None`: none yet).
    pub generation: Option<i32>,
    pub member_id: String,
    /// The partitions this agent reads, as `topic/partition`.
    pub partitions: Vec<String>,
    pub fenced_commits: u64,
    /// When the file was written (Unix milliseconds).
    pub at_ms: i64,
    /// The agent's process id, so a report can tell a file left by an agent that died.
    pub pid: u32,
}

impl Shared {
    /// Rewrites `group.json` (group mode only). A failure is logged: status is all it feeds.
    pub fn save_group_state(&self) {
        let Some(group) = self.group() else { return };
        let g = &self.gauges;
        let state = GroupState {
            group: group.to_string(),
            generation: g.group_generation.get(),
            member_id: g.group_member.borrow().clone(),
            partitions: g.group_partitions.borrow().iter().map(|(t, p)| format!("{t}/{p}")).collect(),
            fenced_commits: g.fenced_commits.get(),
            at_ms: chrono::Utc::now().timestamp_millis(),
            pid: std::process::id(),
        };
        let path = self.spool.dir().join(GROUP_STATE);
        let tmp = path.with_extension("json.tmp");
        let written = serde_json::to_vec_pretty(&state)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            log::debug!("group: could not write {}: {e}", path.display());
        }
    }
}
