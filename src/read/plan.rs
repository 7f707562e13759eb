//! Exact by offsets: which rows of which local piece an answer takes, so that with the table every
//! event counts once. Pure: no I/O.
//!
//! A query reads three sources in the order data flows through the agent: the hot buffers (read
//! state), then the spool files, then the table. A row can move while it reads (a roll turns hot
//! rows into a file; a commit puts a file's rows in the table and the file goes), so a row may be
//! seen twice, never zero times:
//! - rows hot at the first read are in the hot piece, whatever happens to them next;
//! - rows rolled after it are in a listed file, or committed before the table was loaded (a file
//!   listed but gone when opened was committed, so the later table load has it);
//! - rows committed at any point before the table load are below the table's committed offset C.
//!
//! So per partition the answer is the table's rows, plus local rows at offsets `>= C`, each offset
//! taken from the first piece (in offset order) that covers it. Every piece's rows of one offset
//! are the same record, so which piece gives it does not matter, only that one does.

use std::collections::BTreeMap;

use crate::topic::TopicPartition;

/// A run of offsets of one partition that one local source (a spool file, a hot buffer) holds.
/// `first..=last`; any offset in it without a row is a record that became a dead letter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    pub tp: TopicPartition,
    pub first: i64,
    pub last: i64,
}

/// What the answer takes from the pieces, and up to where it covers each partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Per piece, in the caller's order: the offsets to keep (`from..=to`), or `None` to skip it.
    pub keep: Vec<Option<(i64, i64)>>,
    /// Per partition with a committed offset or a piece: the next offset the answer does not hold
    /// (every offset below it that Kafka had is in the table or in a kept range).
    pub watermark: BTreeMap<TopicPartition, i64>,
}

/// Plans an answer from `committed` (next offset per partition in the table snapshot read) and
/// the local pieces. Pieces of one partition are taken by first offset (ties: the caller's order).
pub fn plan(committed: &BTreeMap<TopicPartition, i64>, pieces: &[Piece]) -> Plan {
    let mut order: Vec<usize> = (0..pieces.len()).collect();
    order.sort_by(|&a, &b| (&pieces[a].tp, pieces[a].first).cmp(&(&pieces[b].tp, pieces[b].first)));
    let mut keep = vec![None; pieces.len()];
    let mut watermark = committed.clone();
    for i in order {
        let p = &pieces[i];
        let next = watermark.get(&p.tp).copied().unwrap_or(i64::MIN);
        let from = p.first.max(next);
        if from <= p.last {
            keep[i] = Some((from, p.last));
            watermark.insert(p.tp.clone(), p.last + 1);
        } else if !watermark.contains_key(&p.tp) {
            // An empty piece (last < first) still says where the partition stands.
            watermark.insert(p.tp.clone(), p.first);
        }
    }
    Plan { keep, watermark }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn tp(p: i32) -> TopicPartition {
        ("t".to_string(), p)
    }

    fn piece(p: i32, first: i64, last: i64) -> Piece {
        Piece { tp: tp(p), first, last }
    }

    #[test]
    fn rows_below_the_committed_offset_come_from_the_table_alone() {
        let committed = BTreeMap::from([(tp(0), 10)]);
        let pieces = [piece(0, 5, 14), piece(0, 0, 4), piece(0, 15, 20)];
        let plan = plan(&committed, &pieces);
        assert_eq!(plan.keep, vec![Some((10, 14)), None, Some((15, 20))]);
        assert_eq!(plan.watermark[&tp(0)], 21);
    }

    #[test]
    fn overlapping_pieces_give_each_offset_once() {
        // A hot snapshot [20, 29] read before a roll that made the file [20, 34].
        let pieces = [piece(1, 20, 34), piece(1, 20, 29)];
        let plan = plan(&BTreeMap::new(), &pieces);
        assert_eq!(plan.keep, vec![Some((20, 34)), None]);
        assert_eq!(plan.watermark[&tp(1)], 35);
    }

    #[test]
    fn a_partition_with_nothing_local_keeps_its_committed_watermark() {
        let committed = BTreeMap::from([(tp(0), 7), (tp(1), 3)]);
        let plan = plan(&committed, &[piece(1, 3, 3)]);
        assert_eq!(plan.watermark, BTreeMap::from([(tp(0), 7), (tp(1), 4)]));
    }

    proptest! {
        /// Whatever the pieces, the table's offsets and the kept ones together are every offset of
        /// the table and of the pieces, each exactly once, and the watermark is one past the last.
        #[test]
        fn table_and_kept_rows_hold_every_offset_once(
            c in 0i64..40,
            ranges in prop::collection::vec((0i64..60, 0i64..15), 0..8),
        ) {
            let committed = BTreeMap::from([(tp(0), c)]);
            let pieces: Vec<Piece> = ranges.iter().map(|&(f, len)| piece(0, f, f + len)).collect();
            let plan = plan(&committed, &pieces);
            let mut seen: Vec<i64> = (0..c).collect();
            for (p, k) in pieces.iter().zip(&plan.keep) {
                if let Some((from, to)) = *k {
                    prop_assert!(p.first <= from && to <= p.last, "kept range inside its piece");
                    seen.extend(from..=to);
                }
            }
            let distinct: BTreeSet<i64> = seen.iter().copied().collect();
            prop_assert_eq!(distinct.len(), seen.len(), "an offset counted twice");
            let mut expected: BTreeSet<i64> = (0..c).collect();
            for p in &pieces {
                expected.extend(p.first..=p.last);
            }
            prop_assert_eq!(&distinct, &expected);
            prop_assert_eq!(plan.watermark[&tp(0)], expected.last().map_or(c, |l| l + 1).max(c));
        }
    }

    /// One partition's agent, as the query's reads see it: offsets are taken into the hot buffer,
    /// rolled into files, committed (the table's next offset moves past them) and their files removed.
    #[derive(Debug, Default)]
    struct Agent {
        next: i64,
        hot_first: Option<i64>,
        files: Vec<(i64, i64)>,
        committed: i64,
        /// Files committed but not yet removed (the first this many of `files`).
        done: usize,
    }

    #[derive(Clone, Debug)]
    enum Step {
        Take(i64),
        Roll,
        Commit,
        Remove,
    }

    impl Agent {
        fn step(&mut self, s: &Step) {
            match *s {
                Step::Take(n) => {
                    self.hot_first.get_or_insert(self.next);
                    self.next += n;
                }
                Step::Roll => {
                    if let Some(first) = self.hot_first.take() {
                        self.files.push((first, self.next - 1));
                    }
                }
                Step::Commit => {
                    if let Some(&(_, last)) = self.files.get(self.done) {
                        self.committed = last + 1;
                        self.done += 1;
                    }
                }
                Step::Remove => {
                    self.files.drain(..self.done);
                    self.done = 0;
                }
            }
        }

        fn run(&mut self, steps: &[Step]) {
            steps.iter().for_each(|s| self.step(s));
        }
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            prop_oneof![(1i64..6).prop_map(Step::Take), Just(Step::Roll), Just(Step::Commit), Just(Step::Remove)],
            0..12,
        )
    }

    proptest! {
        /// The agent keeps working while a query reads hot rows, then lists the files, then opens
        /// them (a file removed in between is gone), then loads the table: every offset up to the
        /// answer's watermark is counted exactly once, and nothing the agent held when the query
        /// started is missing.
        #[test]
        fn reads_in_data_flow_order_count_every_moving_row_once(
            before in steps(), a in steps(), b in steps(), c in steps(), d in steps(),
        ) {
            let mut agent = Agent::default();
            agent.run(&before);
            let held_at_start = agent.next;
            let hot = agent.hot_first.map(|f| piece(0, f, agent.next - 1));
            agent.run(&a);
            let listed = agent.files.clone();
            agent.run(&b);
            let opened: Vec<Piece> =
                listed.iter().filter(|f| agent.files.contains(f)).map(|&(f, l)| piece(0, f, l)).collect();
            agent.run(&c);
            let committed = BTreeMap::from([(tp(0), agent.committed)]);
            agent.run(&d);

            let pieces: Vec<Piece> = opened.into_iter().chain(hot).collect();
            let plan = plan(&committed, &pieces);
            let mut seen: Vec<i64> = (0..committed[&tp(0)]).collect();
            for k in plan.keep.iter().flatten() {
                seen.extend(k.0..=k.1);
            }
            seen.sort_unstable();
            let watermark = plan.watermark[&tp(0)];
            prop_assert_eq!(seen, (0..watermark).collect::<Vec<_>>(), "each offset below the watermark once");
            prop_assert!(watermark >= held_at_start, "rows held when the query started are missing");
        }
    }
}
