//! Which committed spool files to keep for queries while offline (`spool.keep_committed` and
//! `spool.keep_committed_size`). Pure: the caller reads the files' ages and removes what this
//! picks. Under the quota or the disk floor the spool evicts kept files first by itself
//! (`Spool::evict_committed_for_room`), so keeping never pauses fetching.

use std::collections::BTreeSet;
use std::time::Duration;

/// A committed file: its id (older files have smaller ids), size and age.
#[derive(Clone, Copy, Debug)]
pub struct Kept {
    pub id: u64,
    pub bytes: u64,
    pub age: Duration,
}

/// The files to remove: every one older than `keep_for`, then the oldest of the rest until they
/// hold at most `max_bytes`.
pub fn to_remove(files: &[Kept], keep_for: Duration, max_bytes: u64) -> BTreeSet<u64> {
    let mut out: BTreeSet<u64> = files.iter().filter(|f| f.age >= keep_for).map(|f| f.id).collect();
    let mut rest: Vec<&Kept> = files.iter().filter(|f| !out.contains(&f.id)).collect();
    rest.sort_by_key(|f| f.id);
    let mut total: u64 = rest.iter().map(|f| f.bytes).sum();
    for f in rest {
        if total <= max_bytes {
            break;
        }
        total -= f.bytes;
        out.insert(f.id);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(id: u64, bytes: u64, age_s: u64) -> Kept {
        Kept { id, bytes, age: Duration::from_secs(age_s) }
    }

    #[test]
    fn old_files_go_then_the_oldest_until_the_rest_fit() {
        let files = [kept(1, 100, 7200), kept(2, 100, 50), kept(3, 100, 40), kept(4, 100, 10)];
        let hour = Duration::from_secs(3600);
        assert_eq!(to_remove(&files, hour, 1000), BTreeSet::from([1]));
        assert_eq!(to_remove(&files, hour, 200), BTreeSet::from([1, 2]));
        assert_eq!(to_remove(&files, hour, 0), BTreeSet::from([1, 2, 3, 4]));
        assert_eq!(to_remove(&files, Duration::ZERO, u64::MAX), BTreeSet::from([1, 2, 3, 4]), "keep nothing");
    }
}
