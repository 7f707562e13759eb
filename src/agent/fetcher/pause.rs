//! Why and when the fetch loop says it has paused: the spool's quota, the disk floor, or a full
//! disk stops fetching, and a pause is logged when it starts and again while it lasts.

use std::time::{Duration, Instant};

use frazil_spool::Usage;

use crate::logging::mib;

/// While fetching stays paused, how often the reason is logged again.
const PAUSE_REMINDER: Duration = Duration::from_secs(300);

/// The spool's use in a phrase: bytes spooled, the quota, the free disk.
pub(super) fn usage_text(u: &Usage) -> String {
    let mut t = format!("{} spooled", mib(u.bytes));
    if let Some(m) = u.max_bytes {
        t.push_str(&format!(" of {} allowed", mib(m)));
    }
    if let Some(f) = u.free_disk {
        t.push_str(&format!(", {} free on disk", mib(f)));
    }
    t
}

/// A pause in fetching, logged when it starts and again every [`PAUSE_REMINDER`] it lasts, so
/// that a log tail always shows why nothing is being fetched.
#[derive(Default)]
pub(super) struct Pause {
    /// When it started, and when it was last logged.
    since: Option<(Instant, Instant)>,
}

impl Pause {
    /// The spool has no room at `now`. Returns what to add to the log line when one is due:
    /// nothing at the start, how long it has lasted in a reminder.
    pub(super) fn full(&mut self, now: Instant) -> Option<String> {
        let lasting = match self.since {
            None => String::new(),
            Some((since, said)) if now.duration_since(said) >= PAUSE_REMINDER => {
                format!(" (paused for {:.0?})", now.duration_since(since))
            }
            Some(_) => return None,
        };
        self.since = Some((self.since.map_or(now, |(since, _)| since), now));
        Some(lasting)
    }

    /// The spool has room: true when this ends a pause.
    pub(super) fn room(&mut self) -> bool {
        self.since.take().is_some()
    }
}

/// Which limit stops fetching: a failed write (the disk is full), the quota, or the disk floor.
pub(super) fn pause_reason(u: &Usage, disk_full: bool) -> String {
    let usage = usage_text(u);
    if disk_full {
        return format!("disk full: the last spool write found no space ({usage})");
    }
    if u.over_quota(0) {
        return format!("spool full: {usage}, at spool.max_bytes");
    }
    match (u.free_disk, u.min_free_bytes) {
        (Some(free), Some(floor)) if u.below_floor(0) => {
            format!("disk low: {} free on disk, below spool.min_free ({}); {usage}", mib(free), mib(floor))
        }
        _ => format!("spool full: {usage}"),
    }
}

#[cfg(test)]
mod tests {
    use super::{PAUSE_REMINDER, Pause, pause_reason};
    use frazil_spool::Usage;
    use std::time::{Duration, Instant};

    #[test]
    fn a_lasting_pause_is_logged_again_every_reminder_interval() {
        let t0 = Instant::now();
        let mut p = Pause::default();
        assert!(!p.room(), "no pause to end");
        assert_eq!(p.full(t0).as_deref(), Some(""));
        assert_eq!(p.full(t0 + Duration::from_secs(1)), None);
        assert_eq!(p.full(t0 + PAUSE_REMINDER - Duration::from_millis(1)), None);
        assert_eq!(p.full(t0 + PAUSE_REMINDER).as_deref(), Some(" (paused for 300s)"));
        assert_eq!(p.full(t0 + PAUSE_REMINDER * 2 - Duration::from_secs(1)), None);
        assert_eq!(p.full(t0 + PAUSE_REMINDER * 2).as_deref(), Some(" (paused for 600s)"));
        assert!(p.room(), "the pause ends");
        assert!(!p.room());
        // A new pause starts afresh.
        assert_eq!(p.full(t0 + PAUSE_REMINDER * 3).as_deref(), Some(""));
        assert_eq!(p.full(t0 + PAUSE_REMINDER * 4).as_deref(), Some(" (paused for 300s)"));
    }

    #[test]
    fn a_pause_names_the_limit_that_caused_it() {
        let mib = 1 << 20;
        let u = Usage {
            bytes: 17 * mib,
            max_bytes: Some(16 * mib),
            free_disk: Some(1000 * mib),
            min_free_bytes: Some(256 * mib),
        };
        assert_eq!(
            pause_reason(&u, false),
            "spool full: 17.0 MiB spooled of 16.0 MiB allowed, 1000.0 MiB free on disk, at spool.max_bytes"
        );
        let low = Usage { bytes: 3 * mib, free_disk: Some(100 * mib), ..u };
        assert!(
            pause_reason(&low, false)
                .starts_with("disk low: 100.0 MiB free on disk, below spool.min_free (256.0 MiB); 3.0 MiB spooled"),
            "{}",
            pause_reason(&low, false)
        );
        assert!(pause_reason(&low, true).starts_with("disk full: "), "{}", pause_reason(&low, true));
        let none = Usage { bytes: 3 * mib, max_bytes: None, free_disk: None, min_free_bytes: None };
        assert_eq!(pause_reason(&none, false), "spool full: 3.0 MiB spooled");
    }
}
