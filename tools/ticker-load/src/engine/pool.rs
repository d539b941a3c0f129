//! A thread's connections: a slab keyed by mio token, with how many are opening and
//! how many are open kept in step with their states, every ending counted once, and
//! every connection's fairness record retired once (when it starts closing or ends).

use std::io;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Registry, Token};
use slab::Slab;

use crate::conn::{Closer, Conn, End, Origin, State};
use crate::meter::Meter;
use crate::stats::Reason;

pub(super) struct Pool {
    conns: Slab<Conn>,
    /// Connecting, authenticating or handshaking.
    in_flight: usize,
    open: u64,
    /// The slab key after the last churned connection: churn goes round the slab.
    churn_cursor: usize,
}

/// A connection closed to churn it: what its replacement takes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Churned {
    /// Its `--subscribe` set, re-applied by the reconnect.
    pub(super) set: Option<u32>,
}

/// Timeouts the sweep applies.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Connect (+ token exchange) + upgrade.
    pub(super) open: Duration,
    /// A churn close's handshake; after it the socket is dropped.
    pub(super) churn_close: Duration,
}

impl Pool {
    pub(super) fn with_capacity(n: usize) -> Pool {
        Pool { conns: Slab::with_capacity(n), in_flight: 0, open: 0, churn_cursor: 0 }
    }

    pub(super) fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub(super) fn open(&self) -> u64 {
        self.open
    }

    pub(super) fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Registers a connection whose connect has started, under its slab key; on error
    /// the connection is dropped.
    pub(super) fn insert(&mut self, registry: &Registry, mut conn: Conn) -> io::Result<()> {
        let entry = self.conns.vacant_entry();
        conn.register(registry, Token(entry.key()))?;
        entry.insert(conn);
        self.in_flight += 1;
        Ok(())
    }

    /// Drops the connections still opening `limits.open` after they started (a failure
    /// by timeout), and the churned ones whose close is unanswered after
    /// `limits.churn_close` (not a failure).
    pub(super) fn drop_late(&mut self, now: Instant, limits: Limits, meter: &mut Meter) {
        let late: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| is_late(c.state(), c.started(), now, limits))
            .map(|(k, _)| k)
            .collect();
        for key in late {
            let mut c = self.conns.remove(key);
            if c.state().is_opening() {
                self.in_flight -= 1;
                meter.on_end(c.origin(), End::Failed(Reason::Timeout));
            } else {
                meter.counters.churn.close_timeouts += 1;
            }
            meter.retire(c.latency_mut());
        }
    }

    /// Hands a readiness event to its connection. Returns the connection's origin if
    /// it has just opened.
    pub(super) fn dispatch(
        &mut self,
        registry: &Registry,
        event: &Event,
        buf: &mut [u8],
        meter: &mut Meter,
    ) -> Option<Origin> {
        let key = event.token().0;
        let peer_closed = event.is_read_closed() || event.is_error();
        // None: removed earlier in this batch.
        let c = self.conns.get_mut(key)?;
        let was_in_flight = c.state().is_opening();
        let outcome = c.on_ready(registry, event.token(), buf, meter, peer_closed);
        let opened = (was_in_flight && c.state() == State::Open).then_some(c.origin());
        if opened.is_some() {
            self.in_flight -= 1;
            self.open += 1;
        }
        if let Err(end) = outcome {
            // The state is the one the connection ended in.
            let mut c = self.conns.remove(key);
            match c.state() {
                State::Connecting | State::Authenticating | State::Handshaking => {
                    self.in_flight -= 1;
                }
                State::Open => self.open -= 1,
                State::Closing(_) => {}
            }
            meter.retire(c.latency_mut());
            meter.on_end(c.origin(), end);
        }
        opened
    }

    /// Starts the close handshake of the next open connection round the slab, to churn
    /// it. Returns `None` if no connection is open.
    pub(super) fn churn_one(
        &mut self,
        registry: &Registry,
        meter: &mut Meter,
        now: Instant,
    ) -> Option<Churned> {
        let span = self.conns.capacity().max(1);
        let found = (0..span)
            .map(|step| (self.churn_cursor + step) % span)
            .find(|&key| self.conns.get(key).is_some_and(|c| c.state() == State::Open));
        let Some(key) = found else {
            meter.counters.churn.skipped += 1;
            return None;
        };
        self.churn_cursor = key + 1;
        self.open -= 1;
        meter.counters.churn.closes += 1;
        let c = self.conns.get_mut(key)?; // found above
        let churned = Churned { set: c.set() };
        meter.retire(c.latency_mut());
        if let Err(end) = c.close(registry, Token(key), Closer::Churn, now) {
            let c = self.conns.remove(key);
            meter.on_end(c.origin(), end);
        }
        Some(churned)
    }

    /// Sends a close frame on every open connection and drops the ones still opening
    /// (not counted as failures: they neither opened nor failed; churn reconnects among
    /// them are counted as unfinished).
    pub(super) fn close_all(&mut self, registry: &Registry, meter: &mut Meter, now: Instant) {
        self.conns.retain(|key, c| match c.state() {
            State::Open => {
                meter.retire(c.latency_mut());
                match c.close(registry, Token(key), Closer::EndOfRun, now) {
                    Ok(()) => true,
                    Err(end) => {
                        meter.on_end(c.origin(), end);
                        false
                    }
                }
            }
            State::Connecting | State::Authenticating | State::Handshaking => {
                if c.origin() == Origin::Churn {
                    meter.counters.churn.unfinished += 1;
                }
                false
            }
            State::Closing(_) => true,
        });
        self.in_flight = 0;
        self.open = 0;
    }
}

/// A connection still opening `limits.open` after it started, or a churned one still
/// closing `limits.churn_close` after its close frame.
fn is_late(state: State, started: Instant, now: Instant, limits: Limits) -> bool {
    let age = now.duration_since(started);
    match state {
        State::Connecting | State::Authenticating | State::Handshaking => age >= limits.open,
        State::Closing(Closer::Churn) => age >= limits.churn_close,
        State::Open | State::Closing(Closer::EndOfRun) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_still_opening_or_churn_closing_at_their_timeout_are_late() {
        let t0 = Instant::now();
        let limits = Limits { open: Duration::from_secs(10), churn_close: Duration::from_secs(2) };
        let at = |s| t0 + Duration::from_secs(s);
        assert!(!is_late(State::Connecting, t0, at(9), limits));
        assert!(is_late(State::Connecting, t0, at(10), limits));
        assert!(is_late(State::Authenticating, t0, at(10), limits));
        assert!(is_late(State::Handshaking, t0, at(11), limits));
        assert!(!is_late(State::Open, t0, at(60), limits));
        assert!(!is_late(State::Closing(Closer::Churn), t0, at(1), limits));
        assert!(is_late(State::Closing(Closer::Churn), t0, at(2), limits));
        // The end of the run has its own deadline (the closing phase's).
        assert!(!is_late(State::Closing(Closer::EndOfRun), t0, at(60), limits));
    }
}
