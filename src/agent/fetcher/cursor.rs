//! Where the fetcher stands in one partition: all it knows of the partition in one place.

use super::buffer::PartitionBuffer;

/// A partition's fetch position, fetch size and hot buffer.
pub(super) struct Cursor {
    /// The next offset to fetch.
    pub next: i64,
    /// A flush reads up to this offset (the high watermark at its start); `run` has none.
    pub target: Option<i64>,
    /// A fetch size grown past `kafka.fetch_max_bytes` to get past an oversized record batch;
    /// `None` at the configured size.
    pub grown: Option<i32>,
    /// The offset at which fetches came back empty below the high watermark (logged once).
    pub stalled_at: Option<i64>,
    /// A fetch of this partition is under way.
    pub in_flight: bool,
    /// The dead-letter table's committed next offset: a record below it that fails again was
    /// already committed as a dead letter, and is not written twice.
    pub dead_floor: Option<i64>,
    /// Decoded rows waiting to be spilled; made with the first records.
    pub buffer: Option<PartitionBuffer>,
}

impl Cursor {
    pub fn new(next: i64, dead_floor: Option<i64>) -> Self {
        Cursor { next, target: None, grown: None, stalled_at: None, in_flight: false, dead_floor, buffer: None }
    }

    /// True while there is something to fetch: always in `run`, below the target in a flush.
    pub fn wants_more(&self) -> bool {
        !self.in_flight && self.target.is_none_or(|t| self.next < t)
    }
}

/// The buffers to roll so that the rest hold at most `budget` bytes: the largest first, so the
/// fewest and fullest files are written.
pub(super) fn over_budget<K>(mut buffers: Vec<(K, u64)>, budget: u64) -> Vec<K> {
    buffers.sort_by_key(|(_, bytes)| std::cmp::Reverse(*bytes));
    let mut total: u64 = buffers.iter().map(|(_, b)| b).sum();
    let mut out = Vec::new();
    for (k, bytes) in buffers {
        if total <= budget {
            break;
        }
        total -= bytes;
        out.push(k);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{Cursor, over_budget};

    #[test]
    fn the_largest_buffers_roll_until_the_rest_fit_the_budget() {
        let buffers = vec![("a", 3), ("b", 5), ("c", 1), ("d", 4)];
        assert_eq!(over_budget(buffers.clone(), 13), Vec::<&str>::new());
        assert_eq!(over_budget(buffers.clone(), 12), vec!["b"]);
        assert_eq!(over_budget(buffers.clone(), 4), vec!["b", "d"]);
        assert_eq!(over_budget(buffers.clone(), 0), vec!["b", "d", "a", "c"]);
        assert!(over_budget(Vec::<(&str, u64)>::new(), 0).is_empty());
    }

    #[test]
    fn a_flush_wants_records_up_to_its_target_and_one_fetch_at_a_time() {
        let mut c = Cursor::new(5, None);
        assert!(c.wants_more(), "run: always");
        c.target = Some(7);
        assert!(c.wants_more());
        c.in_flight = true;
        assert!(!c.wants_more(), "one fetch per partition");
        c.in_flight = false;
        c.next = 7;
        assert!(!c.wants_more(), "the target is reached");
    }
}
