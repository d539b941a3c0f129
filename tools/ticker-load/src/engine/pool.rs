//! A thread's connections: a slab keyed by mio token, with how many are opening and
//! how many are open kept in step with their states, and every ending counted once.

use std::io;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Registry, Token};
use slab::Slab;

use crate::conn::{Conn, End, State};
use crate::meter::Meter;
use crate::stats::Reason;

pub(super) struct Pool {
    conns: Slab<Conn>,
    /// Connecting or handshaking.
    in_flight: usize,
    open: u64,
}

impl Pool {
    pub(super) fn with_capacity(n: usize) -> Pool {
        Pool { conns: Slab::with_capacity(n), in_flight: 0, open: 0 }
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

    /// Drops the connections still opening `timeout` after they started.
    pub(super) fn drop_late(&mut self, now: Instant, timeout: Duration, meter: &mut Meter) {
        let late: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| is_late(c.state(), c.started(), now, timeout))
            .map(|(k, _)| k)
            .collect();
        for key in late {
            self.conns.remove(key);
            self.in_flight -= 1;
            meter.on_end(End::Failed(Reason::Timeout));
        }
    }

    /// Hands a readiness event to its connection. Returns true if it has just opened.
    pub(super) fn dispatch(
        &mut self,
        registry: &Registry,
        event: &Event,
        buf: &mut [u8],
        meter: &mut Meter,
    ) -> bool {
        let key = event.token().0;
        let peer_closed = event.is_read_closed() || event.is_error();
        let Some(c) = self.conns.get_mut(key) else {
            return false; // removed earlier in this batch
        };
        let was_in_flight = matches!(c.state(), State::Connecting | State::Handshaking);
        let outcome = c.on_ready(registry, event.token(), buf, meter, peer_closed);
        let opened = was_in_flight && c.state() == State::Open;
        if opened {
            self.in_flight -= 1;
            self.open += 1;
        }
        if let Err(end) = outcome {
            // The state is the one the connection ended in.
            match self.conns.remove(key).state() {
                State::Connecting | State::Handshaking => self.in_flight -= 1,
                State::Open => self.open -= 1,
                State::Closing => {}
            }
            meter.on_end(end);
        }
        opened
    }

    /// Sends a close frame on every open connection and drops the ones still opening
    /// (uncounted: they neither opened nor failed).
    pub(super) fn close_all(&mut self, registry: &Registry, meter: &mut Meter) {
        self.conns.retain(|key, c| match c.state() {
            State::Open => match c.close(registry, Token(key)) {
                Ok(()) => true,
                Err(end) => {
                    meter.on_end(end);
                    false
                }
            },
            State::Connecting | State::Handshaking => false,
            State::Closing => true,
        });
        self.in_flight = 0;
        self.open = 0;
    }
}

/// A connection still connecting or handshaking `timeout` after it started.
fn is_late(state: State, started: Instant, now: Instant, timeout: Duration) -> bool {
    matches!(state, State::Connecting | State::Handshaking)
        && now.duration_since(started) >= timeout
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connections_still_opening_at_the_timeout_are_late() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(10);
        let at = |s| t0 + Duration::from_secs(s);
        assert!(!is_late(State::Connecting, t0, at(9), timeout));
        assert!(is_late(State::Connecting, t0, at(10), timeout));
        assert!(is_late(State::Handshaking, t0, at(11), timeout));
        assert!(!is_late(State::Open, t0, at(60), timeout));
        assert!(!is_late(State::Closing, t0, at(60), timeout));
    }
}
