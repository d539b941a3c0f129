//! The churn schedule (`--churn RATE`): when a thread closes and reopens a connection.
//!
//! Inside the steady window only, on absolute times: the k-th churn of a thread is due
//! `k / rate` seconds after the window opened, so a late loop turn catches up instead of
//! lowering the rate. Each thread churns its share, `RATE / threads`. Pure: the time is
//! passed in.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub(super) struct ChurnClock {
    start: Instant,
    per_sec: f64,
    /// Churns taken so far.
    taken: u64,
}

impl ChurnClock {
    /// A schedule of `per_sec` churns a second from `start` (the window's opening).
    pub(super) fn new(start: Instant, per_sec: f64) -> ChurnClock {
        ChurnClock { start, per_sec, taken: 0 }
    }

    /// When the next churn is due: the first one period after the start.
    pub(super) fn next_at(&self) -> Instant {
        self.start + Duration::from_secs_f64((self.taken + 1) as f64 / self.per_sec)
    }

    /// True if a churn is due at `now`, moving past it.
    pub(super) fn take_due(&mut self, now: Instant) -> bool {
        let due = self.next_at() <= now;
        self.taken += u64::from(due);
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn churns_are_due_every_period_from_the_window_start() {
        let t0 = Instant::now();
        let mut c = ChurnClock::new(t0, 10.0); // every 100 ms
        assert_eq!(c.next_at(), t0 + ms(100));
        assert!(!c.take_due(t0 + ms(99)));
        assert!(c.take_due(t0 + ms(100)));
        assert!(!c.take_due(t0 + ms(150)));
        assert_eq!(c.next_at(), t0 + ms(200));
    }

    #[test]
    fn a_late_turn_catches_up_so_the_rate_holds() {
        let t0 = Instant::now();
        let mut c = ChurnClock::new(t0, 20.0); // every 50 ms
        let mut n = 0;
        while c.take_due(t0 + ms(1000)) {
            n += 1;
        }
        assert_eq!(n, 20);
    }
}
