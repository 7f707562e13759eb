//! How long the broker may hold each fetch. While records flow it is `kafka.fetch_max_wait`
//! (short: tansu waits out the whole wait even when it has data, and every millisecond of it is
//! throughput lost). Once a whole round of answers, one per partition, came back empty, the wait
//! doubles with each further empty answer, so an idle agent sleeps in the broker instead of
//! polling; the first records bring back the short wait. One busy partition among idle ones keeps
//! every wait short: a long wait on an idle partition would hold up the busy one's next fetch.
//!
//! Its ceiling is set per round, not per fetch: rskafka asks one partition per request, and a
//! broker serves the requests of one connection in order, so a partition that wakes up may wait
//! behind a fetch of every other partition. Each fetch therefore waits at most
//! `kafka.fetch_idle_wait / partitions`, and an idle agent asks one partition at a time (each
//! answer wakes it): a round over all of them, and with it the delay before a partition that
//! wakes up is read, stays within `kafka.fetch_idle_wait`. So an idle agent is woken
//! `partitions / fetch_idle_wait` times a second by answers; fewer would need one request for
//! every partition of a broker, which rskafka cannot send.

use std::time::Duration;

pub(super) struct IdleWait {
    busy: Duration,
    round: Duration,
    current: Duration,
    /// Empty answers since the last one with records.
    empty: usize,
}

impl IdleWait {
    pub fn new(busy: Duration, round: Duration) -> IdleWait {
        IdleWait { busy, round: round.max(busy), current: busy, empty: 0 }
    }

    /// An answer with records: back to the short wait at once.
    pub fn records(&mut self) {
        self.current = self.busy;
        self.empty = 0;
    }

    /// An answer with nothing new, of `partitions` read in turn: after a whole round of them,
    /// wait twice as long next time, up to the round's share.
    pub fn nothing_new(&mut self, partitions: usize) {
        self.empty += 1;
        if self.empty >= partitions {
            self.current = (self.current * 2).min(self.round);
        }
    }

    /// True once answers came back empty: the agent then asks one partition at a time.
    pub fn is_idle(&self) -> bool {
        self.current > self.busy
    }

    /// The wait of the next fetch, with `partitions` read in turn.
    pub fn next(&self, partitions: usize) -> Duration {
        let share = self.round / u32::try_from(partitions.max(1)).unwrap_or(u32::MAX);
        self.current.min(share).max(self.busy)
    }
}

#[cfg(test)]
mod tests {
    use super::IdleWait;
    use std::time::Duration;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_wait_grows_while_nothing_comes_and_drops_with_the_first_records() {
        let mut w = IdleWait::new(10 * MS, 1000 * MS);
        assert_eq!(w.next(1), 10 * MS, "records flowing: the short wait");
        let mut seen = Vec::new();
        for _ in 0..9 {
            w.nothing_new(1);
            seen.push(w.next(1));
        }
        assert_eq!(seen, [20, 40, 80, 160, 320, 640, 1000, 1000, 1000].map(|n| n * MS));
        assert!(w.is_idle());
        w.records();
        assert_eq!(w.next(1), 10 * MS, "at once");
        assert!(!w.is_idle());
    }

    #[test]
    fn a_round_over_all_partitions_stays_within_the_idle_wait() {
        let mut w = IdleWait::new(10 * MS, 1000 * MS);
        for _ in 0..20 {
            w.nothing_new(8);
        }
        assert_eq!(w.next(8), 125 * MS);
        assert_eq!(w.next(64) * 64, 1000 * MS);
        assert_eq!(w.next(1000), 10 * MS, "never below the busy wait");
        assert_eq!(w.next(0), 1000 * MS, "no partition yet: one round");
    }

    #[test]
    fn one_busy_partition_among_idle_ones_keeps_every_wait_short() {
        let mut w = IdleWait::new(10 * MS, 1000 * MS);
        for _ in 0..50 {
            w.records();
            for _ in 0..7 {
                w.nothing_new(8);
                assert_eq!(w.next(8), 10 * MS);
            }
        }
        assert!(!w.is_idle());
        w.nothing_new(8);
        assert_eq!(w.next(8), 20 * MS, "a whole round empty: the wait grows");
    }

    #[test]
    fn an_idle_wait_below_the_busy_wait_changes_nothing() {
        let mut w = IdleWait::new(10 * MS, 5 * MS);
        w.nothing_new(1);
        assert_eq!(w.next(1), 10 * MS);
    }
}
