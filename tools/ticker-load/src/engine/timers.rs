//! The loop's periodic timers and its wake-up time. Pure: the time is passed in.

use std::time::{Duration, Instant};

/// Fires at most once per `period`, the next time counted from when it fired: a late
/// turn delays the next firing instead of causing a burst.
#[derive(Debug)]
pub(super) struct Every {
    next: Instant,
    period: Duration,
}

impl Every {
    /// First fires at `start + period`.
    pub(super) fn new(start: Instant, period: Duration) -> Every {
        Every { next: start + period, period }
    }

    pub(super) fn fire(&mut self, now: Instant) -> bool {
        let due = now >= self.next;
        if due {
            self.next = now + self.period;
        }
        due
    }

    pub(super) fn next(&self) -> Instant {
        self.next
    }
}

/// Numbers the run's whole seconds for the per-second samples.
#[derive(Debug)]
pub(super) struct Seconds {
    t0: Instant,
    /// The end of the second being measured, in seconds from `t0`.
    next: u64,
}

impl Seconds {
    pub(super) fn new(t0: Instant) -> Seconds {
        Seconds { t0, next: 1 }
    }

    /// The second to report if it ended by `now`. After a stall, the seconds skipped
    /// are folded into the one reported: each sample is one interval, never empty ones.
    pub(super) fn ended(&mut self, now: Instant) -> Option<u64> {
        if now < self.t0 + Duration::from_secs(self.next) {
            return None;
        }
        let second = self.next - 1;
        self.next = now.duration_since(self.t0).as_secs() + 1;
        Some(second)
    }

    /// The second being measured, for the last sample.
    pub(super) fn current(&self) -> u64 {
        self.next - 1
    }
}

/// The earliest of `latest` and the deadlines that are set.
pub(super) fn earliest(
    latest: Instant,
    deadlines: impl IntoIterator<Item = Option<Instant>>,
) -> Instant {
    deadlines.into_iter().flatten().fold(latest, Instant::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_periodic_timer_reschedules_from_when_it_fired() {
        let t0 = Instant::now();
        let mut every = Every::new(t0, ms(100));
        assert!(!every.fire(t0 + ms(99)));
        assert!(every.fire(t0 + ms(250)));
        assert_eq!(every.next(), t0 + ms(350));
        assert!(!every.fire(t0 + ms(300)));
        assert!(every.fire(t0 + ms(350)));
    }

    #[test]
    fn each_second_is_reported_once_and_a_stall_folds_seconds_together() {
        let t0 = Instant::now();
        let mut s = Seconds::new(t0);
        assert_eq!(s.ended(t0 + ms(999)), None);
        assert_eq!(s.ended(t0 + ms(1000)), Some(0));
        assert_eq!(s.ended(t0 + ms(1500)), None);
        assert_eq!(s.current(), 1);
        // A 2.5 s stall: second 1 is reported (covering 1..3.5 s), then second 3.
        assert_eq!(s.ended(t0 + ms(3500)), Some(1));
        assert_eq!(s.ended(t0 + ms(3900)), None);
        assert_eq!(s.ended(t0 + ms(4000)), Some(3));
    }

    #[test]
    fn the_wake_up_is_the_earliest_deadline_that_is_set() {
        let t0 = Instant::now();
        assert_eq!(earliest(t0 + ms(50), [None, None]), t0 + ms(50));
        assert_eq!(earliest(t0 + ms(50), [Some(t0 + ms(70)), Some(t0 + ms(20))]), t0 + ms(20));
    }
}
