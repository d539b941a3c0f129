//! [`TickSchedule`]: absolute tick deadlines, for the single-node ticker and the cluster
//! leader alike. It holds no clock: every question takes `now`, so the rules below are
//! tested without sleeping.
//!
//! Rules:
//! - Deadlines are `start + n * interval`, so the rate never drifts.
//! - A tick is due once `now` reaches its deadline (a clock exactly on it counts).
//! - After a tick the next deadline is one interval on. If `now` is already a whole
//!   interval or more past it, the deadlines wholly behind `now` are skipped and
//!   reported as missed (for `ticker_tick_overruns_total`); the newest of them stays, so
//!   one tick goes out at once and the schedule is back on its grid. Late by less than
//!   an interval skips nothing: that tick goes out at once and the next one is on time.
//! - The schedule never counts ticks: `seq` is the caller's and counts ticks sent, so
//!   skipped deadlines leave no gap in it.

use std::time::{Duration, Instant};

/// Where `now` stands against the next deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The deadline has come (or passed): tick now.
    Due,
    /// The deadline is this far ahead.
    Wait(Duration),
}

/// The deadlines of one run of ticks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickSchedule {
    interval: Duration,
    deadline: Instant,
}

impl TickSchedule {
    /// A schedule whose first deadline is `start`. `interval` must not be zero (the
    /// configuration allows 1ms to 1h).
    pub fn new(interval: Duration, start: Instant) -> TickSchedule {
        TickSchedule { interval, deadline: start }
    }

    /// The next tick's deadline.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Starts the grid again from `start` (after a pause, e.g. while nobody listened):
    /// the next tick is due at `start`, and the pause counts no missed deadlines.
    pub fn restart(&mut self, start: Instant) {
        self.deadline = start;
    }

    /// Whether the next tick is due at `now`, or how long until it is.
    pub fn next(&self, now: Instant) -> Next {
        if now < self.deadline { Next::Wait(self.deadline - now) } else { Next::Due }
    }

    /// Moves on after a tick (sent or not), with `now` read once the tick is done.
    /// Returns how many deadlines were skipped because `now` was a whole interval or
    /// more past the next one.
    pub fn ticked(&mut self, now: Instant) -> u32 {
        self.deadline += self.interval;
        let late = now.saturating_duration_since(self.deadline);
        if late < self.interval {
            return 0;
        }
        let missed = (late.as_nanos() / self.interval.as_nanos()) as u32;
        self.deadline += self.interval * missed;
        missed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(100);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_first_tick_is_due_at_the_start() {
        let t0 = Instant::now();
        let schedule = TickSchedule::new(TICK, t0);
        assert_eq!(schedule.next(t0), Next::Due);
        assert_eq!(schedule.next(t0 + ms(1)), Next::Due);
        assert_eq!(schedule.deadline(), t0);
    }

    #[test]
    fn a_tick_on_time_waits_a_whole_interval_for_the_next() {
        let t0 = Instant::now();
        let mut schedule = TickSchedule::new(TICK, t0);
        assert_eq!(schedule.ticked(t0), 0);
        assert_eq!(schedule.deadline(), t0 + TICK);
        assert_eq!(schedule.next(t0), Next::Wait(TICK));
        assert_eq!(schedule.next(t0 + ms(40)), Next::Wait(ms(60)));
    }

    #[test]
    fn a_clock_exactly_at_the_deadline_is_due() {
        let t0 = Instant::now();
        let mut schedule = TickSchedule::new(TICK, t0);
        schedule.ticked(t0);
        assert_eq!(
            schedule.next(t0 + TICK - Duration::from_nanos(1)),
            Next::Wait(Duration::from_nanos(1))
        );
        assert_eq!(schedule.next(t0 + TICK), Next::Due);
    }

    #[test]
    fn deadlines_stay_on_the_grid_however_long_each_tick_takes() {
        let t0 = Instant::now();
        let mut schedule = TickSchedule::new(TICK, t0);
        // Each tick finishes 30ms after its deadline: the next deadline does not drift.
        for n in 0..10u32 {
            assert_eq!(schedule.next(t0 + TICK * n), Next::Due);
            assert_eq!(schedule.ticked(t0 + TICK * n + ms(30)), 0);
            assert_eq!(schedule.deadline(), t0 + TICK * (n + 1));
        }
    }

    #[test]
    fn late_by_less_than_a_tick_skips_nothing_and_ticks_at_once() {
        let t0 = Instant::now();
        let mut schedule = TickSchedule::new(TICK, t0);
        // The tick took 190ms: the next deadline (100ms) is 90ms behind.
        assert_eq!(schedule.ticked(t0 + ms(190)), 0);
        assert_eq!(schedule.deadline(), t0 + TICK);
        assert_eq!(schedule.next(t0 + ms(190)), Next::Due);
        // That catch-up tick, done quickly, puts the schedule back on time.
        assert_eq!(schedule.ticked(t0 + ms(191)), 0);
        assert_eq!(schedule.next(t0 + ms(191)), Next::Wait(ms(9)));
    }

    #[test]
    fn late_by_exactly_one_tick_skips_one_deadline() {
        let t0 = Instant::now();
        let mut schedule = TickSchedule::new(TICK, t0);
        // Next deadline 100ms, now 200ms: a whole interval late.
        assert_eq!(schedule.ticked(t0 + ms(200)), 1);
        assert_eq!(schedule.deadline(), t0 + ms(200));
        assert_eq!(schedule.next(t0 + ms(200)), Next::Due);
    }

    #[test]
    fn late_by_many_ticks_skips_the_deadlines_behind_and_ticks_once_at_once() {
        let t0 = Instant::now();
        let mut schedule = TickSchedule::new(TICK, t0);
        // Overslept: next deadline 100ms, now 1050ms. Deadlines 100..=900 are skipped
        // (9), 1000 stays and is due now, 1100 is the one after.
        assert_eq!(schedule.ticked(t0 + ms(1050)), 9);
        assert_eq!(schedule.deadline(), t0 + ms(1000));
        assert_eq!(schedule.next(t0 + ms(1050)), Next::Due);
        assert_eq!(schedule.ticked(t0 + ms(1051)), 0);
        assert_eq!(schedule.deadline(), t0 + ms(1100));
        assert_eq!(schedule.next(t0 + ms(1051)), Next::Wait(ms(49)));
    }

    #[test]
    fn a_clock_behind_the_deadline_counts_as_on_time() {
        let t0 = Instant::now() + ms(1000);
        let mut schedule = TickSchedule::new(TICK, t0);
        // `now` before the deadline just ticked (a caller passing an older reading).
        assert_eq!(schedule.ticked(t0 - ms(500)), 0);
        assert_eq!(schedule.deadline(), t0 + TICK);
    }

    #[test]
    fn restart_puts_the_next_deadline_at_the_new_start_without_counting_the_pause() {
        let t0 = Instant::now();
        let mut schedule = TickSchedule::new(TICK, t0);
        schedule.ticked(t0);
        let resumed = t0 + ms(5000);
        schedule.restart(resumed);
        assert_eq!(schedule.next(resumed), Next::Due);
        assert_eq!(schedule.ticked(resumed + ms(10)), 0);
        assert_eq!(schedule.deadline(), resumed + TICK);
    }
}
