//! The fetcher in a consumer group (`kafka.group`): it reads the partitions the latest
//! assignment gives it (plus those `kafka.partitions` fixes), and follows each new assignment:
//! a partition given away stops being read (its spooled rows still commit if no other member
//! committed it first: the fence decides), a partition gained is claimed and read from the
//! table's group offset.

use std::collections::BTreeSet;

use super::Fetcher;
use crate::Result;
use crate::agent::shared::Stop;
use crate::source::Source;
use crate::source::group::Assignment;
use crate::topic::TopicPartition;

impl Fetcher<'_> {
    /// Waits for the group's first assignment (`None`: stopped first). Without a group, at once.
    pub(super) async fn first_assignment(&mut self, stop: &Stop) -> Option<()> {
        let Some(rx) = self.assignments.clone() else { return Some(()) };
        log::info!("group: joining; reading starts with the first assignment");
        let got = smol::future::or(async { rx.recv().await.ok() }, async {
            stop.wait().await;
            None
        })
        .await?;
        self.take_assignment(got);
        Some(())
    }

    /// Takes the newest assignment waiting, if any; returns whether one came.
    fn newest_assignment(&mut self) -> bool {
        let Some(rx) = &self.assignments else { return false };
        let mut newest = None;
        while let Ok(a) = rx.try_recv() {
            newest = Some(a);
        }
        match newest {
            Some(a) => {
                self.take_assignment(a);
                true
            }
            None => false,
        }
    }

    fn take_assignment(&mut self, a: Assignment) {
        let g = &self.shared.gauges;
        g.group_generation.set(Some(a.generation));
        *g.group_member.borrow_mut() = a.member_id;
        self.assigned = Some(a.partitions);
    }

    /// True when this agent reads `tp`: `kafka.partitions` fixes it, or the group assigned it
    /// (every partition when there is no group).
    pub(super) fn is_ours(&self, (topic, p): &TopicPartition) -> bool {
        match (self.shared.cfg.kafka.static_partitions(topic), &self.assigned) {
            (Some(fixed), _) => fixed.contains(p),
            (None, Some(assigned)) => assigned.contains(&(topic.clone(), *p)),
            (None, None) => true,
        }
    }

    /// Applies a new assignment, if one came: stops reading what was given away and claims
    /// what was gained. Returns whether spooled rows of given-away partitions should be
    /// published now (before their new owner commits, so they are not refused).
    pub(super) async fn follow_group(&mut self, source: &mut dyn Source) -> Result<bool> {
        if !self.newest_assignment() {
            return Ok(false);
        }
        let gone: Vec<TopicPartition> = self.cursors.keys().filter(|tp| !self.is_ours(tp)).cloned().collect();
        for tp in &gone {
            self.cursors.remove(tp);
            self.shared.gauges.positions.borrow_mut().remove(tp);
            log::info!(topic = tp.0.as_str(), partition = tp.1; "{}/{}: assigned to another member of the group; no longer read here", tp.0, tp.1);
        }
        let found: BTreeSet<TopicPartition> = source.discover().await?.into_iter().collect();
        let gained: Vec<TopicPartition> =
            found.into_iter().filter(|tp| self.is_ours(tp) && !self.cursors.contains_key(tp)).collect();
        if !gained.is_empty() {
            for (tp, mut c) in self.cursors_for(source, &gained).await? {
                // A flush drains what it gains to the high watermark of now, like the rest.
                if self.mode == super::Mode::Flush {
                    c.target = Some(source.watermarks(&tp).await?.1);
                }
                log::info!(topic = tp.0.as_str(), partition = tp.1, offset = c.next; "{}/{}: assigned to this agent; reading from offset {}", tp.0, tp.1, c.next);
                self.cursors.insert(tp, c);
            }
        }
        self.show_partitions();
        Ok(!gone.is_empty())
    }

    /// Records the partitions read, for the metrics and `frazil status` (group mode).
    pub(super) fn show_partitions(&self) {
        if self.shared.group().is_some() {
            *self.shared.gauges.group_partitions.borrow_mut() = self.cursors.keys().cloned().collect();
            self.shared.save_group_state();
        }
    }
}
