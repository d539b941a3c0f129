//! The ramp schedule: which of the run's connections a thread opens, and when.
//!
//! Connections are numbered globally; thread `t` of `n` opens `t`, `t + n`, `t + 2n`...
//! and connection `i` starts `i / rate` seconds after the run's start, whichever thread
//! owns it. Pure: the time is passed in.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub(super) struct Ramp {
    t0: Instant,
    per_sec: f64,
    /// Global index of this thread's next connection.
    next: usize,
    stride: usize,
    total: usize,
    reported: bool,
}

impl Ramp {
    /// The schedule of thread `thread` of `threads`, for `total` connections at
    /// `per_sec` a second from `t0`.
    pub(super) fn new(
        t0: Instant,
        per_sec: f64,
        thread: usize,
        threads: usize,
        total: usize,
    ) -> Ramp {
        Ramp { t0, per_sec, next: thread, stride: threads, total, reported: false }
    }

    /// When the next connection is due; `None` once every one has started.
    pub(super) fn next_at(&self) -> Option<Instant> {
        (self.next < self.total)
            .then(|| self.t0 + Duration::from_secs_f64(self.next as f64 / self.per_sec))
    }

    /// The global index of the next connection if it is due at `now`, moving past it.
    pub(super) fn take_due(&mut self, now: Instant) -> Option<usize> {
        let due = self.next_at()? <= now;
        due.then(|| {
            let i = self.next;
            self.next += self.stride;
            i
        })
    }

    /// True exactly once: at the first call after every connection has started and
    /// none is still opening (`in_flight`), so the coordinator hears it once per thread.
    pub(super) fn take_done(&mut self, in_flight: usize) -> bool {
        let done = !self.reported && self.next >= self.total && in_flight == 0;
        self.reported |= done;
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_thread_takes_every_nth_connection_at_its_global_start_time() {
        let t0 = Instant::now();
        // 10 per second: connection i is due at i * 100 ms. Thread 1 of 3 owns 1, 4, 7.
        let mut r = Ramp::new(t0, 10.0, 1, 3, 8);
        assert_eq!(r.next_at(), Some(t0 + ms(100)));
        assert_eq!(r.take_due(t0 + ms(99)), None);
        assert_eq!(r.take_due(t0 + ms(100)), Some(1));
        assert_eq!(r.take_due(t0 + ms(100)), None, "4 is due at 400 ms");
        assert_eq!(r.take_due(t0 + ms(1000)), Some(4));
        assert_eq!(r.take_due(t0 + ms(1000)), Some(7));
        assert_eq!(r.take_due(t0 + ms(1000)), None);
        assert_eq!(r.next_at(), None);
    }

    #[test]
    fn the_ramp_is_done_once_everything_started_and_nothing_is_opening() {
        let t0 = Instant::now();
        let mut r = Ramp::new(t0, 1000.0, 0, 1, 2);
        assert!(!r.take_done(0), "nothing started yet");
        r.take_due(t0 + ms(5));
        r.take_due(t0 + ms(5));
        assert!(!r.take_done(1), "one still opening");
        assert!(r.take_done(0));
        assert!(!r.take_done(0), "reported once");
    }

    #[test]
    fn a_thread_without_connections_is_done_at_once() {
        let mut r = Ramp::new(Instant::now(), 1.0, 3, 4, 2);
        assert_eq!(r.next_at(), None);
        assert!(r.take_done(0));
    }
}
