//! The per-thread measuring point the connections report to: it decides what counts
//! (steady window or not, ramp or churn) and keeps the per-second interval for the
//! live line.

use std::time::{Duration, Instant};

use crate::deflate::Accepted;
use crate::delta::DeltaStep;
use crate::fairness::ConnLatency;
use crate::outcome::{End, Origin};
use crate::receiver::{SeqStep, SeqTracker};
use crate::scan::{Fields, Kind};
use crate::stats::{Counters, Hists, Latency, Reason, Sample};
use crate::subscribe::SubStep;

#[derive(Debug, Default)]
pub(crate) struct Meter {
    pub(crate) counters: Counters,
    pub(crate) hists: Hists,
    /// Tick latency since the last sample, whatever the phase.
    interval: Latency,
    interval_messages: u64,
    /// Inside the steady window: the engine sets this once per loop turn.
    pub(crate) steady: bool,
    /// When the first ramp connect started, and when the last ramp connection opened.
    pub(crate) first_connect: Option<Instant>,
    pub(crate) last_open: Option<Instant>,
}

impl Meter {
    /// A connect is starting at `now`.
    pub(crate) fn on_start(&mut self, origin: Origin, now: Instant) {
        match origin {
            Origin::Ramp => {
                self.counters.attempted += 1;
                self.first_connect.get_or_insert(now);
            }
            Origin::Churn => self.counters.churn.reconnects += 1,
        }
    }

    /// A connection opened `elapsed` after its connect (or its churn close) started.
    pub(crate) fn on_open(&mut self, origin: Origin, elapsed: Duration, now: Instant) {
        let us = elapsed.as_micros() as u64;
        match origin {
            Origin::Ramp => {
                self.counters.opened += 1;
                self.hists.handshake.record(us);
                self.last_open = Some(now);
            }
            Origin::Churn => {
                self.counters.churn.reconnected += 1;
                self.hists.reconnect.record(us);
            }
        }
    }

    /// A churn reconnect got its token `elapsed` after the churn close.
    pub(crate) fn on_token(&mut self, elapsed: Duration) {
        self.hists.token.record(elapsed.as_micros() as u64);
    }

    /// A connection ended: counted by how, and why. A reconnect that never opened is a
    /// churn failure; a connection that opened and was then dropped is a drop, however
    /// it was opened.
    pub(crate) fn on_end(&mut self, origin: Origin, end: End) {
        let c = &mut self.counters;
        match (end, origin) {
            (End::Failed(reason), Origin::Ramp) => *c.failed.entry(reason).or_default() += 1,
            (End::Failed(reason), Origin::Churn) => {
                *c.churn.failed.entry(reason).or_default() += 1;
            }
            (End::Dropped(reason), _) => *c.dropped.entry(reason).or_default() += 1,
            (End::Closed, _) => c.closed_clean += 1,
            (End::Churned, _) => c.churn.closed_clean += 1,
        }
    }

    /// A connection's steady-window record is complete (it is closing or ended): its
    /// median joins the fairness histogram.
    pub(crate) fn retire(&mut self, latency: &mut ConnLatency) {
        if let Some(median) = latency.take_median() {
            self.hists.conn_median.record(median);
        }
    }

    /// `n` bytes read from a socket.
    pub(crate) fn on_bytes(&mut self, n: usize) {
        self.counters.bytes += n as u64;
        if self.steady {
            self.counters.steady_bytes += n as u64;
        }
    }

    /// `--deflate`: the upgrade's answer accepted permessage-deflate as `accepted`, or
    /// (`None`) did not.
    pub(crate) fn on_deflate_answer(&mut self, accepted: Option<&Accepted>) {
        let c = &mut self.counters.deflate;
        match accepted {
            Some(a) => *c.accepted.entry(a.to_string()).or_default() += 1,
            None => c.declined += 1,
        }
    }

    /// A compressed message of `compressed` payload bytes inflated to `inflated`.
    pub(crate) fn on_compressed(&mut self, compressed: usize, inflated: usize) {
        if self.steady {
            let c = &mut self.counters.deflate;
            c.messages += 1;
            c.compressed_bytes += compressed as u64;
            c.inflated_bytes += inflated as u64;
        }
    }

    /// One data message received at `now_us` (Unix µs) on a connection with `seq` and
    /// its own latency record `mine`; `set` is its `--subscribe` set, if any. `delta`
    /// is what a ticker message did to a `--delta` connection's state: a message on the
    /// delta chain is judged by the chain, not by its `seq` (gaps are normal there).
    pub(crate) fn on_message(
        &mut self,
        seq: &mut SeqTracker,
        mine: &mut ConnLatency,
        fields: Fields,
        set: Option<u32>,
        now_us: u64,
        delta: Option<DeltaStep>,
    ) {
        self.counters.messages += 1;
        self.interval_messages += 1;
        let steady = self.steady;
        if steady {
            self.counters.steady_messages += 1;
        }
        if matches!(fields.kind, Kind::Subscriptions | Kind::Error) {
            return; // answers, not ticks, whatever numbers they hold
        }
        let chain = delta.filter(|d| !matches!(d, DeltaStep::Plain | DeltaStep::Unreadable));
        // Observed in every phase so the baseline is set before the window opens.
        let step = if chain.is_some() { None } else { fields.seq.map(|s| seq.observe(s)) };
        if step == Some(SeqStep::Snapshot) {
            return; // a repeat of a tick already counted, with its (older) ts_us
        }
        if let Some(ts) = fields.ts_us {
            if ts > now_us && steady {
                self.counters.steady_future_ts += 1;
            }
            let latency = now_us.saturating_sub(ts);
            self.interval.record(latency);
            if steady {
                self.hists.tick.record(latency);
                mine.record(latency);
            }
        }
        if let (Some(d), true) = (delta, steady) {
            self.counters.delta.count(d);
        }
        if chain.is_some() {
            // A tick received; none is "missed" by seq in a delta session.
            if steady {
                self.counters.steady_ticks += 1;
                if let Some(set) = set {
                    self.counters.subscribe.set_mut(set).ticks += 1;
                }
            }
            return;
        }
        let (Some(step), true) = (step, steady) else { return };
        let c = &mut self.counters;
        let (ticks, missed) = match step {
            SeqStep::First | SeqStep::Next => (1, 0),
            SeqStep::Gap(missed) => (1, missed),
            SeqStep::Repeat => {
                c.steady_repeats += 1;
                return;
            }
            SeqStep::Backwards => {
                c.steady_backwards += 1;
                return;
            }
            SeqStep::Snapshot => return,
        };
        c.steady_ticks += ticks;
        c.steady_missed += missed;
        if let Some(set) = set {
            let set = c.subscribe.set_mut(set);
            set.ticks += ticks;
            set.missed += missed;
        }
    }

    /// A connection opened with the `--subscribe` set `set`.
    pub(crate) fn on_set_open(&mut self, set: u32) {
        self.counters.subscribe.set_mut(set).opened += 1;
    }

    /// A `--subscribe-random` connection moved on: `subscribe` sent, answered, refused.
    pub(crate) fn on_subscribe(&mut self, step: &SubStep) {
        let c = &mut self.counters.subscribe;
        match step {
            SubStep::Nothing => {}
            SubStep::Send { available, .. } => {
                c.sent += 1;
                c.symbols_seen = c.symbols_seen.max(*available as u64);
            }
            SubStep::Accepted(fingerprint) => {
                c.accepted += 1;
                c.distinct.insert(*fingerprint);
            }
            SubStep::Refused(refusal) => {
                *c.refused.entry(Reason::Subscribe(*refusal, None)).or_default() += 1;
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
        Fields { seq: Some(seq), ts_us: Some(ts_us), kind: Kind::Ticker }
    }

    #[test]
    fn only_the_steady_window_counts_gaps_and_latency() {
        let mut m = Meter::default();
        let mut seq = SeqTracker::default();
        let mut mine = ConnLatency::default();
        let mut msg =
            |m: &mut Meter, fields, now| m.on_message(&mut seq, &mut mine, fields, None, now, None);
        msg(&mut m, Fields::default(), 0); // welcome
        msg(&mut m, tick(10, 1000), 1500); // snapshot: baseline
        msg(&mut m, tick(12, 1000), 1500); // gap before the window: not counted
        m.steady = true;
        msg(&mut m, tick(12, 2000), 2100); // repeat
        msg(&mut m, tick(13, 3000), 3200);
        msg(&mut m, tick(16, 4000), 4300); // missed 14, 15
        msg(&mut m, tick(17, 9000), 5000); // ts in the future: latency 0
        let c = &m.counters;
        assert_eq!((c.messages, c.steady_messages), (7, 4));
        assert_eq!((c.steady_ticks, c.steady_missed, c.steady_repeats), (3, 2, 1));
        assert_eq!(c.steady_future_ts, 1);
        assert_eq!(m.hists.tick.count(), 4);
        assert_eq!(m.hists.tick.max(), Some(300));
        assert_eq!(mine.samples(), 4, "the connection's own record: steady ticks only");
        let s = m.take_sample(0, 1);
        assert_eq!((s.messages, s.latency.count()), (7, 6));
        assert_eq!(m.take_sample(1, 1).messages, 0);
    }

    #[test]
    fn a_snapshot_after_a_subscription_change_is_neither_tick_nor_repeat_nor_latency() {
        let mut m = Meter { steady: true, ..Meter::default() };
        let mut seq = SeqTracker::default();
        let mut mine = ConnLatency::default();
        let answer = Fields { kind: Kind::Subscriptions, ..Fields::default() };
        let error = Fields { seq: Some(3), ts_us: Some(1), kind: Kind::Error };
        let mut msg = |m: &mut Meter, fields, now| {
            if fields == answer {
                seq.resubscribed();
            }
            m.on_message(&mut seq, &mut mine, fields, Some(1), now, None)
        };
        msg(&mut m, tick(10, 1000), 1100);
        msg(&mut m, answer, 1200); // {"type":"subscriptions",...}
        msg(&mut m, tick(10, 1000), 50_000); // the snapshot: tick 10 again, old ts
        msg(&mut m, tick(11, 60_000), 60_100);
        msg(&mut m, tick(11, 60_000), 60_200); // a plain repeat is still one
        msg(&mut m, error, 60_300); // not a tick, whatever numbers it holds
        let c = &m.counters;
        assert_eq!(c.messages, 6);
        assert_eq!(
            (c.steady_ticks, c.steady_missed, c.steady_repeats, c.steady_backwards),
            (2, 0, 1, 0)
        );
        assert_eq!(m.hists.tick.max(), Some(200), "the snapshot's 49 ms are not a latency");
        assert_eq!(m.hists.tick.count(), 3);
        assert_eq!(
            c.subscribe.sets[1],
            crate::stats::SetCounters { opened: 0, ticks: 2, missed: 0 }
        );
    }

    #[test]
    fn ticks_and_gaps_are_counted_per_subscribe_set_too() {
        let mut m = Meter { steady: true, ..Meter::default() };
        let (mut a, mut b) = (SeqTracker::default(), SeqTracker::default());
        let mut mine = ConnLatency::default();
        m.on_set_open(0);
        m.on_set_open(2);
        m.on_set_open(2);
        for s in [1, 2, 5] {
            m.on_message(&mut a, &mut mine, tick(s, 1), Some(0), 2, None);
            m.on_message(&mut b, &mut mine, tick(s, 1), Some(2), 2, None);
        }
        let sets: Vec<(u64, u64, u64)> =
            m.counters.subscribe.sets.iter().map(|s| (s.opened, s.ticks, s.missed)).collect();
        assert_eq!(sets, [(1, 3, 2), (0, 0, 0), (2, 3, 2)]);
        assert_eq!((m.counters.steady_ticks, m.counters.steady_missed), (6, 4));
    }

    #[test]
    fn a_delta_session_counts_its_chain_not_its_seq_gaps() {
        let mut m = Meter { steady: true, ..Meter::default() };
        let mut seq = SeqTracker::default();
        let mut mine = ConnLatency::default();
        let mut msg = |m: &mut Meter, s, ts, now, step| {
            m.on_message(&mut seq, &mut mine, tick(s, ts), Some(0), now, Some(step))
        };
        msg(&mut m, 10, 1000, 1100, DeltaStep::Full);
        msg(&mut m, 15, 2000, 2200, DeltaStep::Chained { heartbeat: false }); // gap: normal
        msg(&mut m, 16, 2500, 2600, DeltaStep::Chained { heartbeat: true }); // a tick too
        msg(&mut m, 30, 3000, 3300, DeltaStep::Break);
        msg(&mut m, 31, 3100, 3400, DeltaStep::Unsynced);
        msg(&mut m, 40, 4000, 4100, DeltaStep::Plain); // seq-checked as before
        let c = &m.counters;
        assert_eq!(
            c.delta,
            crate::delta::DeltaCounters {
                full: 1,
                changes: 2,
                heartbeats: 1,
                breaks: 1,
                unsynced: 1,
                plain: 1
            }
        );
        assert_eq!((c.steady_ticks, c.steady_missed), (6, 0), "no seq gap counted as missed");
        assert_eq!(c.subscribe.sets[0].ticks, 6);
        assert_eq!(m.hists.tick.count(), 6);
        assert_eq!(m.hists.tick.max(), Some(300));
    }

    #[test]
    fn bytes_and_compressed_messages_count_in_the_window_apart() {
        let mut m = Meter::default();
        m.on_bytes(100);
        m.on_compressed(10, 50);
        m.on_deflate_answer(None);
        m.steady = true;
        m.on_bytes(20);
        m.on_compressed(30, 90);
        let a = crate::deflate::parse_answer("permessage-deflate; server_no_context_takeover");
        m.on_deflate_answer(a.ok().as_ref());
        let c = &m.counters;
        assert_eq!((c.bytes, c.steady_bytes), (120, 20));
        let d = &c.deflate;
        assert_eq!((d.messages, d.compressed_bytes, d.inflated_bytes), (1, 30, 90));
        assert_eq!(d.declined, 1);
        assert_eq!(d.accepted.get("permessage-deflate; server_no_context_takeover"), Some(&1));
    }

    #[test]
    fn random_subscribes_count_their_sets_and_refusals() {
        use crate::subscribe::Refusal;
        let mut m = Meter::default();
        m.on_subscribe(&SubStep::Send { message: Vec::new(), available: 30 });
        m.on_subscribe(&SubStep::Send { message: Vec::new(), available: 30 });
        m.on_subscribe(&SubStep::Send { message: Vec::new(), available: 30 });
        m.on_subscribe(&SubStep::Accepted(7));
        m.on_subscribe(&SubStep::Accepted(7));
        m.on_subscribe(&SubStep::Refused(Refusal::UnknownSymbol));
        m.on_subscribe(&SubStep::Nothing);
        let c = &m.counters.subscribe;
        assert_eq!((c.sent, c.accepted, c.distinct.len(), c.symbols_seen), (3, 2, 1, 30));
        assert_eq!(c.refused.get(&Reason::Subscribe(Refusal::UnknownSymbol, None)), Some(&1));
    }

    #[test]
    fn churn_reconnects_and_closes_are_counted_apart_from_the_ramp() {
        let mut m = Meter::default();
        let now = Instant::now();
        let ms = Duration::from_millis;
        m.on_start(Origin::Ramp, now);
        m.on_open(Origin::Ramp, ms(2), now);
        m.on_start(Origin::Churn, now);
        m.on_token(ms(1));
        m.on_open(Origin::Churn, ms(3), now);
        m.on_start(Origin::Churn, now);
        m.on_end(Origin::Churn, End::Failed(Reason::TokenStatus(503)));
        m.on_end(Origin::Ramp, End::Churned);
        m.on_end(Origin::Churn, End::Dropped(Reason::Eof));
        let c = &m.counters;
        assert_eq!((c.attempted, c.opened), (1, 1));
        assert!(c.failed.is_empty(), "a reconnect failure is not a ramp failure");
        assert_eq!(c.dropped.get(&Reason::Eof), Some(&1), "a reopened connection can drop");
        assert_eq!((c.churn.reconnects, c.churn.reconnected, c.churn.closed_clean), (2, 1, 1));
        assert_eq!(c.churn.failed.get(&Reason::TokenStatus(503)), Some(&1));
        assert_eq!((m.hists.handshake.count(), m.hists.reconnect.count()), (1, 1));
        assert_eq!(m.hists.token.count(), 1);
        assert_eq!((m.first_connect, m.last_open), (Some(now), Some(now)));
    }

    #[test]
    fn a_retired_connection_adds_its_median_once() {
        let mut m = Meter::default();
        let mut mine = ConnLatency::default();
        for _ in 0..crate::fairness::MIN_SAMPLES {
            mine.record(1000);
        }
        m.retire(&mut mine);
        m.retire(&mut mine);
        assert_eq!(m.hists.conn_median.count(), 1);
        assert!(m.hists.conn_median.percentile(50.0).unwrap().abs_diff(1000) <= 32);
    }
}
