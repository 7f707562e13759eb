//! How long the broker may hold each fetch. While records flow it is `kafka.fetch_max_wait`
//! (short: tansu waits out the whole wait even when it has data, and every millisecond of it is
//! throughput lost). Once a whole round of answers, one per partition, came back empty, the wait
//! doubles with each further empty answer, up to `kafka.fetch_idle_wait`, so an idle agent sleeps
//! in the broker instead of polling; the first records bring back the short wait. One busy
//! partition among idle ones keeps every wait short: a long wait on an idle partition would hold
//! up the busy one's next fetch.
//!
//! An idle agent asks every partition in one request (one per broker, `source/fetch.rs`), so
//! one answer wakes it per wait, however many partitions it reads, and a partition that wakes up
//! is read within `kafka.fetch_idle_wait`.

use std::time::Duration;

pub(super) struct IdleWait {
    busy: Duration,
    ceiling: Duration,
    current: Duration,
    /// Partitions answered empty since the last answer with records.
    empty: usize,
}

impl IdleWait {
    pub fn new(busy: Duration, ceiling: Duration) -> IdleWait {
        IdleWait { busy, ceiling: ceiling.max(busy), current: busy, empty: 0 }
    }

    /// An answer with records: back to the short wait at once.
    pub fn records(&mut self) {
        self.current = self.busy;
        self.empty = 0;
    }

    /// A request that found nothing new in any of the `asked` partitions, of `partitions` read in
    /// turn: once a whole round of them came back empty, wait twice as long next time.
    pub fn nothing_new(&mut self, asked: usize, partitions: usize) {
        self.empty += asked;
        if self.empty >= partitions {
            self.current = (self.current * 2).min(self.ceiling);
        }
    }

    /// True once a round of answers came back empty: the agent then asks every partition at once.
    pub fn is_idle(&self) -> bool {
        self.current > self.busy
    }

    /// The wait of the next fetch.
    pub fn next(&self) -> Duration {
        self.current
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
        assert_eq!(w.next(), 10 * MS, "records flowing: the short wait");
        let mut seen = Vec::new();
        for _ in 0..9 {
            w.nothing_new(1, 1);
            seen.push(w.next());
        }
        assert_eq!(seen, [20, 40, 80, 160, 320, 640, 1000, 1000, 1000].map(|n| n * MS));
        assert!(w.is_idle());
        w.records();
        assert_eq!(w.next(), 10 * MS, "at once");
        assert!(!w.is_idle());
    }

    #[test]
    fn one_request_for_every_partition_doubles_the_wait_once() {
        let mut w = IdleWait::new(10 * MS, 1000 * MS);
        for _ in 0..7 {
            w.nothing_new(1, 8);
        }
        assert!(!w.is_idle(), "not yet a whole round");
        w.nothing_new(1, 8);
        assert_eq!(w.next(), 20 * MS, "a whole round empty: the wait grows");
        w.nothing_new(8, 8);
        assert_eq!(w.next(), 40 * MS, "one request for all eight: one step, not eight");
        for _ in 0..10 {
            w.nothing_new(8, 8);
        }
        assert_eq!(w.next(), 1000 * MS, "up to the ceiling, whatever the partition count");
    }

    #[test]
    fn one_busy_partition_among_idle_ones_keeps_every_wait_short() {
        let mut w = IdleWait::new(10 * MS, 1000 * MS);
        for _ in 0..50 {
            w.records();
            for _ in 0..7 {
                w.nothing_new(1, 8);
                assert_eq!(w.next(), 10 * MS);
            }
        }
        assert!(!w.is_idle());
        w.nothing_new(1, 8);
        assert_eq!(w.next(), 20 * MS, "a whole round empty: the wait grows");
    }

    #[test]
    fn an_idle_wait_below_the_busy_wait_changes_nothing() {
        let mut w = IdleWait::new(10 * MS, 5 * MS);
        w.nothing_new(1, 1);
        assert_eq!(w.next(), 10 * MS);
        assert!(!w.is_idle());
    }
}
