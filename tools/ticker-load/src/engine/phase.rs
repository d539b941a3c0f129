//! The phase clock: ramp (and warmup) → steady window → closing → done.
//!
//! The coordinator owns the window and the stop flag; each thread follows them on its
//! own, one decision per loop turn. [`Phase::step`] is that decision, pure: it takes
//! `now` and what the thread knows, and says what to do; the engine does it.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Opening connections, then waiting for the coordinator's window (the warmup).
    Ramp,
    Steady {
        cpu_at_start: Duration,
        since: Instant,
    },
    Closing {
        deadline: Instant,
    },
}

/// What a loop turn must do about the phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Stay,
    /// The window has opened: start measuring.
    EnterSteady,
    /// The window has ended or the run was stopped: send close frames.
    Close,
    /// The closing handshakes are over, or out of time: leave the loop.
    Finish,
}

impl Phase {
    /// The decision at `now`, given the steady window (if the coordinator has set it),
    /// the stop flag, and whether the thread has no connections left.
    pub(super) fn step(
        &self,
        now: Instant,
        window: Option<(Instant, Instant)>,
        stopped: bool,
        no_conns: bool,
    ) -> Step {
        let over = stopped || window.is_some_and(|(_, end)| now >= end);
        match *self {
            Phase::Ramp => match window {
                Some((start, end)) if now >= start && now < end && !stopped => Step::EnterSteady,
                _ if over => Step::Close,
                _ => Step::Stay,
            },
            Phase::Steady { .. } if over => Step::Close,
            Phase::Steady { .. } => Step::Stay,
            Phase::Closing { deadline } if no_conns || now >= deadline => Step::Finish,
            Phase::Closing { .. } => Step::Stay,
        }
    }

    /// While closing, the time the loop gives up waiting for close echoes.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match *self {
            Phase::Closing { deadline } => Some(deadline),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    const STEADY: fn(Instant) -> Phase =
        |since| Phase::Steady { cpu_at_start: Duration::ZERO, since };

    #[test]
    fn the_ramp_waits_until_the_window_opens_then_measures() {
        let t0 = Instant::now();
        let window = Some((t0 + secs(2), t0 + secs(5)));
        assert_eq!(Phase::Ramp.step(t0, None, false, false), Step::Stay);
        assert_eq!(Phase::Ramp.step(t0 + secs(1), window, false, false), Step::Stay, "warmup");
        assert_eq!(Phase::Ramp.step(t0 + secs(2), window, false, false), Step::EnterSteady);
    }

    #[test]
    fn a_thread_that_sees_the_window_only_after_its_end_closes_without_measuring() {
        let t0 = Instant::now();
        let window = Some((t0 + secs(2), t0 + secs(5)));
        assert_eq!(Phase::Ramp.step(t0 + secs(5), window, false, false), Step::Close);
    }

    #[test]
    fn a_stop_closes_from_the_ramp_and_from_the_window() {
        let t0 = Instant::now();
        let window = Some((t0, t0 + secs(5)));
        assert_eq!(Phase::Ramp.step(t0, None, true, false), Step::Close);
        assert_eq!(Phase::Ramp.step(t0 + secs(1), window, true, false), Step::Close);
        assert_eq!(STEADY(t0).step(t0 + secs(1), window, true, false), Step::Close);
    }

    #[test]
    fn the_window_closes_at_its_end() {
        let t0 = Instant::now();
        let window = Some((t0, t0 + secs(5)));
        assert_eq!(STEADY(t0).step(t0 + secs(4), window, false, false), Step::Stay);
        assert_eq!(STEADY(t0).step(t0 + secs(5), window, false, false), Step::Close);
    }

    #[test]
    fn closing_finishes_when_every_connection_is_gone_or_at_the_deadline() {
        let t0 = Instant::now();
        let closing = Phase::Closing { deadline: t0 + secs(2) };
        assert_eq!(closing.deadline(), Some(t0 + secs(2)));
        assert_eq!(closing.step(t0, None, true, false), Step::Stay);
        assert_eq!(closing.step(t0, None, true, true), Step::Finish);
        assert_eq!(closing.step(t0 + secs(2), None, true, false), Step::Finish);
        assert_eq!(Phase::Ramp.deadline(), None);
    }
}
