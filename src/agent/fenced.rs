//! The publisher in group mode (`kafka.group`): only rows of a claimed run are committed, each
//! commit is fenced (`commit::fence`), and rows the fence refused are discarded. See
//! `agent/claims.rs` for the claims and `commit/DESIGN.md` for the protocol.

use std::collections::{BTreeMap, BTreeSet};

use frazil_spool::SpoolFile;

use super::Publisher;
use crate::agent::claims;
use crate::commit::{self, Committer, fence};
use crate::spill::on_pool;
use crate::topic::TopicPartition;
use crate::{Error, Result};

impl Publisher<'_> {
    /// Every spool file, less the stale ones of group mode, which are discarded: rows of an
    /// earlier run of a partition (before a restart, a reassignment or a fence), which another
    /// agent commits.
    pub(super) async fn drop_stale(&mut self) -> Result<Vec<SpoolFile>> {
        let files = on_pool(&self.shared.spool, |s| s.files()).await?;
        if self.shared.group().is_none() {
            return Ok(files);
        }
        let (_, stale) = claims::split(files.clone(), &self.shared.claims.borrow());
        if stale.is_empty() {
            return Ok(files);
        }
        let ids: Vec<u64> = stale.iter().map(|f| f.id).collect();
        let parts: BTreeSet<String> = stale.iter().map(|f| format!("{}/{}", f.meta.topic, f.meta.partition)).collect();
        let rows: u64 = stale.iter().map(|f| f.meta.rows).sum();
        let gone = ids.clone();
        let n = on_pool(&self.shared.spool, move |s| s.discard(&gone)).await?;
        log::info!(
            "group: discarded {n} spooled files ({rows} rows) of {}: an earlier run's rows, read again from where the table stands",
            parts.into_iter().collect::<Vec<_>>().join(", ")
        );
        Ok(files.into_iter().filter(|f| !ids.contains(&f.id)).collect())
    }

    /// Commits a table's uploaded files of claimed runs, fenced: partitions another agent
    /// committed since their claim are left out (and their claims dropped), the rest go in one
    /// commit that asserts the group's tag has not moved.
    pub(super) async fn commit_fenced(
        &mut self,
        committer: &Committer,
        name: &str,
        files: Vec<SpoolFile>,
        group: &str,
    ) -> Result<()> {
        // Files whose claim went since the cycle began (a fence on the dead-letter table, a
        // reassignment) stay out; the next cycle discards them.
        let (mut files, _) = claims::split(files, &self.shared.claims.borrow());
        if files.is_empty() {
            return Ok(());
        }
        // The fence is checked against the table as it is now, not as this agent last saw it.
        if let Some(t) = committer.load(name).await? {
            self.shared.layouts.set_table(name, t);
        }
        let table = self.shared.layouts.ready(committer, name).await?;
        let (mut claimed, mut next) = claims::fence_of(name, &files, &self.shared.claims.borrow());
        let expected = |claimed: &BTreeMap<TopicPartition, claims::Claim>| -> fence::Claims {
            claimed.iter().map(|(tp, c)| (tp.clone(), c.expected)).collect()
        };
        let lost = fence::fenced(&fence::recorded(table.metadata(), group), &expected(&claimed));
        if !lost.is_empty() {
            self.fenced(name, group, &lost);
            files.retain(|f| !lost.contains(&(f.meta.topic.clone(), f.meta.partition)));
            claimed.retain(|tp, _| !lost.contains(tp));
            next.retain(|tp, _| !lost.contains(tp));
            if files.is_empty() {
                return Ok(());
            }
        }
        let expected = expected(&claimed);
        let fence = commit::GroupFence { group, claims: &expected, next: &next };
        match self.commit_files(committer, name, table, files, Some(&fence)).await {
            Ok(()) => {
                let mut claims = self.shared.claims.borrow_mut();
                for (tp, n) in &next {
                    claims.committed(name, tp, claimed[tp].since_id, *n);
                }
                Ok(())
            }
            Err(Error::Fenced { partitions, .. }) => {
                self.fenced(name, group, &partitions);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Counts and logs a commit the fence refused, and drops the claims of its partitions.
    fn fenced(&self, name: &str, group: &str, lost: &[TopicPartition]) {
        let g = &self.shared.gauges;
        g.fenced_commits.set(g.fenced_commits.get() + 1);
        self.shared.save_group_state();
        let mut claims = self.shared.claims.borrow_mut();
        for tp in lost {
            claims.fence(tp);
            log::warn!(
                topic = tp.0.as_str(), partition = tp.1, table = name;
                "table {name}: commit fenced: another agent of group {group} committed {}/{} since this one began reading it; its spooled rows are dropped and it is read again from the table",
                tp.0, tp.1
            );
        }
    }
}
