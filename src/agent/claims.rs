//! Claims: in group mode (`kafka.group`), which spooled rows of a partition this agent may still
//! commit. The fetcher claims a partition when it starts reading it: it notes the group's next
//! offset the table records then (see `commit::fence`) and the first spool file id its rows can
//! have. Files of the partition with smaller ids belong to an earlier run (before a restart, a
//! reassignment or a fence) whose rows another agent may have committed: they are stale and are
//! discarded, never committed. The publisher moves a claim forward with each commit, and drops
//! every claim of a partition the fence refused; the fetcher then claims it again if it still
//! reads it.

use std::collections::{BTreeMap, BTreeSet};

use frazil_spool::{FileState, SpoolFile};

use crate::topic::TopicPartition;

/// One table's claim on one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Claim {
    /// The group's next offset the table recorded when this run began, moved by each commit.
    pub expected: Option<i64>,
    /// The run's spool files have this id or a larger one.
    pub since_id: u64,
}

/// Every claim of the agent. Written by the fetcher (claims) and the publisher (commits, fences).
#[derive(Default)]
pub(super) struct Claims {
    by: BTreeMap<(String, TopicPartition), Claim>,
    /// Partitions whose claims a fence dropped, for the fetcher to read again from the table.
    fenced: BTreeSet<TopicPartition>,
}

impl Claims {
    pub fn claim(&mut self, table: &str, tp: &TopicPartition, claim: Claim) {
        self.by.insert((table.to_string(), tp.clone()), claim);
    }

    pub fn get(&self, table: &str, tp: &TopicPartition) -> Option<Claim> {
        self.by.get(&(table.to_string(), tp.clone())).copied()
    }

    /// A commit of the run `since_id` recorded `next`: the run's next commit expects it. A claim
    /// made since (the fetcher began another run) is left as it is.
    pub fn committed(&mut self, table: &str, tp: &TopicPartition, since_id: u64, next: i64) {
        if let Some(c) = self.by.get_mut(&(table.to_string(), tp.clone()))
            && c.since_id == since_id
        {
            c.expected = Some(next);
        }
    }

    /// Another agent committed `tp` first: every table's claim on it goes, so its spooled rows
    /// are stale, and the fetcher is told to read it again from the table.
    pub fn fence(&mut self, tp: &TopicPartition) {
        self.by.retain(|(_, p), _| p != tp);
        self.fenced.insert(tp.clone());
    }

    pub fn take_fenced(&mut self) -> BTreeSet<TopicPartition> {
        std::mem::take(&mut self.fenced)
    }

    /// The partitions claimed in any table.
    #[cfg(test)]
    pub fn partitions(&self) -> BTreeSet<TopicPartition> {
        self.by.keys().map(|(_, tp)| tp.clone()).collect()
    }
}

/// Uncommitted files split into those of a claimed run (to commit) and the stale ones (to
/// discard), each by its own table's claim. Committed and quarantined files are in neither.
pub(super) fn split(files: Vec<SpoolFile>, claims: &Claims) -> (Vec<SpoolFile>, Vec<SpoolFile>) {
    let (mut run, mut stale) = (Vec::new(), Vec::new());
    for f in files {
        if !matches!(f.state, FileState::Written | FileState::Uploaded { .. }) {
            continue;
        }
        let tp = (f.meta.topic.clone(), f.meta.partition);
        match claims.get(&f.meta.table, &tp) {
            Some(c) if f.id >= c.since_id => run.push(f),
            _ => stale.push(f),
        }
    }
    (run, stale)
}

/// The fence of a commit of one table's `files` (all of one claimed run per partition): each
/// partition's claim, and the next offset the commit records for it.
pub(super) fn fence_of(
    table: &str,
    files: &[SpoolFile],
    claims: &Claims,
) -> (BTreeMap<TopicPartition, Claim>, BTreeMap<TopicPartition, i64>) {
    let (mut expected, mut next) = (BTreeMap::new(), BTreeMap::new());
    for f in files {
        let tp = (f.meta.topic.clone(), f.meta.partition);
        if let Some(c) = claims.get(table, &tp) {
            expected.insert(tp.clone(), c);
        }
        let n = next.entry(tp).or_insert(f.meta.next_offset);
        *n = (*n).max(f.meta.next_offset);
    }
    (expected, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commit::fence;
    use frazil_spool::FileMeta;

    fn file(id: u64, partition: i32, first: i64, state: FileState) -> SpoolFile {
        let meta = FileMeta {
            table: "t".into(),
            topic: "events".into(),
            partition,
            first_offset: first,
            last_offset: first + 9,
            next_offset: first + 10,
            rows: 10,
            extra: vec![],
        };
        SpoolFile { id, path: format!("/x/{id}").into(), bytes: 1, crc32c: 0, meta, state }
    }

    #[test]
    fn files_before_a_claim_are_stale_and_a_fence_makes_the_whole_partition_stale() {
        let tp = |p| ("events".to_string(), p);
        let mut claims = Claims::default();
        claims.claim("t", &tp(0), Claim { expected: Some(100), since_id: 5 });
        claims.claim("t.dead", &tp(0), Claim { expected: None, since_id: 5 });
        claims.claim("t", &tp(1), Claim { expected: None, since_id: 1 });
        let files = vec![
            file(3, 0, 40, FileState::Written),
            file(5, 0, 100, FileState::Uploaded { location: "s3://b/5".into() }),
            file(6, 0, 110, FileState::Written),
            file(7, 1, 0, FileState::Written),
            file(8, 2, 0, FileState::Written),
            file(9, 0, 120, FileState::Committed),
        ];
        let ids = |v: &[SpoolFile]| v.iter().map(|f| f.id).collect::<Vec<_>>();
        let (run, stale) = split(files.clone(), &claims);
        assert_eq!((ids(&run), ids(&stale)), (vec![5, 6, 7], vec![3, 8]), "an earlier run and an unclaimed partition");
        let (expected, next) = fence_of("t", &run, &claims);
        let expected: fence::Claims = expected.into_iter().map(|(tp, c)| (tp, c.expected)).collect();
        assert_eq!(expected, fence::Claims::from([(tp(0), Some(100)), (tp(1), None)]));
        assert_eq!(next, BTreeMap::from([(tp(0), 120), (tp(1), 10)]));

        claims.committed("t", &tp(0), 5, 120);
        assert_eq!(claims.get("t", &tp(0)).unwrap().expected, Some(120));
        claims.committed("t", &tp(0), 4, 999);
        assert_eq!(claims.get("t", &tp(0)).unwrap().expected, Some(120), "an older run's commit moves no claim");

        claims.fence(&tp(0));
        assert!(claims.get("t.dead", &tp(0)).is_none(), "every table's claim on the partition goes");
        assert_eq!(ids(&split(files, &claims).0), vec![7]);
        assert_eq!(claims.take_fenced(), BTreeSet::from([tp(0)]));
        assert!(claims.take_fenced().is_empty());
    }
}
