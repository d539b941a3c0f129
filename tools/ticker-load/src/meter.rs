//! The per-thread measuring point the connections report to: it decides what counts
//! (steady window or not) and keeps the per-second interval for the live line.

use std::time::Duration;

use crate::conn::End;
use crate::receiver::{SeqStep, SeqTracker};
use crate::scan::Fields;
use crate::stats::{Counters, Latency, Sample};

#[derive(Debug, Default)]
pub(crate) struct Meter {
    pub(crate) counters: Counters,
    pub(crate) handshake: Latency,
    pub(crate) steady_latency: Latency,
    /// Tick latency since the last sample, whatever the phase.
    interval: Latency,
    interval_messages: u64,
    /// Inside the steady window: the engine sets this once per loop turn.
    pub(crate) steady: bool,
}

impl Meter {
    pub(crate) fn on_open(&mut self, handshake: Duration) {
        self.counters.opened += 1;
        self.handshake.record(handshake.as_micros() as u64);
    }

    /// A connection ended: counted by how, and why.
    pub(crate) fn on_end(&mut self, end: End) {
        let c = &mut self.counters;
        match end {
            End::Failed(reason) => *c.failed.entry(reason).or_default() += 1,
            End::Dropped(reason) => *c.dropped.entry(reason).or_default() += 1,
            End::Closed => c.closed_clean += 1,
        }
    }

    /// One data message received at `now_us` (Unix µs) on the connection with `seq`.
    pub(crate) fn on_message(&mut self, seq: &mut SeqTracker, fields: Fields, now_us: u64) {
        self.counters.messages += 1;
        self.interval_messages += 1;
        let steady = self.steady;
        if steady {
            self.counters.steady_messages += 1;
        }
        if let Some(ts) = fields.ts_us {
            if ts > now_us && steady {
                self.counters.steady_future_ts += 1;
            }
            let latency = now_us.saturating_sub(ts);
            self.interval.record(latency);
            if steady {
                self.steady_latency.record(latency);
            }
        }
        if let Some(s) = fields.seq {
            // Observed in every phase so the baseline is set before the window opens.
            let step = seq.observe(s);
            if steady {
                let c = &mut self.counters;
                match step {
                    SeqStep::First | SeqStep::Next => c.steady_ticks += 1,
                    SeqStep::Gap(missed) => {
                        c.steady_ticks += 1;
                        c.steady_missed += missed;
                    }
                    SeqStep::Repeat => c.steady_repeats += 1,
                    SeqStep::Backwards => c.steady_backwards += 1,
                }
            }
        }
    }

    /// The interval since the last sample, as second `second`; starts a new interval.
    pub(crate) fn take_sample(&mut self, second: u64, open: u64) -> Sample {
        Sample {
            second,
            open,
            messages: std::mem::take(&mut self.interval_messages),
            latency: std::mem::take(&mut self.interval),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(seq: u64, ts_us: u64) -> Fields {
        Fields { seq: Some(seq), ts_us: Some(ts_us) }
    }

    #[test]
    fn only_the_steady_window_counts_gaps_and_latency() {
        let mut m = Meter::default();
        let mut seq = SeqTracker::default();
        m.on_message(&mut seq, Fields::default(), 0); // welcome
        m.on_message(&mut seq, tick(10, 1000), 1500); // snapshot: baseline
        m.on_message(&mut seq, tick(12, 1000), 1500); // gap before the window: not counted
        m.steady = true;
        m.on_message(&mut seq, tick(12, 2000), 2100); // repeat
        m.on_message(&mut seq, tick(13, 3000), 3200);
        m.on_message(&mut seq, tick(16, 4000), 4300); // missed 14, 15
        m.on_message(&mut seq, tick(17, 9000), 5000); // ts in the future: latency 0
        let c = &m.counters;
        assert_eq!((c.messages, c.steady_messages), (7, 4));
        assert_eq!((c.steady_ticks, c.steady_missed, c.steady_repeats), (3, 2, 1));
        assert_eq!(c.steady_future_ts, 1);
        assert_eq!(m.steady_latency.count(), 4);
        assert_eq!(m.steady_latency.max(), Some(300));
        let s = m.take_sample(0, 1);
        assert_eq!((s.messages, s.latency.count()), (7, 6));
        assert_eq!(m.take_sample(1, 1).messages, 0);
    }
}
