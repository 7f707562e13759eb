//! Jittered exponential backoff, in one place. Every retry loop in frazil (broker, object store,
//! catalog) asks this for its next delay, so a fleet of gateways that lose the same link does not
//! come back in lock-step.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff { base, max, attempt: 0 }
    }

    /// The delay before the next attempt: "full jitter" over an exponentially growing window,
    /// never less than half the window so a retry does not turn into a busy loop.
    pub fn next_delay(&mut self) -> Duration {
        let window = self.base.saturating_mul(1u32 << self.attempt.min(20)).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = window / 2;
        half + half.mul_f64(fastrand::f64())
    }

    /// How many delays have been handed out since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let d0 = b.next_delay();
        assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100), "{d0:?}");
        let d1 = b.next_delay();
        assert!(d1 >= Duration::from_millis(100) && d1 <= Duration::from_millis(200), "{d1:?}");
        // Windows 400ms, 800ms, 1.6s, then capped at 2s.
        for _ in 0..3 {
            b.next_delay();
        }
        for _ in 0..30 {
            let d = b.next_delay();
            assert!(d >= Duration::from_secs(1) && d <= Duration::from_secs(2), "{d:?}");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn jitter_spreads_delays() {
        let delays: std::collections::BTreeSet<_> =
            (0..20).map(|_| Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).next_delay()).collect();
        assert!(delays.len() > 10, "delays should differ: {delays:?}");
    }
}
