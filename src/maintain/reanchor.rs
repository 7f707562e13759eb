//! Re-anchoring a retired agent's tag. Every `frazil-<agent>` tag survives expiry, because the
//! snapshot it names carries the agent's offsets and last commit id. An agent that stopped
//! committing would so keep its last snapshot forever, and with it every small file that snapshot
//! reads, long after compaction replaced them. When a tag's snapshot is one expiry would drop if
//! it were not tagged, a new snapshot is put on `main` that reads what `main` reads and carries
//! the agent's `frazil.*` summary keys (agent, commit id, offsets) unchanged; the tag moves to it.
//! The agent's offsets, its commit found by id, and where its next flush resumes are the same as
//! before; the old snapshot is then an ordinary one that expiry may drop.

use std::collections::HashSet;
use std::time::Duration;

use iceberg::spec::TableMetadata;
use iceberg::table::Table;

use super::replace::{self, new_snapshot_id};
use super::{MAINTENANCE_ID, MAX_ATTEMPTS, Policy, expire, gave_up, health, reload};
use crate::Result;
use crate::backoff::Backoff;
use crate::commit::protocol::TAG_PREFIX;
use crate::commit::{Committer, Outcome};

/// Summary key of a re-anchoring snapshot: the snapshot the tag was on before.
pub const REANCHORED_FROM: &str = "frazil.reanchored-from";
/// Summary key of a re-anchoring snapshot: when the agent's commit was made (ms since the epoch).
pub const COMMITTED_AT: &str = "frazil.committed-at-ms";

/// The agents' tags (name, snapshot id) that have not moved for `policy.retired_after` and whose
/// snapshot an expiry at `now_ms` would drop if the tag did not hold it.
pub fn retired_tags(md: &TableMetadata, now_ms: i64, policy: &Policy) -> Vec<(String, i64)> {
    let since = now_ms.saturating_sub(policy.retired_after.as_millis() as i64);
    let untagged: HashSet<i64> =
        expire::expirable_ignoring(md, now_ms, policy, |name| name.starts_with(TAG_PREFIX)).into_iter().collect();
    let mut out: Vec<(String, i64)> = super::refs(md)
        .into_iter()
        .filter(|(name, r)| name.starts_with(TAG_PREFIX) && !r.is_branch() && untagged.contains(&r.snapshot_id))
        .filter(|(_, r)| md.snapshot_by_id(r.snapshot_id).is_some_and(|s| s.timestamp_ms() < since))
        .map(|(name, r)| (name, r.snapshot_id))
        .collect();
    out.sort();
    out
}

/// Re-anchors every retired tag of `table`; returns the table and how many tags moved.
pub(super) async fn reanchor(committer: &Committer, mut table: Table, policy: &Policy) -> Result<(Table, usize)> {
    let ident = table.identifier().clone();
    // Each tag moves once a pass: with fewer kept snapshots than retired agents, the snapshot one
    // tag moved to is soon one expiry would drop, and the tags would take turns forever.
    let mut moved: HashSet<String> = HashSet::new();
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        let md = table.metadata();
        let now = chrono::Utc::now().timestamp_millis();
        let next = retired_tags(md, now, policy).into_iter().find(|(tag, _)| !moved.contains(tag));
        let Some((tag, at)) = next else { return Ok((table, moved.len())) };
        let (Some(base), Some(tagged)) = (md.current_snapshot().cloned(), md.snapshot_by_id(at).cloned()) else {
            return Ok((table, moved.len()));
        };
        let mut props: Vec<(String, String)> = tagged
            .summary()
            .additional_properties
            .iter()
            .filter(|(k, _)| k.starts_with("frazil.") && *k != MAINTENANCE_ID && *k != super::COMPACTION_ID)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let base_id = base.snapshot_id().to_string();
        let id = replace::step_id(md, "reanchor", [tag.as_str(), base_id.as_str(), &at.to_string()]);
        // When the agent really committed: kept through any number of re-anchorings.
        let committed_at = tagged.summary().additional_properties.get(COMMITTED_AT).cloned();
        props.retain(|(k, _)| k != REANCHORED_FROM && k != COMMITTED_AT);
        props.push((COMMITTED_AT.to_string(), committed_at.unwrap_or_else(|| tagged.timestamp_ms().to_string())));
        props.push((MAINTENANCE_ID.to_string(), id));
        props.push((REANCHORED_FROM.to_string(), at.to_string()));
        let manifests = health::manifests_of(&table, &base).await?;
        let summary = replace::replace_summary(&base, props);
        let snapshot_id = new_snapshot_id(md);
        let (snapshot, list) =
            replace::write_snapshot(&table, &base, snapshot_id, manifests.into_iter(), summary).await?;
        let outcome =
            replace::commit_moving(committer, &table, base.snapshot_id(), snapshot, Some((tag.clone(), at))).await?;
        match outcome {
            Outcome::Applied(t) => {
                log::info!(table = ident.name(); "table {ident}: tag {tag} of a retired agent moved from snapshot {at} to {snapshot_id}");
                moved.insert(tag);
                table = t;
                continue;
            }
            Outcome::Conflict(body) => {
                log::info!(table = ident.name(); "table {ident}: moving tag {tag} conflicted ({}); looking again", body.trim());
                replace::delete_paths(&table, [list]).await;
            }
            // Looked at again on the reloaded table: a tag that moved is no longer retired.
            Outcome::Unknown(e) => {
                log::warn!(table = ident.name(); "table {ident}: moving tag {tag}: outcome unknown ({e})")
            }
        }
        if backoff.attempts() >= MAX_ATTEMPTS {
            return Err(gave_up(format!("re-anchor the tags of {ident}")));
        }
        smol::Timer::after(backoff.next_delay()).await;
        table = reload(committer, &ident).await?;
    }
}
