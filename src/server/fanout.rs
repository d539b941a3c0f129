//! The hot path: offer one tick to every subscriber of this event loop.
//!
//! Per subscriber it must never allocate, copy the payload, serialize, or take a lock:
//! the frame is the ticker's `Arc<[u8]>` (the all-symbols frame, or the frame of the
//! symbol set the session chose, found by its set id), written straight to the socket. Only when the
//! socket cannot take it whole does the subscriber keep a reference (an `Arc` clone, a
//! counter increment), and a subscriber that is already waiting only has its pending
//! tick replaced (conflation). The one syscall per subscriber is the `write`.
//!
//! A compressed or changes-only session (`Feed::encoding`) takes the same path after one
//! more compare: `Tick::pick_deflated` or `Tick::pick_delta` chooses among the tick's shared frames for its set (the
//! compressed one; the changes message if the session got the message it builds on,
//! else the set's whole-state message), still without building anything per subscriber.
//!
//! A fan-out that runs longer than a tick (thousands of subscribers, a busy host) hands
//! the subscribers it has not reached a newer tick, and the loop's next turn offers that
//! tick to the ones it served before (`fan_out`): under overload every subscriber gets
//! the newest prices instead of a queue of old ones, and none gets a tick twice.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slab::Slab;

use super::conn::{Conn, Feed, Outbox, State};
use super::transport::Socket;
use crate::symbols::sets::{SetId, SetLease};
use crate::ticker::Tick;
use crate::ticker::variants::Pick;
use crate::workers::ConnKey;

/// Totals of one fan-out, added to the metrics once per tick.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FanoutTotals {
    pub frames: u64,
    pub bytes: u64,
    pub conflated: u64,
    /// Newer ticks that took over during this fan-out (see `fan_out`).
    pub takeovers: u64,
    /// Changes-only sessions sent the whole state after a gap in their chain.
    pub resyncs: u64,
}

/// What offering a tick to one subscriber did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// The whole frame went to the socket.
    Written,
    /// Part of it went; the rest waits in the outbox.
    Partial(usize),
    /// The socket was full; the frame waits as the pending tick.
    Parked,
    /// An older pending tick was replaced (conflation).
    Conflated,
    /// The socket failed; close the connection.
    Failed,
}

/// Subscribers offered a tick between two looks for a newer one: at ~2.5 µs each, a
/// newer tick waits at most ~0.2 ms to take over, and a look (a clock read, then an
/// empty channel's `try_recv`) costs nothing per subscriber.
pub(crate) const LOOK_FOR_NEWER_EVERY: usize = 64;

/// The tick a fan-out offers, and the loop's count of it: every tick the loop receives
/// (or skips) advances the count, so a session's `Feed::offered` says which it has and
/// how many it missed. Counts start at 1.
pub(crate) struct Current {
    pub(crate) tick: Tick,
    pub(crate) count: u64,
}

/// A newer tick for a running fan-out, and how many ticks older than it and newer than
/// the current one are skipped.
pub(crate) type Newer = Option<(Tick, u64)>;

/// Offers the current tick to every WebSocket session in `conns` that does not have it
/// yet, starting at the `start`-th connection (modulo their number) and wrapping
/// around: the caller moves `start` every tick so that no connection is always served
/// last (fairness at no cost per subscriber but a skipped iterator step). Keys of
/// connections whose socket failed are pushed to `dead` (a reused buffer) for the
/// caller to close.
///
/// Once it has run for `take_over_after` (the tick interval), it asks `newer` every
/// [`LOOK_FOR_NEWER_EVERY`] subscribers for a tick that arrived meanwhile and, if there
/// is one, offers that one to the rest: when a fan-out takes longer than a tick
/// (thousands of subscribers on a busy host), the subscribers late in it get the newest
/// prices instead of ones more than a tick old (and skip the older one). A fan-out that
/// fits in a tick never switches, so a loop that keeps up delivers every tick.
/// `current` is left holding the newest tick; `FanoutTotals::takeovers` > 0 tells the
/// caller that the subscribers served before the switch still lack it, for another
/// pass, which skips everyone who has it. No subscriber is offered the same tick twice.
pub(crate) fn fan_out<S: Socket>(
    conns: &mut Slab<Conn<S>>,
    current: &mut Current,
    start: usize,
    now: Instant,
    dead: &mut Vec<ConnKey>,
    take_over_after: Duration,
    mut newer: impl FnMut() -> Newer,
) -> FanoutTotals {
    let started = Instant::now();
    let mut totals = FanoutTotals::default();
    // Frames of sets chosen after the ticker built this tick, built here once each (only
    // in the tick that races a new subscription, never in the steady state).
    let mut late: Vec<(SetId, Arc<[u8]>)> = Vec::new();
    let mut until_look = LOOK_FOR_NEWER_EVERY;
    let mut visit = |key: ConnKey, conn: &mut Conn<S>, current: &mut Current, late: &mut Vec<_>| {
        // The feed is inline in the state: matching the state reads nothing more.
        let State::WebSocket { feed, .. } = &mut conn.state else { return };
        if feed.offered == Some(current.count) {
            return;
        }
        until_look -= 1;
        if until_look == 0 {
            until_look = LOOK_FOR_NEWER_EVERY;
            if started.elapsed() >= take_over_after
                && let Some((tick, skipped)) = newer()
            {
                *current = Current { tick, count: current.count + 1 + skipped };
                late.clear();
                totals.takeovers += 1;
            }
        }
        // Ticks between the last one offered and this one never reached this session.
        let missed = match feed.offered {
            None => 0,
            Some(had) => current.count.saturating_sub(had + 1),
        };
        feed.offered = Some(current.count);
        let tick = &current.tick;
        let owned;
        let frame = if feed.encoding.is_plain() {
            match plain_frame(tick, feed.set.as_ref(), late) {
                Some(frame) => frame,
                // The empty set: heartbeats only.
                None => return,
            }
        } else {
            let replacing = conn.out.latest_tick.is_some();
            // A session's first message is no resync (no snapshot when it opened: the
            // ticker was idle).
            let resync = u64::from(feed.last_seq.is_some());
            match encoded_pick(tick, feed, replacing, late) {
                Pick::Nothing => return,
                Pick::Frame(frame) => frame,
                Pick::Whole(frame, _) => {
                    totals.resyncs += resync;
                    frame
                }
                Pick::Built(frame, _) => {
                    totals.resyncs += resync;
                    owned = frame;
                    &owned
                }
            }
        };
        totals.conflated += missed;
        match offer(&mut conn.socket, &mut conn.out, &mut conn.last_progress, frame, now) {
            Offered::Written => {
                totals.frames += 1;
                totals.bytes += frame.len() as u64;
            }
            Offered::Partial(n) => totals.bytes += n as u64,
            Offered::Parked => {}
            Offered::Conflated => totals.conflated += 1,
            Offered::Failed => dead.push(key),
        }
    };
    // Counted over the connections, not the slab's slots: a slab left sparse by a storm
    // would otherwise start at its first connection most of the time.
    let first = if conns.is_empty() { 0 } else { start % conns.len() };
    for (key, conn) in conns.iter_mut().skip(first) {
        visit(ConnKey(key), conn, current, &mut late);
    }
    for (key, conn) in conns.iter_mut().take(first) {
        visit(ConnKey(key), conn, current, &mut late);
    }
    totals
}

/// The plain frame of a session's feed (`None` for the empty set).
#[inline]
fn plain_frame<'a>(
    tick: &'a Tick,
    set: Option<&SetLease>,
    late: &'a mut Vec<(SetId, Arc<[u8]>)>,
) -> Option<&'a Arc<[u8]>> {
    match set {
        None => Some(&tick.frame),
        Some(lease) => match tick.set_frame(lease.id()) {
            Some(frame) => Some(frame),
            None if lease.members().is_empty() => None,
            None => Some(late_frame(late, tick, lease)),
        },
    }
}

/// A compressed or changes-only session's frame of `tick` (see `Tick::pick_deflated` and `Tick::pick_delta`), keeping
/// its chain: after this, its last message is the one picked. `replacing`: an
/// undelivered tick waits in its outbox and would be dropped for this one.
fn encoded_pick<'a>(
    tick: &'a Tick,
    feed: &mut Feed,
    replacing: bool,
    late: &'a mut Vec<(SetId, Arc<[u8]>)>,
) -> Pick<'a> {
    let set = feed.set.as_ref();
    if !feed.encoding.delta {
        let Some(plain) = plain_frame(tick, set, late) else { return Pick::Nothing };
        return Pick::Frame(tick.pick_deflated(feed.encoding.deflate, set, plain));
    }
    let pick = tick.pick_delta(feed.encoding, set, feed.last_seq, replacing);
    match &pick {
        Pick::Nothing => {}
        Pick::Frame(_) => feed.last_seq = Some(tick.seq),
        Pick::Whole(_, seq) | Pick::Built(_, seq) => feed.last_seq = Some(*seq),
    }
    pick
}

#[cold]
fn late_frame<'a>(
    late: &'a mut Vec<(SetId, Arc<[u8]>)>,
    tick: &Tick,
    lease: &SetLease,
) -> &'a Arc<[u8]> {
    let at = match late.iter().position(|(id, _)| *id == lease.id()) {
        Some(at) => at,
        None => {
            late.push((lease.id(), tick.build_for(lease.members())));
            late.len() - 1
        }
    };
    &late[at].1
}

/// One subscriber's share of a tick: the per-subscriber cost of the hot path, generic
/// over the socket so benches can drive it with in-memory writers.
#[inline]
pub fn offer<W: Write>(
    socket: &mut W,
    out: &mut Outbox,
    last_progress: &mut Instant,
    frame: &Arc<[u8]>,
    now: Instant,
) -> Offered {
    if !out.is_empty() {
        // The socket is full (the outbox is only non-empty after a short write), so a
        // writable event is coming; keep just the newest tick until then.
        return if out.offer_tick(frame.clone()) { Offered::Conflated } else { Offered::Parked };
    }
    match write_all_or_park(socket, frame) {
        Ok(n) if n == frame.len() => Offered::Written,
        Ok(n) => {
            out.set_partial_tick(frame.clone(), n);
            *last_progress = now;
            Offered::Partial(n)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            out.offer_tick(frame.clone());
            *last_progress = now;
            Offered::Parked
        }
        Err(_) => Offered::Failed,
    }
}

/// Writes as much of `frame` as the socket takes. A short write is retried once so the
/// socket is left either with the whole frame or in the would-block state that
/// guarantees a writable event later (edge-triggered readiness).
fn write_all_or_park<W: Write>(w: &mut W, frame: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < frame.len() {
        match w.write(&frame[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && written > 0 => return Ok(written),
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Room(usize, Vec<u8>);

    impl Write for Room {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.0);
            self.0 -= n;
            self.1.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_short_write_reports_what_the_socket_took() {
        let mut w = Room(3, Vec::new());
        assert_eq!(write_all_or_park(&mut w, b"hello").unwrap(), 3);
        let mut w = Room(0, Vec::new());
        assert_eq!(
            write_all_or_park(&mut w, b"hello").unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        let mut w = Room(10, Vec::new());
        assert_eq!(write_all_or_park(&mut w, b"hello").unwrap(), 5);
    }
}
