//! One event loop ("shard"): a mio `Poll`, a slab of connections, and the channels that
//! connect it to the ticker, the workers and the control plane.
//!
//! Rules of the loop (as in mio's `Poll` docs):
//! - Readiness is edge-triggered: a readable connection is read until `WouldBlock` or
//!   its turn budget (next rule), and writes go on until the outbox is empty or
//!   `WouldBlock`. A connection left with input is listed for the next turn, since no
//!   new event will announce what it already has. The listener alone is drained
//!   in batches of [`ACCEPT_BATCH`] per turn, so a connection storm cannot starve the
//!   fan-out; while a batch has left connections in the backlog, the loop polls with a
//!   zero timeout and takes the next batch on its next turn (see [`Accepting`]).
//! - No connection can make the loop do more than a bounded amount of work per turn, or
//!   hold more than a bounded amount of memory, whatever it sends or fails to read:
//!   - a turn handles at most [`handle::READ_BUDGET`] bytes and [`handle::MESSAGE_BUDGET`]
//!     requests or frames of one connection; one with input left is revisited on the
//!     next turn, after ticks, events, completions, accepts and timers (see
//!     [`Shard::serve_revisits`]), so a flood on one socket delays nobody by more than
//!     one budget;
//!   - an HTTP connection whose unsent answers exceed [`handle::HTTP_OUTPUT_CAP`] is not
//!     read until they drain, and one that makes no write progress for
//!     `--slow-consumer-timeout` is dropped, as sessions are;
//!   - a session's frames, control frames included, count against `--control-rate`
//!     (beyond it, close 1008), and its unread replies against `MAX_QUEUED`.
//! - Any event may be spurious: a handler that finds nothing to do does nothing, and an
//!   event for a connection that is gone is ignored.
//! - `Interrupted` is retried; nothing here blocks: blocking work goes to the workers.
//! - TLS: the loop runs no handshake crypto. A connection whose handshake has new input
//!   sends a step to the handshake pool, within the shard's slots, or waits for one;
//!   while any waits, accepting pauses (`handshakes.rs` states the rules).
//! - Sockets are registered once for READABLE | WRITABLE. With edge triggering, a
//!   writable event only follows a write that hit a full buffer, so keeping both
//!   interests costs nothing and saves an `epoll_ctl` per stall and per drain.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Receiver;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::conn::{Conn, HttpPhase, Input, Session, State, Verdict};
use super::fanout::{Current, fan_out};
use super::handle::{self, LoopCtx};
use super::handshakes::{Handshakes, Offer};
use super::transport::Transport;
use super::{Control, Reply, Shared};
use crate::error::CloseCode;
use crate::ticker::Tick;
use crate::workers::{Completion, ConnKey};

/// Reserved tokens, above any slab key.
pub(crate) const LISTENER: Token = Token(usize::MAX - 1);
pub(crate) const WAKER: Token = Token(usize::MAX - 2);

/// Step of the fan-out's starting slot from one tick to the next (the golden ratio of
/// 2^32, odd, so successive starts fall far apart).
const FAIR_STRIDE: usize = 0x9E37_79B9;
/// How often timeouts are checked; they are seconds long, so a quarter second is precise enough.
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// How long accepting pauses after the process ran out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Connections accepted per loop turn at most: a reconnect storm of thousands is taken
/// in slices of this size with ticks, replies and reads served between them, instead
/// of one long accept run that starves the fan-out. An accept (with its registration)
/// took about 7 µs on the 2-core test host, so a batch is about 2 ms, a fifth of a tick;
/// unbatched, a backlog of 4,000 held the loop for about 27 ms and cost each open
/// subscriber 3 to 7 ticks.
const ACCEPT_BATCH: usize = 256;
/// The loop's one read buffer: a 64 KiB read drains a loopback socket's typical
/// backlog in one call, and one buffer per loop (not per connection) keeps idle
/// sessions at a few hundred bytes.
const READ_BUF: usize = 64 * 1024;

/// Answer to connections over the limit: written once, best effort, then closed.
const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 23\r\nConnection: close\r\n\r\n{\"error\":\"server busy\"}";

pub(crate) struct Shard {
    poll: Poll,
    listener: Option<TcpListener>,
    conns: Slab<Conn>,
    ctx: LoopCtx,
    ticks: Receiver<Tick>,
    completions: Receiver<Completion<Reply>>,
    controls: Receiver<Control>,
    next_serial: u64,
    accepting: Accepting,
    shutdown_deadline: Option<Instant>,
    /// Reused buffer of connections found dead during a fan-out.
    dead: Vec<ConnKey>,
    /// A newer tick took over the last fan-out: the sessions it served first lack it,
    /// so the loop polls without waiting and offers it to them on its next turn.
    behind: bool,
    /// Connections whose turn budget ran out with input left ([`Input::OverBudget`]),
    /// with their serials: served at the end of the next turn, which polls without
    /// waiting while any are listed.
    revisit: Vec<(ConnKey, u64)>,
    /// Last turn's `revisit`, being served; kept between turns so a flood that lists a
    /// connection every turn costs no allocation per turn.
    due: Vec<(ConnKey, u64)>,
    /// TLS: this shard's share of the handshake pool (always `None` on a plain port,
    /// and in a build without TLS, where the type has no values).
    handshakes: Option<Handshakes>,
}

/// Where the listener stands between two turns of the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accepting {
    /// The last accept saw `WouldBlock`: the next connection comes with a readiness event.
    Drained,
    /// A batch ended before `WouldBlock`: the backlog holds more, and an edge-triggered
    /// listener will not report it again, so the loop polls without waiting and accepts
    /// the next batch on its next turn.
    Backlogged,
    /// Out of file descriptors: connections wait in the backlog until then.
    PausedUntil(Instant),
    /// TLS handshake steps wait for a slot of the handshake pool: new connections wait
    /// in the backlog until none does, then the next batch is taken.
    Throttled,
}

/// Everything a shard is built from.
pub(crate) struct ShardParts {
    pub(crate) id: usize,
    pub(crate) poll: Poll,
    pub(crate) listener: TcpListener,
    pub(crate) shared: Arc<Shared>,
    pub(crate) ticks: Receiver<Tick>,
    pub(crate) completions: Receiver<Completion<Reply>>,
    pub(crate) controls: Receiver<Control>,
    pub(crate) handshakes: Option<Handshakes>,
}

impl Shard {
    pub(crate) fn new(parts: ShardParts) -> io::Result<Shard> {
        let ShardParts { id, poll, mut listener, shared, ticks, completions, controls, handshakes } =
            parts;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Shard {
            poll,
            listener: Some(listener),
            // Grows as connections arrive; a small start keeps an idle server lean.
            conns: Slab::with_capacity(64),
            ctx: LoopCtx {
                shard: id,
                shared,
                snapshot: None,
                snapshot_gen: 0,
                snapshot_at: None,
                read_buf: vec![0u8; READ_BUF].into_boxed_slice(),
            },
            ticks,
            completions,
            controls,
            next_serial: 0,
            accepting: Accepting::Drained,
            shutdown_deadline: None,
            dead: Vec::new(),
            behind: false,
            revisit: Vec::new(),
            due: Vec::new(),
            handshakes,
        })
    }

    /// Runs until shutdown has closed every connection or its deadline passed.
    pub(crate) fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        loop {
            let now = Instant::now();
            let timeout = match self.accepting {
                _ if self.behind || !self.revisit.is_empty() => Some(Duration::ZERO),
                Accepting::Backlogged => Some(Duration::ZERO),
                Accepting::PausedUntil(t) => Some(next_sweep.min(t).saturating_duration_since(now)),
                // With no connection there is no timeout to check: sleep until an event (a
                // connection, a tick, a control message all wake the poll).
                Accepting::Drained if self.conns.is_empty() => None,
                Accepting::Drained => Some(next_sweep.saturating_duration_since(now)),
                Accepting::Throttled => Some(next_sweep.saturating_duration_since(now)),
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            // Last turn's leftovers wait until everything else of this turn is done.
            std::mem::swap(&mut self.revisit, &mut self.due);
            // Ticks first: they are what latency is measured on.
            self.drain_ticks(now);
            let mut listener_ready = false;
            for event in events.iter() {
                match event.token() {
                    LISTENER => listener_ready = true,
                    WAKER => {}
                    Token(key) => self.on_conn_event(
                        ConnKey(key),
                        event.is_readable() || event.is_read_closed() || event.is_error(),
                        event.is_writable(),
                        now,
                    ),
                }
            }
            self.drain_completions(now);
            self.drain_handshakes(now);
            self.drain_controls(now);
            self.accept_batch(listener_ready, now);
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now + SWEEP_EVERY;
            }
            self.serve_revisits(now);
            if let Some(deadline) = self.shutdown_deadline
                && (self.conns.is_empty() || now >= deadline)
            {
                return Ok(());
            }
        }
    }

    /// Accepts one batch if the listener has connections waiting: it reported
    /// readiness, or the last batch left some, or a pause just ended.
    fn accept_batch(&mut self, listener_ready: bool, now: Instant) {
        match self.accepting {
            Accepting::Drained if !listener_ready => return,
            Accepting::PausedUntil(t) if now < t => return,
            // The backlog is looked at again once no handshake waits (`drain_handshakes`).
            Accepting::Throttled => return,
            _ => {}
        }
        self.accepting = self.accept_some(now);
    }

    /// Accepts until `WouldBlock`, or [`ACCEPT_BATCH`] connections, or the process is
    /// out of descriptors; says which.
    fn accept_some(&mut self, now: Instant) -> Accepting {
        for _ in 0..ACCEPT_BATCH {
            let Some(listener) = &self.listener else { return Accepting::Drained };
            match listener.accept() {
                Ok((socket, peer)) => self.admit(socket, peer, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Accepting::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_resource_exhaustion(&e) => {
                    // Out of descriptors: pending connections stay in the backlog; try
                    // again shortly instead of spinning on a listener that stays ready.
                    crate::warn!(
                        "accept failed; pausing",
                        error = e,
                        pause_ms = ACCEPT_BACKOFF.as_millis()
                    );
                    self.ctx.shared.metrics.accept_pauses.fetch_add(1, Relaxed);
                    return Accepting::PausedUntil(now + ACCEPT_BACKOFF);
                }
                // ECONNABORTED and the like concern one connection, not the listener.
                Err(e) => crate::debug!("accept error", error = e),
            }
        }
        Accepting::Backlogged
    }

    fn admit(&mut self, mut socket: TcpStream, peer: std::net::SocketAddr, now: Instant) {
        let shared = &self.ctx.shared;
        if shared.open_conns.load(Relaxed) >= shared.max_connections {
            shared.metrics.connections_rejected.fetch_add(1, Relaxed);
            // Best effort: a fresh socket's send buffer takes these few bytes. A TLS
            // client could not read them (no session yet), so it only sees the close.
            if !shared.speaks_tls() {
                let _ = io::Write::write(&mut socket, BUSY_RESPONSE);
            }
            return;
        }
        let _ = socket.set_nodelay(true);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if self
            .poll
            .registry()
            .register(&mut socket, Token(key), Interest::READABLE | Interest::WRITABLE)
            .is_err()
        {
            return;
        }
        // TLS: the session starts here; its handshake runs in the reads that follow, so
        // one that never finishes is closed by the head timeout like a stalled request.
        let transport = match Transport::accepted(socket, shared, peer) {
            Ok(transport) => transport,
            Err(mut socket) => {
                let _ = self.poll.registry().deregister(&mut socket);
                return;
            }
        };
        self.next_serial += 1;
        entry.insert(Conn::new(transport, self.next_serial, peer, now));
        shared.open_conns.fetch_add(1, Relaxed);
        shared.metrics.connections_open.fetch_add(1, Relaxed);
        shared.metrics.connections_accepted.fetch_add(1, Relaxed);
    }

    fn on_conn_event(&mut self, key: ConnKey, readable: bool, writable: bool, now: Instant) {
        let Some(conn) = self.conns.get_mut(key.0) else { return };
        let mut verdict = Verdict::Open;
        if writable {
            verdict = conn.flush(now, &self.ctx.shared.metrics);
        }
        // Reading held for this connection's answers resumes once they have drained.
        let resume = conn.input == Input::Held && !handle::must_hold(conn, &self.ctx.shared);
        if verdict == Verdict::Open && (readable || resume) {
            verdict = handle::on_readable(conn, key, &mut self.ctx, now);
        }
        self.after_input(key, verdict);
    }

    /// After a connection handled input: closes it, or hands its handshake step to the
    /// pool (TLS), and lists it for the next turn if its budget ran out with input left.
    fn after_input(&mut self, key: ConnKey, verdict: Verdict) {
        if verdict == Verdict::Close {
            return self.close(key);
        }
        self.start_handshake_step(key);
        if let Some(conn) = self.conns.get(key.0)
            && conn.input == Input::OverBudget
        {
            self.revisit.push((key, conn.serial));
        }
    }

    /// Gives the connections that ran out of budget last turn their next turn's worth.
    /// A connection listed twice, or served by an event in the meantime, is served once.
    fn serve_revisits(&mut self, now: Instant) {
        if self.due.is_empty() {
            return;
        }
        // Taken for the loop (serving may list connections in `revisit` again), then put
        // back empty with its capacity.
        let mut due = std::mem::take(&mut self.due);
        due.sort_unstable();
        due.dedup();
        for (key, serial) in due.drain(..) {
            let Some(conn) = self.conns.get_mut(key.0) else { continue };
            if conn.serial != serial || conn.input != Input::OverBudget {
                continue;
            }
            let verdict = handle::on_readable(conn, key, &mut self.ctx, now);
            self.after_input(key, verdict);
        }
        self.due = due;
    }

    /// TLS: a connection whose handshake has new input sends the step to the pool, or,
    /// without a free slot, waits in the queue (and accepting pauses). Does nothing for
    /// any other connection.
    fn start_handshake_step(&mut self, key: ConnKey) {
        let Some(hs) = &mut self.handshakes else { return };
        let Some(conn) = self.conns.get_mut(key.0) else { return };
        match hs.offer(key, conn.serial, &mut conn.socket) {
            Offer::Nothing | Offer::Sent => {}
            Offer::Parked => {
                self.accepting = Accepting::Throttled;
                self.ctx.shared.metrics.tls_handshake_waits.fetch_add(1, Relaxed);
            }
            Offer::Refused => self.close(key),
        }
    }

    /// TLS: steps back from the pool (each frees a slot) resume their connections; then
    /// the free slots go to the parked steps in order, and once none waits, accepting
    /// resumes.
    fn drain_handshakes(&mut self, now: Instant) {
        while let Some((key, stepped)) =
            self.handshakes.as_mut().and_then(|hs| hs.next_finished(&mut self.conns))
        {
            let Some(conn) = self.conns.get_mut(key.0) else { continue };
            let verdict = match stepped {
                // Plaintext behind the handshake's last records, and what waited in the
                // kernel meanwhile (no readiness event will report it again).
                Ok(()) => handle::on_readable(conn, key, &mut self.ctx, now),
                Err(_) => Verdict::Close,
            };
            self.after_input(key, verdict);
        }
        let Some(hs) = &mut self.handshakes else { return };
        hs.start_parked(&mut self.conns, &mut self.dead);
        if !hs.anyone_parked() && self.accepting == Accepting::Throttled {
            // Connections may have arrived meanwhile; the next turn accepts them.
            self.accepting = Accepting::Backlogged;
        }
        while let Some(key) = self.dead.pop() {
            self.close(key);
        }
    }

    /// The hot path's caller: keeps only the newest of the queued ticks and offers it to
    /// every session; or, after a fan-out that a newer tick took over, offers that one
    /// to the sessions served before it (`behind`).
    fn drain_ticks(&mut self, now: Instant) {
        let metrics = &self.ctx.shared.metrics;
        let mut current = match newest_tick(&self.ticks) {
            Some((tick, skipped)) => {
                self.ctx.snapshot_at = Some(now);
                let made = UNIX_EPOCH + Duration::from_micros(tick.ts_us);
                let delay = SystemTime::now().duration_since(made).unwrap_or_default();
                metrics.observe_tick_delay(delay);
                metrics.superseded_ticks.fetch_add(skipped, Relaxed);
                Current { tick, count: self.ctx.snapshot_gen + 1 + skipped }
            }
            None if self.behind => match self.ctx.snapshot.take() {
                Some(tick) => Current { tick, count: self.ctx.snapshot_gen },
                None => return,
            },
            None => return,
        };
        let started = Instant::now();
        // A different first subscriber every tick (a large odd stride spreads the start
        // over all the connections), so the same ones are not always served last.
        let start = (current.tick.seq as usize).wrapping_mul(FAIR_STRIDE);
        // Ticks that arrive while it runs take over for the subscribers not yet served.
        let (ticks, interval) = (&self.ticks, self.ctx.shared.config.tick_interval);
        let (conns, dead) = (&mut self.conns, &mut self.dead);
        let totals = fan_out(conns, &mut current, start, now, dead, interval, || {
            let (tick, skipped) = newest_tick(ticks)?;
            metrics.superseded_ticks.fetch_add(skipped, Relaxed);
            Some((tick, skipped))
        });
        self.behind = totals.takeovers > 0;
        metrics.observe_fanout(started.elapsed());
        metrics.frames_sent.fetch_add(totals.frames, Relaxed);
        metrics.bytes_sent.fetch_add(totals.bytes, Relaxed);
        metrics.conflated_frames.fetch_add(totals.conflated, Relaxed);
        metrics.fanout_takeovers.fetch_add(totals.takeovers, Relaxed);
        if totals.resyncs > 0 {
            metrics.delta_resyncs.fetch_add(totals.resyncs, Relaxed);
        }
        self.ctx.snapshot = Some(current.tick);
        self.ctx.snapshot_gen = current.count;
        while let Some(key) = self.dead.pop() {
            self.close(key);
        }
    }

    fn drain_completions(&mut self, now: Instant) {
        while let Ok(done) = self.completions.try_recv() {
            let key = done.reply.conn;
            let Some(conn) = self.conns.get_mut(key.0) else { continue };
            // The slot may hold a newer connection than the one that asked.
            if conn.serial != done.reply.serial {
                continue;
            }
            let verdict = handle::on_completion(conn, key, &mut self.ctx, done.value, now);
            self.after_input(key, verdict);
        }
    }

    fn drain_controls(&mut self, now: Instant) {
        while let Ok(control) = self.controls.try_recv() {
            match control {
                Control::Shutdown => self.begin_shutdown(now),
                Control::RevokeApiKeys(ids) => {
                    self.close_sessions_where(now, "revoked", |s| ids.contains(&s.api_key_id))
                }
                Control::RevokeToken(id) => {
                    self.close_sessions_where(now, "revoked", |s| s.token_id == id)
                }
            }
        }
    }

    fn close_sessions_where(
        &mut self,
        now: Instant,
        reason: &str,
        selects: impl Fn(&Session) -> bool,
    ) {
        let mut closed = 0u64;
        let (metrics, linger) = (&self.ctx.shared.metrics, self.ctx.shared.config.close_linger);
        for (key, conn) in self.conns.iter_mut() {
            let hit = matches!(&conn.state, State::WebSocket { session, .. } if selects(session));
            if hit {
                conn.close_session(CloseCode::PolicyViolation, reason, now, linger, metrics);
                if conn.flush(now, metrics) == Verdict::Close {
                    self.dead.push(ConnKey(key));
                }
                closed += 1;
            }
        }
        metrics.revoked_closes.fetch_add(closed, Relaxed);
        while let Some(key) = self.dead.pop() {
            self.close(key);
        }
    }

    /// Stop accepting, send close 1001 to every session, close idle HTTP connections,
    /// and give the rest until the grace deadline.
    fn begin_shutdown(&mut self, now: Instant) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        self.shutdown_deadline = Some(now + self.ctx.shared.config.shutdown_grace);
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let mut idle = Vec::new();
        let (metrics, linger) = (&self.ctx.shared.metrics, self.ctx.shared.config.close_linger);
        for (key, conn) in self.conns.iter_mut() {
            match &conn.state {
                State::WebSocket { .. } => {
                    let reason = "server shutting down";
                    conn.close_session(CloseCode::GoingAway, reason, now, linger, metrics);
                    if conn.flush(now, metrics) == Verdict::Close {
                        idle.push(ConnKey(key));
                    }
                }
                State::Http { phase: HttpPhase::Reading, .. }
                    if conn.out.is_empty() && conn.inbuf.is_empty() =>
                {
                    idle.push(ConnKey(key))
                }
                _ => {}
            }
        }
        for key in idle {
            self.close(key);
        }
    }

    fn sweep(&mut self, now: Instant) {
        for (key, conn) in self.conns.iter_mut() {
            if handle::on_timer(conn, &self.ctx, now) == Verdict::Close {
                self.dead.push(ConnKey(key));
            }
        }
        while let Some(key) = self.dead.pop() {
            self.close(key);
        }
    }

    fn close(&mut self, key: ConnKey) {
        if !self.conns.contains(key.0) {
            return;
        }
        let mut conn = self.conns.remove(key.0);
        let _ = self.poll.registry().deregister(&mut conn.socket);
        conn.release(&self.ctx.shared.metrics);
        self.ctx.shared.open_conns.fetch_sub(1, Relaxed);
        self.ctx.shared.metrics.connections_open.fetch_sub(1, Relaxed);
    }
}

/// The newest queued tick and how many older ones it makes redundant.
fn newest_tick(ticks: &Receiver<Tick>) -> Option<(Tick, u64)> {
    let mut newest = ticks.try_recv().ok()?;
    let mut skipped = 0;
    while let Ok(newer) = ticks.try_recv() {
        skipped += 1;
        newest = newer;
    }
    Some((newest, skipped))
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busy_answer_declares_its_true_length() {
        let text = std::str::from_utf8(BUSY_RESPONSE).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert_eq!(body, r#"{"error":"server busy"}"#);
    }
}
