//! Which symbols changed in a tick, for changes-only (`?delta=1`) sessions.
//!
//! A set's changes message at tick `seq` lists the members whose price or stale flag
//! changed in that tick, and names as `prev_seq` the set's previous message. Which ticks
//! carry a message for a set is a function of the ticks alone, never of who listens:
//! a tick where a member changed, and every heartbeat tick (`seq` a multiple of the
//! ticks in a second). So `prev_seq` is the later of the last heartbeat before `seq`
//! and the last change of any member before `seq`, each node of a cluster that saw the
//! same ticks computes the same bytes, and a set needs no state of its own: the ticker
//! keeps two numbers per symbol.
//!
//! A tick that does not follow the previous one (the first a process sees, or a gap in
//! a cluster follower's feed) counts every symbol as changed in it: that delta is then
//! the whole state, which is right whatever the session had.

use super::prices::Quote;
use crate::symbols::SymbolIndex;

/// What the ticker carries from tick to tick.
#[derive(Debug, Default)]
pub struct ChangeTracker {
    /// Each symbol's price and stale flag in the last tick.
    last: Vec<(u64, Option<bool>)>,
    /// Each symbol's last change, as of the last tick.
    changed_at: Vec<u64>,
    last_seq: Option<u64>,
}

/// One tick's changes.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub seq: u64,
    /// Ticks between heartbeats (a second's worth, at least 1).
    every: u64,
    /// Each symbol's last change before this tick.
    before: Vec<u64>,
    /// Whether each symbol changed in this tick.
    changed: Vec<bool>,
}

/// A set's message of one tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    pub prev_seq: u64,
    /// The members that changed, in the set's order.
    pub changed: Vec<SymbolIndex>,
}

impl ChangeTracker {
    /// Records tick `seq` and says what changed in it; `every` is the heartbeat period
    /// in ticks.
    pub fn observe(&mut self, seq: u64, quotes: &[Quote], every: u64) -> Changes {
        let follows =
            self.last_seq.is_some_and(|last| seq == last + 1) && self.last.len() == quotes.len();
        if !follows {
            // Nothing to compare with: every symbol counts as changed.
            self.last = vec![(u64::MAX, None); quotes.len()];
            self.changed_at = vec![seq.saturating_sub(1); quotes.len()];
        }
        let before = self.changed_at.clone();
        let mut changed = Vec::with_capacity(quotes.len());
        for ((q, last), changed_at) in quotes.iter().zip(&mut self.last).zip(&mut self.changed_at) {
            let now = (q.price.to_bits(), q.source.map(|s| s.stale));
            let moved = !follows || *last != now;
            if moved {
                *changed_at = seq;
                *last = now;
            }
            changed.push(moved);
        }
        self.last_seq = Some(seq);
        Changes { seq, every: every.max(1), before, changed }
    }
}

impl Changes {
    /// Whether this tick is a heartbeat (every changes-only set hears from it).
    pub fn heartbeat(&self) -> bool {
        self.seq.is_multiple_of(self.every)
    }

    /// The message of the set `members` (`None`: every symbol), or `None` when the tick
    /// changed none of them and is no heartbeat.
    pub fn delta(&self, members: Option<&[SymbolIndex]>) -> Option<Delta> {
        let all = 0..self.changed.len() as SymbolIndex;
        let mut changed = Vec::new();
        let mut newest_before = 0;
        let mut visit = |i: SymbolIndex| {
            let i_us = usize::from(i);
            if self.changed.get(i_us) == Some(&true) {
                changed.push(i);
            }
            newest_before = newest_before.max(self.before.get(i_us).copied().unwrap_or(0));
        };
        match members {
            Some(m) => m.iter().copied().for_each(&mut visit),
            None => all.for_each(&mut visit),
        }
        if changed.is_empty() && !self.heartbeat() {
            return None;
        }
        let last = self.seq.saturating_sub(1);
        let heartbeat_before = last - last % self.every;
        Some(Delta { prev_seq: heartbeat_before.max(newest_before), changed })
    }
}

impl Changes {
    /// The set's last message up to and including this tick: the `seq` of the state its
    /// members have now (they have not changed since). A whole-state message with this
    /// `seq` lets the next changes message chain on at once.
    pub fn state_seq(&self, members: Option<&[SymbolIndex]>) -> u64 {
        let at = |i: usize| {
            if self.changed.get(i) == Some(&true) {
                self.seq
            } else {
                self.before.get(i).copied().unwrap_or(0)
            }
        };
        let newest = match members {
            Some(m) => m.iter().map(|&i| at(usize::from(i))).max(),
            None => (0..self.changed.len()).map(at).max(),
        };
        let heartbeat = self.seq - self.seq % self.every;
        newest.unwrap_or(0).max(heartbeat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ticker::prices::simulated as quotes;

    #[test]
    fn the_first_tick_changes_everything_and_later_ones_only_what_moved() {
        let mut t = ChangeTracker::default();
        let c = t.observe(10, &quotes(&[1.0, 2.0, 3.0]), 100);
        assert_eq!(c.delta(None), Some(Delta { prev_seq: 9, changed: vec![0, 1, 2] }));
        let c = t.observe(11, &quotes(&[1.0, 2.5, 3.0]), 100);
        assert_eq!(c.delta(None), Some(Delta { prev_seq: 10, changed: vec![1] }));
        assert_eq!(c.delta(Some(&[0, 2])), None, "no member moved, no heartbeat");
        assert_eq!(c.delta(Some(&[2, 1])).unwrap().changed, [1]);
    }

    #[test]
    fn prev_seq_is_the_sets_last_message_change_or_heartbeat() {
        let mut t = ChangeTracker::default();
        t.observe(195, &quotes(&[1.0, 2.0]), 100);
        t.observe(196, &quotes(&[1.5, 2.0]), 100); // S0 moves
        t.observe(197, &quotes(&[1.5, 2.0]), 100);
        let c = t.observe(198, &quotes(&[1.5, 2.5]), 100); // S1 moves
        // S1's set last heard at 195 (the first tick), S0's at 196.
        assert_eq!(c.delta(Some(&[1])), Some(Delta { prev_seq: 195, changed: vec![1] }));
        assert_eq!(c.delta(None).unwrap().prev_seq, 196);
        t.observe(199, &quotes(&[1.5, 2.5]), 100);
        // 200 is a heartbeat: every set hears, with nothing changed.
        let c = t.observe(200, &quotes(&[1.5, 2.5]), 100);
        assert_eq!(c.delta(Some(&[0])), Some(Delta { prev_seq: 196, changed: vec![] }));
        assert_eq!(c.state_seq(Some(&[0])), 200);
        let c = t.observe(201, &quotes(&[1.5, 3.0]), 100);
        assert_eq!(c.delta(Some(&[1])), Some(Delta { prev_seq: 200, changed: vec![1] }));
        assert_eq!(c.state_seq(Some(&[1])), 201);
        assert_eq!(c.state_seq(Some(&[0])), 200);
        let c = t.observe(202, &quotes(&[1.5, 3.0]), 100);
        // The state as of 201 is the state now: the next message builds on 201.
        assert_eq!(c.state_seq(None), 201);
    }

    #[test]
    fn a_gap_counts_every_symbol_as_changed() {
        let mut t = ChangeTracker::default();
        t.observe(1, &quotes(&[1.0, 2.0]), 100);
        t.observe(2, &quotes(&[1.0, 2.0]), 100);
        let c = t.observe(5, &quotes(&[1.0, 2.0]), 100);
        assert_eq!(c.delta(None), Some(Delta { prev_seq: 4, changed: vec![0, 1] }));
    }

    #[test]
    fn a_stale_flag_flip_is_a_change() {
        use crate::ticker::prices::SourceStamp;
        let q = |stale| {
            vec![Quote {
                symbol: "A".into(),
                price: 1.0,
                source: Some(SourceStamp { ts_ms: Some(5), stale }),
            }]
        };
        let mut t = ChangeTracker::default();
        t.observe(1, &q(false), 100);
        assert_eq!(t.observe(2, &q(false), 100).delta(None), None);
        assert_eq!(t.observe(3, &q(true), 100).delta(None).unwrap().changed, [0]);
    }

    #[test]
    fn the_same_ticks_give_the_same_messages_whenever_a_node_joined() {
        // Two nodes: one saw every tick, the other joined at 150. From the first
        // heartbeat after it joined, their messages agree.
        let walk = |seq: u64| quotes(&[1.0 + (seq / 7) as f64, 2.0 + (seq / 30) as f64]);
        let (mut a, mut b) = (ChangeTracker::default(), ChangeTracker::default());
        for seq in 100..400 {
            let ca = a.observe(seq, &walk(seq), 100);
            if seq >= 150 {
                let cb = b.observe(seq, &walk(seq), 100);
                if seq > 200 {
                    for set in [None, Some(&[0u16][..]), Some(&[1u16][..])] {
                        assert_eq!(ca.delta(set), cb.delta(set), "seq {seq}");
                    }
                }
            }
        }
    }
}
