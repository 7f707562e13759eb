//! Group mode: where a partition's reading starts, and the claim its rows are committed under
//! (`agent/claims.rs`). Only the table's group offsets count: the spool's own next offsets and
//! any leftover files belong to an earlier run, which another agent may have committed since.

use std::collections::BTreeSet;

use super::Fetcher;
use super::start::Offsets;
use crate::Result;
use crate::agent::claims::Claim;
use crate::commit::fence;
use crate::topic::TopicPartition;

impl Fetcher<'_> {
    /// Reads the group's offsets of `partitions` from their tables (and dead-letter tables) and
    /// claims each partition there. Returns, per partition, where the table says to resume and
    /// the dead-letter table's next offset. Fails when the catalog cannot be read: without the
    /// table's offsets, a group member cannot know where another stopped.
    pub(super) async fn claim(&self, partitions: &[TopicPartition], group: &str) -> Result<(Offsets, Offsets)> {
        let committer = self.shared.link.committer().await.map_err(|e| e.with_context("read the group's offsets"))?;
        // Files registered from now on have ids above every existing one (ids are never reused).
        let since_id = crate::spill::on_pool(&self.shared.spool, |s| s.files()).await?.iter().map(|f| f.id + 1).max();
        let since_id = since_id.unwrap_or(0);
        let tables: BTreeSet<String> = partitions.iter().map(|(t, _)| self.shared.table_name(t)).collect();
        let (mut known, mut dead) = (Offsets::new(), Offsets::new());
        for name in tables {
            let dead_table = self.shared.dead_letter_table(&name);
            for (table, out) in [(&name, &mut known), (&dead_table, &mut dead)] {
                let recorded = match committer.load(table).await? {
                    Some(t) => {
                        let r = fence::recorded(t.metadata(), group);
                        self.shared.layouts.set_table(table, t);
                        r
                    }
                    None => fence::Recorded::default(),
                };
                let mut claims = self.shared.claims.borrow_mut();
                for tp in partitions.iter().filter(|(t, _)| self.shared.table_name(t) == name) {
                    let expected = recorded.offsets.get(tp).copied();
                    claims.claim(table, tp, Claim { expected, since_id });
                    out.extend(expected.map(|o| (tp.clone(), o)));
                }
            }
        }
        Ok((known, dead))
    }

    /// Reads again from the table the partitions whose commit the fence refused, while this
    /// agent still reads them: their hot rows are dropped with the old cursor, and an answer to
    /// a fetch still in flight is ignored (it asked for another offset).
    pub(super) async fn reclaim_fenced(&mut self, source: &dyn crate::source::Source) -> Result<()> {
        let fenced = self.shared.claims.borrow_mut().take_fenced();
        let ours: Vec<TopicPartition> = fenced.into_iter().filter(|tp| self.cursors.contains_key(tp)).collect();
        if ours.is_empty() {
            return Ok(());
        }
        let fresh = match self.cursors_for(source, &ours).await {
            Ok(c) => c,
            Err(e) => {
                // Tried again at the next turn of the loop; meanwhile nothing of them is committed.
                let mut claims = self.shared.claims.borrow_mut();
                for tp in &ours {
                    claims.fence(tp);
                }
                return Err(e);
            }
        };
        for (tp, mut c) in fresh {
            let old = self.cursors.get(&tp);
            c.in_flight = old.is_some_and(|o| o.in_flight);
            c.target = old.and_then(|o| o.target).map(|t| t.max(c.next));
            log::info!(topic = tp.0.as_str(), partition = tp.1, offset = c.next; "{}/{}: reading again from offset {} after a fenced commit", tp.0, tp.1, c.next);
            self.cursors.insert(tp, c);
        }
        Ok(())
    }
}
